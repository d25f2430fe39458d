"""Chat endpoints over plain HTTP: OpenAI (and every OpenAI-compatible server) and Anthropic.

One call, no retries here: the answerer retries and falls back so that each attempt is
visible on its trace. Errors say whether a retry can help (429, 5xx, dropped connections;
not timeouts, which go to the fallback model) and never include the API key.

`PROVIDERS` at the end is the table RAG_LLM_PROVIDER picks from: each provider with its
public base URL and the variable its key is usually in. A new provider is a class here and a
row in that table (and its name in settings.LLMProvider, which validates the setting).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from ..domain import Usage
from ..errors import ConfigurationError

RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504, 529})


@dataclass(frozen=True)
class ChatRequest:
    model: str
    system: str
    user: str
    max_tokens: int
    temperature: float | None  # None: leave it to the model's default
    timeout_s: float


@dataclass(frozen=True)
class Completion:
    text: str
    model: str  # the model that answered, as the endpoint reports it
    usage: Usage | None  # None when the endpoint reported none
    finish_reason: str | None = None


class LLMError(Exception):
    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        kind: str,
        status: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.kind = kind  # error.type on spans and metrics
        self.status = status
        self.retry_after_s = retry_after_s


class ChatProvider(Protocol):
    name: str  # gen_ai.provider.name

    def complete(self, request: ChatRequest) -> Completion: ...

    def stream(self, request: ChatRequest) -> Iterator[str | Completion]:
        """Text deltas, then one Completion (full text, usage). Closing it closes the HTTP
        stream, which stops generation upstream."""
        ...


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers.get("retry-after", "")))
    except ValueError:
        return None


def _status_error(response: httpx.Response, endpoint: str) -> LLMError:
    try:
        response.read()
        body: Any = response.json()
        detail = body.get("error", {}).get("message") if isinstance(body, dict) else None
    except (ValueError, httpx.HTTPError, AttributeError):
        detail = None
    status = response.status_code
    hint = " (check the API key)" if status in (401, 403) else ""
    return LLMError(
        f"{endpoint} answered HTTP {status}{hint}: {detail or response.reason_phrase}",
        retryable=status in RETRYABLE_STATUS,
        kind=str(status),
        status=status,
        retry_after_s=_retry_after(response),
    )


def _malformed(endpoint: str, what: str) -> LLMError:
    return LLMError(f"{endpoint} sent a malformed reply: {what}", retryable=False, kind="malformed")


@contextmanager
def _http_errors(endpoint: str, timeout_s: float) -> Iterator[None]:
    try:
        yield
    except httpx.TimeoutException:
        raise LLMError(
            f"{endpoint} did not answer within {timeout_s:g} s (RAG_LLM_TIMEOUT_S)",
            retryable=False,  # a slow model stays slow: go to the fallback instead
            kind="timeout",
        ) from None
    except httpx.TransportError as exc:
        raise LLMError(
            f"cannot reach {endpoint}: {type(exc).__name__}", retryable=True, kind="connection"
        ) from None


def _check_deadline(started: float, timeout_s: float, endpoint: str) -> None:
    """httpx times each read; a stream that trickles forever must still end."""
    if time.monotonic() - started > timeout_s:
        raise httpx.ReadTimeout(f"{endpoint} stream exceeded {timeout_s:g} s")


def _sse_data(lines: Iterator[str]) -> Iterator[tuple[str | None, str]]:
    """(event, data) pairs of a Server-Sent Events stream."""
    event: str | None = None
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = None, []
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip())
    if data:
        yield event, "\n".join(data)


class _HttpChat:
    """What both wire formats share: a JSON POST, or a POST answered as an SSE stream."""

    _client: httpx.Client
    _url: str
    _headers: dict[str, str]

    def _body(self, request: ChatRequest, stream: bool) -> dict[str, Any]:
        raise NotImplementedError

    def _post(self, request: ChatRequest) -> httpx.Response:
        with _http_errors(self._url, request.timeout_s):
            response = self._client.post(
                self._url,
                json=self._body(request, stream=False),
                headers=self._headers,
                timeout=request.timeout_s,
            )
        if response.status_code != 200:
            raise _status_error(response, self._url)
        return response

    @contextmanager
    def _events(self, request: ChatRequest) -> Iterator[Iterator[tuple[str | None, str]]]:
        """(event, data) pairs of the streamed answer, within the request's deadline."""
        started = time.monotonic()
        with (
            _http_errors(self._url, request.timeout_s),
            self._client.stream(
                "POST",
                self._url,
                json=self._body(request, stream=True),
                headers=self._headers,
                timeout=request.timeout_s,
            ) as response,
        ):
            if response.status_code != 200:
                raise _status_error(response, self._url)

            def events() -> Iterator[tuple[str | None, str]]:
                for item in _sse_data(response.iter_lines()):
                    _check_deadline(started, request.timeout_s, self._url)
                    yield item

            yield events()


