"""The composition root: every component is built here from Settings, nowhere else."""

from __future__ import annotations

from dataclasses import dataclass

from opentelemetry.sdk.trace import TracerProvider

from .answer import ExtractiveAnswerer
from .embeddings import DenseEncoder, SparseEncoder, build_dense_encoder, build_sparse_encoder
from .ingest import Ingestor
from .ingest.chunk import Chunker
from .retrieve import Retriever
from .settings import Settings
from .store import QdrantStore
from .telemetry import build_tracer_provider


@dataclass
class Services:
    settings: Settings
    tracer_provider: TracerProvider
    store: QdrantStore
    dense: DenseEncoder
    sparse: SparseEncoder
    ingestor: Ingestor
    retriever: Retriever
    answerer: ExtractiveAnswerer

    def close(self) -> None:
        self.store.close()
        self.tracer_provider.shutdown()


def build_services(
    settings: Settings,
    tracer_provider: TracerProvider | None = None,
    dense: DenseEncoder | None = None,
    sparse: SparseEncoder | None = None,
) -> Services:
    """Build everything from settings; already-loaded encoders may be passed in to share."""
    provider = tracer_provider or build_tracer_provider(settings)
    tracer = provider.get_tracer(__name__)
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
        tracer_provider=provider,
        store=store,
        dense=dense,
        sparse=sparse,
        ingestor=Ingestor(
            store,
            dense,
            sparse,
            Chunker(settings.chunk_size, settings.chunk_overlap),
            tracer,
            settings.max_file_bytes,
            settings.upsert_batch_size,
        ),
        retriever=Retriever(store, dense, sparse, tracer, settings.prefetch_limit),
        answerer=ExtractiveAnswerer(
            dense, tracer, settings.answer_min_similarity, settings.answer_max_sentences
        ),
    )
