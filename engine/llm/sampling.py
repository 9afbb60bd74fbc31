"""Sampling options: defaults from the bundle's generation_config.json, overridable per call."""

from __future__ import annotations

import math
from typing import Any

import msgspec

from engine.errors import InvalidRequestError
from engine.llm import limits

__all__ = ["SamplingOptions", "defaults_from_generation_config", "resolve_sampling"]


class SamplingOptions(msgspec.Struct, frozen=True, kw_only=True):
    """How the next tokens are picked.

    temperature 0 means greedy. top_k 0 means no top-k cut. top_p 1.0 means no
    nucleus cut. repetition_penalty 1.0 means none; it looks at the last
    `lookback` tokens. max_tokens caps the generated tokens of one turn.
    seed None keeps the engine's random stream going; an int reseeds it.
    """

    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    lookback: int = limits.DEFAULT_LOOKBACK
    max_tokens: int = limits.DEFAULT_MAX_TOKENS
    seed: int | None = None

    def validate(self) -> SamplingOptions:
        """Returns self, or raises InvalidRequestError naming the bad option."""

        def bad(name: str, why: str) -> InvalidRequestError:
            return InvalidRequestError(f"sampling option {name}={getattr(self, name)!r}: {why}")

        if not math.isfinite(self.temperature) or not 0.0 <= self.temperature <= 100.0:
            raise bad("temperature", "must be a number in [0, 100]")
        if not 0 <= self.top_k <= 1_000_000:
            raise bad("top_k", "must be an integer >= 0 (0 = off)")
        if not math.isfinite(self.top_p) or not 0.0 < self.top_p <= 1.0:
            raise bad("top_p", "must be in (0, 1]")
        if not math.isfinite(self.repetition_penalty) or not 0.0 < self.repetition_penalty <= 10:
            raise bad("repetition_penalty", "must be in (0, 10]")
        if not 0 <= self.lookback <= limits.MAX_LOOKBACK:
            raise bad("lookback", f"must be in [0, {limits.MAX_LOOKBACK}]")
        if not 1 <= self.max_tokens <= limits.MAX_TOKENS_CAP:
            raise bad("max_tokens", f"must be in [1, {limits.MAX_TOKENS_CAP}]")
        if self.seed is not None and not 0 <= self.seed < 2**63:
            raise bad("seed", "must be a non-negative 64-bit integer")
        return self


def _num(value: Any, kind: type) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return kind(value)


def defaults_from_generation_config(gen: dict[str, Any]) -> SamplingOptions:
    """The bundle's defaults. `do_sample: false` means greedy, as in transformers;
    keys that are missing or of the wrong type fall back to SamplingOptions' own."""
    base = SamplingOptions()
    temperature = _num(gen.get("temperature"), float)
    if temperature is None:
        temperature = 1.0 if gen.get("do_sample") else base.temperature
    if gen.get("do_sample") is False:
        temperature = 0.0
    top_k = _num(gen.get("top_k"), int)
    top_p = _num(gen.get("top_p"), float)
    rep = _num(gen.get("repetition_penalty"), float)
    max_new = _num(gen.get("max_new_tokens"), int)
    opts = SamplingOptions(
        temperature=temperature,
        top_k=base.top_k if top_k is None else top_k,
        top_p=base.top_p if top_p is None else top_p,
        repetition_penalty=base.repetition_penalty if rep is None else rep,
        max_tokens=base.max_tokens if max_new is None else min(max_new, limits.MAX_TOKENS_CAP),
    )
    try:
        return opts.validate()
    except InvalidRequestError as exc:
        raise InvalidRequestError(f"generation_config.json: {exc.message}") from None


def resolve_sampling(defaults: SamplingOptions, **overrides: Any) -> SamplingOptions:
    """Per-call options: each keyword that is not None replaces the default.

    Raises InvalidRequestError for an unknown option or a bad value."""
    fields = set(SamplingOptions.__struct_fields__)
    unknown = set(overrides) - fields
    if unknown:
        raise InvalidRequestError(f"unknown sampling option(s): {', '.join(sorted(unknown))}")
    given = {k: v for k, v in overrides.items() if v is not None}
    for key, value in given.items():
        want: type = float if key in {"temperature", "top_p", "repetition_penalty"} else int
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidRequestError(f"sampling option {key}={value!r}: must be a number")
        if want is int and not isinstance(value, int):
            raise InvalidRequestError(f"sampling option {key}={value!r}: must be an integer")
        given[key] = want(value)
    return msgspec.structs.replace(defaults, **given).validate()
