"""bench/bench_realtime.py and its parts: the end-of-speech rule on the real clips, joined
utterances, the statistics, the 2B-shaped bundle's tokenizer, and one smoke run of the whole
benchmark against the real server (demo model, real Whisper, real Piper, real WebSocket)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench import bench_realtime as br
from bench import voice_models as vm
from bench.speech_clips import (
    FRAME_BYTES,
    FRAME_SAMPLES,
    join,
    load_clips,
    speech_bounds,
)


@pytest.fixture(scope="module")
def clips() -> dict[str, Any]:
    return {c.name: c for c in load_clips()}


def test_clips_are_real_recordings_with_references(clips: dict[str, Any]) -> None:
    assert {"counting", "hello_world", "quick_brown_fox"} <= set(clips)
    for c in clips.values():
        assert len(c.pcm) % FRAME_BYTES == 0 and c.reference
        assert 0 <= c.onset_frame < c.end_frame < c.n_frames


def test_end_of_speech_is_where_the_energy_stops(clips: dict[str, Any]) -> None:
    c = clips["hello_world"]
    x = np.frombuffer(c.pcm, dtype=np.int16).astype(np.float64)
    tail = x[(c.end_frame + 1) * FRAME_SAMPLES :]
    speech = x[c.onset_frame * FRAME_SAMPLES : (c.end_frame + 1) * FRAME_SAMPLES]
    # everything after the end is at least 35 dB below the loudest 20 ms of speech
    peak = max(np.sqrt(np.mean(f**2)) for f in speech.reshape(-1, FRAME_SAMPLES))
    assert np.sqrt(np.mean(tail**2)) < peak * 10 ** (-35 / 20)
    # and the end is not cut into the word: the clip ends ~0.76 s in (its text is "Hello world.")
    assert 0.6 < (c.end_frame + 1) * 0.02 < 0.95


def test_speech_bounds_on_a_synthetic_burst() -> None:
    rng = np.random.default_rng(0)
    pcm = (rng.normal(0, 30, 50 * FRAME_SAMPLES)).astype(np.int16)  # room noise
    pcm[10 * FRAME_SAMPLES : 31 * FRAME_SAMPLES] += (
        8000 * np.sin(np.arange(21 * FRAME_SAMPLES) * 0.1)
    ).astype(np.int16)
    assert speech_bounds(pcm) == (10, 30)


def test_join_inserts_the_pause_and_keeps_both_texts(clips: dict[str, Any]) -> None:
    a, b = clips["hello_world"], clips["quick_brown_fox"]
    j = join(a, b, 450)
    assert j.pause_frames is not None
    first, end = j.pause_frames
    assert end - first == 450 // 20
    assert j.pcm[first * FRAME_BYTES : end * FRAME_BYTES] == bytes((end - first) * FRAME_BYTES)
    assert j.reference == f"{a.reference} {b.reference}"
    # the joined clip's end of speech is b's, shifted
    assert (
        j.pcm[j.end_frame * FRAME_BYTES : (j.end_frame + 1) * FRAME_BYTES]
        == b.pcm[b.end_frame * FRAME_BYTES : (b.end_frame + 1) * FRAME_BYTES]
    )
    assert speech_bounds(np.frombuffer(j.pcm, dtype=np.int16))[1] == j.end_frame


def test_stats_nearest_rank() -> None:
    s = br.stats([5.0, 1.0, 4.0, 2.0, 3.0, None, 10.0, 7.0, 6.0, 9.0, 8.0])
    assert (s["n"], s["p50"], s["p90"], s["min"], s["max"]) == (10, 5.0, 9.0, 1.0, 10.0)
    assert br.stats([None])["p50"] is None
    assert br.stats([3.0])["p90"] == 3.0


def test_word_errors_normalize_like_the_stt_tests() -> None:
    assert br.word_errors("One two three.", "1, 2, 3") == (0, 3)
    assert br.word_errors("The quick brown fox.", "the quick fox jumps") == (2, 4)


def test_synthetic_tokenizer_has_llama3_size_and_specials(tmp_path: Path) -> None:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(vm.synthetic_tokenizer_json(tmp_path / "t.json")))
    assert tok.get_vocab_size(with_added_tokens=True) == 128256
    assert tok.token_to_id("<|begin_of_text|>") == 128000
    assert tok.token_to_id("<|eot_id|>") == 128009
    text = "Hello world, the quick brown fox!"
    assert tok.decode(tok.encode(text).ids) == text


def test_shapes_bundle_loads_in_the_sdk_and_is_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A small-shaped bundle with the full-size tokenizer: the SDK loads it, renders the
    system prompt, and a second ensure reuses it (same stamp, same file)."""
    from engine.llm.tokenizer import ChatTokenizer

    monkeypatch.setenv("BITVOICE_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(vm, "CACHE", tmp_path / "cache")
    monkeypatch.setattr("bench.bench_llm.CACHE", tmp_path / "cache")
    small = dict(hidden=256, n_layers=1, n_heads=4, n_kv_heads=2, ffn=512, vocab=128256)
    small["max_ctx"] = 512
    b = vm.ensure_shapes_bundle("bench/small", shapes=small, synthetic=True)
    assert b.tokenizer == "synthetic byte-level BPE"
    tok = ChatTokenizer.from_bundle(b.path)
    assert tok.vocab_size == 128256 and tok.eot_id == 128009 and tok.bos_id == 128000
    assert 80 < len(tok.message("system", vm.SYSTEM_PROMPT)) < 400
    inode = (b.path / "model.bvm").stat().st_ino
    again = vm.ensure_shapes_bundle("bench/small", shapes=small, synthetic=True)
    assert again.stamp == b.stamp and (again.path / "model.bvm").stat().st_ino == inode
    from engine.llm import _native

    m = _native.Model(str(b.path / "model.bvm"), n_threads=1, unembed_quant="int4")
    try:
        assert m.n_vocab == 128256
    finally:
        m.close()


@pytest.mark.slow
def test_smoke_run_against_the_real_server(tmp_path: Path) -> None:
    """One turn, one 450 ms pause trial and one barge-in on the demo model: every number the
    report needs is there, and the raw records explain them."""
    out = tmp_path / "rt.json"
    argv = ["--model", "local/tiny-demo", "--turns", "1", "--pauses", "450"]
    argv += ["--pause-trials", "1", "--barge-ins", "1", "--language", "en"]
    argv += ["--home", str(tmp_path / "home"), "--out", str(out)]
    assert br.main(argv) == 0
    result = json.loads(out.read_text())
    (run,) = result["runs"]
    assert run["model"] == "local/tiny-demo" and run["stt_model"]
    lat = run["latency_ms"]["all"]
    assert lat["n"] == 1 and lat["p50"] > 0
    (turn,) = run["raw"]["turns"]
    # end of speech -> first audio is the end-of-turn wait, the server's stages, and delivery
    parts = turn["eot_wait_ms"] + turn["server_metrics"]["first_audio_ms"] + turn["delivery_ms"]
    assert math.isclose(parts, turn["eos_to_first_audio_ms"], abs_tol=1.0)
    assert turn["eot_wait_ms"] > 0  # the VAD cannot end the turn before the speech ends
    assert run["wer"]["reference_words"] == len(turn["reference"].split())
    assert run["false_turn_ends"]["450"]["n"] == 1
    barge = run["barge_in"]["speech_to_flush_ms"]
    assert barge["n"] == 1 and barge["p50"] > 0
    assert result["load_average"]["start"] and result["machine"]["cpu"]


def _utterance(clip: Any, t_start: float) -> br.Utterance:
    utt = br.Utterance(clip, first_global_frame=10)
    utt.sent_at = [t_start + 0.02 * (k + 1) for k in range(clip.n_frames)]
    return utt


def test_turn_record_splits_the_time_and_flags_early_commits(clips: dict[str, Any]) -> None:
    """A scripted event log: a commit inside the pause is a false turn-end; the reply is the
    first audio after the end of speech; the breakdown adds up to the total."""
    j = join(clips["hello_world"], clips["quick_brown_fox"], 600)
    utt = _utterance(j, 100.0)
    t_eos = utt.t_eos
    assert t_eos is not None and j.pause_frames is not None
    t_pause = utt.sent_at[j.pause_frames[0]]
    metrics = {"stt_final_ms": 300.0, "first_token_ms": 350.0, "first_sentence_ms": 400.0}
    metrics |= {"tts_first_chunk_ms": 450.0, "first_audio_ms": 451.0, "llm_prefill_ms": 42.0}

    def ev(t: float, kind: str, **msg: Any) -> br.Event:
        return br.Event(t, kind, {"type": kind, **msg})

    events = [
        ev(t_pause + 0.55, "input_audio_buffer.committed", item_id="a"),  # inside the pause
        ev(t_eos + 0.2, "input_audio_buffer.speech_stopped", item_id="b", audio_end_ms=0),
        ev(t_eos + 0.62, "input_audio_buffer.committed", item_id="b"),
        ev(t_eos + 0.95, "conversation.item.input_audio_transcription.completed", transcript="x"),
        ev(t_eos + 1.075, "audio", turn=2, offset=0, samples=480),
        ev(t_eos + 1.2, "response.done", response={"id": "resp_2", "status": "cancelled"}),
    ]
    events[-1].msg["metrics"] = metrics
    rec = br.turn_record(utt, events, {2: t_eos + 1.075}, 2, events[-1].msg)
    assert rec["false_turn_end"] and rec["before_eos"]["committed"] == [
        pytest.approx(-(t_eos - t_pause - 0.55) * 1e3, abs=0.1)
    ]
    assert rec["eos_to_first_audio_ms"] == pytest.approx(1075.0, abs=0.1)
    assert rec["eot_wait_ms"] == pytest.approx(620.0, abs=0.1)
    assert (rec["stt_ms"], rec["llm_first_token_ms"], rec["llm_first_segment_ms"]) == (
        300.0,
        50.0,
        50.0,
    )
    assert rec["llm_prefill_ms"] == 42.0 and rec["turn_start_ms"] is None
    assert rec["delivery_ms"] == pytest.approx(1075.0 - 620.0 - 451.0, abs=0.2)
    assert rec["transcripts"] == ["x"]
    # the same log without the early commit is a clean turn
    clean = [e for e in events if not (e.type.endswith("committed") and e.t < t_eos)]
    assert not br.turn_record(utt, clean, {2: t_eos + 1.075}, 2, events[-1].msg)["false_turn_end"]


def test_only_speakable_tokens_keep_a_head_row(tmp_path: Path) -> None:
    tok = tmp_path / "tokenizer.json"
    vocab = {
        "\u0120hello": 0,
        "hello": 1,
        "\u0120a": 2,
        "\u0120x9": 3,
        "\u4e2d": 4,
        "\u0120World": 5,
    }
    tok.write_text(json.dumps({"model": {"vocab": vocab}}))
    scale = vm.speakable_row_scale(tok, 7)
    assert list(scale) == [vm.SPEAKABLE_ROW_SCALE, 0, 0, 0, 0, vm.SPEAKABLE_ROW_SCALE, 0]