class OpenAIChat(_HttpChat):
    """POST {base_url}/chat/completions: OpenAI, Azure OpenAI (/openai/v1), vLLM, Ollama,
    LM Studio. OpenAI itself wants max_completion_tokens; compatible servers know max_tokens."""

    name = "openai"

    def __init__(
        self, client: httpx.Client, base_url: str, api_key: str | None, *, official: bool
    ) -> None:
        self._client = client
        self._url = base_url.rstrip("/") + "/chat/completions"
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._official = official

    def _body(self, request: ChatRequest, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": request.model,
            "messages": [
                {"role": "system", "content": request.system},
                {"role": "user", "content": request.user},
            ],
            "max_completion_tokens" if self._official else "max_tokens": request.max_tokens,
        }
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body

    @staticmethod
    def _usage(data: Any) -> Usage | None:
        if not isinstance(data, dict):
            return None
        return Usage(int(data.get("prompt_tokens") or 0), int(data.get("completion_tokens") or 0))

    def complete(self, request: ChatRequest) -> Completion:
        response = self._post(request)
        try:
            data = response.json()
            choice = data["choices"][0]
            text = choice["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise _malformed(self._url, "no choices[0].message.content") from None
        if not isinstance(text, str):
            raise _malformed(self._url, "the message content is not text")
        return Completion(
            text=text,
            model=str(data.get("model") or request.model),
            usage=self._usage(data.get("usage")),
            finish_reason=choice.get("finish_reason"),
        )

    def stream(self, request: ChatRequest) -> Iterator[str | Completion]:
        with self._events(request) as events:
            parts: list[str] = []
            model, usage, finish = request.model, None, None
            for _, data in events:
                if data.strip() == "[DONE]":
                    break
                try:
                    chunk = json.loads(data)
                    choices = chunk.get("choices") or []
                    delta = choices[0].get("delta", {}).get("content") if choices else None
                except (ValueError, AttributeError, TypeError):
                    raise _malformed(self._url, "a stream chunk is not a chat completion") from None
                model = str(chunk.get("model") or model)
                usage = self._usage(chunk.get("usage")) or usage
                if choices and choices[0].get("finish_reason"):
                    finish = choices[0]["finish_reason"]
                if isinstance(delta, str) and delta:
                    parts.append(delta)
                    yield delta
            yield Completion("".join(parts), model, usage, finish)


class AnthropicChat(_HttpChat):
    """POST {base_url}/messages (Anthropic's Messages API), streamed as its typed events."""

    name = "anthropic"
    API_VERSION = "2023-06-01"

    def __init__(self, client: httpx.Client, base_url: str, api_key: str | None) -> None:
        self._client = client
        self._url = base_url.rstrip("/") + "/messages"
        self._headers = {"anthropic-version": self.API_VERSION}
        if api_key:
            self._headers["x-api-key"] = api_key

    def _body(self, request: ChatRequest, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": request.model,
            "system": request.system,
            "messages": [{"role": "user", "content": request.user}],
            "max_tokens": request.max_tokens,
        }
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if stream:
            body["stream"] = True
        return body

    def complete(self, request: ChatRequest) -> Completion:
        response = self._post(request)
        try:
            data = response.json()
            blocks = data["content"]
            text = "".join(b["text"] for b in blocks if b.get("type") == "text")
            usage = data.get("usage") or {}
        except (ValueError, KeyError, TypeError, AttributeError):
            raise _malformed(self._url, "no text content blocks") from None
        return Completion(
            text=text,
            model=str(data.get("model") or request.model),
            usage=Usage(int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0))
            if usage
            else None,
            finish_reason=data.get("stop_reason"),
        )

    def stream(self, request: ChatRequest) -> Iterator[str | Completion]:
        with self._events(request) as events:
            parts: list[str] = []
            model, finish = request.model, None
            input_tokens = output_tokens = 0
            seen_usage = False
            for event, data in events:
                try:
                    payload = json.loads(data)
                    kind = event or payload["type"]
                except (ValueError, KeyError, TypeError):
                    raise _malformed(self._url, "a stream event is not JSON") from None
                if kind == "message_start":
                    message = payload.get("message", {})
                    model = str(message.get("model") or model)
                    input_tokens = int(message.get("usage", {}).get("input_tokens") or 0)
                    seen_usage = True
                elif kind == "content_block_delta":
                    delta = payload.get("delta", {})
                    if delta.get("type") == "text_delta" and delta.get("text"):
                        parts.append(delta["text"])
                        yield delta["text"]
                elif kind == "message_delta":
                    output_tokens = int(payload.get("usage", {}).get("output_tokens") or 0)
                    finish = payload.get("delta", {}).get("stop_reason") or finish
                elif kind == "error":
                    error = payload.get("error", {})
                    overloaded = error.get("type") == "overloaded_error"
                    raise LLMError(
                        f"{self._url} stream error: {error.get('message', 'unknown')}",
                        retryable=overloaded,
                        kind=str(error.get("type", "stream_error")),
                    )
                elif kind == "message_stop":
                    break
            usage = Usage(input_tokens, output_tokens) if seen_usage else None
            yield Completion("".join(parts), model, usage, finish)


