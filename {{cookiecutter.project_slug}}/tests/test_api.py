"""The HTTP API, with a real app, real store and real models."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from {{ cookiecutter.package_name }}.api import create_app
from {{ cookiecutter.package_name }}.container import Services

from .conftest import TRACE_ID, assert_error, keyed_client, qdrant_client, sse_events


@pytest.fixture
def client(services: Services, corpus: Path) -> Iterator[TestClient]:
    services.ingestor.ingest(corpus)
    with keyed_client(create_app(services=services), services.settings) as test_client:
        yield test_client


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["ready"] is True
    assert set(ready.json()["checks"]) == {"store", "collection", "embedding_model"}


def test_readiness_fails_when_the_collection_is_gone(
    client: TestClient, services: Services
) -> None:
    qdrant_client(services).delete_collection("test")
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["collection"] == "missing: test"


def test_retrieve_returns_hits_with_metadata_and_trace_id(client: TestClient) -> None:
    response = client.post(
        "/v1/retrieve", json={"query": "How long must a password be?", "top_k": 2}
    )
    assert response.status_code == 200
    body = response.json()
    assert len(body["hits"]) == 2
    hit = body["hits"][0]
    assert hit["source"] == "policies/passwords.md"
    assert set(hit) == {"chunk_id", "source", "text", "score", "metadata"}
    assert hit["metadata"]["title"] == "Password policy"
    assert TRACE_ID.match(body["trace_id"])
    assert response.headers["X-Trace-Id"] == body["trace_id"]


def test_query_answers_with_citations(client: TestClient) -> None:
    body = client.post("/v1/query", json={"question": "How often are passwords rotated?"}).json()
    assert "180 days" in body["answer"]
    assert body["refused"] is False
    assert body["citations"][0]["source"] == "policies/passwords.md"
    assert set(body["citations"][0]) == {"chunk_id", "source", "text", "score"}
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
        json={"query": "password", "filters": {"source": "holidays.html"}},
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


def test_unknown_route_is_a_json_404(client: TestClient) -> None:
    assert_error(client.get("/v1/nothing"), 404, "Not Found")


def test_openapi_documents_the_endpoints(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/retrieve", "/v1/query", "/healthz", "/readyz"} <= set(paths)
    assert client.get("/docs").status_code == 200


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
