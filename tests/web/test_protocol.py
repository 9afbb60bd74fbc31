"""The web client's protocol module (web/protocol.js) against the server's wire schema.

STYLE.md: every message the client sends decodes with the server's decoder. The builders run
under Node, exactly as the browser runs them; the decoding is realtime.messages.decode_client.
"""

from __future__ import annotations

import json
import typing
from typing import Any

import msgspec
import pytest

from realtime import messages as m

EXAMPLES_JS = """
import * as p from "./web/protocol.js";
console.log(JSON.stringify(p.allClientMessageExamples()));
"""

# Client messages the page never sends, and why.
NOT_SENT_BY_PAGE = {
    # Microphone audio goes as binary frames (a third smaller than base64 JSON).
    "input_audio_buffer.append",
    # OpenAI Realtime compatibility (PROTOCOL.md): the page types with response.create's
    # input_text and reports what it played with bitvoice.playback (and, once the server has
    # sent a whole reply, a stop truncates it: conversation.item.truncate is the page's too).
    "conversation.item.create",
}


def _client_tags() -> set[str]:
    tags = set()
    for cls in typing.get_args(m.ClientMessage):
        tag = msgspec.inspect.type_info(cls).tag  # type: ignore[attr-defined]
        tags.add(str(tag))
    return tags


@pytest.fixture(scope="module")
def examples(run_node: Any) -> list[dict[str, Any]]:
    result = run_node(EXAMPLES_JS)
    assert isinstance(result, list)
    return result


def test_every_client_message_decodes(examples: list[dict[str, Any]]) -> None:
    for msg in examples:
        decoded = m.decode_client(json.dumps(msg))
        # Fields the page sets survive decoding unchanged (nothing silently dropped).
        assert msgspec.to_builtins(decoded)["type"] == msg["type"]
        for key in msg:
            if key != "type":
                assert hasattr(decoded, key), (msg["type"], key)


def test_page_covers_every_client_message_type(examples: list[dict[str, Any]]) -> None:
    sent = {msg["type"] for msg in examples}
    assert sent == _client_tags() - NOT_SENT_BY_PAGE
    assert NOT_SENT_BY_PAGE <= _client_tags()


def test_values_are_the_ones_asked_for(examples: list[dict[str, Any]]) -> None:
    by_type: dict[str, list[Any]] = {}
    for msg in examples:
        by_type.setdefault(msg["type"], []).append(m.decode_client(json.dumps(msg)))
    first = by_type["session.update"][0]
    assert isinstance(first, m.SessionUpdate)
    assert first.session.voice == "alba"
    assert first.session.speed == 1.25
    assert first.session.instructions == "Be brief."
    assert isinstance(first.session.turn_detection, m.TurnDetection)
    assert first.session.turn_detection.interrupt_response is True
    ptt = by_type["session.update"][1]
    assert ptt.session.turn_detection is None  # push-to-talk: the client commits turns
    assert by_type["session.update"][2].session.language is None
    assert by_type["session.update"][3].session.speed == 2.0  # clamped into range
    speeds = [s.speed for s in by_type["bitvoice.set_speed"]]
    assert speeds == [0.5, 2.0, 1.34]
    (typed,) = [r for r in by_type["response.create"] if r.input_text]
    assert typed.input_text == "Hello there"
    (pb,) = by_type["bitvoice.playback"]
    assert (pb.response_id, pb.played_samples) == ("resp_3", 4800)
    ids = [msg["event_id"] for msg in examples]
    assert len(set(ids)) == len(ids)


def test_builders_reject_what_the_server_would_reject(run_node: Any) -> None:
    src = """
    import * as p from "./web/protocol.js";
    const out = {};
    for (const [name, fn] of [
      ["voice", () => p.sessionUpdate({ voice: "bad voice!" })],
      ["speed", () => p.setSpeed("fast")],
    ]) {
      try { fn(); out[name] = "accepted"; } catch (e) { out[name] = e.constructor.name; }
    }
    console.log(JSON.stringify(out));
    """
    assert run_node(src) == {"voice": "RangeError", "speed": "RangeError"}


def test_reply_audio_frames_parse_as_the_server_packs_them(run_node: Any) -> None:
    pcm = b"".join(v.to_bytes(2, "little", signed=True) for v in (0, 1, -1, 32767, -32768))
    frame = m.pack_audio_frame(7, 48000, pcm)
    src = """
    import * as p from "./web/protocol.js";
    const hex = process.argv[1];
    const bytes = Uint8Array.from(hex.match(/../g), (h) => parseInt(h, 16));
    const f = p.parseAudioFrame(bytes.buffer);
    const bad = [];
    for (const h of ["4256", "4257010100000000000000000000", "425601010000000000000000aa"]) {
      const b = Uint8Array.from(h.match(/../g), (x) => parseInt(x, 16));
      try { p.parseAudioFrame(b.buffer); bad.push("accepted"); } catch (e) { bad.push("rejected"); }
    }
    console.log(JSON.stringify({
      turn: f.turn, offset: f.offset, samples: Array.from(new Int16Array(f.pcm)),
      id: p.responseIdFor(f.turn), back: p.turnOfResponseId(p.responseIdFor(f.turn)),
      notOurs: p.turnOfResponseId("item_3"), bad,
    }));
    """
    out = run_node(src, frame.hex())
    assert out["turn"] == 7
    assert out["offset"] == 48000
    assert out["samples"] == [0, 1, -1, 32767, -32768]
    assert out["id"] == m.response_id_for(7)
    assert out["back"] == m.turn_of_response_id("resp_7") == 7
    assert out["notOurs"] is None
    assert out["bad"] == ["rejected", "rejected", "rejected"]


def test_every_server_error_code_has_words(run_node: Any) -> None:
    src = """
    import * as p from "./web/protocol.js";
    const codes = JSON.parse(process.argv[1]);
    const fallback = p.errorInWords({ code: "no_such_code_xyz" });
    const out = {};
    for (const c of codes) out[c] = p.errorInWords({ code: c, message: "detail" });
    console.log(JSON.stringify({ fallback, out }));
    """
    result = run_node(src, json.dumps(sorted(m.ERROR_CODES)))
    for code, words in result["out"].items():
        assert words != result["fallback"].replace(" (detail)", ""), code
        assert words.endswith("(detail)")
        assert not words.startswith("The server reported a problem"), code


ITEM_IDS_JS = """
import * as p from "./web/protocol.js";
const ids = JSON.parse(process.argv[1]);
console.log(JSON.stringify(ids.map((r) => [p.assistantItemId(r), p.responseIdOfItem(p.assistantItemId(r))])
  .concat([[null, p.responseIdOfItem("item_7")], [null, p.responseIdOfItem("msg_7")]])));
"""


def test_assistant_item_ids_are_the_servers_both_ways(run_node: Any) -> None:
    """The page names a reply's item as the server does (a truncate must reach it), and maps a
    `conversation.item.truncated` back to the reply it shows."""
    responses = ["resp_1", "resp_42"]
    got = run_node(ITEM_IDS_JS, json.dumps(responses))
    assert got[:2] == [[m.assistant_item_id(r), r] for r in responses]
    # a user item id ("item_7") maps to response id "7", which no reply has; other ids to null
    assert got[2:] == [[None, "7"], [None, None]]
