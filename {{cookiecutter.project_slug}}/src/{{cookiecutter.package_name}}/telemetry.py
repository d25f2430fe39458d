"""OpenTelemetry tracing, built from settings (no global provider is installed).

Exporters: none (spans still get ids, so every response carries a trace id), console, or
OTLP over HTTP. The standard OTEL_* variables apply to the OTLP exporter when
RAG_OTLP_ENDPOINT is unset.
"""

from __future__ import annotations

import sys

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

from .settings import Settings


def build_tracer_provider(settings: Settings) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": settings.service_name}))
    exporter: SpanExporter | None = None
    if settings.trace_exporter == "console":
        # stderr: stdout belongs to command output such as `ask --json`.
        exporter = ConsoleSpanExporter(out=sys.stderr)
    elif settings.trace_exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=settings.otlp_endpoint)
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def current_trace_id() -> str:
    """The active trace id as 32 hex digits (all zeros outside a span)."""
    return format(trace.get_current_span().get_span_context().trace_id, "032x")
