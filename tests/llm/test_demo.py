"""The README's first SDK example on a fresh store, and the unknown-ID hints."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine import LLM, Runtime
from engine.errors import InvalidRequestError
from engine.llm import ChatDoneEvent, store


def test_readme_example_runs_on_a_fresh_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BITVOICE_HOME", str(tmp_path / "empty"))
    assert store.list_store() == []
    with Runtime(LLM("local/tiny-demo")) as rt:
        with rt.llm.open_session() as chat:
            assert isinstance(chat.collect("Hello!"), str)
            events = list(chat.generate("Tell me more."))
    assert isinstance(events[-1], ChatDoneEvent)
    assert [e.store_id for e in store.list_store()] == ["local/tiny-demo"]


async def test_unknown_local_id_hints_import_not_pull(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BITVOICE_HOME", str(tmp_path / "empty"))
    with pytest.raises(InvalidRequestError) as err:
        await LLM("local/mine").start()
    assert "bitvoice import PATH --as local/mine" in err.value.message
    assert "pull" not in err.value.message
    with pytest.raises(InvalidRequestError) as err:
        await LLM("acme/model").start()
    assert "bitvoice pull acme/model" in err.value.message
