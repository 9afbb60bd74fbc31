"""The page's conversation model (web/conversation.js) folding real server messages.

The messages are built with realtime.messages and encoded by the server's own encoder, so a
renamed field on either side fails here rather than in front of a person.
"""

from __future__ import annotations

import json
from typing import Any

from realtime import messages as m

FOLD_JS = """
import { Conversation, metricsInWords, reasonInWords } from "./web/conversation.js";
const msgs = JSON.parse(process.argv[1]);
const c = new Conversation();
c.newConnection();
// "reconnect" and "disconnect" steps stand for what the page does on those events
const step = (msg) =>
  msg === "reconnect" ? (c.newConnection(), []) : msg === "disconnect" ? c.disconnected() : c.apply(msg);
const changed = msgs.map(step);
const items = c.items.map((it) => ({ ...it }));
const words = items.filter((i) => i.kind === "assistant").map((i) => ({
  id: i.id, why: reasonInWords(i.status, i.reason), figures: metricsInWords(i.metrics),
}));
console.log(JSON.stringify({ changed, items, words }));
"""


def _fold(run_node: Any, msgs: list[m.ServerMessage | str]) -> Any:
    wire = [x if isinstance(x, str) else json.loads(m.encode(x)) for x in msgs]
    return run_node(FOLD_JS, json.dumps(wire))


METRICS = m.TurnMetrics(
    stt_final_ms=180.2,
    first_token_ms=260.5,
    first_audio_ms=1540.1,
    total_ms=3300.0,
    tokens_per_second=25.3,
)


def test_a_voice_turn_then_a_completed_reply(run_node: Any) -> None:
    out = _fold(
        run_node,
        [
            m.InputAudioBufferSpeechStarted(item_id="item_1", audio_start_ms=10),
            m.ConversationItemInputAudioTranscriptionDelta(item_id="item_1", delta="what is"),
            m.ConversationItemInputAudioTranscriptionDelta(item_id="item_1", delta="what is the"),
            m.InputAudioBufferSpeechStopped(item_id="item_1", audio_end_ms=900),
            m.InputAudioBufferCommitted(item_id="item_1"),
            m.ConversationItemInputAudioTranscriptionCompleted(
                item_id="item_1", transcript="What is the capital of France?"
            ),
            m.ResponseCreated(response=m.ResponseInfo(id="resp_1")),
            m.ResponseOutputTextDelta(response_id="resp_1", delta="Paris"),
            m.ResponseOutputTextDelta(response_id="resp_1", delta=" is."),
            m.ResponseOutputAudioTranscriptDelta(response_id="resp_1", delta="Paris is.", offset=0),
            m.ResponseOutputAudioDone(response_id="resp_1", samples=24000),
            m.Metrics(response_id="resp_1", metrics=METRICS),
            m.ResponseDone(
                response=m.ResponseInfo(id="resp_1", status="completed", output_text="Paris is."),
                metrics=METRICS,
            ),
        ],
    )
    user, assistant = out["items"]
    assert user == {
        "kind": "user",
        "id": "c1:item_1",
        "text": "What is the capital of France?",
        "partial": False,
        "source": "voice",
        "connection": 1,
    }
    assert assistant["text"] == "Paris is."
    assert assistant["spoken"] == "Paris is."
    assert assistant["status"] == "completed"
    assert assistant["heardText"] is None
    assert assistant["audioSamples"] == 24000
    (words,) = out["words"]
    assert words["why"] == ""
    assert [(f["label"], f["value"]) for f in words["figures"]] == [
        ("transcript", "180 ms"),
        ("first word", "261 ms"),
        ("first audio", "1.54 s"),
        ("total", "3.30 s"),
        ("speed", "25.3 tok/s"),
    ]
    assert out["changed"][1] == ["c1:item_1"]
    assert assistant["segments"] == [{"offset": 0, "text": "Paris is."}]


