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
const changed = msgs.map((msg) => c.apply(msg));
const items = c.items.map((it) => ({ ...it }));
const words = items.filter((i) => i.kind === "assistant").map((i) => ({
  id: i.id, why: reasonInWords(i.status, i.reason), figures: metricsInWords(i.metrics),
}));
console.log(JSON.stringify({ changed, items, words }));
"""


def _fold(run_node: Any, msgs: list[m.ServerMessage]) -> Any:
    wire = [json.loads(m.encode(x)) for x in msgs]
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
        "id": "item_1",
        "text": "What is the capital of France?",
        "partial": False,
        "source": "voice",
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
    assert out["changed"][1] == ["item_1"]


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
    assert (item["id"], item["text"], item["partial"]) == ("item_2", "hello", True)


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
