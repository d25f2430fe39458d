"""The providers table: every RAG_LLM_PROVIDER builds from its row, with its default endpoint
and key variable, and refuses clearly when it needs a key it does not have."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, get_args

import httpx
import pytest

from {{ cookiecutter.package_name }}.answer.providers import (
    PROVIDERS,
    ChatRequest,
    build_provider,
)
from {{ cookiecutter.package_name }}.errors import ConfigurationError
from {{ cookiecutter.package_name }}.settings import LLMProvider

REQUEST = ChatRequest("some-model", "Be brief.", "Say ok.", 16, 0.0, 5.0)
ELSEWHERE = "http://127.0.0.1:9/v1"


def _reply(request: httpx.Request) -> httpx.Response:
    """What each wire format answers; decided by the path the provider posts to."""
    if request.url.path.endswith("/messages"):
        body: dict[str, Any] = {
            "content": [{"type": "text", "text": "ok"}],
            "model": "some-model",
            "usage": {"input_tokens": 3, "output_tokens": 1},
        }
    else:
        body = {
            "choices": [{"message": {"content": "ok"}, "finish_reason": "stop"}],
            "model": "some-model",
            "usage": {"prompt_tokens": 3, "completion_tokens": 1},
        }
    return httpx.Response(200, json=body)


@pytest.fixture
def sent() -> Iterator[tuple[httpx.Client, list[httpx.Request]]]:
    """An HTTP client that answers in-process and keeps every request (no network)."""
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return _reply(request)

    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        yield client, requests


def _key_headers(request: httpx.Request) -> str:
    return (request.headers.get("authorization") or "") + (request.headers.get("x-api-key") or "")


def test_the_table_names_exactly_the_providers_settings_accept() -> None:
    assert set(PROVIDERS) == set(get_args(LLMProvider))


@pytest.mark.parametrize("name", sorted(PROVIDERS))
def test_every_provider_builds_with_a_key_and_calls_its_default_endpoint(
    name: str, sent: tuple[httpx.Client, list[httpx.Request]]
) -> None:
    client, requests = sent
    spec = PROVIDERS[name]
    provider = build_provider(
        name,
        client,
        base_url=None if spec.base_url else ELSEWHERE,
        api_key="sk-row-key",
        environ={},
    )
    completion = provider.complete(REQUEST)
    assert completion.text == "ok"
    assert completion.usage is not None
    assert completion.usage.output_tokens == 1
    (request,) = requests
    assert str(request.url).startswith(spec.base_url or ELSEWHERE)
    assert "sk-row-key" in _key_headers(request)
    assert json.loads(request.content)["model"] == "some-model"


@pytest.mark.parametrize("name", sorted(n for n, spec in PROVIDERS.items() if spec.key_variable))
def test_a_provider_reads_its_usual_key_variable(
    name: str, sent: tuple[httpx.Client, list[httpx.Request]]
) -> None:
    client, requests = sent
    variable = PROVIDERS[name].key_variable
    assert variable is not None
    provider = build_provider(
        name, client, base_url=None, api_key=None, environ={variable: "sk-from-env"}
    )
    provider.complete(REQUEST)
    assert "sk-from-env" in _key_headers(requests[0])


@pytest.mark.parametrize("name", sorted(n for n, spec in PROVIDERS.items() if spec.needs_key))
def test_a_provider_that_needs_a_key_refuses_clearly_without_one(name: str) -> None:
    variable = PROVIDERS[name].key_variable
    with httpx.Client() as client, pytest.raises(ConfigurationError) as refused:
        build_provider(name, client, base_url=ELSEWHERE, api_key=None, environ={})
    assert f"RAG_LLM_PROVIDER={name} needs an API key: set RAG_LLM_API_KEY" in refused.value.message
    if variable:
        assert variable in refused.value.message


@pytest.mark.parametrize("name", sorted(n for n, spec in PROVIDERS.items() if not spec.needs_key))
def test_a_provider_that_needs_no_key_sends_none(
    name: str, sent: tuple[httpx.Client, list[httpx.Request]]
) -> None:
    client, requests = sent
    build_provider(name, client, base_url=ELSEWHERE, api_key=None, environ={}).complete(REQUEST)
    assert _key_headers(requests[0]) == ""


@pytest.mark.parametrize("name", sorted(n for n, spec in PROVIDERS.items() if not spec.base_url))
def test_a_provider_without_a_public_endpoint_asks_for_the_base_url(name: str) -> None:
    with httpx.Client() as client, pytest.raises(ConfigurationError, match="set RAG_LLM_BASE_URL"):
        build_provider(name, client, base_url=None, api_key="sk-row-key", environ={})


def test_an_unknown_provider_names_the_ones_there_are() -> None:
    with httpx.Client() as client, pytest.raises(ConfigurationError) as refused:
        build_provider("mistral", client, base_url=ELSEWHERE, api_key="k", environ={})
    assert "RAG_LLM_PROVIDER=mistral is not a provider" in refused.value.message
    assert all(name in refused.value.message for name in PROVIDERS)
