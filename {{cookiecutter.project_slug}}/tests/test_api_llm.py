"""POST /v1/query with the LLM answerer: JSON and Server-Sent Events, over real HTTP."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from {{ cookiecutter.package_name }}.api import create_app
from {{ cookiecutter.package_name }}.container import Services, build_services
from {{ cookiecutter.package_name }}.embeddings import DenseEncoder, SparseEncoder
from {{ cookiecutter.package_name }}.settings import Settings

from .conftest import (
    api_key,
    assert_error,
    auth,
    free_port,
    keyed_client,
    make_settings,
    sse_events,
)
from .fake_openai import FakeOpenAI, Reply

KEY = "sk-api-test-key"
QUESTION = "How long must a password be?"


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI(api_key=KEY).start()
    yield server
    server.stop()


@pytest.fixture
def settings(tmp_path: Path, model_dir: Path, fake: FakeOpenAI) -> Settings:
    """conftest's `services` fixture, built with the LLM answerer against the fake."""
    return make_settings(
        tmp_path,
        model_dir,
        answerer="llm",
        llm_provider="openai_like",
        llm_base_url=fake.base_url,
        llm_api_key=KEY,
        llm_model="fake-chat",
        llm_max_retries=0,
        llm_prices={"fake-chat": [0.5, 1.5]},
    )


@pytest.fixture
def llm_services(services: Services, corpus: Path) -> Services:
    services.ingestor.ingest(corpus)
    return services


@pytest.fixture
def client(llm_services: Services) -> Iterator[TestClient]:
    with keyed_client(create_app(services=llm_services), llm_services.settings) as test_client:
        yield test_client


def test_query_returns_a_grounded_answer_with_usage_and_cost(
    client: TestClient, fake: FakeOpenAI, spans: InMemorySpanExporter
) -> None:
    fake.replies = [Reply(content="At least 14 characters [1].")]
    response = client.post("/v1/query", json={"question": QUESTION})
    body = response.json()
    assert response.status_code == 200
    assert body["answer"] == "At least 14 characters [1]."
    assert body["grounded"] is True
    assert body["refused"] is False
    assert body["cached"] is False
    assert body["fallback_used"] is False
    assert body["model"] == "fake-chat"
    assert body["prompt_version"] == "grounded_answer/1"
    assert set(body["citations"][0]) == {"chunk_id", "source", "text", "score"}
    assert body["citations"][0]["source"] == "policies/passwords.md"  # the best hit is [1]
    usage = body["usage"]
    assert usage["output_tokens"] == 5
    assert body["cost_usd"] == pytest.approx(
        (usage["input_tokens"] * 0.5 + usage["output_tokens"] * 1.5) / 1e6
    )
    in_trace = [
        s.name
        for s in spans.get_finished_spans()
        if s.context is not None and format(s.context.trace_id, "032x") == body["trace_id"]
    ]
    assert {"POST /v1/query", "retrieval test", "chat fake-chat", "citation check"} <= set(in_trace)

    again = client.post("/v1/query", json={"question": QUESTION.upper()}).json()
    assert again["cached"] is True
    assert again["answer"] == body["answer"]
    assert again["cost_usd"] == 0.0
    assert len(fake.chat_requests()) == 1


def test_a_failing_model_is_a_502_naming_the_problem(client: TestClient, fake: FakeOpenAI) -> None:
    fake.replies = [Reply(status=500)]
    response = client.post("/v1/query", json={"question": QUESTION})
    assert_error(response, 502, "HTTP 500", "RAG_LLM_FALLBACK_MODEL")
    assert response.json()["type"] == "urn:problem:llm-unavailable"


def test_stream_sends_tokens_then_one_final_event(
    client: TestClient, fake: FakeOpenAI, spans: InMemorySpanExporter
) -> None:
    fake.replies = [Reply(content="Passwords need at least 14 characters [1].")]
    response = client.post("/v1/query", json={"question": QUESTION, "stream": True})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.text)
    kinds = [kind for kind, _ in events]
    assert kinds == ["token"] * 7 + ["final"]
    final = events[-1][1]
    assert "".join(data["text"] for kind, data in events if kind == "token") == final["answer"]
    assert final["grounded"] is True
    assert final["citations"][0]["source"] == "policies/passwords.md"
    assert final["usage"]["output_tokens"] == 7
    assert final["cost_usd"] > 0
    assert final["trace_id"] == response.headers["X-Trace-Id"]
    in_trace = {
        s.name
        for s in spans.get_finished_spans()
        if s.context is not None and format(s.context.trace_id, "032x") == final["trace_id"]
    }
    assert {"POST /v1/query", "retrieval test", "chat fake-chat", "citation check"} <= in_trace


def test_stream_failure_is_an_error_event(client: TestClient, fake: FakeOpenAI) -> None:
    fake.replies = [Reply(status=503)]
    response = client.post("/v1/query", json={"question": QUESTION, "stream": True})
    events = sse_events(response.text)
    assert [kind for kind, _ in events] == ["error"]
    problem = events[0][1]
    assert (problem["status"], problem["type"]) == (502, "urn:problem:llm-unavailable")
    assert "HTTP 503" in problem["detail"]
    assert problem["trace_id"] == response.headers["X-Trace-Id"]