def test_partials_replace_and_an_empty_transcript_removes_the_turn(run_node: Any) -> None:
    out = _fold(
        run_node,
        [
            m.InputAudioBufferSpeechStarted(item_id="item_1", audio_start_ms=0),
            m.ConversationItemInputAudioTranscriptionDelta(item_id="item_1", delta="uh"),
            m.ConversationItemInputAudioTranscriptionCompleted(item_id="item_1", transcript=" "),
            m.InputAudioBufferSpeechStarted(item_id="item_2", audio_start_ms=0),
            m.ConversationItemInputAudioTranscriptionDelta(item_id="item_2", delta="hel"),
            m.ConversationItemInputAudioTranscriptionDelta(item_id="item_2", delta="hello"),
        ],
    )
    (item,) = out["items"]
    assert (item["id"], item["text"], item["partial"]) == ("c1:item_2", "hello", True)


def test_a_barged_in_reply_keeps_what_was_heard(run_node: Any) -> None:
    out = _fold(
        run_node,
        [
            m.ResponseCreated(response=m.ResponseInfo(id="resp_4")),
            m.ResponseOutputTextDelta(response_id="resp_4", delta="Paris is the capital. It is"),
            m.ResponseOutputAudioFlush(response_id="resp_4", offset=100, reason="turn_detected"),
            m.ResponseDone(
                response=m.ResponseInfo(
                    id="resp_4",
                    status="cancelled",
                    reason="turn_detected",
                    output_text="Paris is the capital. It is",
                    heard_text="Paris is the capital.",
                )
            ),
        ],
    )
    (item,) = out["items"]
    assert item["status"] == "cancelled"
    assert item["heardText"] == "Paris is the capital."
    assert out["words"][0]["why"] == "interrupted when you spoke"
    assert out["words"][0]["figures"] == []


def test_a_reply_stopped_after_it_was_sent_whole_keeps_what_was_heard(run_node: Any) -> None:
    """The user stops a reply whose audio the server had sent whole (its last words still
    playing): the page sends conversation.item.truncate and the server answers
    conversation.item.truncated; the bubble then shows what was heard, the rest struck through,
    and says the reply was stopped (before: it stayed "completed", every word as if heard)."""
    reply = "Paris is the capital. It is on the Seine."
    out = _fold(
        run_node,
        [
            m.ResponseCreated(response=m.ResponseInfo(id="resp_3")),
            m.ResponseOutputTextDelta(response_id="resp_3", delta=reply),
            m.ResponseOutputAudioTranscriptDelta(
                response_id="resp_3", delta="Paris is the capital.", offset=0
            ),
            m.ResponseOutputAudioTranscriptDelta(
                response_id="resp_3", delta="It is on the Seine.", offset=48_000
            ),
            m.ResponseOutputAudioDone(response_id="resp_3", samples=96_000),
            m.ResponseDone(
                response=m.ResponseInfo(id="resp_3", status="completed", output_text=reply)
            ),
            # stopped 2.5 s in: the first sentence (2 s) and a quarter of the second heard
            m.ConversationItemTruncated(item_id=m.assistant_item_id("resp_3"), audio_end_ms=2500),
            # a truncate of an item this page does not know changes nothing
            m.ConversationItemTruncated(item_id="item_resp_9", audio_end_ms=10),
        ],
    )
    (item,) = out["items"]
    assert item["status"] == "cancelled"
    assert item["heardText"] == "Paris is the capital. It is"
    assert out["words"][0]["why"] == "stopped"
    assert out["changed"][-2] == [item["id"]] and out["changed"][-1] == []


def _turn(item: str, resp: str, said: str, reply: str) -> list[m.ServerMessage | str]:
    return [
        m.InputAudioBufferSpeechStarted(item_id=item, audio_start_ms=0),
        m.ConversationItemInputAudioTranscriptionCompleted(item_id=item, transcript=said),
        m.ResponseCreated(response=m.ResponseInfo(id=resp)),
        m.ResponseOutputTextDelta(response_id=resp, delta=reply),
        m.ResponseDone(response=m.ResponseInfo(id=resp, status="completed", output_text=reply)),
    ]


def test_ids_stay_unique_across_connections(run_node: Any) -> None:
    # issue 14, bug 1: the server's ids restart with each connection
    out = _fold(
        run_node,
        [
            *_turn("item_1", "resp_1", "Hello", "Hi."),
            "reconnect",
            *_turn("item_1", "resp_1", "Hello again", "Hi again."),
        ],
    )
    items = out["items"]
    assert [i["id"] for i in items] == ["c1:item_1", "c1:resp_1", "c2:item_1", "c2:resp_1"]
    assert [i["text"] for i in items] == ["Hello", "Hi.", "Hello again", "Hi again."]
    assert [i["connection"] for i in items] == [1, 1, 2, 2]


