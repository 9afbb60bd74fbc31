"""The bundle's tokenizer, its chat template, and incremental UTF-8-safe detokenization.

The chat template is BitNet-b1.58-2B-4T's: the begin-of-text token first, then
each turn as "Role: content<|eot_id|>" (roles capitalized: System, User,
Assistant, Search), then the generation prompt "Assistant: ".

Prompts are built as token segments, one per message, so a conversation's
tokens only ever grow at the end: the KV cache can be reused turn after turn
(a re-tokenized whole string could merge differently across a boundary).
Message content is encoded with special-token matching off, so a user who
types "<|eot_id|>" gets those characters, not the control token.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from engine.errors import InvalidRequestError
from engine.llm import bundle, limits

__all__ = ["ROLES", "ChatTokenizer", "IncrementalDecoder", "needs_remote_code"]

ROLES = ("system", "user", "assistant", "search")
EOT_TOKEN = "<|eot_id|>"
END_OF_TEXT_TOKEN = "<|end_of_text|>"
GENERATION_PROMPT = "Assistant: "


def _read_optional_json(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidRequestError(f"bundle file unreadable: {path}: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidRequestError(f"bundle file is not a JSON object: {path}")
    return data


def _token_text(value: Any) -> str | None:
    # tokenizer_config.json writes special tokens either as a string or as an
    # AddedToken dict {"content": ...}.
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return str(value["content"])
    return None


def _ids(value: Any) -> list[int]:
    if isinstance(value, bool):
        return []
    if isinstance(value, int):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, int) and not isinstance(v, bool)]
    return []


def needs_remote_code(bundle_dir: Path) -> bool:
    """True when the bundle's config or tokenizer config asks for custom code (`auto_map`)."""
    for name in (bundle.CONFIG, bundle.TOKENIZER_CONFIG):
        data = _read_optional_json(bundle_dir / name)
        if data.get("auto_map") or data.get("trust_remote_code"):
            return True
    return False