# --- the table RAG_LLM_PROVIDER picks from -------------------------------------------------


@dataclass(frozen=True)
class ProviderSpec:
    """One provider: how to build it, where it is by default, where its key usually is."""

    build: Callable[[httpx.Client, str, str | None], ChatProvider]  # (client, base URL, key)
    base_url: str | None  # its public API; None: RAG_LLM_BASE_URL must say where it is
    key_variable: str | None  # read when RAG_LLM_API_KEY is unset
    needs_key: bool


PROVIDERS: Mapping[str, ProviderSpec] = {
    "openai": ProviderSpec(
        lambda client, url, key: OpenAIChat(client, url, key, official=True),
        base_url="https://api.openai.com/v1",
        key_variable="OPENAI_API_KEY",
        needs_key=True,
    ),
    # vLLM, Ollama, LM Studio, Azure OpenAI's /openai/v1: a local server may want no key.
    "openai_like": ProviderSpec(
        lambda client, url, key: OpenAIChat(client, url, key, official=False),
        base_url=None,
        key_variable=None,
        needs_key=False,
    ),
    "anthropic": ProviderSpec(
        AnthropicChat,
        base_url="https://api.anthropic.com/v1",
        key_variable="ANTHROPIC_API_KEY",
        needs_key=True,
    ),
}


def build_provider(
    name: str,
    client: httpx.Client,
    *,
    base_url: str | None,
    api_key: str | None,
    environ: Mapping[str, str] = os.environ,
) -> ChatProvider:
    """The provider named `name` (RAG_LLM_PROVIDER). The key is `api_key` (RAG_LLM_API_KEY)
    or the provider's usual variable, and is only ever put in request headers."""
    spec = PROVIDERS.get(name)
    if spec is None:
        raise ConfigurationError(
            f"RAG_LLM_PROVIDER={name} is not a provider; choose one of {', '.join(PROVIDERS)}."
        )
    key = api_key
    if key is None and spec.key_variable is not None:
        key = environ.get(spec.key_variable) or None
    if key is None and spec.needs_key:
        where = f" or {spec.key_variable}" if spec.key_variable else ""
        raise ConfigurationError(
            f"RAG_LLM_PROVIDER={name} needs an API key: set RAG_LLM_API_KEY{where}."
        )
    url = base_url or spec.base_url
    if url is None:
        raise ConfigurationError(
            f"RAG_LLM_PROVIDER={name} has no public endpoint: set RAG_LLM_BASE_URL."
        )
    return spec.build(client, url, key)
