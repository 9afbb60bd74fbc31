"""The lifecycle and event-loop binding shared by LLM, STT and TTS.

A component is bound to the event loop that started it; its sessions too.
Using it from another loop (or from a thread with no loop) raises
`ComponentLifecycleError` with a message that says what to do instead.
"""

from __future__ import annotations

import asyncio
import enum

from engine.errors import AdmissionRejectedError, ComponentLifecycleError

__all__ = ["Component", "ComponentState"]


class ComponentState(enum.Enum):
    CREATED = "created"
    STARTING = "starting"
    RUNNING = "running"
    UNAVAILABLE = "unavailable"  # a swap or start failed; another swap or a restart recovers
    STOPPING = "stopping"
    STOPPED = "stopped"


class Component:
    """Base class: state, the bound loop, and the checks every public call makes.

    Subclasses set `role` ("llm", "stt" or "tts") so `Runtime` can expose them
    by role, and implement `start()`, `stop()` and `open_session()`.
    """

    role: str = ""

    def __init__(self) -> None:
        self.state = ComponentState.CREATED
        self._loop: asyncio.AbstractEventLoop | None = None

    def _bind_loop(self) -> None:
        """Call at the top of start(): binds to the running loop (or checks it)."""
        loop = asyncio.get_running_loop()
        if self._loop is not None and self._loop is not loop and not self._loop.is_closed():
            raise ComponentLifecycleError(
                f"{type(self).__name__} is bound to another event loop; "
                "create a new component per event loop or thread (or use Runtime)"
            )
        self._loop = loop

    def _check_loop(self) -> None:
        """Raises if called outside the loop this component was started on."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if self._loop is not None and loop is not self._loop:
            raise ComponentLifecycleError(
                f"{type(self).__name__} was started on another event loop; "
                "create a new component per event loop or thread (or use Runtime)"
            )

    def _check_running(self) -> None:
        self._check_loop()
        if self.state is not ComponentState.RUNNING:
            raise ComponentLifecycleError(
                f"{type(self).__name__} is {self.state.value}, not running; call `await start()` first"
            )

    def _check_admission(self) -> None:
        """For calls that start new work (a session, a turn): AdmissionRejectedError
        while stop() drains the component, else the same checks as _check_running."""
        self._check_loop()
        if self.state is ComponentState.STOPPING:
            raise AdmissionRejectedError(
                f"{type(self).__name__} is stopping (draining) and takes no new work"
            )
        self._check_running()
