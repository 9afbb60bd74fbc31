"""The real LLM through the sync Runtime facade, from plain threads."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from engine import LLM, Runtime
from engine.errors import SessionBusyError
from engine.llm import ChatDoneEvent, ChatFinalTextEvent, ChatTokenEvent


def test_public_imports() -> None:
    from engine import STT, TTS

    assert LLM.role == "llm" and STT.role == "stt" and TTS.role == "tts"


def test_sync_chat(home: Path) -> None:
    with Runtime(LLM("local/tiny")) as rt, rt.llm.open_session() as s:
        text = s.collect("Hello", temperature=0.0, max_tokens=6)
        events = list(s.generate("More", temperature=0.0, max_tokens=6))
        assert isinstance(events[-1], ChatDoneEvent) and isinstance(events[-2], ChatFinalTextEvent)
        assert all(isinstance(e, ChatTokenEvent) for e in events[:-2])
        assert events[-1].usage.cached_tokens > 0
        assert isinstance(text, str)
        assert s.state == "idle"


def test_break_stops_generation_and_session_stays_usable(home: Path) -> None:
    with Runtime(LLM("local/tiny")) as rt, rt.llm.open_session() as s:
        model = rt.llm.native_model
        for _ in s.generate("Count", temperature=0.0, max_tokens=200):
            break
        after = model.tokens_evaluated
        assert s.state == "idle"
        assert model.tokens_evaluated == after
        assert isinstance(s.collect("again", temperature=0.0, max_tokens=3), str)


def test_sessions_from_plain_threads(home: Path) -> None:
    replies: dict[int, str] = {}
    errors: list[BaseException] = []
    with Runtime(LLM("local/tiny")) as rt:

        def chat(k: int) -> None:
            try:
                with rt.llm.open_session() as s:
                    replies[k] = s.collect(f"Hello {k}", temperature=0.0, max_tokens=5)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=chat, args=(k,)) for k in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        # Each thread's answer equals the same turn run alone (sessions do not mix).
        with rt.llm.open_session() as s:
            alone = s.collect("Hello 1", temperature=0.0, max_tokens=5)
    assert not errors and sorted(replies) == [0, 1, 2]
    assert replies[1] == alone


def test_one_session_one_consumer_across_threads(home: Path) -> None:
    with Runtime(LLM("local/tiny")) as rt, rt.llm.open_session() as s:
        it = iter(s.generate("Hi", temperature=0.0, max_tokens=50))
        next(it)
        with pytest.raises(SessionBusyError):
            s.collect("second")
        it.close()  # type: ignore[attr-defined]
        assert s.state == "idle"
