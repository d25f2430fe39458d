"""A fake OpenAI-compatible server on 127.0.0.1 for judge and generation tests.

It answers `/v1/chat/completions` with structured output generated from whatever JSON schema
the request carries, so it works for every ragas metric and prompt without knowing them:

- `tools` (instructor TOOLS mode): a tool call whose arguments are an instance of the
  function's parameter schema;
- `response_format` of type `json_schema`: a message that is an instance of that schema;
- otherwise (instructor JSON mode, ragas' own prompts): an instance of the first JSON schema
  found in the messages' text, or plain text when there is none.

`/v1/embeddings` returns deterministic hashed bag-of-words vectors. Every request is recorded.
Tests script behaviour on the `FakeOpenAI` object: `overrides` (a value, or a function of the
prompt text, for every field of that name), `chat_status` (a forced HTTP error),
`chat_content` (a raw reply, e.g. garbage), `chat_delay_s` (a slow judge).

Answer generation scripts one `Reply` per chat request in `replies` (consumed in order; when
none is left, the defaults above apply): a status with a Retry-After, a text (or a function
of the prompt), a delay, a raw body that is not a completion. Requests with `stream: true`
get Server-Sent Events, one chunk per word with `stream_chunk_delay_s` between them, a usage
chunk and `[DONE]`; a client that hangs up mid-stream is counted in `streams_aborted`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

JSON = Any
Override = JSON | Callable[[str], JSON]

DIMENSIONS = 64


def bag_of_words_vector(text: str, dimensions: int = DIMENSIONS) -> list[float]:
    """Deterministic stand-in for an embedding model: hashed word counts, normalised."""
    vector = [0.0] * dimensions
    for word in re.findall(r"[a-z0-9]+", text.lower()):
        vector[int(hashlib.md5(word.encode()).hexdigest(), 16) % dimensions] += 1.0
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]


# --- JSON instances from JSON schemas ---------------------------------------------------------


@dataclass
class InstanceGenerator:
    """Builds one valid instance of a JSON schema (the subset pydantic emits)."""

    overrides: dict[str, Override] = field(default_factory=dict)
    array_items: int = 2
    prompt: str = ""

    def generate(self, schema: JSON) -> JSON:
        return self._value(schema, schema, "value", 0)

    def _resolve(self, schema: JSON, root: JSON) -> JSON:
        seen = 0
        while isinstance(schema, dict) and "$ref" in schema and seen < 32:
            ref = schema["$ref"]
            if not ref.startswith("#/"):
                raise ValueError(f"cannot resolve external $ref {ref!r}")
            target: JSON = root
            for part in ref[2:].split("/"):
                target = target[part.replace("~1", "/").replace("~0", "~")]
            schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
            seen += 1
        return schema

    def _value(self, schema: JSON, root: JSON, name: str, index: int) -> JSON:
        if name in self.overrides:
            override = self.overrides[name]
            return override(self.prompt) if callable(override) else override
        schema = self._resolve(schema, root)
        if not isinstance(schema, dict) or not schema:
            return f"{name} {index + 1}"
        if "const" in schema:
            return schema["const"]
        if schema.get("enum"):
            return schema["enum"][0]
        for key in ("anyOf", "oneOf"):
            if key in schema:
                options = [self._resolve(o, root) for o in schema[key]]
                chosen = next((o for o in options if o.get("type") != "null"), options[0])
                return self._value(chosen, root, name, index)
        if "allOf" in schema:
            merged: dict[str, Any] = {}
            for part in schema["allOf"]:
                merged.update(self._resolve(part, root))
            return self._value(merged, root, name, index)
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        if kind is None:
            kind = "object" if "properties" in schema else "array" if "items" in schema else ""
        if kind == "object":
            return self._object(schema, root)
        if kind == "array":
            return self._array(schema, root, name)
        if kind == "string":
            text = f"{name} {index + 1}"
            return text.ljust(int(schema.get("minLength", 0)), "x")
        if kind == "integer":
            number = 1
            if "minimum" in schema:
                number = max(number, math.ceil(schema["minimum"]))
            if "maximum" in schema:
                number = min(number, math.floor(schema["maximum"]))
            return number
        if kind == "number":
            low, high = schema.get("minimum", 0.0), schema.get("maximum", 1.0)
            return (float(low) + float(high)) / 2 if high >= low else float(low)
        if kind == "boolean":
            return True
        if kind == "null":
            return None
        if "default" in schema:
            return schema["default"]
        return f"{name} {index + 1}"

    def _object(self, schema: JSON, root: JSON) -> dict[str, JSON]:
        properties = schema.get("properties", {})
        result = {key: self._value(sub, root, key, 0) for key, sub in properties.items()}
        extra = schema.get("additionalProperties")
        if not properties and isinstance(extra, dict):
            result = {f"key {i + 1}": self._value(extra, root, "value", i) for i in range(1)}
        return result

    def _array(self, schema: JSON, root: JSON, name: str) -> list[JSON]:
        if "prefixItems" in schema:
            return [self._value(s, root, name, i) for i, s in enumerate(schema["prefixItems"])]
        count = max(int(schema.get("minItems", 0)), self.array_items)
        if "maxItems" in schema:
            count = min(count, int(schema["maxItems"]))
        items = schema.get("items", {})
        return [self._value(items, root, name, i) for i in range(count)]


def find_schema(text: str) -> JSON | None:
    """The first JSON object in text that looks like a JSON schema of an object."""
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", text):
        try:
            candidate, _ = decoder.raw_decode(text, match.start())
        except json.JSONDecodeError:
            continue
        if isinstance(candidate, dict) and (
            (candidate.get("type") == "object" and "properties" in candidate)
            or "$defs" in candidate
        ):
            return candidate
    return None


def _message_text(message: JSON) -> str:
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


# --- the server ---------------------------------------------------------------------------------


@dataclass
class Reply:
    """One scripted answer to one chat request."""

    content: str | Callable[[str], str] | None = None  # None: the default behaviour
    status: int = 200
    retry_after_s: float | None = None
    delay_s: float = 0.0
    raw: str | None = None  # a body sent as is (malformed output)
    model: str | None = None  # the model the reply claims to be from


def word_chunks(text: str) -> list[str]:
    """The text cut into word-sized stream deltas that join back to it exactly."""
    return re.findall(r"\S+\s*|\s+", text)


class LoopbackServer:
    """start(), stop() and base_url for a fake that answers POSTs in `_handle`, on a free
    port of 127.0.0.1, over HTTP/1.1 keep-alive as real endpoints do."""

    _server: ThreadingHTTPServer | None

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        raise NotImplementedError

    def start(self) -> Self:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # no 40 ms delayed-ACK stalls between writes

            def do_POST(self) -> None:
                fake._handle(self)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def base_url(self) -> str:
        assert self._server is not None, "start() the fake first"
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"


@dataclass
class FakeOpenAI(LoopbackServer):
    """State and script of one fake server; `start()` it, read `base_url`, `stop()` it."""

    api_key: str | None = "test-judge-key"
    dimensions: int = DIMENSIONS
    overrides: dict[str, Override] = field(default_factory=dict)
    array_items: int = 2
    chat_status: int | None = None
    chat_content: str | None = None
    chat_delay_s: float = 0.0
    embeddings_status: int | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)
    text_reply: str = "This is a plain answer from the fake model."
    replies: list[Reply] = field(default_factory=list)
    stream_chunk_delay_s: float = 0.0
    streams_aborted: int = 0
    stream_chunks_sent: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._counter = 0

    def chat_requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r for r in self.requests if r["path"].endswith("/chat/completions")]

    def embedding_requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r for r in self.requests if r["path"].endswith("/embeddings")]

    # -- handling
    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        try:
            body = json.loads(handler.rfile.read(length) or b"{}")
        except json.JSONDecodeError:
            self._send(handler, 400, {"error": {"message": "body is not JSON"}})
            return
        auth = handler.headers.get("Authorization")
        with self._lock:
            self.requests.append({"path": handler.path, "auth": auth, "body": body})
            self._counter += 1
            number = self._counter
        if self.api_key is not None and auth != f"Bearer {self.api_key}":
            self._send(handler, 401, {"error": {"message": "invalid api key", "type": "auth"}})
            return
        if handler.path.endswith("/chat/completions") and self._scripted(handler, body, number):
            return
        if handler.path.endswith("/chat/completions"):
            if self.chat_delay_s:
                time.sleep(self.chat_delay_s)
            if self.chat_status is not None:
                message = f"scripted failure {self.chat_status}"
                self._send(handler, self.chat_status, {"error": {"message": message}})
                return
            self._send(handler, 200, self._chat(body, number))
        elif handler.path.endswith("/embeddings"):
            if self.embeddings_status is not None:
                message = f"scripted failure {self.embeddings_status}"
                self._send(handler, self.embeddings_status, {"error": {"message": message}})
                return
            self._send(handler, 200, self._embeddings(body))
        else:
            self._send(handler, 404, {"error": {"message": f"no route {handler.path}"}})

    def _scripted(self, handler: BaseHTTPRequestHandler, body: JSON, number: int) -> bool:
        """Answer from the script, or streaming; False leaves the request to the defaults."""
        with self._lock:
            reply = self.replies.pop(0) if self.replies else None
        if reply is None and not body.get("stream"):
            return False
        reply = reply or Reply()
        if reply.delay_s:
            time.sleep(reply.delay_s)
        if reply.status != 200:
            headers = {}
            if reply.retry_after_s is not None:
                headers["Retry-After"] = f"{reply.retry_after_s:g}"
            error = {"error": {"message": f"scripted failure {reply.status}"}}
            self._send(handler, reply.status, error, headers)
            return True
        if reply.raw is not None:
            self._send_raw(handler, 200, reply.raw.encode(), "application/json", {})
            return True
        completion = self._chat(body, number)
        prompt = "\n".join(_message_text(m) for m in body.get("messages", []))
        if reply.content is not None:
            text = reply.content(prompt) if callable(reply.content) else reply.content
            completion["choices"][0]["message"]["content"] = text
            completion["usage"]["completion_tokens"] = len(text.split())
        if reply.model is not None:
            completion["model"] = reply.model
        if body.get("stream"):
            self._stream(handler, completion)
        else:
            self._send(handler, 200, completion)
        return True

    def _stream(self, handler: BaseHTTPRequestHandler, completion: JSON) -> None:
        text = completion["choices"][0]["message"]["content"] or ""
        base = {k: completion[k] for k in ("id", "created", "model")}
        base["object"] = "chat.completion.chunk"
        events = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant"}}]}]
        events += [
            {**base, "choices": [{"index": 0, "delta": {"content": piece}}]}
            for piece in word_chunks(text)
        ]
        events.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        events.append({**base, "choices": [], "usage": completion["usage"]})
        lines = [f"data: {json.dumps(event)}\n\n" for event in events] + ["data: [DONE]\n\n"]
        self.write_stream(handler, lines)

    def write_stream(self, handler: BaseHTTPRequestHandler, events: list[str]) -> None:
        """Send Server-Sent Events until done or the client hangs up (then count it)."""
        try:
            handler.send_response(200)
            handler.send_header("Content-Type", "text/event-stream")
            handler.send_header("Connection", "close")  # the end of the body is the close
            handler.end_headers()
            for event in events:
                handler.wfile.write(event.encode())
                handler.wfile.flush()
                with self._lock:
                    self.stream_chunks_sent += 1
                if self.stream_chunk_delay_s:
                    time.sleep(self.stream_chunk_delay_s)
        except (BrokenPipeError, ConnectionResetError):
            with self._lock:
                self.streams_aborted += 1
        handler.close_connection = True

    def _generator(self, prompt: str) -> InstanceGenerator:
        return InstanceGenerator(dict(self.overrides), self.array_items, prompt)

    def _chat(self, body: JSON, number: int) -> JSON:
        messages = body.get("messages", [])
        prompt = "\n".join(_message_text(m) for m in messages)
        message: dict[str, Any] = {"role": "assistant", "content": None}
        finish = "stop"
        tools = [t["function"] for t in body.get("tools") or [] if t.get("type") == "function"]
        response_format = body.get("response_format") or {}
        if self.chat_content is not None:
            message["content"] = self.chat_content
        elif tools:
            choice = body.get("tool_choice")
            wanted = choice.get("function", {}).get("name") if isinstance(choice, dict) else None
            tool = next((t for t in tools if t["name"] == wanted), tools[0])
            arguments = self._generator(prompt).generate(tool.get("parameters", {}))
            message["tool_calls"] = [
                {
                    "id": f"call_{number}",
                    "type": "function",
                    "function": {"name": tool["name"], "arguments": json.dumps(arguments)},
                }
            ]
            finish = "tool_calls"
        elif response_format.get("type") == "json_schema":
            schema = response_format.get("json_schema", {}).get("schema", {})
            message["content"] = json.dumps(self._generator(prompt).generate(schema))
        else:
            schema = None
            for m in messages:  # the system message (instructor) first, then the prompt
                schema = find_schema(_message_text(m))
                if schema is not None:
                    break
            if schema is not None:
                message["content"] = json.dumps(self._generator(prompt).generate(schema))
            else:
                message["content"] = self.text_reply
        count = max(1, int(body.get("n") or 1))
        words = len(prompt.split())
        return {
            "id": f"chatcmpl-fake-{number}",
            "object": "chat.completion",
            "created": 0,
            "model": body.get("model", "fake"),
            "choices": [
                {"index": i, "message": message, "finish_reason": finish, "logprobs": None}
                for i in range(count)
            ],
            "usage": {"prompt_tokens": words, "completion_tokens": 8, "total_tokens": words + 8},
        }

    def _embeddings(self, body: JSON) -> JSON:
        inputs = body.get("input", [])
        texts = [inputs] if isinstance(inputs, str) else [str(x) for x in inputs]
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for i, text in enumerate(texts):
            vector = bag_of_words_vector(text, self.dimensions)
            embedding: JSON = vector
            if as_base64:
                embedding = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            data.append({"object": "embedding", "index": i, "embedding": embedding})
        tokens = sum(len(t.split()) for t in texts)
        return {
            "object": "list",
            "data": data,
            "model": body.get("model", "fake"),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    @classmethod
    def _send(
        cls,
        handler: BaseHTTPRequestHandler,
        status: int,
        payload: JSON,
        headers: dict[str, str] | None = None,
    ) -> None:
        cls._send_raw(handler, status, json.dumps(payload).encode(), "application/json", headers)

    @staticmethod
    def _send_raw(
        handler: BaseHTTPRequestHandler,
        status: int,
        raw: bytes,
        content_type: str,
        headers: dict[str, str] | None,
    ) -> None:
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", content_type)
            handler.send_header("Content-Length", str(len(raw)))
            for name, value in (headers or {}).items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(raw)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test)


@contextmanager
def running(fake: FakeOpenAI | None = None) -> Iterator[FakeOpenAI]:
    server = (fake or FakeOpenAI()).start()
    try:
        yield server
    finally:
        server.stop()
