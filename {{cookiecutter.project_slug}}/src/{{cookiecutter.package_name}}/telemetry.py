"""OpenTelemetry traces and metrics, and JSON logs, built from settings (nothing global).

Exporters: none (spans still get ids, so every response carries a trace id), console, or
OTLP (HTTP or gRPC). Which ones, per signal (`exporters`): RAG_TRACE_EXPORTER /
RAG_METRICS_EXPORTER when changed from their default `none`; else the standard
OTEL_TRACES_EXPORTER / OTEL_METRICS_EXPORTER / OTEL_LOGS_EXPORTER; else `otlp` when an OTLP
endpoint is exported (OTEL_EXPORTER_OTLP_ENDPOINT or the signal's own), as an OpenTelemetry
operator injects it; else none. OTEL_SDK_DISABLED=true turns every exporter off. The
standard OTEL_EXPORTER_OTLP_* variables configure the OTLP exporters when
RAG_OTLP_ENDPOINT / RAG_OTLP_METRICS_ENDPOINT are unset.

Privacy: questions, chunk texts and answers go on spans only with RAG_TRACE_CONTENT=true.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from opentelemetry import trace
from opentelemetry.metrics import Counter, Histogram, Meter, NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from prometheus_client import CollectorRegistry

from .errors import ConfigurationError
from .guard import CredentialQueryFilter, RedactingFilter, RedactingSpanExporter
from .settings import Settings

# Seconds-scale buckets (the OpenTelemetry semantic-convention advice for durations).
DURATION_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)
# The semantic conventions' advice for gen_ai.client.token.usage.
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304)


def service_name(settings: Settings, environ: Mapping[str, str] = os.environ) -> str:
    """RAG_SERVICE_NAME when changed from its default, else OTEL_SERVICE_NAME, else the default.

    "Changed", not "set": a `.env` copied from `.env.example` sets the default explicitly,
    and that must not hide the OTEL_SERVICE_NAME a deployment exports.
    """
    if settings.service_name != Settings.model_fields["service_name"].default:
        return settings.service_name
    return environ.get("OTEL_SERVICE_NAME") or settings.service_name


def otlp_protocol(settings: Settings, environ: Mapping[str, str] = os.environ) -> str:
    """RAG_OTLP_PROTOCOL, else the standard OTEL_EXPORTER_OTLP_PROTOCOL, else http/protobuf."""
    chosen = settings.otlp_protocol or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    if chosen not in ("http/protobuf", "grpc"):
        raise ConfigurationError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL={chosen!r} is not supported; use http/protobuf or grpc."
        )
    return chosen


Signal = Literal["traces", "metrics", "logs"]
# What each signal's exporter variable may name here (the spec's zipkin and the deprecated
# jaeger are not installed). Prometheus metrics are served by the API at /metrics.
SUPPORTED_EXPORTERS: dict[Signal, tuple[str, ...]] = {
    "traces": ("otlp", "console", "none"),
    "metrics": ("otlp", "prometheus", "console", "none"),
    "logs": ("otlp", "console", "none"),
}


def exporters(
    signal: Signal, settings: Settings, environ: Mapping[str, str] = os.environ
) -> tuple[str, ...]:
    """The exporters for one signal; () means none. See the module docstring for the order."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return ()
    configured = {"traces": settings.trace_exporter, "metrics": settings.metrics_exporter}.get(
        signal, "none"
    )
    if configured != "none":
        return (configured,)
    variable = f"OTEL_{signal.upper()}_EXPORTER"
    raw = environ.get(variable, "").strip()
    if raw:
        names = tuple(dict.fromkeys(n.strip().lower() for n in raw.split(",") if n.strip()))
        unknown = [name for name in names if name not in SUPPORTED_EXPORTERS[signal]]
        if unknown:
            raise ConfigurationError(
                f"{variable}={raw!r}: {', '.join(unknown)} is not available here; "
                f"use {', '.join(SUPPORTED_EXPORTERS[signal])} (comma-separated)."
            )
        return () if "none" in names else names
    if environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get(
        f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT"
    ):
        return ("otlp",)
    return ()


def build_resource(settings: Settings) -> Resource:
    return Resource.create({"service.name": service_name(settings)})


