"""bitvoice: an embedded, CPU-only realtime voice assistant SDK.

from engine import LLM, STT, TTS, Runtime
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.errors import (
    AdmissionRejectedError,
    BitvoiceError,
    ComponentLifecycleError,
    ContextOverflowError,
    InvalidRequestError,
    ProgressTimeoutError,
    SessionBusyError,
    SessionClosedError,
    SessionExhaustedError,
    SessionStaleError,
)

if TYPE_CHECKING:
    from engine.llm import LLM
    from engine.runtime import Runtime
    from engine.stt import STT
    from engine.tts import TTS

__all__ = [
    "LLM",
    "STT",
    "TTS",
    "AdmissionRejectedError",
    "BitvoiceError",
    "ComponentLifecycleError",
    "ContextOverflowError",
    "InvalidRequestError",
    "ProgressTimeoutError",
    "Runtime",
    "SessionBusyError",
    "SessionClosedError",
    "SessionExhaustedError",
    "SessionStaleError",
]


def __getattr__(name: str) -> Any:
    # Lazy: importing `engine` must not pull in faster-whisper or torch.
    if name == "LLM":
        from engine.llm import LLM

        return LLM
    if name == "STT":
        from engine.stt import STT

        return STT
    if name == "TTS":
        from engine.tts import TTS

        return TTS
    if name == "Runtime":
        from engine.runtime import Runtime

        return Runtime
    raise AttributeError(f"module 'engine' has no attribute {name!r}")
