"""Every limit of the OpenAI-compatible routes in one place."""

from __future__ import annotations

from typing import Final

# Request bodies, in bytes: past these a request is refused with 413 before it is parsed
# (the Content-Length is checked first; a chunked body is counted as it arrives).
MAX_JSON_BODY_BYTES: Final = 1024 * 1024  # chat completions, speech, model swap
# An uploaded audio file (transcription, voice registration); OpenAI's own limit is 25 MB.
MAX_UPLOAD_BYTES: Final = 25 * 1024 * 1024
# What a busy answer (429) tells the client to wait before trying again, in seconds.
RETRY_AFTER_S: Final = 1.0
