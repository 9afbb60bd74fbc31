"""OpenAI-compatible REST routes on the realtime server's port (none yet: see issue 16)."""

from __future__ import annotations

from typing import Any

from starlette.routing import BaseRoute

__all__ = ["openai_routes"]


def openai_routes(server: Any) -> list[BaseRoute]:
    """The routes, bound to `server`."""
    return []
