"""Hybrid retrieval: embed the query both ways, let Qdrant fuse dense and BM25 results,
optionally re-order the fused candidates in a second stage (rerank.py: offline from the
dense cosine, or a hosted cross-encoder)."""

from __future__ import annotations

import json
import time
from dataclasses import replace

from opentelemetry.trace import Span, Tracer

from .domain import Hit, Query
from .embeddings import DenseEncoder, SparseEncoder
from .rerank import Reranker
from .settings import Settings
from .store import SearchOptions, VectorStore
from .telemetry import RagMetrics, SpanContent


class Retriever:
    def __init__(
        self,
        store: VectorStore,
        dense: DenseEncoder,
        sparse: SparseEncoder,
        tracer: Tracer,
        options: SearchOptions,
        *,
        reranker: Reranker | None = None,
        rerank_candidates: int = 30,
        metrics: RagMetrics | None = None,
        content: SpanContent | None = None,
    ) -> None:
        self._store = store
        self._dense = dense
        self._sparse = sparse
        self._tracer = tracer
        # A stage that reads the query cosine gets it for every fused hit from the store.
        wants_cosines = reranker is not None and reranker.reads_query_cosines
        self.options = replace(options, query_cosines=True) if wants_cosines else options
        self._reranker = reranker
        self._rerank_candidates = rerank_candidates
        self._metrics = metrics or RagMetrics.noop()
        self._content = content or SpanContent()

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        store: VectorStore,
        dense: DenseEncoder,
        sparse: SparseEncoder,
        tracer: Tracer,
        *,
        reranker: Reranker | None = None,
        metrics: RagMetrics | None = None,
        content: SpanContent | None = None,
    ) -> Retriever:
        """The retriever the service runs: fusion, weights and evidence as configured."""
        return cls(
            store,
            dense,
            sparse,
            tracer,
            SearchOptions.from_settings(settings),
            reranker=reranker,
            rerank_candidates=settings.rerank_candidates,
            metrics=metrics,
            content=content,
        )

    def retrieve(self, query: Query) -> list[Hit]:
        started = time.perf_counter()
        try:
            return self._retrieve(query)
        finally:
            self._metrics.retrieval_duration.record(time.perf_counter() - started)

    def _retrieve(self, query: Query) -> list[Hit]:
        with self._tracer.start_as_current_span(f"embeddings {self._dense.model_id}") as span:
            span.set_attribute("gen_ai.operation.name", "embeddings")
            span.set_attribute("gen_ai.request.model", self._dense.model_id)
            if self._content.openinference:
                span.set_attribute("openinference.span.kind", "EMBEDDING")
                span.set_attribute("embedding.model_name", self._dense.model_id)
            dense = self._dense.embed_query(query.text)
            sparse = self._sparse.embed_query(query.text)
        with self._tracer.start_as_current_span(f"retrieval {self._store.collection}") as span:
            span.set_attribute("gen_ai.operation.name", "retrieval")
            span.set_attribute("gen_ai.data_source.id", self._store.collection)
            span.set_attribute("gen_ai.request.model", self._dense.model_id)
            span.set_attribute("gen_ai.request.top_k", query.top_k)
            span.set_attribute("retrieval.fusion", self.options.fusion)
            if self.options.fusion == "rrf":
                span.set_attribute("retrieval.rrf.k", self.options.rrf_k)
                span.set_attribute("retrieval.rrf.dense_weight", self.options.rrf_dense_weight)
            if self._content.record_content:
                span.set_attribute("gen_ai.retrieval.query.text", query.text)
            if query.sources:
                span.set_attribute("retrieval.filter.source", query.sources)
            limit = max(query.top_k, self._rerank_candidates) if self._reranker else query.top_k
            hits = self._store.search(
                dense,
                sparse,
                tenant=query.tenant,
                top_k=limit,
                sources=query.sources,
                options=self.options,
            )
            if self._reranker is not None:
                hits = self._rerank(self._reranker, query, hits)
            span.set_attribute(
                "gen_ai.retrieval.documents",
                json.dumps([{"id": h.chunk_id, "score": round(h.score, 4)} for h in hits]),
            )
            if self._content.openinference:
                self._openinference(span, query, hits)
        return hits

    def _rerank(self, reranker: Reranker, query: Query, hits: list[Hit]) -> list[Hit]:
        with self._tracer.start_as_current_span("rerank") as span:
            for name, value in reranker.span_attributes().items():
                span.set_attribute(name, value)
            span.set_attribute("rerank.candidates", len(hits))
            reranked = reranker.rerank(query.text, hits, query.top_k)
            span.set_attribute("rerank.returned", len(reranked))
            span.set_attribute("rerank.chunk_ids", [h.chunk_id for h in reranked])
            span.set_attribute(
                "rerank.scores",
                [h.rerank_score if h.rerank_score is not None else h.score for h in reranked],
            )
            return reranked

    def close(self) -> None:
        if self._reranker is not None:
            self._reranker.close()

    def _openinference(self, span: Span, query: Query, hits: list[Hit]) -> None:
        """The attributes Arize Phoenix reads; texts only when content may be recorded."""
        span.set_attribute("openinference.span.kind", "RETRIEVER")
        if self._content.record_content:
            span.set_attribute("input.value", query.text)
        for i, hit in enumerate(hits):
            prefix = f"retrieval.documents.{i}.document"
            span.set_attribute(f"{prefix}.id", hit.chunk_id)
            span.set_attribute(f"{prefix}.score", hit.score)
            if self._content.record_content:
                span.set_attribute(f"{prefix}.content", hit.text)
