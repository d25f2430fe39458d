"""A fake of Anthropic's Messages API on 127.0.0.1, for the anthropic LLM provider's tests.

`POST /v1/messages` checks the `x-api-key` and `anthropic-version` headers, records the
request, and answers with the next scripted `Reply` (see fake_openai) or `text_reply`. With
`stream: true` it sends Anthropic's typed events (message_start, content_block_start, ping,
content_block_delta per word, content_block_stop, message_delta with the output tokens,
message_stop).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .fake_openai import FakeOpenAI, LoopbackServer, Reply, word_chunks


@dataclass
class FakeAnthropic(LoopbackServer):
    api_key: str = "test-anthropic-key"
    text_reply: str = "Plain answer."
    replies: list[Reply] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    stream_chunk_delay_s: float = 0.0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        # The stream writer (and its abort counter) is shared with the OpenAI fake.
        self._writer = FakeOpenAI()

    @property
    def streams_aborted(self) -> int:
        return self._writer.streams_aborted

    def _error(self, handler: BaseHTTPRequestHandler, status: int, kind: str, message: str) -> None:
        payload = {"type": "error", "error": {"type": kind, "message": message}}
        FakeOpenAI._send(handler, status, payload)

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = json.loads(handler.rfile.read(length) or b"{}")
        headers = {k.lower(): v for k, v in handler.headers.items()}
        with self._lock:
            self.requests.append({"path": handler.path, "headers": headers, "body": body})
            reply = self.replies.pop(0) if self.replies else Reply()
        if handler.path != "/v1/messages":
            self._error(handler, 404, "not_found_error", f"no route {handler.path}")
            return
        if headers.get("x-api-key") != self.api_key:
            self._error(handler, 401, "authentication_error", "invalid x-api-key")
            return
        if not headers.get("anthropic-version"):
            self._error(handler, 400, "invalid_request_error", "anthropic-version is required")
            return
        for required in ("model", "max_tokens", "messages"):
            if required not in body:
                self._error(handler, 400, "invalid_request_error", f"{required}: Field required")
                return
        if reply.delay_s:
            time.sleep(reply.delay_s)
        if reply.status != 200:
            kind = "overloaded_error" if reply.status == 529 else "api_error"
            self._error(handler, reply.status, kind, f"scripted failure {reply.status}")
            return
        prompt = str(body.get("system", "")) + "\n" + json.dumps(body["messages"])
        content = reply.content if reply.content is not None else self.text_reply
        text = content(prompt) if callable(content) else content
        model = reply.model or body["model"]
        usage = {"input_tokens": len(prompt.split()), "output_tokens": len(text.split())}
        if body.get("stream"):
            self._stream(handler, model, text, usage)
            return
        FakeOpenAI._send(
            handler,
            200,
            {
                "id": "msg_fake",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [{"type": "text", "text": text}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": usage,
            },
        )

    def _stream(
        self, handler: BaseHTTPRequestHandler, model: str, text: str, usage: dict[str, int]
    ) -> None:
        def event(kind: str, payload: dict[str, Any]) -> str:
            return f"event: {kind}\ndata: {json.dumps({'type': kind, **payload})}\n\n"

        start: dict[str, Any] = {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "usage": {"input_tokens": usage["input_tokens"], "output_tokens": 1},
        }
        events = [
            event("message_start", {"message": start}),
            event(
                "content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}
            ),
            event("ping", {}),
        ]
        events += [
            event(
                "content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": piece}}
            )
            for piece in word_chunks(text)
        ]
        events += [
            event("content_block_stop", {"index": 0}),
            event(
                "message_delta",
                {
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": usage["output_tokens"]},
                },
            ),
            event("message_stop", {}),
        ]
        self._writer.stream_chunk_delay_s = self.stream_chunk_delay_s
        self._writer.write_stream(handler, events)


@contextmanager
def running(fake: FakeAnthropic | None = None) -> Iterator[FakeAnthropic]:
    server = (fake or FakeAnthropic()).start()
    try:
        yield server
    finally:
        server.stop()
