"""The composition root: every component is built here from Settings, nowhere else."""

from __future__ import annotations

from dataclasses import dataclass

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry

from .answer import ExtractiveAnswerer
from .embeddings import DenseEncoder, SparseEncoder, build_dense_encoder, build_sparse_encoder
from .ingest import Ingestor
from .ingest.chunk import Chunker
from .refusal import RefusalPolicy
from .rerank import build_reranker
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
    retriever: Retriever
    answerer: ExtractiveAnswerer

    def close(self) -> None:
        self.retriever.close()
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
    return Services(
        settings=settings,
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        prometheus_registry=registry,
        store=store,
        dense=dense,
        sparse=sparse,
        ingestor=Ingestor(
            store,
            dense,
            sparse,
            Chunker(settings.chunk_size, settings.chunk_overlap, settings.chunk_pack_blocks),
            tracer,
            settings.max_file_bytes,
            settings.upsert_batch_size,
            metrics=metrics,
            legacy_encoding=settings.legacy_encoding,
        ),
        retriever=Retriever(
            store,
            dense,
            sparse,
            tracer,
            settings.prefetch_limit,
            fusion=settings.fusion,
            evidence_limit=settings.refusal_evidence_limit,
            reranker=build_reranker(settings),
            rerank_candidates=settings.rerank_candidates,
            metrics=metrics,
            content=content,
        ),
        answerer=ExtractiveAnswerer(
            dense,
            tracer,
            settings.answer_min_similarity,
            settings.answer_max_sentences,
            refusal=RefusalPolicy.from_settings(settings),
            metrics=metrics,
            content=content,
        ),
    )
