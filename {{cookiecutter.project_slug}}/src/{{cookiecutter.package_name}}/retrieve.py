"""Hybrid retrieval: embed the query both ways, let Qdrant fuse dense and BM25 results."""

from __future__ import annotations

import json

from opentelemetry.trace import Tracer

from .domain import Hit, Query
from .embeddings import DenseEncoder, SparseEncoder
from .store import QdrantStore


class Retriever:
    def __init__(
        self,
        store: QdrantStore,
        dense: DenseEncoder,
        sparse: SparseEncoder,
        tracer: Tracer,
        prefetch_limit: int,
    ) -> None:
        self._store = store
        self._dense = dense
        self._sparse = sparse
        self._tracer = tracer
        self._prefetch_limit = prefetch_limit

    def retrieve(self, query: Query) -> list[Hit]:
        with self._tracer.start_as_current_span(f"embeddings {self._dense.model_id}") as span:
            span.set_attribute("gen_ai.operation.name", "embeddings")
            span.set_attribute("gen_ai.request.model", self._dense.model_id)
            dense = self._dense.embed_query(query.text)
            sparse = self._sparse.embed_query(query.text)
        with self._tracer.start_as_current_span(f"retrieval {self._store.collection}") as span:
            span.set_attribute("gen_ai.operation.name", "retrieval")
            span.set_attribute("gen_ai.data_source.id", self._store.collection)
            span.set_attribute("gen_ai.request.model", self._dense.model_id)
            span.set_attribute("gen_ai.request.top_k", query.top_k)
            span.set_attribute("retrieval.fusion", "rrf")
            if query.sources:
                span.set_attribute("retrieval.filter.source", query.sources)
            hits = self._store.search(
                dense, sparse, query.top_k, self._prefetch_limit, query.sources
            )
            span.set_attribute(
                "gen_ai.retrieval.documents",
                json.dumps([{"id": h.chunk_id, "score": round(h.score, 4)} for h in hits]),
            )
        return hits