def _span_exporter(name: str, settings: Settings) -> SpanExporter:
    if name == "console":
        # stderr: stdout belongs to command output such as `ask --json`.
        return ConsoleSpanExporter(out=sys.stderr)
    if otlp_protocol(settings) == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcSpanExporter,
        )

        return GrpcSpanExporter(endpoint=settings.otlp_endpoint)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=settings.otlp_endpoint)


def build_tracer_provider(settings: Settings) -> TracerProvider:
    provider = TracerProvider(resource=build_resource(settings))
    for name in exporters("traces", settings):
        exporter = _span_exporter(name, settings)
        if settings.redact_pii:
            exporter = RedactingSpanExporter(exporter)
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def build_meter_provider(
    settings: Settings,
    readers: Sequence[MetricReader] = (),
    prometheus_registry: CollectorRegistry | None = None,
) -> MeterProvider:
    """Exports per RAG_METRICS_EXPORTER; extra `readers` (tests: InMemoryMetricReader) too.
    With `prometheus`, metrics are collected into `prometheus_registry` (one per service,
    never prometheus_client's global registry), which the API serves at /metrics."""
    all_readers = list(readers)
    for name in exporters("metrics", settings):
        if name == "prometheus":
            from opentelemetry.exporter.prometheus import PrometheusMetricReader

            if prometheus_registry is None:
                raise ConfigurationError("metrics_exporter=prometheus needs a registry to serve.")
            all_readers.append(PrometheusMetricReader(registry=prometheus_registry))
        else:
            all_readers.append(PeriodicExportingMetricReader(_metric_exporter(name, settings)))
    # Services.close() shuts it down (flushing the last export), not an atexit hook.
    return MeterProvider(
        metric_readers=all_readers, resource=build_resource(settings), shutdown_on_exit=False
    )


def _metric_exporter(name: str, settings: Settings) -> MetricExporter:
    if name == "console":
        return ConsoleMetricExporter(out=sys.stderr)
    if otlp_protocol(settings) == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
            OTLPMetricExporter as GrpcMetricExporter,
        )

        return GrpcMetricExporter(endpoint=settings.otlp_metrics_endpoint)
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    return OTLPMetricExporter(endpoint=settings.otlp_metrics_endpoint)


@dataclass(frozen=True)
class RagMetrics:
    """The service's own instruments; components get these from the composition root."""

    retrieval_duration: Histogram
    answer_duration: Histogram
    answers: Counter
    ingest_files: Counter
    ingest_chunks: Counter
    llm_tokens: Histogram
    llm_cost: Counter
    llm_retries: Counter
    llm_fallbacks: Counter
    answer_cache: Counter

    @classmethod
    def create(cls, meter: Meter) -> RagMetrics:
        return cls(
            retrieval_duration=meter.create_histogram(
                "rag.retrieval.duration",
                unit="s",
                description="Time to embed a query and search the store.",
                explicit_bucket_boundaries_advisory=DURATION_BUCKETS_S,
            ),
            answer_duration=meter.create_histogram(
                "rag.answer.duration",
                unit="s",
                description="Time to compose an answer from retrieved hits.",
                explicit_bucket_boundaries_advisory=DURATION_BUCKETS_S,
            ),
            answers=meter.create_counter(
                "rag.answers", unit="{answer}", description="Answers given, by `refused`."
            ),
            ingest_files=meter.create_counter(
                "rag.ingest.files", unit="{file}", description="Files ingested, by `outcome`."
            ),
            ingest_chunks=meter.create_counter(
                "rag.ingest.chunks", unit="{chunk}", description="Chunks embedded and written."
            ),
            # The GenAI semantic conventions' token histogram, by gen_ai.token.type.
            llm_tokens=meter.create_histogram(
                "gen_ai.client.token.usage",
                unit="{token}",
                description="Tokens per LLM call, by gen_ai.token.type (input or output).",
                explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
            ),
            llm_cost=meter.create_counter(
                "rag.llm.cost",
                unit="USD",
                description="Estimated LLM spend (RAG_LLM_PRICES), by gen_ai.request.model.",
            ),
            llm_retries=meter.create_counter(
                "rag.llm.retries", unit="{retry}", description="LLM calls retried, by error.type."
            ),
            llm_fallbacks=meter.create_counter(
                "rag.llm.fallbacks",
                unit="{answer}",
                description="Answers the fallback model wrote because the primary failed.",
            ),
            answer_cache=meter.create_counter(
                "rag.answer.cache.lookups",
                unit="{lookup}",
                description="Answer cache lookups, by `hit` (hit ratio = hit=true / all).",
            ),
        )

    @classmethod
    def noop(cls) -> RagMetrics:
        return cls.create(NoOpMeterProvider().get_meter(__name__))


