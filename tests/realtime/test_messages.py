"""The wire schema: round trips, typed decode errors, the audio frame header, a decoder fuzz."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, get_args

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from realtime import messages as m

PROTOCOL_MD = Path(m.__file__).with_name("PROTOCOL.md").read_text()


def _tags(union: Any) -> list[str]:
    return [cls.__struct_config__.tag for cls in get_args(union)]


def test_every_message_is_documented_with_an_example() -> None:
    examples = re.findall(r'\{"type": "([a-z_.]+)"', PROTOCOL_MD)
    for tag in _tags(m.ClientMessage) + _tags(m.ServerMessage):
        assert tag in examples, f"{tag} has no JSON example in PROTOCOL.md"


def test_protocol_md_client_examples_decode() -> None:
    client_tags = set(_tags(m.ClientMessage))
    n = 0
    for line in PROTOCOL_MD.splitlines():
        line = line.strip()
        match = re.match(r'\{"type": "([a-z_.]+)"', line)
        if match and match.group(1) in client_tags and line.endswith("}"):
            try:
                json.loads(line)
            except json.JSONDecodeError:
                continue  # a multi-line example
            msg = m.decode_client(line)
            assert msg.__struct_config__.tag == match.group(1)
            n += 1
    assert n >= 8


def test_server_messages_round_trip() -> None:
    msgs: list[m.ServerMessage] = [
        m.SessionCreated(session=m.SessionState(id="s")),
        m.Error(error=m.ErrorInfo(code="invalid_field", message="x", event_id="c1")),
        m.ResponseDone(response=m.ResponseInfo(id="resp_1", status="cancelled")),
        m.ResponseOutputAudioFlush(response_id="resp_1", offset=3, reason="turn_detected"),
        m.Paused(response_id=None, offset=0, client_event_id="p"),
    ]
    for msg in msgs:
        assert m.decode_server(m.encode(msg)) == msg


def test_session_update_distinguishes_absent_from_null() -> None:
    msg = m.decode_client(b'{"type":"session.update","session":{"turn_detection":null}}')
    assert isinstance(msg, m.SessionUpdate)
    assert msg.session.turn_detection is None
    assert msg.session.voice is m.UNSET
    empty = m.decode_client(b'{"type":"session.update"}')
    assert isinstance(empty, m.SessionUpdate)
    assert empty.session.turn_detection is m.UNSET


@pytest.mark.parametrize(
    ("data", "code", "event_id"),
    [
        (b"{not json", "invalid_json", None),
        (b"[1, 2]", "invalid_json", None),
        (b'"text"', "invalid_json", None),
        (b'{"type": "nope", "event_id": "e1"}', "unknown_type", "e1"),
        (b'{"event_id": "e2"}', "unknown_type", "e2"),
        (
            b'{"type": "bitvoice.set_speed", "speed": "fast", "event_id": "e3"}',
            "invalid_field",
            "e3",
        ),
        (b'{"type": "bitvoice.set_speed", "speed": 7.0}', "invalid_field", None),
        (b'{"type": "session.update", "session": {"voice": "../x"}}', "invalid_field", None),
        (
            b'{"type": "session.update", "session": {"turn_detection": {"frame_ms": 25}}}',
            "invalid_field",
            None,
        ),
        (b'{"type": "input_audio_buffer.append"}', "invalid_field", None),
    ],
)
def test_bad_input_is_a_typed_wire_error(data: bytes, code: str, event_id: str | None) -> None:
    with pytest.raises(m.WireError) as info:
        m.decode_client(data)
    assert info.value.code == code
    assert info.value.code in m.ERROR_CODES
    assert info.value.event_id == event_id


def test_audio_frame_header() -> None:
    pcm = bytes(range(8))
    frame = m.pack_audio_frame(7, 48000, pcm)
    assert len(frame) == m.AUDIO_HEADER_SIZE + 8 == 20
    assert frame[:2] == b"BV"
    got = m.unpack_audio_frame(frame)
    assert (got.turn, got.offset, got.pcm) == (7, 48000, pcm)
    assert m.response_id_for(7) == "resp_7"
    assert m.turn_of_response_id("resp_7") == 7
    assert m.turn_of_response_id("item_7") is None
    with pytest.raises(ValueError, match="header"):
        m.unpack_audio_frame(b"BV")
    with pytest.raises(ValueError, match="not a bitvoice"):
        m.unpack_audio_frame(b"XX" + frame[2:])
    with pytest.raises(ValueError, match="whole"):
        m.unpack_audio_frame(frame + b"\x00")


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
_tag_choice = st.sampled_from([*_tags(m.ClientMessage), "x", ""])


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=200),
        _json_values.map(lambda v: json.dumps(v).encode()),
        st.tuples(_tag_choice, st.dictionaries(st.text(max_size=12), _json_values, max_size=5)).map(
            lambda t: json.dumps({**t[1], "type": t[0]}).encode()
        ),
    )
)
def test_decoder_fuzz_never_raises_anything_but_wire_error(data: bytes) -> None:
    try:
        msg = m.decode_client(data)
    except m.WireError as exc:
        assert exc.code in {"invalid_json", "unknown_type", "invalid_field"}
    else:
        # whatever decodes re-encodes to something that decodes to the same message
        assert m.decode_client(m.encode(msg)) == msg
        assert isinstance(msg, msgspec.Struct)
