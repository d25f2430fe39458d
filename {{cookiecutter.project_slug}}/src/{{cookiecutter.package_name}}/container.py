"""The composition root: every component is built here from Settings, nowhere else."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Tracer
from prometheus_client import CollectorRegistry

from .answer import Answerer, ExtractiveAnswerer, LLMAnswerer, LLMOptions
from .answer.cache import AnswerCache
from .answer.prompt import load_prompt
from .answer.providers import ChatProvider, build_provider
from .answer.sentences import SentenceScorer
from .ask import Asker
from .audit import AuditLog
from .embeddings import DenseEncoder, SparseEncoder, build_dense_encoder, build_sparse_encoder
from .ingest import Ingestor
from .ingest.chunk import Chunker
from .ingest.jobs import JOBS_SHELF, IngestionJobs
from .ingest.load import FileBounds, RecordFields
from .ingest.uploads import UploadInbox
from .keys import KeyStore, open_keys
from .refusal import Refusal, build_refusal
from .rerank import build_reranker
from .retrieve import Retriever
from .settings import Settings
from .store import VectorStore, open_store
from .telemetry import (
    RagMetrics,
    SpanContent,
    build_meter_provider,
    build_tracer_provider,
    exporters,
)
from .traffic.capture import Capture, ShelfCaptureSink
from .traffic.feedback import FeedbackStore


@dataclass
class Services:
    settings: Settings
    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    prometheus_registry: CollectorRegistry | None
    store: VectorStore
    dense: DenseEncoder
    sparse: SparseEncoder
    ingestor: Ingestor
    jobs: IngestionJobs
    retriever: Retriever
    answerer: Answerer
    refusal: Refusal
    audit: AuditLog
    feedback: FeedbackStore
    capture: Capture
    keys: KeyStore  # API keys: the keys file, or a shelf every replica reads (keys.py)
    sentences: SentenceScorer  # the extractive answerer's, and refusal's best-sentence evidence
    llm_http: httpx.Client | None = None  # the LLM answerer's connection pool

    @property
    def asker(self) -> Asker:
        """The ask use case over these services' retriever, answerer, refusal policy and audit
        log. It holds only references, so it is made on use: a component replaced here (as
        tests do) is the one asked."""
        return Asker(
            self.retriever,
            self.answerer,
            self.refusal,
            self.audit,
            default_top_k=self.settings.default_top_k,
            max_top_k=self.settings.max_top_k,
            capture=self.capture,
            sentences=self.sentences,
        )

    def close(self) -> None:
        if self.llm_http is not None:
            self.llm_http.close()
        # A job finishes its file within the grace, or is abandoned mid-file: then the store
        # stays open under it and the process exits as after a crash (which ingestion
        # survives: writes are idempotent, the file is still in the inbox).
        finished = self.jobs.close()
        self.capture.close()  # its last records go out through the store, before it closes
        self.retriever.close()
        if finished:
            self.store.close()
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


def build_services(
    settings: Settings,
    tracer_provider: TracerProvider | None = None,
    dense: DenseEncoder | None = None,
    sparse: SparseEncoder | None = None,
    meter_provider: MeterProvider | None = None,
    store: VectorStore | None = None,
) -> Services:
    """Build everything from settings; already-loaded encoders may be passed in to share,
    and an open store (two Services over one store are two replicas sharing a server).

    The Services own both providers (close() shuts them down) and the store (closing it twice
    is harmless), also ones passed in.
    """
    tracer_provider = tracer_provider or build_tracer_provider(settings)
    # Prometheus: this service's own registry, served by the API at /metrics.
    registry = CollectorRegistry() if "prometheus" in exporters("metrics", settings) else None
    meter_provider = meter_provider or build_meter_provider(settings, prometheus_registry=registry)
    tracer = tracer_provider.get_tracer(__name__)
    metrics = RagMetrics.create(meter_provider.get_meter(__name__))
    content = SpanContent.from_settings(settings)
    # Models first: a store opened before a failing model load would stay locked for nothing.
    # Jobs embed with their own instance of the model at a lower CPU priority (jobs.py), when
    # the model is ours to load; one passed in (tests share one) is shared with jobs too.
    background_dense = (
        (lambda: build_dense_encoder(settings)) if dense is None and settings.ingest_nice else None
    )
    dense = dense or build_dense_encoder(settings)
    sparse = sparse or build_sparse_encoder(settings)
    store = store or open_store(settings)
    sentences = SentenceScorer(dense)
    try:
        store.ensure_collection(dense.model_id, dense.dimensions, sparse.model_id)
        answerer, llm_http = _build_answerer(settings, sentences, tracer, metrics, content)
    except Exception:
        store.close()
        raise
    ingestor = Ingestor(
        store,
        dense,
        sparse,
        Chunker(settings.chunk_size, settings.chunk_overlap, settings.chunk_pack_blocks),
        tracer,
        settings.max_file_bytes,
        settings.upsert_batch_size,
        metrics=metrics,
        legacy_encoding=settings.legacy_encoding,
        record_fields=RecordFields(
            text=tuple(settings.record_text_fields),
            metadata=tuple(settings.record_metadata_fields),
        ),
        bounds=FileBounds(
            max_pages=settings.ingest_max_pages,
            max_chars=settings.ingest_max_chars,
            timeout_s=settings.ingest_file_timeout_s,
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
            shelf=store.shelf(JOBS_SHELF),
            grace_s=settings.shutdown_grace_s,
            nice=settings.ingest_nice,
            background_dense=background_dense,
        ),
        retriever=Retriever.from_settings(
            settings,
            store,
            dense,
            sparse,
            tracer,
            reranker=build_reranker(settings),
            metrics=metrics,
            content=content,
        ),
        answerer=answerer,
        refusal=build_refusal(settings),
        sentences=sentences,
        llm_http=llm_http,
        keys=open_keys(settings, store),
        audit=AuditLog(
            settings.audit_path, settings.audit_content, settings.redact_pii, settings.audit_sink
        ),
        feedback=FeedbackStore.beside(store, settings.redact_pii),
        capture=Capture(
            ShelfCaptureSink.beside(store, dense.dimensions),
            dense.embed_query,
            settings.capture_rate,
            settings.audit_content,
            settings.redact_pii,
            settings.capture_retention_days,
        ),
    )


def _build_answerer(
    settings: Settings,
    sentences: SentenceScorer,
    tracer: Tracer,
    metrics: RagMetrics,
    content: SpanContent,
) -> tuple[Answerer, httpx.Client | None]:
    """The answerer RAG_ANSWERER names, and the HTTP client it owns (if any)."""
    if settings.answerer == "llm":
        return build_llm_answerer(settings, tracer, metrics, content)
    extractive = ExtractiveAnswerer(
        sentences.dense,
        tracer,
        settings.answer_min_similarity,
        settings.answer_max_sentences,
        metrics=metrics,
        content=content,
        scorer=sentences,
    )
    return extractive, None


def build_llm_provider(settings: Settings, client: httpx.Client) -> ChatProvider:
    """The chat endpoint RAG_LLM_PROVIDER names, from the providers table."""
    return build_provider(
        settings.llm_provider,
        client,
        base_url=settings.llm_base_url,
        api_key=settings.llm_api_key.get_secret_value() if settings.llm_api_key else None,
    )


def build_llm_answerer(
    settings: Settings, tracer: Tracer, metrics: RagMetrics, content: SpanContent
) -> tuple[LLMAnswerer, httpx.Client]:
    prompt = load_prompt(settings.llm_prompt)
    client = httpx.Client(timeout=settings.llm_timeout_s)
    options = LLMOptions(
        model=settings.llm_model,
        fallback_model=settings.llm_fallback_model,
        max_output_tokens=settings.llm_max_output_tokens,
        temperature=settings.llm_temperature,
        timeout_s=settings.llm_timeout_s,
        max_retries=settings.llm_max_retries,
        retry_backoff_s=settings.llm_retry_backoff_s,
        context_tokens=settings.llm_context_tokens,
        refuse_ungrounded=settings.llm_on_ungrounded == "refuse",
        prices=dict(settings.llm_prices),
        refuse_without_call_from=settings.llm_refuse_without_call_from,
    )
    try:
        provider = build_llm_provider(settings, client)
    except Exception:
        client.close()
        raise
    cache = AnswerCache(settings.answer_cache_ttl_s, settings.answer_cache_max_entries)
    answerer = LLMAnswerer(
        provider,
        prompt,
        options,
        tracer,
        cache,
        metrics=metrics,
        content=content,
    )
    return answerer, client