class ChatTokenizer:
    """Tokenizer + chat template + special tokens of one bundle.

    Build with `ChatTokenizer.from_bundle(path)`; all methods are pure and
    thread-safe (the underlying `tokenizers.Tokenizer` is only read).
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        *,
        bos_id: int | None,
        eot_id: int,
        stop_ids: Iterable[int],
    ) -> None:
        self._tok = tokenizer
        self._tok.encode_special_tokens = True  # content never turns into control tokens
        self.bos_id = bos_id
        self.eot_id = eot_id
        self.stop_ids = frozenset(stop_ids) | {eot_id}
        self.vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)

    @classmethod
    def from_bundle(cls, bundle_dir: Path, *, trust_remote_code: bool = False) -> ChatTokenizer:
        """Load tokenizer.json and the special tokens of tokenizer_config.json,
        generation_config.json and config.json.

        Raises InvalidRequestError when the bundle needs custom code and
        trust_remote_code is False, or when its files are missing or unreadable.
        With trust_remote_code=True the bundle loads, but bitvoice still uses
        only its own tokenizer.json (it never executes code from a bundle).
        """
        if needs_remote_code(bundle_dir) and not trust_remote_code:
            raise InvalidRequestError(
                f"the bundle at {bundle_dir} ships custom tokenizer/config code (auto_map); "
                "pass trust_remote_code=True to load it"
            )
        path = bundle_dir / bundle.TOKENIZER
        try:
            tok = Tokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises a bare Exception on bad files
            raise InvalidRequestError(f"cannot load tokenizer {path}: {exc}") from None
        tcfg = _read_optional_json(bundle_dir / bundle.TOKENIZER_CONFIG)
        gcfg = _read_optional_json(bundle_dir / bundle.GENERATION_CONFIG)
        mcfg = _read_optional_json(bundle_dir / bundle.CONFIG)

        def tid(text: str | None) -> int | None:
            return None if text is None else tok.token_to_id(text)

        bos_id = tid(_token_text(tcfg.get("bos_token")))
        if bos_id is None:
            found = _ids(gcfg.get("bos_token_id")) or _ids(mcfg.get("bos_token_id"))
            bos_id = found[0] if found else None
        if tcfg.get("add_bos_token") is False:
            bos_id = None
        stop = set(_ids(gcfg.get("eos_token_id"))) | set(_ids(mcfg.get("eos_token_id")))
        eos_text_id = tid(_token_text(tcfg.get("eos_token")))
        if eos_text_id is not None:
            stop.add(eos_text_id)
        end_id = tid(END_OF_TEXT_TOKEN)
        if end_id is not None:
            stop.add(end_id)
        eot_id = tid(EOT_TOKEN)
        if eot_id is None:
            eot_id = eos_text_id if eos_text_id is not None else min(stop, default=None)
        if eot_id is None:
            raise InvalidRequestError(
                f"bundle at {bundle_dir} names no end-of-turn token "
                f"({EOT_TOKEN}, eos_token or eos_token_id)"
            )
        return cls(tok, bos_id=bos_id, eot_id=eot_id, stop_ids=stop)

    # -- encoding --------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        """Plain text to ids: no special tokens added, none matched inside the text."""
        return list(self._tok.encode(text, add_special_tokens=False).ids)

    def begin(self) -> list[int]:
        """Tokens that open every conversation (the begin-of-text token)."""
        return [] if self.bos_id is None else [self.bos_id]

    def message(self, role: str, content: str) -> list[int]:
        """One finished turn: "Role: content<|eot_id|>" (content stripped, as the template does).

        Raises InvalidRequestError for an unknown role or an oversized message."""
        check_message(role, content)
        return [*self.encode(f"{role.capitalize()}: {content.strip()}"), self.eot_id]

    def message_prefix(self, role: str, content: str) -> list[int]:
        """The start of a message still being written: "Role: content" with no
        end-of-turn token (content stripped like message()). When the finished
        text continues it at a word boundary these tokens are a prefix of
        message(role, finished) (byte-level BPE splits before each space).

        Raises InvalidRequestError for an unknown role or an oversized message."""
        check_message(role, content)
        return self.encode(f"{role.capitalize()}: {content.strip()}")

    def reply(self, content: str) -> list[int]:
        """An assistant message in the form the model writes it: the generation
        prompt, then the content, then end-of-turn (content stripped)."""
        check_message("assistant", content)
        return [*self.generation_prompt(), *self.encode(content.strip()), self.eot_id]

    def generation_prompt(self) -> list[int]:
        return self.encode(GENERATION_PROMPT)

    def render(self, messages: Sequence[tuple[str, str]], add_generation_prompt: bool) -> list[int]:
        """The whole prompt of a conversation, as the segments above."""
        out = self.begin()
        for role, content in messages:
            out += self.message(role, content)
        if add_generation_prompt:
            out += self.generation_prompt()
        return out

    # -- decoding --------------------------------------------------------------
    def decode(self, ids: Sequence[int]) -> str:
        """Ids to text, special tokens dropped."""
        return str(self._tok.decode(list(ids), skip_special_tokens=True))

    def decoder(self) -> IncrementalDecoder:
        return IncrementalDecoder(self)


def check_message(role: str, content: str) -> None:
    """Raises InvalidRequestError unless `role` is one of ROLES and content a sane str."""
    if role not in ROLES:
        raise InvalidRequestError(f"role must be one of {', '.join(ROLES)}; got {role!r}")
    if not isinstance(content, str):
        raise InvalidRequestError(f"message content must be str, got {type(content).__name__}")
    if len(content) > limits.MAX_MESSAGE_CHARS:
        raise InvalidRequestError(
            f"message of {len(content)} characters exceeds {limits.MAX_MESSAGE_CHARS}"
        )


class IncrementalDecoder:
    """Turns a stream of ids into text increments that never split a character.

    Byte-level tokens can end in the middle of a UTF-8 sequence; decoding such
    a prefix yields U+FFFD. We decode a short window (from the last point where
    the text was whole) and hold back output while it ends in U+FFFD. The
    increments concatenated equal `decode(all ids)` once `flush()` is called.
    """

    def __init__(self, tokenizer: ChatTokenizer) -> None:
        self._tok = tokenizer
        self.ids: list[int] = []
        self._prefix = 0  # window start: text before it has been emitted
        self._read = 0  # ids up to here have been emitted

    def push(self, token_id: int) -> str:
        """Add one id; return the newly complete text (possibly empty)."""
        self.ids.append(token_id)
        prefix_text = self._tok.decode(self.ids[self._prefix : self._read])
        new_text = self._tok.decode(self.ids[self._prefix :])
        if len(new_text) > len(prefix_text) and not new_text.endswith("\ufffd"):
            delta = new_text[len(prefix_text) :]
            self._prefix = self._read
            self._read = len(self.ids)
            return delta
        return ""

    def flush(self) -> str:
        """Whatever is still held back (an unfinished character decodes as U+FFFD)."""
        prefix_text = self._tok.decode(self.ids[self._prefix : self._read])
        new_text = self._tok.decode(self.ids[self._prefix :])
        self._prefix = self._read = len(self.ids)
        return new_text[len(prefix_text) :]
