"""Fixtures of the realtime tests live in rt_helpers (importable by a unique name)."""

from rt_helpers import rt_server

__all__ = ["rt_server"]