@dataclass(frozen=True)
class SpanContent:
    """What goes on spans beyond ids and scores (RAG_TRACE_CONTENT, RAG_TRACE_OPENINFERENCE)."""

    record_content: bool = False
    openinference: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> SpanContent:
        return cls(
            record_content=settings.trace_content, openinference=settings.trace_openinference
        )


def current_trace_id() -> str:
    """The active trace id as 32 hex digits (all zeros outside a span)."""
    return format(trace.get_current_span().get_span_context().trace_id, "032x")


# --- logs ---------------------------------------------------------------------------------

# Attributes every LogRecord has; anything else on a record came from `extra=` and is logged.
# (uvicorn adds `color_message`, the message with terminal colour codes: not for a log store.)
_RECORD_FIELDS = frozenset(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
    "color_message",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, with the trace and span ids of the span it was logged in."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            entry["trace_id"] = format(context.trace_id, "032x")
            entry["span_id"] = format(context.span_id, "016x")
        for key, value in record.__dict__.items():
            if key not in _RECORD_FIELDS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is at the time (it may be swapped, e.g. by pytest)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


# Marks the OTLP log handler configure_logging added, so a second call replaces it.
_OTLP_LOG_HANDLER = "rag_otlp_log_handler"


def _otlp_log_handler(settings: Settings) -> logging.Handler:
    """Log records to the OTLP logs exporter (OTEL_LOGS_EXPORTER=otlp), with the current
    span's ids (opentelemetry-instrumentation-logging's handler)."""
    from opentelemetry.instrumentation.logging.handler import LoggingHandler
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter

    exporter: LogRecordExporter
    if otlp_protocol(settings) == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import (
            OTLPLogExporter as GrpcLogExporter,
        )

        exporter = GrpcLogExporter()
    else:
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

        exporter = OTLPLogExporter()
    # Flushed and shut down at exit (the provider's own atexit hook).
    provider = LoggerProvider(resource=build_resource(settings))
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
    handler = LoggingHandler(logger_provider=provider)
    setattr(handler, _OTLP_LOG_HANDLER, True)
    return handler


NOISY_LIBRARY_LOGGERS = ("httpx", "httpcore", "absl")


def log_format(settings: Settings) -> Literal["json", "text"]:
    """RAG_LOG_FORMAT, with `auto` resolved: people read text on a terminal; anything else
    (a container's stderr, CI, a file) is collected, so it gets JSON lines."""
    if settings.log_format != "auto":
        return settings.log_format
    return "text" if sys.stderr.isatty() else "json"


def configure_logging(settings: Settings) -> logging.Handler:
    """Root logger to stderr as JSON lines (or text), and to OTLP when the logs exporter is
    otlp (`console` is the stderr handler itself); replaces handlers set here before.
    Returns the stderr handler (the CLI filters what it prints itself)."""
    root = logging.getLogger()
    for old in root.handlers[:]:
        if isinstance(old, _StderrHandler) or getattr(old, _OTLP_LOG_HANDLER, False):
            root.removeHandler(old)
            old.flush()
    handler = _StderrHandler()
    if log_format(settings) == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(CredentialQueryFilter())
    if settings.redact_pii:
        handler.addFilter(RedactingFilter())
    root.addHandler(handler)
    if "otlp" in exporters("logs", settings):
        otlp = _otlp_log_handler(settings)
        if settings.redact_pii:
            otlp.addFilter(RedactingFilter())
        root.addHandler(otlp)
    root.setLevel(settings.log_level.upper())
    # Libraries that log routine work at INFO: one line per HTTP call of the embedding or judge
    # client, and rouge-score's "Using default tokenizer." (through absl) per eval question.
    for noisy in NOISY_LIBRARY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return handler