def test_an_unexpected_stream_failure_is_an_internal_error_event(
    client: TestClient, llm_services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(question: str, hits: object) -> Iterator[object]:
        raise RuntimeError("bug in the answerer")
        yield  # a generator, like the real one

    monkeypatch.setattr(llm_services.answerer, "stream", broken)
    response = client.post("/v1/query", json={"question": QUESTION, "stream": True})
    events = sse_events(response.text)
    assert [kind for kind, _ in events] == ["error"]
    problem = events[0][1]
    assert (problem["status"], problem["type"]) == (500, "urn:problem:internal")
    assert "bug in the answerer" not in problem["detail"]  # internals stay in the log
    assert problem["trace_id"] in problem["detail"]


def test_client_disconnect_stops_generation(llm_services: Services, fake: FakeOpenAI) -> None:
    """Real sockets end to end: the client hangs up after one token, and the API closes the
    model's stream, which the fake server sees as a write to a closed connection."""
    fake.replies = [Reply(content=" ".join(["word"] * 300) + " [1].")]
    fake.stream_chunk_delay_s = 0.01
    port = free_port()
    config = uvicorn.Config(
        create_app(services=llm_services), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        url = f"http://127.0.0.1:{port}/v1/query"
        with httpx.stream(
            "POST",
            url,
            json={"question": QUESTION, "stream": True},
            headers=auth(api_key(llm_services.settings)),
            timeout=10,
        ) as response:
            first = next(response.iter_lines())
            assert first == "event: token"
        deadline = time.monotonic() + 5
        while fake.streams_aborted == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert fake.streams_aborted == 1
        assert fake.stream_chunks_sent < 150  # of 300 words: generation stopped early
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_ask_json_prints_what_the_api_returns_with_the_llm_answerer(
    cli_env: Path,
    corpus: Path,
    fake: FakeOpenAI,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from {{ cookiecutter.package_name }}.cli import main

    for name, value in {
        "RAG_ANSWERER": "llm",
        "RAG_LLM_PROVIDER": "openai_like",
        "RAG_LLM_BASE_URL": fake.base_url,
        "RAG_LLM_API_KEY": KEY,
        "RAG_LLM_MODEL": "fake-chat",
        "RAG_LLM_PRICES": '{"fake-chat": [0.5, 1.5]}',
    }.items():
        monkeypatch.setenv(name, value)
    fake.replies = [Reply(content="At least 14 characters [1].")] * 3
    main(["ingest", str(corpus)])
    capsys.readouterr()
    assert main(["ask", QUESTION, "--json"]) == 0
    from_cli = json.loads(capsys.readouterr().out)
    app = create_app()
    with keyed_client(app, app.state.services.settings) as client:
        from_api = client.post("/v1/query", json={"question": QUESTION}).json()
    assert from_cli.pop("trace_id") != from_api.pop("trace_id")
    assert from_cli == from_api
    assert from_cli["grounded"] is True
    assert from_cli["cost_usd"] > 0
    assert main(["ask", QUESTION]) == 0
    out = capsys.readouterr().out
    assert "model fake-chat" in out
    assert "5 out tokens, cost $0.000" in out


def test_openapi_documents_the_event_stream(client: TestClient) -> None:
    query = client.get("/openapi.json").json()["paths"]["/v1/query"]["post"]
    content = query["responses"]["200"]["content"]
    assert {"application/json", "text/event-stream"} <= set(content)
    body = client.get("/openapi.json").json()["components"]["schemas"]["QueryRequest"]
    assert "stream" in body["properties"]


def test_a_bad_llm_setting_stops_startup_without_holding_the_store(
    tmp_path: Path,
    model_dir: Path,
    dense: DenseEncoder,
    sparse: SparseEncoder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from {{ cookiecutter.package_name }}.errors import ConfigurationError

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    settings = make_settings(tmp_path, model_dir, answerer="llm", llm_provider="openai")
    with pytest.raises(ConfigurationError, match="needs an API key"):
        build_services(settings, dense=dense, sparse=sparse)
    # The embedded store was released: the next start opens it.
    build_services(make_settings(tmp_path, model_dir), dense=dense, sparse=sparse).close()


def test_ask_with_an_unreachable_model_prints_one_line(
    cli_env: Path, corpus: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from {{ cookiecutter.package_name }}.cli import main

    monkeypatch.setenv("RAG_ANSWERER", "llm")
    monkeypatch.setenv("RAG_LLM_PROVIDER", "openai_like")
    monkeypatch.setenv("RAG_LLM_BASE_URL", f"http://127.0.0.1:{free_port()}/v1")  # nobody there
    monkeypatch.setenv("RAG_LLM_MAX_RETRIES", "0")
    main(["ingest", str(corpus)])
    capsys.readouterr()
    assert main(["ask", QUESTION]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1
    assert "cannot reach http://127.0.0.1:" in lines[0]
    assert "Traceback" not in err
