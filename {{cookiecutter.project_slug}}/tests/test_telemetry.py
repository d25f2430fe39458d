"""Spans leave the process: OTLP over HTTP to a receiver on loopback, or the console."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import grpc
import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from {{ cookiecutter.package_name }}.cli import main
from {{ cookiecutter.package_name }}.container import build_services
from {{ cookiecutter.package_name }}.domain import Query
from {{ cookiecutter.package_name }}.embeddings import DenseEncoder, SparseEncoder
from {{ cookiecutter.package_name }}.errors import ConfigurationError
from {{ cookiecutter.package_name }}.telemetry import (
    build_tracer_provider,
    configure_logging,
    exporters,
)

from .conftest import make_settings


def exported_span_names(exports: list[ExportTraceServiceRequest]) -> set[str]:
    return {
        span.name
        for export in exports
        for resource_spans in export.resource_spans
        for scope in resource_spans.scope_spans
        for span in scope.spans
    }


class OtlpReceiver(BaseHTTPRequestHandler):
    exports: ClassVar[list[ExportTraceServiceRequest]] = []
    metric_exports: ClassVar[list[ExportMetricsServiceRequest]] = []
    log_exports: ClassVar[list[ExportLogsServiceRequest]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.path == "/v1/traces":
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            self.exports.append(request)
        elif self.path == "/v1/metrics":
            metrics = ExportMetricsServiceRequest()
            metrics.ParseFromString(body)
            self.metric_exports.append(metrics)
        elif self.path == "/v1/logs":
            logs = ExportLogsServiceRequest()
            logs.ParseFromString(body)
            self.log_exports.append(logs)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def otlp_endpoint() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), OtlpReceiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    OtlpReceiver.exports = []
    OtlpReceiver.metric_exports = []
    OtlpReceiver.log_exports = []
    yield f"http://127.0.0.1:{server.server_address[1]}/v1/traces"
    server.shutdown()
    server.server_close()


def test_spans_are_exported_over_otlp_http(
    otlp_endpoint: str,
    tmp_path: Path,
    model_dir: Path,
    corpus: Path,
    dense: DenseEncoder,
    sparse: SparseEncoder,
) -> None:
    settings = make_settings(
        tmp_path,
        model_dir,
        trace_exporter="otlp",
        otlp_endpoint=otlp_endpoint,
        service_name="otlp-test",
    )
    services = build_services(settings, dense=dense, sparse=sparse)
    services.ingestor.ingest(corpus)
    services.retriever.retrieve(Query(text="password length", top_k=2, tenant="default"))
    services.close()  # flushes the batch processor

    spans = {
        span.name: span
        for export in OtlpReceiver.exports
        for resource_spans in export.resource_spans
        for scope in resource_spans.scope_spans
        for span in scope.spans
    }
    assert {"ingest", "ingest.file", "upsert", "retrieval test"} <= set(spans)
    resource = OtlpReceiver.exports[0].resource_spans[0].resource
    names = {a.key: a.value.string_value for a in resource.attributes}
    assert names["service.name"] == "otlp-test"
    retrieval = {a.key: a for a in spans["retrieval test"].attributes}
    assert retrieval["gen_ai.operation.name"].value.string_value == "retrieval"


def test_metrics_are_exported_over_otlp_http(
    otlp_endpoint: str,
    tmp_path: Path,
    model_dir: Path,
    corpus: Path,
    dense: DenseEncoder,
    sparse: SparseEncoder,
) -> None:
    settings = make_settings(
        tmp_path,
        model_dir,
        metrics_exporter="otlp",
        otlp_metrics_endpoint=otlp_endpoint.replace("/v1/traces", "/v1/metrics"),
        service_name="otlp-test",
    )
    services = build_services(settings, dense=dense, sparse=sparse)
    services.ingestor.ingest(corpus)
    services.retriever.retrieve(Query(text="password length", top_k=2, tenant="default"))
    services.close()  # the periodic reader exports once more on shutdown

    names = {
        metric.name
        for export in OtlpReceiver.metric_exports
        for resource_metrics in export.resource_metrics
        for scope in resource_metrics.scope_metrics
        for metric in scope.metrics
    }
    assert {"rag.ingest.files", "rag.ingest.chunks", "rag.retrieval.duration"} <= names
    resource = OtlpReceiver.metric_exports[0].resource_metrics[0].resource
    assert {a.key: a.value.string_value for a in resource.attributes}["service.name"] == (
        "otlp-test"
    )


def test_console_exporter_writes_to_stderr_and_keeps_json_on_stdout(
    cli_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    corpus: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("RAG_TRACE_EXPORTER", "console")
    main(["ingest", str(corpus)])
    capsys.readouterr()
    assert main(["ask", "How long must a password be?", "--json"]) == 0
    captured = capsys.readouterr()
    body = json.loads(captured.out)
    assert body["trace_id"] in captured.err.replace("0x", "")
    assert '"name": "retrieval test"' not in captured.out
    assert "retrieval " in captured.err


class GrpcTraceReceiver(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self.exports: list[ExportTraceServiceRequest] = []

    def Export(
        self, request: ExportTraceServiceRequest, context: object
    ) -> ExportTraceServiceResponse:
        self.exports.append(request)
        return ExportTraceServiceResponse()


def test_spans_are_exported_over_otlp_grpc(
    tmp_path: Path,
    model_dir: Path,
    corpus: Path,
    dense: DenseEncoder,
    sparse: SparseEncoder,
) -> None:
    receiver = GrpcTraceReceiver()
    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    # The generated gRPC stubs carry no type hints.
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        settings = make_settings(
            tmp_path,
            model_dir,
            trace_exporter="otlp",
            otlp_protocol="grpc",
            otlp_endpoint=f"http://127.0.0.1:{port}",
        )
        services = build_services(settings, dense=dense, sparse=sparse)
        services.retriever.retrieve(Query(text="password length", top_k=2, tenant="default"))
        services.close()
    finally:
        server.stop(grace=None)
    assert "retrieval test" in exported_span_names(receiver.exports)


def test_unsupported_otlp_protocol_is_a_clear_error(
    tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
    settings = make_settings(tmp_path, model_dir, trace_exporter="otlp")
    with pytest.raises(ConfigurationError, match="use http/protobuf or grpc"):
        build_tracer_provider(settings)


# --- the standard OTEL_* variables choose the exporters ---------------------------------


def test_only_the_standard_otel_variables_send_spans_and_metrics_to_the_collector(
    otlp_endpoint: str,
    tmp_path: Path,
    model_dir: Path,
    corpus: Path,
    dense: DenseEncoder,
    sparse: SparseEncoder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What an OpenTelemetry operator injects; no RAG_* tracing setting at all.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp_endpoint.removesuffix("/v1/traces"))
    monkeypatch.setenv("OTEL_SERVICE_NAME", "claims-api")
    services = build_services(make_settings(tmp_path, model_dir), dense=dense, sparse=sparse)
    services.ingestor.ingest(corpus)
    services.retriever.retrieve(Query(text="password length", top_k=2, tenant="default"))
    services.close()

    assert {"ingest", "retrieval test"} <= exported_span_names(OtlpReceiver.exports)
    resource = OtlpReceiver.exports[0].resource_spans[0].resource
    assert {a.key: a.value.string_value for a in resource.attributes}["service.name"] == (
        "claims-api"
    )
    assert OtlpReceiver.metric_exports, "metrics follow the same endpoint"


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, ()),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, ()),
        ({"OTEL_SDK_DISABLED": "TRUE", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, ()),
        ({"OTEL_TRACES_EXPORTER": "console"}, ("console",)),
        ({"OTEL_TRACES_EXPORTER": "otlp, console"}, ("otlp", "console")),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, ("otlp",)),
        ({"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://c:4318/v1/metrics"}, ()),
        ({}, ()),  # offline default: nothing leaves the machine
    ],
)
def test_trace_exporters_follow_the_standard_variables(
    variables: dict[str, str], expected: tuple[str, ...], tmp_path: Path, model_dir: Path
) -> None:
    assert exporters("traces", make_settings(tmp_path, model_dir), variables) == expected


def test_a_changed_rag_setting_wins_over_the_standard_variable(
    tmp_path: Path, model_dir: Path
) -> None:
    settings = make_settings(tmp_path, model_dir, trace_exporter="console", metrics_exporter="otlp")
    environ = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_METRICS_EXPORTER": "none"}
    assert exporters("traces", settings, environ) == ("console",)
    assert exporters("metrics", settings, environ) == ("otlp",)
    # ... but never over OTEL_SDK_DISABLED, which turns the SDK off for every signal.
    assert exporters("traces", settings, {"OTEL_SDK_DISABLED": "true"}) == ()


def test_prometheus_from_otel_metrics_exporter_serves_metrics(
    tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "prometheus")
    settings = make_settings(tmp_path, model_dir)
    assert exporters("metrics", settings) == ("prometheus",)


def test_an_exporter_not_installed_is_named_with_its_variable(
    tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin")
    with pytest.raises(ConfigurationError, match=r"OTEL_TRACES_EXPORTER='zipkin': zipkin is not"):
        build_tracer_provider(make_settings(tmp_path, model_dir))


def test_otel_logs_exporter_otlp_sends_log_records_with_the_span_ids(
    otlp_endpoint: str, tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import logging
    import time

    from opentelemetry.sdk.trace import TracerProvider

    monkeypatch.setenv("OTEL_LOGS_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp_endpoint.removesuffix("/v1/traces"))
    configure_logging(make_settings(tmp_path, model_dir))
    with TracerProvider().get_tracer("test").start_as_current_span("work") as span:
        logging.getLogger("claims").warning("claim 42 needs review")
    for handler in logging.getLogger().handlers:
        handler.flush()
    deadline = time.monotonic() + 10
    records: list[Any] = []
    while not records and time.monotonic() < deadline:
        records = [
            record
            for export in OtlpReceiver.log_exports
            for resource_logs in export.resource_logs
            for scope in resource_logs.scope_logs
            for record in scope.log_records
        ]
        time.sleep(0.05)
    [record] = records
    assert record.body.string_value == "claim 42 needs review"
    assert record.trace_id == span.get_span_context().trace_id.to_bytes(16, "big")
