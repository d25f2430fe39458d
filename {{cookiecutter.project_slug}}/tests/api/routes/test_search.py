"""POST /v1/retrieve and POST /v1/query (JSON and Server-Sent Events), with a real app, real
store and real models; the LLM answerer against a fake OpenAI-compatible server over HTTP."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from {{ cookiecutter.package_name }}.api import create_app
from {{ cookiecutter.package_name }}.container import Services
from {{ cookiecutter.package_name }}.settings import Settings

from ...conftest import (
    TRACE_ID,
    api_key,
    assert_error,
    auth,
    keyed_client,
    make_settings,
    serve_on_loopback,
    sse_events,
)
from ...fake_openai import FakeOpenAI, Reply

KEY = "sk-api-test-key"
# Where a hit's text is in its document and the scores a person can read (null when unknown).
EVIDENCE = {"page", "row", "line", "dense_score", "rerank_score"}
CITATION_FIELDS = {"number", "chunk_id", "source", "text", "score", *EVIDENCE}
QUESTION = "How long must a password be?"


@pytest.fixture
def client(services: Services, corpus: Path, client: TestClient) -> TestClient:
    """The API client (tests/api/conftest.py) over a store holding the sample corpus."""
    services.ingestor.ingest(corpus)
    return client


def test_retrieve_returns_hits_with_metadata_and_trace_id(client: TestClient) -> None:
    response = client.post(
        "/v1/retrieve", json={"query": "How long must a password be?", "top_k": 2}
    )
    assert response.status_code == 200
    body = response.json()
    assert len(body["hits"]) == 2
    hit = body["hits"][0]
    assert hit["source"] == "policies/passwords.md"
    assert set(hit) == {"chunk_id", "source", "text", "rank", "score", "metadata", *EVIDENCE}
    assert hit["metadata"]["title"] == "Password policy"
    assert TRACE_ID.match(body["trace_id"])
    assert response.headers["X-Trace-Id"] == body["trace_id"]


def test_query_answers_with_citations(client: TestClient) -> None:
    body = client.post("/v1/query", json={"question": "How often are passwords rotated?"}).json()
    assert "180 days" in body["answer"]
    assert body["refused"] is False
    assert body["citations"][0]["source"] == "policies/passwords.md"
    assert set(body["citations"][0]) == CITATION_FIELDS
    assert "[1]" in body["answer"]


def test_query_refuses_what_the_documents_do_not_say(client: TestClient) -> None:
    body = client.post(
        "/v1/query", json={"question": "Who won the football world cup in 1998?"}
    ).json()
    assert body["refused"] is True
    assert body["citations"] == []


def test_filters_restrict_sources(client: TestClient) -> None:
    body = client.post(
        "/v1/retrieve",
        json={"query": "password", "filters": {"source": ["holidays.html"]}},
    ).json()
    assert body["hits"]
    assert {hit["source"] for hit in body["hits"]} == {"holidays.html"}


@pytest.mark.parametrize(
    ("path", "payload", "status", "fragment"),
    [
        ("/v1/retrieve", {"query": ""}, 422, "query: String should have at least 1 character"),
        ("/v1/retrieve", {}, 422, "query: Field required"),
        ("/v1/query", {"question": "x", "top_k": 0}, 422, "top_k"),
        ("/v1/query", {"question": "x", "top_k": 500}, 400, "RAG_MAX_TOP_K"),
        ("/v1/query", {"question": "x", "filters": {"author": "me"}}, 422, "filters.author"),
        ("/v1/query", {"question": "x", "colour": "red"}, 422, "colour"),
    ],
)
def test_bad_requests_get_json_errors_that_name_the_problem(
    client: TestClient, path: str, payload: dict[str, object], status: int, fragment: str
) -> None:
    assert_error(client.post(path, json=payload), status, fragment)


def test_malformed_json_is_a_4xx_not_a_crash(client: TestClient) -> None:
    response = client.post(
        "/v1/query", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert_error(response, 422, "JSON")


def test_one_trace_links_http_retrieval_and_answer_spans(
    client: TestClient, spans: InMemorySpanExporter
) -> None:
    spans.clear()
    body = client.post("/v1/query", json={"question": "How long must a password be?"}).json()
    finished = [s for s in spans.get_finished_spans() if s.context is not None]
    in_trace = [s for s in finished if format(s.context.trace_id, "032x") == body["trace_id"]]
    names = {span.name for span in in_trace}
    assert "POST /v1/query" in names
    assert "retrieval test" in names
    assert "answer extractive" in names
    root = next(s for s in in_trace if s.name == "POST /v1/query")
    retrieval = next(s for s in in_trace if s.name == "retrieval test")
    assert retrieval.parent is not None
    ids = {s.context.span_id for s in in_trace}
    assert retrieval.parent.span_id in ids
    assert root.parent is None


def test_extractive_answers_stream_too(services: Services, corpus: Path) -> None:
    services.ingestor.ingest(corpus)
    with keyed_client(create_app(services=services), services.settings) as client:
        plain = client.post("/v1/query", json={"question": "How long must a password be?"}).json()
        response = client.post(
            "/v1/query", json={"question": "How long must a password be?", "stream": True}
        )
    events = sse_events(response.text)
    assert [kind for kind, _ in events] == ["token", "final"]
    final = events[1][1]
    assert final["answer"] == plain["answer"] == events[0][1]["text"]
    assert final["grounded"] is True
    assert final["model"] == "extractive"
    assert final["usage"] == {"input_tokens": 0, "output_tokens": 0}
    assert final["cost_usd"] == 0.0


# --- with the LLM answerer -------------------------------------------------------------------


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI(api_key=KEY).start()
    yield server
    server.stop()


class TestWithTheLLMAnswerer:
    """The same routes with RAG_ANSWERER=llm."""

    @pytest.fixture
    def settings(self, tmp_path: Path, model_dir: Path, fake: FakeOpenAI) -> Settings:
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
    def llm_services(self, services: Services, corpus: Path) -> Services:
        services.ingestor.ingest(corpus)
        return services

    @pytest.fixture
    def client(self, llm_services: Services) -> Iterator[TestClient]:
        with keyed_client(create_app(services=llm_services), llm_services.settings) as test_client:
            yield test_client

    def test_query_returns_a_grounded_answer_with_usage_and_cost(
        self, client: TestClient, fake: FakeOpenAI, spans: InMemorySpanExporter
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
        assert set(body["citations"][0]) == CITATION_FIELDS
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
        assert {"POST /v1/query", "retrieval test", "chat fake-chat", "citation check"} <= set(
            in_trace
        )

        again = client.post("/v1/query", json={"question": QUESTION.upper()}).json()
        assert again["cached"] is True
        assert again["answer"] == body["answer"]
        assert again["cost_usd"] == 0.0
        assert len(fake.chat_requests()) == 1

    def test_a_failing_model_is_a_502_naming_the_problem(
        self, client: TestClient, fake: FakeOpenAI
    ) -> None:
        fake.replies = [Reply(status=500)]
        response = client.post("/v1/query", json={"question": QUESTION})
        assert_error(response, 502, "HTTP 500", "RAG_LLM_FALLBACK_MODEL")
        assert response.json()["type"] == "urn:problem:llm-unavailable"

    def test_stream_sends_tokens_then_one_final_event(
        self, client: TestClient, fake: FakeOpenAI, spans: InMemorySpanExporter
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

    def test_stream_failure_is_an_error_event(self, client: TestClient, fake: FakeOpenAI) -> None:
        fake.replies = [Reply(status=503)]
        response = client.post("/v1/query", json={"question": QUESTION, "stream": True})
        events = sse_events(response.text)
        assert [kind for kind, _ in events] == ["error"]
        problem = events[0][1]
        assert (problem["status"], problem["type"]) == (502, "urn:problem:llm-unavailable")
        assert "HTTP 503" in problem["detail"]
        assert problem["trace_id"] == response.headers["X-Trace-Id"]

    def test_an_unexpected_stream_failure_is_an_internal_error_event(
        self, client: TestClient, llm_services: Services, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        def broken(question: str, hits: object, **options: object) -> Iterator[object]:
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

    def test_client_disconnect_stops_generation(
        self, llm_services: Services, fake: FakeOpenAI
    ) -> None:
        """Real sockets end to end: the client hangs up after one token, and the API closes the
        model's stream, which the fake server sees as a write to a closed connection."""
        fake.replies = [Reply(content=" ".join(["word"] * 300) + " [1].")]
        fake.stream_chunk_delay_s = 0.01
        with serve_on_loopback(create_app(services=llm_services)) as base:
            with httpx.stream(
                "POST",
                f"{base}/v1/query",
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

    def test_openapi_documents_the_event_stream(self, client: TestClient) -> None:
        query = client.get("/openapi.json").json()["paths"]["/v1/query"]["post"]
        content = query["responses"]["200"]["content"]
        assert {"application/json", "text/event-stream"} <= set(content)
        body = client.get("/openapi.json").json()["components"]["schemas"]["QueryRequest"]
        assert "stream" in body["properties"]
