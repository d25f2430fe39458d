"""What spans, metrics and logs hold: no content by default, metrics per stage, JSON logs."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader, Metric
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from {{ cookiecutter.package_name }}.api import create_app
from {{ cookiecutter.package_name }}.ask import Question
from {{ cookiecutter.package_name }}.cli import main
from {{ cookiecutter.package_name }}.container import Services, build_services
from {{ cookiecutter.package_name }}.domain import Query
from {{ cookiecutter.package_name }}.embeddings import DenseEncoder, SparseEncoder
from {{ cookiecutter.package_name }}.errors import StoreUnavailableError
from {{ cookiecutter.package_name }}.settings import CONSOLE_SCRIPT
from {{ cookiecutter.package_name }}.telemetry import (
    JsonFormatter,
    build_tracer_provider,
    service_name,
)

from .conftest import keyed_client, make_settings

QUESTION = "How long must a password be?"
CHUNK_PHRASE = "at least 14 characters"


def ask(services: Services, question: str = QUESTION) -> str:
    return services.asker.ask(Question(question, services.settings.tenant, top_k=3)).answer.text


def by_name(spans: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    return {span.name: span for span in spans.get_finished_spans()}


def attributes(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


Build = Callable[..., tuple[Services, InMemorySpanExporter]]


@pytest.fixture
def build(
    tmp_path: Path, model_dir: Path, dense: DenseEncoder, sparse: SparseEncoder, corpus: Path
) -> Iterator[Build]:
    """Services with the given settings overrides and the corpus ingested; spans cleared."""
    built: list[Services] = []

    def _build(**overrides: object) -> tuple[Services, InMemorySpanExporter]:
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        services = build_services(
            make_settings(tmp_path, model_dir, **overrides),
            tracer_provider=provider,
            dense=dense,
            sparse=sparse,
        )
        built.append(services)
        services.ingestor.ingest(corpus)
        exporter.clear()
        return services, exporter

    yield _build
    for services in built:
        services.close()


# --- content recording ----------------------------------------------------------------------


def test_no_question_chunk_or_answer_text_is_on_spans_by_default(build: Build) -> None:
    services, spans = build()
    answer = ask(services)
    assert CHUNK_PHRASE in answer
    recorded = json.dumps([attributes(s) for s in spans.get_finished_spans()], default=str).lower()
    assert QUESTION.lower() not in recorded
    assert CHUNK_PHRASE not in recorded
    assert "openinference.span.kind" not in recorded
    retrieval = attributes(by_name(spans)["retrieval test"])
    assert "gen_ai.retrieval.query.text" not in retrieval
    documents = json.loads(retrieval["gen_ai.retrieval.documents"])
    assert documents
    assert set(documents[0]) == {"id", "score"}


def test_content_is_on_spans_when_enabled(build: Build) -> None:
    services, spans = build(trace_content=True)
    answer = ask(services)
    named = by_name(spans)
    assert attributes(named["retrieval test"])["gen_ai.retrieval.query.text"] == QUESTION
    answered = attributes(named["answer extractive"])
    assert answered["answer.text"] == answer
    assert answered["answer.question"] == QUESTION
    assert "openinference.span.kind" not in attributes(named["retrieval test"])


@pytest.mark.parametrize("with_content", [False, True])
def test_openinference_attributes_for_phoenix(build: Build, with_content: bool) -> None:
    services, spans = build(trace_openinference=True, trace_content=with_content)
    ask(services)
    named = by_name(spans)
    retrieval = attributes(named["retrieval test"])
    assert retrieval["openinference.span.kind"] == "RETRIEVER"
    documents = json.loads(retrieval["gen_ai.retrieval.documents"])
    for i, document in enumerate(documents):
        assert retrieval[f"retrieval.documents.{i}.document.id"] == document["id"]
        assert round(retrieval[f"retrieval.documents.{i}.document.score"], 4) == document["score"]
        content = retrieval.get(f"retrieval.documents.{i}.document.content")
        assert (content is not None) is with_content
    assert (retrieval.get("input.value") == QUESTION) is with_content
    embedding = next(s for s in spans.get_finished_spans() if s.name.startswith("embeddings "))
    assert attributes(embedding)["openinference.span.kind"] == "EMBEDDING"


def test_an_exception_in_a_stage_is_recorded_on_its_span(
    services: Services,
    corpus: Path,
    spans: InMemorySpanExporter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    services.ingestor.ingest(corpus)
    spans.clear()

    def broken_search(*args: object, **kwargs: object) -> object:
        raise RuntimeError("store exploded")

    monkeypatch.setattr(services.store, "search", broken_search)
    with pytest.raises(RuntimeError, match="store exploded"):
        services.retriever.retrieve(Query(text=QUESTION, top_k=2, tenant="default"))
    retrieval = by_name(spans)["retrieval test"]
    assert retrieval.status.status_code is StatusCode.ERROR
    event = next(e for e in retrieval.events if e.name == "exception")
    assert dict(event.attributes or {})["exception.type"] == "RuntimeError"
    assert "store exploded" in str(dict(event.attributes or {})["exception.message"])


# --- service name ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rag_name", "otel_name", "expected"),
    [
        (None, None, CONSOLE_SCRIPT),
        (None, "from-otel", "from-otel"),
        ("from-rag", "from-otel", "from-rag"),
        ("from-rag", None, "from-rag"),
        # A .env copied from .env.example sets the default: OTEL_SERVICE_NAME still wins.
        (CONSOLE_SCRIPT, "from-otel", "from-otel"),
    ],
)
def test_service_name_precedence(
    tmp_path: Path,
    model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    rag_name: str | None,
    otel_name: str | None,
    expected: str,
) -> None:
    if rag_name is not None:
        monkeypatch.setenv("RAG_SERVICE_NAME", rag_name)
    if otel_name is not None:
        monkeypatch.setenv("OTEL_SERVICE_NAME", otel_name)
    settings = make_settings(tmp_path, model_dir)
    assert service_name(settings) == expected
    provider = build_tracer_provider(settings)
    assert provider.resource.attributes["service.name"] == expected
    provider.shutdown()


# --- metrics --------------------------------------------------------------------------------


def collect(reader: InMemoryMetricReader) -> dict[str, Metric]:
    data = reader.get_metrics_data()
    assert data is not None
    return {
        metric.name: metric
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }


def points(metric: Metric) -> dict[tuple[tuple[str, Any], ...], Any]:
    return {tuple(sorted((p.attributes or {}).items())): p for p in metric.data.data_points}


def test_metrics_count_ingest_answers_and_time_each_stage(
    services: Services, corpus: Path, metrics: InMemoryMetricReader
) -> None:
    report = services.ingestor.ingest(corpus)
    services.ingestor.ingest(corpus)  # again: all unchanged
    with keyed_client(create_app(services=services), services.settings) as client:
        assert client.post("/v1/query", json={"question": QUESTION}).json()["refused"] is False
        refused = client.post("/v1/query", json={"question": "Who won the 1998 world cup?"})
        assert refused.json()["refused"] is True
        assert client.post("/v1/retrieve", json={"query": "coffee"}).status_code == 200

    collected = collect(metrics)
    files = points(collected["rag.ingest.files"])
    assert files[(("outcome", "added"),)].value == 3
    assert files[(("outcome", "unchanged"),)].value == 3
    written = sum(outcome.chunks for outcome in report.files)
    assert points(collected["rag.ingest.chunks"])[()].value == written > 0

    answers = points(collected["rag.answers"])
    assert answers[(("refused", False),)].value == 1
    assert answers[(("refused", True),)].value == 1
    assert collected["rag.retrieval.duration"].unit == "s"
    assert points(collected["rag.retrieval.duration"])[()].count == 3
    answer_duration = points(collected["rag.answer.duration"])[()]
    assert answer_duration.count == 2
    assert 0 < answer_duration.sum < 60

    # HTTP request duration per route, from the FastAPI instrumentation.
    http = collected.get("http.server.request.duration") or collected["http.server.duration"]
    routes: dict[str, int] = {}
    for point in http.data.data_points:
        assert isinstance(point, HistogramDataPoint)
        attrs = dict(point.attributes or {})
        route = str(attrs.get("http.route", attrs.get("http.target")))
        routes[route] = routes.get(route, 0) + point.count
    assert routes == {"/v1/query": 2, "/v1/retrieve": 1}


# --- logs -----------------------------------------------------------------------------------


def test_json_log_lines_carry_the_current_span_ids() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("test.observability")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    tracer = TracerProvider().get_tracer("test")
    try:
        logger.info("outside")
        with tracer.start_as_current_span("work") as span:
            logger.warning("inside %s", "the span", extra={"corpus": "kb"})
        context = span.get_span_context()
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    outside, inside = (json.loads(line) for line in stream.getvalue().splitlines())
    assert {"time", "level", "logger", "message"} <= set(outside)
    assert "trace_id" not in outside
    assert inside["message"] == "inside the span"
    assert inside["level"] == "WARNING"
    assert inside["logger"] == "test.observability"
    assert inside["trace_id"] == format(context.trace_id, "032x")
    assert inside["span_id"] == format(context.span_id, "016x")
    assert inside["corpus"] == "kb"


def test_cli_ingest_summary_is_printed_once_and_logged_with_its_trace_id(
    cli_env: Path,
    corpus: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Stands in for a logs exporter (OTLP): a handler other than the CLI's stderr one.
    stream = io.StringIO()
    exporter = logging.StreamHandler(stream)
    exporter.setFormatter(JsonFormatter())
    logging.getLogger().addHandler(exporter)
    assert main(["ingest", str(corpus)]) == 0
    captured = capsys.readouterr()
    assert "Ingested " in captured.out  # the command's own output stays on stdout
    assert "Ingested " not in captured.err  # and is not repeated as a log line there
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    summary = next(line for line in lines if line["message"].startswith("Ingested "))
    assert summary["level"] == "INFO"
    assert summary["counts"]["added"] == 3
    assert len(summary["trace_id"]) == 32


def test_api_errors_are_logged_with_their_trace_id(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logging.getLogger().addHandler(handler)

    def unreachable(query: Query) -> object:
        raise StoreUnavailableError("Qdrant is unreachable")

    with keyed_client(create_app(services=services), services.settings) as client:
        bad = client.post("/v1/query", json={"question": "x", "top_k": 500}).json()
        monkeypatch.setattr(services.retriever, "retrieve", unreachable)
        down = client.post("/v1/retrieve", json={"query": "x"}).json()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    client_error, server_error = (line for line in lines if "http_status" in line)
    assert client_error["error_type"] == "BadRequestError"
    assert client_error["http_status"] == 400
    assert client_error["level"] == "WARNING"
    assert client_error["trace_id"] == bad["trace_id"]
    assert "POST /v1/query -> 400" in client_error["message"]
    assert server_error["http_status"] == 503
    assert server_error["level"] == "ERROR"
    assert server_error["trace_id"] == down["trace_id"]


def test_prometheus_scrape_endpoint_serves_the_service_metrics(
    tmp_path: Path, model_dir: Path, corpus: Path, dense: DenseEncoder, sparse: SparseEncoder
) -> None:
    settings = make_settings(tmp_path, model_dir, metrics_exporter="prometheus")
    services = build_services(
        settings, tracer_provider=TracerProvider(), dense=dense, sparse=sparse
    )
    services.ingestor.ingest(corpus)
    app = create_app(services=services)
    with keyed_client(app, services.settings, scopes=("admin",)) as client:
        client.post("/v1/query", json={"question": "How long must a password be?"})
        response = client.get("/metrics")
    with keyed_client(app, services.settings) as client:  # query + ingest, no admin
        refused = client.get("/metrics")
    services.close()
    assert refused.status_code == 403
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert "rag_answers_total{" in text
    assert 'refused="false"' in text
    assert "rag_retrieval_duration_seconds_bucket" in text
    assert "rag_ingest_files_total{" in text
    assert 'outcome="added"' in text


def test_metrics_endpoint_is_absent_unless_prometheus_is_chosen(
    services: Services,
) -> None:
    app = create_app(services=services)
    with keyed_client(app, services.settings, scopes=("admin",)) as client:
        response = client.get("/metrics")
    assert response.status_code == 404
    assert "RAG_METRICS_EXPORTER=prometheus" in response.json()["detail"]
