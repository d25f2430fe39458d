"""Limits on what one request and one key may cost: body size and request rate."""

from __future__ import annotations

import json
import logging
import math
import threading
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import BadRequestError, TooManyRequestsError
from ..settings import Settings
from ..telemetry import current_trace_id
from .errors import problem_body
from .schemas import SearchOptions

log = logging.getLogger(__name__)
MAX_FILTER_VALUE_CHARS = 1024  # a source path; longer is not a path
# Multipart framing (boundaries, part headers) on top of the files themselves.
_MULTIPART_OVERHEAD = 64 * 1024


def check_search_limits(settings: Settings, text: str, body: SearchOptions) -> None:
    """The limits that are settings (the schema holds the fixed ones)."""
    if len(text) > settings.max_question_chars:
        raise BadRequestError(
            f"The question is {len(text):,} characters; the limit is "
            f"{settings.max_question_chars:,} (RAG_MAX_QUESTION_CHARS). Ask a shorter question."
        )
    sources = body.filters.source if body.filters else None
    if sources and any(len(source) > MAX_FILTER_VALUE_CHARS for source in sources):
        raise BadRequestError(
            f"A filters.source value is over {MAX_FILTER_VALUE_CHARS} characters; give the "
            "source's path as GET /v1/documents lists it."
        )
    if sources and len(sources) > settings.max_filter_values:
        raise BadRequestError(
            f"filters.source lists {len(sources)} values; the limit is "
            f"{settings.max_filter_values} (RAG_MAX_FILTER_VALUES). Filter on fewer sources."
        )


def mcp_request_limit(settings: Settings) -> int:
    """/mcp carries a file inline (base64) only when its write tools are on."""
    if not settings.mcp_write_tools:
        return settings.max_request_bytes
    base64_file = 4 * -(-settings.max_file_bytes // 3)
    return max(settings.max_request_bytes, base64_file + _MULTIPART_OVERHEAD)


class RateLimiter:
    """A token bucket per key: `burst` requests at once, refilled at `per_minute`."""

    def __init__(self, per_minute: int, burst: int) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, when)
        self._lock = threading.Lock()

    def take(self, key: str) -> None:
        if self.rate <= 0:
            return
        now = time.monotonic()
        with self._lock:
            tokens, then = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - then) * self.rate)
            if tokens < 1:
                self._buckets[key] = (tokens, now)
                wait = math.ceil((1 - tokens) / self.rate)
                raise TooManyRequestsError(
                    f"Rate limit of {self.rate * 60:g} requests per minute for this key "
                    f"(RAG_RATE_LIMIT_PER_MINUTE) reached; retry in {wait} s.",
                    retry_after_s=wait,
                )
            self._buckets[key] = (tokens - 1, now)


class BodyLimit:
    """Refuses bodies over the limit before they are read whole: by Content-Length, and by
    counting for chunked bodies. Uploads get room for their files, JSON gets a little."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.json_limit = settings.max_request_bytes
        self.upload_limit = (
            settings.max_upload_files * settings.max_file_bytes + _MULTIPART_OVERHEAD
        )
        self.mcp_limit = mcp_request_limit(settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        multipart = headers.get(b"content-type", b"").startswith(b"multipart/")
        limit = self.upload_limit if multipart else self.json_limit
        if scope["path"] == "/mcp":
            limit = self.mcp_limit
        what = "An upload" if multipart else "A request body"
        setting = (
            "RAG_MAX_UPLOAD_FILES x RAG_MAX_FILE_BYTES" if multipart else "RAG_MAX_REQUEST_BYTES"
        )
        message = f"{what} may be at most {limit:,} bytes ({setting}); " + (
            "send fewer or smaller files." if multipart else "send a shorter request."
        )
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _refuse(scope, send, message)
            return
        received = 0
        refused = False

        # Over the limit mid-stream: answer 413 here, tell the app the client left, and drop
        # whatever it answers to that. (Raising instead would reach the app wrapped by the
        # BaseHTTPMiddleware in between, and FastAPI would turn it into a 400.)
        async def counting() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            event = await receive()
            if event["type"] == "http.request":
                received += len(event.get("body", b""))
                if received > limit:
                    refused = True
                    await _refuse(scope, send, message)
                    return {"type": "http.disconnect"}
            return event

        async def sending(event: Message) -> None:
            if not refused:
                await send(event)

        await self.app(scope, counting, sending)


async def _refuse(scope: Scope, send: Send, message: str) -> None:
    log.warning("%s %s -> 413: %s", scope["method"], scope["path"], message)
    body = json.dumps(problem_body(413, "PayloadTooLargeError", message, scope["path"])).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
                (b"x-trace-id", current_trace_id().encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