def test_a_disconnect_settles_everything_in_flight(run_node: Any) -> None:
    # issue 14, bug 2: nothing keeps streaming once the connection is gone
    out = _fold(
        run_node,
        [
            m.ResponseCreated(response=m.ResponseInfo(id="resp_1")),
            m.ResponseOutputTextDelta(response_id="resp_1", delta="Once upon"),
            m.InputAudioBufferSpeechStarted(item_id="item_2", audio_start_ms=0),
            m.ConversationItemInputAudioTranscriptionDelta(item_id="item_2", delta="wait"),
            m.InputAudioBufferSpeechStarted(item_id="item_3", audio_start_ms=0),
            "disconnect",
        ],
    )
    reply, heard = out["items"]
    assert (reply["status"], reply["reason"], reply["text"]) == (
        "cancelled",
        "disconnected",
        "Once upon",
    )
    assert out["words"][0]["why"] == "cut off by a lost connection"
    assert (heard["id"], heard["text"], heard["partial"]) == ("c1:item_2", "wait", False)
    assert sorted(out["changed"][-1]) == ["c1:item_2", "c1:item_3", "c1:resp_1"]


def test_an_empty_transcript_leaves_no_reply_bubble(run_node: Any) -> None:
    # issue 14, bug 5: push to talk held in silence
    out = _fold(
        run_node,
        [
            m.InputAudioBufferCommitted(item_id="item_1"),
            m.ResponseCreated(response=m.ResponseInfo(id="resp_1")),
            m.ConversationItemInputAudioTranscriptionCompleted(item_id="item_1", transcript=""),
            m.ResponseDone(
                response=m.ResponseInfo(id="resp_1", status="cancelled", reason="empty_transcript")
            ),
        ],
    )
    assert out["items"] == []
    assert out["changed"][-1] == ["c1:resp_1"]


HEARD_JS = """
import { heardChars } from "./web/conversation.js";
const [text, segments, total, ...played] = JSON.parse(process.argv[1]);
const item = { text, segments };
console.log(JSON.stringify(played.map((p) => heardChars(item, p, total))));
"""


def test_heard_words_follow_the_played_samples(run_node: Any) -> None:
    text = "Paris is the capital. It is big."
    segments = [
        {"offset": 0, "text": "Paris is the capital."},
        {"offset": 2400, "text": "It is big."},
    ]
    played = [0, 10, 1200, 2399, 2400, 3600, 4800, 9000]
    heard = run_node(HEARD_JS, json.dumps([text, segments, 4800, *played]))
    prefixes = [text[:n] for n in heard]
    assert prefixes[0] == ""
    assert all(p == text[: len(p)] for p in prefixes)
    # whole words only, growing with the audio, all of it at the end
    assert all(n in (0, len(text)) or text[n] == " " for n in heard), heard
    assert heard == sorted(heard) and heard[-1] == len(text)
    assert prefixes[2] == "Paris is the"  # half of the first sentence's audio
    assert prefixes[4] == "Paris is the capital."
    assert prefixes[5] == "Paris is the capital. It is"


def test_a_backchannel_settles_its_bubble_and_an_unreadable_one_goes(run_node: Any) -> None:
    out = _fold(
        run_node,
        [
            m.ResponseCreated(response=m.ResponseInfo(id="resp_1")),
            m.InputAudioBufferSpeechStarted(item_id="item_2", audio_start_ms=10),
            m.ResponseOutputAudioHold(response_id="resp_1", offset=4800),
            m.ResponseOutputAudioRelease(response_id="resp_1", offset=4800),
            m.Backchannel(item_id="item_2", transcript="Mm-hmm."),
            m.InputAudioBufferSpeechStarted(item_id="item_3", audio_start_ms=900),
            m.Backchannel(item_id="item_3", transcript=""),
        ],
    )
    users = [i for i in out["items"] if i["kind"] == "user"]
    assert [(u["id"], u["text"], u["partial"], u.get("backchannel")) for u in users] == [
        ("c1:item_2", "Mm-hmm.", False, True)
    ]
