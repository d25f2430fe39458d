"""The composition root: every component is built here from Settings, nowhere else."""

from __future__ import annotations

from dataclasses import dataclass

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry

from .answer import ExtractiveAnswerer
from .audit import AuditLog
from .embeddings import DenseEncoder, SparseEncoder, build_dense_encoder, build_sparse_encoder
from .ingest import Ingestor
from .ingest.chunk import Chunker
from .ingest.jobs import IngestionJobs
from .ingest.load import RecordFields
from .ingest.uploads import UploadInbox
from .retrieve import Retriever
from .settings import Settings
from .store import QdrantStore
from .telemetry import RagMetrics, SpanContent, build_meter_provider, build_tracer_provider


@dataclass
class Services:
    settings: Settings
    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    prometheus_registry: CollectorRegistry | None
    store: QdrantStore
    dense: DenseEncoder
    sparse: SparseEncoder
    ingestor: Ingestor
    jobs: IngestionJobs
    retriever: Retriever
    answerer: ExtractiveAnswerer
    audit: AuditLog

    def close(self) -> None:
        self.jobs.close()  # a running job finishes its writes before the store closes
        self.store.close()
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


def build_services(
    settings: Settings,
    tracer_provider: TracerProvider | None = None,
    dense: DenseEncoder | None = None,
    sparse: SparseEncoder | None = None,
    meter_provider: MeterProvider | None = None,
) -> Services:
    """Build everything from settings; already-loaded encoders may be passed in to share.

    The Services own both providers (close() shuts them down), also ones passed in.
    """
    tracer_provider = tracer_provider or build_tracer_provider(settings)
    # Prometheus: this service's own registry, served by the API at /metrics.
    registry = CollectorRegistry() if settings.metrics_exporter == "prometheus" else None
    meter_provider = meter_provider or build_meter_provider(settings, prometheus_registry=registry)
    tracer = tracer_provider.get_tracer(__name__)
    metrics = RagMetrics.create(meter_provider.get_meter(__name__))
    content = SpanContent.from_settings(settings)
    # Models first: a store opened before a failing model load would stay locked for nothing.
    dense = dense or build_dense_encoder(settings)
    sparse = sparse or build_sparse_encoder(settings)
    store = QdrantStore(settings)
    try:
        store.ensure_collection(dense.model_id, dense.dimensions, sparse.model_id)
    except Exception:
        store.close()
        raise
    ingestor = Ingestor(
        store,
        dense,
        sparse,
        Chunker(settings.chunk_size, settings.chunk_overlap),
        tracer,
        settings.max_file_bytes,
        settings.upsert_batch_size,
        metrics=metrics,
        legacy_encoding=settings.legacy_encoding,
        record_fields=RecordFields(
            text=tuple(settings.record_text_fields),
            metadata=tuple(settings.record_metadata_fields),
        ),
        tenant=settings.tenant,
    )
    return Services(
        settings=settings,
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        prometheus_registry=registry,
        store=store,
        dense=dense,
        sparse=sparse,
        ingestor=ingestor,
        jobs=IngestionJobs(
            ingestor,
            UploadInbox(settings.uploads_path, settings.max_file_bytes),
            settings.upload_corpus,
        ),
        retriever=Retriever(
            store, dense, sparse, tracer, settings.prefetch_limit, metrics=metrics, content=content
        ),
        answerer=ExtractiveAnswerer(
            dense,
            tracer,
            settings.answer_min_similarity,
            settings.answer_max_sentences,
            metrics=metrics,
            content=content,
        ),
        audit=AuditLog(settings.audit_path, settings.audit_content, settings.redact_pii),
    )
