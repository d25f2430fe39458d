"""The one typed settings object. Every component is built from it; see `.env.example`."""

from __future__ import annotations

import codecs
import difflib
import json
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

# The template's answers live in project.json, so no Python file depends on how they are quoted.
_PROJECT = json.loads(resources.files(__package__).joinpath("project.json").read_text("utf-8"))
PROJECT_NAME: str = _PROJECT["name"]
CONSOLE_SCRIPT: str = _PROJECT["slug"]
# Defaults the render-time choices set (the LLM provider, MCP); .env.example lists the same.
_CHOSEN: dict[str, Any] = _PROJECT["defaults"]
PACKAGE_NAME = __package__

EmbeddingProvider = Literal["local", "fastembed", "openai"]
TraceExporter = Literal["none", "console", "otlp"]
MetricsExporter = Literal["none", "console", "otlp", "prometheus"]
OtlpProtocol = Literal["http/protobuf", "grpc"]
LogFormat = Literal["auto", "json", "text"]
AnswererKind = Literal["extractive", "llm"]
LLMProvider = Literal["openai", "openai_like", "anthropic"]
UngroundedPolicy = Literal["flag", "refuse"]
Fusion = Literal["rrf", "dbsf"]
EmbeddedEngine = Literal["edge", "local"]
RerankApi = Literal["cohere", "tei"]
SecondStageKind = Literal["none", "dense_resort"]
RefusalKind = Literal["model", "rules"]
AuthMode = Literal["keys", "development"]
AuditContent = Literal["hash", "text"]
AuditSink = Literal["file", "stdout"]
KeysIn = Literal["auto", "file", "store"]
# Tenant names go into ids and folder names: keep them plain.
TENANT_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
# Values people leave in place of a real secret; refused unless auth_mode=development.
PLACEHOLDER_SECRETS = frozenset(
    {
        "changeme",
        "change-me",
        "change_me",
        "secret",
        "password",
        "placeholder",
        "xxx",
        "todo",
        "your-key",
        "your_api_key",
        "your-api-key",
        "sk-...",
        "example",
        "test",
    }
)
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class Settings(BaseSettings):
    """Read from environment variables prefixed `RAG_` (and a `.env` file if present)."""

    # An empty value (`RAG_QDRANT_URL=`) means unset, in the environment and in .env alike.
    model_config = SettingsConfigDict(
        env_prefix="RAG_",
        env_file=".env",
        env_file_encoding="utf-8",
        env_ignore_empty=True,
        extra="ignore",
    )

    # --- storage -------------------------------------------------------------------------
    data_dir: Path = Field(Path(".data"), description="Local state: embedded store, reports.")
    model_dir: Path | None = Field(
        None, description="Where the local models are laid out (unset = data_dir/models)."
    )
    qdrant_url: str | None = Field(
        None, description="Qdrant server URL. Unset = embedded Qdrant on disk under data_dir."
    )
    qdrant_api_key: SecretStr | None = Field(None, description="API key for the Qdrant server.")
    embedded_engine: EmbeddedEngine = Field(
        "edge",
        description="The embedded store when RAG_QDRANT_URL is unset: edge = Qdrant's own engine "
        "in-process (qdrant-edge-py; flat query cost to 100k+ chunks); local = qdrant-client's "
        "local mode (pure Python, for stores made before edge; `store migrate` moves them).",
    )
    collection: str = Field(PACKAGE_NAME, description="Qdrant collection name.")

    # --- embeddings ----------------------------------------------------------------------
    embedding_provider: EmbeddingProvider = Field(
        "local",
        description="local = bundled all-MiniLM-L6-v2 (offline); fastembed = a FastEmbed model "
        "from the Hugging Face hub; openai = any OpenAI-compatible /embeddings endpoint.",
    )
    embedding_model: str = Field(
        "sentence-transformers/all-MiniLM-L6-v2",
        description="Model name for the fastembed and openai providers (ignored by local).",
    )
    embedding_base_url: str | None = Field(
        None, description="Base URL of the OpenAI-compatible endpoint, e.g. http://host/v1."
    )
    embedding_api_key: SecretStr | None = Field(None, description="Key for that endpoint.")
    embedding_dimensions: int | None = Field(
        None, ge=1, description="Vector size of the openai provider's model (probed if unset)."
    )
    # 16, by measurement (bench_embed_batch.py): 566 MiB above the model at 0.98x the
    # throughput of 32, which took 1,167 MiB; 8 took 237 MiB but ran at 0.79x.
    embedding_batch_size: int = Field(16, ge=1, le=1024, description="Texts per embed call.")
    embedding_timeout_s: float = Field(30.0, gt=0, description="HTTP timeout for remote embeds.")

    # --- ingestion -----------------------------------------------------------------------
    chunk_size: int = Field(
        200,
        ge=32,
        le=4096,
        description="Target chunk size in tokens; the local model reads at most 256 word pieces.",
    )
    chunk_pack_blocks: bool = Field(
        False,
        description="Pack whole paragraphs, lists, tables and code blocks into chunks instead "
        "of splitting sections at sentences.",
    )
    chunk_overlap: int = Field(24, ge=0, description="Token overlap between adjacent chunks.")
    max_file_bytes: int = Field(10_000_000, ge=1, description="Larger files are skipped.")
    # One worker ingests every tenant's uploads: these bound what one file may take of it.
    ingest_max_pages: int = Field(
        2000, ge=1, description="PDFs with more pages are skipped (split them, or raise this)."
    )
    ingest_max_chars: int = Field(
        2_000_000,
        ge=1,
        description="Files with more characters of text are skipped: about 2,500 chunks to "
        "embed at the default chunk size (split them, or raise this).",
    )
    ingest_file_timeout_s: float = Field(
        120.0,
        gt=0,
        description="Reading one file's text (parsing its pages, paragraphs or records) may "
        "take this long (seconds); a slower file is skipped.",
    )
    legacy_encoding: str = Field(
        "cp1252",
        description="For files that are not UTF-8 and have no byte-order mark: preferred among "
        "the 8-bit encodings that decode them equally cleanly (e.g. cp1252, cp1250, koi8_r).",
    )
    upsert_batch_size: int = Field(64, ge=1, description="Chunks embedded and written at once.")
    record_text_fields: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="CSV columns / JSONL keys that hold a record's text, comma-separated "
        "(empty = the whole record, one `field: value` line each).",
    )
    record_metadata_fields: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="CSV columns / JSONL keys copied into each record's chunk metadata, "
        "comma-separated (returned with hits).",
    )

    # --- retrieval and answers -----------------------------------------------------------
    default_top_k: int = Field(5, ge=1, description="Hits returned when a request sets none.")
    max_top_k: int = Field(50, ge=1, description="Largest top_k a request may ask for.")
    prefetch_limit: int = Field(
        60, ge=1, description="Candidates each of dense and sparse search bring to fusion."
    )
    fusion: Fusion = Field(
        "rrf", description="How Qdrant fuses dense and BM25 results: rrf (ranks) or dbsf (scores)."
    )
    rrf_k: int = Field(
        5, ge=1, description="RRF rank constant: a hit at rank r scores 1 / (r / weight + k - 1)."
    )
    rrf_dense_weight: float = Field(
        6.0,
        gt=0.0,
        description="RRF weight of the dense ranking (BM25's is 1): at 6, BM25's first hit "
        "counts as much as dense's sixth.",
    )
    refusal: RefusalKind = Field(
        "rules",
        description="How refusal is decided: rules = the hand thresholds RAG_REFUSAL_MIN_DENSE, "
        "_STRONG_DENSE, _AGREEMENT_RANK and _UNMATCHED_SHARE; model = the calibrated logistic "
        "regression over the same evidence (RAG_REFUSAL_MODEL_PATH from `eval calibrate`, or "
        "the one shipped, fitted on the python docs; docs/decisions/0018).",
    )
    refusal_model_path: Path | None = Field(
        None,
        description="Refusal model written by `eval calibrate` (JSON coefficients; unset = "
        "the shipped model). `eval calibrate` writes here (default evals/refusal_model.json).",
    )
    refusal_evidence_limit: int = Field(
        10, ge=1, description="Dense-only and BM25-only results fetched as refusal evidence."
    )
    refusal_min_dense: float = Field(
        0.35,
        ge=-1.0,
        le=1.0,
        description="Dense cosine below which no hit counts as answering the question.",
    )
    refusal_strong_dense: float = Field(
        0.48,
        ge=-1.0,
        le=1.0,
        description="Dense cosine from which a hit answers without BM25 agreeing.",
    )
    refusal_agreement_rank: int = Field(
        10, ge=1, description="A hit in both the dense and BM25 top this many is corroborated."
    )
    refusal_unmatched_share: float = Field(
        0.4,
        gt=0.0,
        le=1.0,
        description="Refuse when this share of the question's terms appears in none of the "
        "BM25 evidence results (the corpus never mentions them).",
    )
    second_stage: SecondStageKind = Field(
        "none",
        description="Offline second ranking stage over the fused candidates: dense_resort "
        "re-sorts them by their MiniLM cosine to the query and fuses that order back (RRF); "
        "none: the fused order. A hosted reranker (RAG_RERANK_URL) replaces it.",
    )
    second_stage_rrf_k: int = Field(
        5, ge=1, description="RRF rank constant of the second stage's fusion (as RAG_RRF_K)."
    )
    second_stage_weight: float = Field(
        4.0,
        gt=0.0,
        description="RRF weight of the cosine order against the fused order's 1 (4: chosen "
        "on the benchmark's dev split).",
    )
    rerank_url: str | None = Field(
        None,
        description="Hosted reranker endpoint (e.g. https://api.cohere.com/v2/rerank or a TEI "
        "server's /rerank); unset: no reranking.",
    )
    rerank_api: RerankApi = Field(
        "cohere", description="Request shape: cohere (Cohere, Jina, Voyage, vLLM) or tei."
    )
    rerank_model: str | None = Field(None, description="Model name sent to a cohere-style API.")
    rerank_api_key: SecretStr | None = Field(None, description="Bearer key for the reranker.")
    rerank_model_path: Path | None = Field(
        None,
        description="Folder of a local ONNX cross-encoder (model.onnx, tokenizer.json, "
        "tokenizer_config.json, special_tokens_map.json; e.g. ms-marco-MiniLM-L-6-v2 exported "
        "to ONNX), loaded offline through FastEmbed; it re-orders the fused candidates and sets "
        "rerank scores (0..1). Needs RAG_RERANK_MODEL_SHA256. RAG_RERANK_URL wins when both "
        "are set.",
    )
    rerank_model_sha256: str | None = Field(
        None,
        pattern=r"^[0-9a-f]{64}$",
        description="sha256 of RAG_RERANK_MODEL_PATH's model.onnx: the file is refused unless "
        "it matches (you copied it in; this pins which file).",
    )
    rerank_threads: int | None = Field(
        None, ge=1, description="ONNX Runtime threads of the local cross-encoder (unset: all)."
    )
    rerank_candidates: int = Field(
        30,
        ge=1,
        description="Fused hits the second stage (hosted reranker or RAG_SECOND_STAGE) "
        "re-orders; the best top_k are returned.",
    )
    rerank_timeout_s: float = Field(10.0, gt=0, description="HTTP timeout of a rerank call.")
    refusal_min_rerank: float | None = Field(
        None,
        description="With a reranker: refuse when no hit's rerank score reaches this "
        "(calibrate on your data; scores are model-specific). Unset: dense/BM25 evidence.",
    )
    answer_min_similarity: float = Field(
        0.42,
        ge=-1.0,
        le=1.0,
        description="Cosine similarity a sentence needs to the question to be quoted; "
        "below it for every sentence, the answerer says it does not know.",
    )
    answer_max_sentences: int = Field(3, ge=1, description="Sentences quoted in an answer.")
    answerer: AnswererKind = Field(
        _CHOSEN["answerer"],
        description="extractive = quote the hits' best sentences (offline, no LLM); "
        "llm = generate a cited answer with the RAG_LLM_* model.",
    )
    answer_cache_ttl_s: float = Field(
        3600.0,
        ge=0,
        description="How long an LLM answer is reused for the same question, "
        "context, model and prompt (seconds; 0 = no cache).",
    )
    answer_cache_max_entries: int = Field(1024, ge=1, description="Answers the cache holds.")

    # --- LLM answers (RAG_ANSWERER=llm) ----------------------------------------------------
    llm_provider: LLMProvider = Field(
        _CHOSEN["llm_provider"],
        description="openai = api.openai.com; openai_like = any OpenAI-compatible endpoint "
        "(vLLM, Ollama, LM Studio, Azure OpenAI's /openai/v1); anthropic = the Messages API.",
    )
    llm_model: str = Field(_CHOSEN["llm_model"], description="Model that writes answers.")
    llm_base_url: str | None = Field(
        _CHOSEN["llm_base_url"],
        description="Endpoint base URL, e.g. http://127.0.0.1:11434/v1 (unset = the "
        "provider's public API; required for openai_like).",
    )
    llm_api_key: SecretStr | None = Field(
        None, description="Key for the endpoint (unset = OPENAI_API_KEY or ANTHROPIC_API_KEY)."
    )
    llm_fallback_model: str | None = Field(
        None, description="Model on the same endpoint tried when the primary fails or times out."
    )
    llm_timeout_s: float = Field(30.0, gt=0, description="Time limit of one LLM call (seconds).")
    llm_max_retries: int = Field(
        2, ge=0, le=10, description="Retries of a call answered with 429 or 5xx, or timed out."
    )
    llm_retry_backoff_s: float = Field(
        0.5, ge=0, description="First retry delay; doubles each retry (Retry-After wins)."
    )
    llm_max_output_tokens: int = Field(512, ge=1, description="Longest answer, in tokens.")
    llm_temperature: float | None = Field(
        0.0,
        ge=0,
        le=2,
        description="Sampling temperature; none = send none (reasoning models such as o3 or "
        "gpt-5 accept only their default).",
    )
    llm_context_tokens: int = Field(
        3000, ge=100, description="Token budget of the numbered context given to the model."
    )
    llm_prompt: str = Field(
        "grounded_answer", description="Prompt file in answer/prompts/ (without .toml)."
    )
    llm_on_ungrounded: UngroundedPolicy = Field(
        "flag",
        description="An answer citing nothing, or chunks it was not given: flag = return it "
        "with grounded=false; refuse = replace it with the refusal.",
    )
    llm_refuse_without_call_from: float = Field(
        0.9,
        ge=0.0,
        le=1.0,
        description="With the refusal model: a question it would refuse with P(unanswerable) "
        "below this is still sent to the model, which reads the context and answers (with "
        "citations) or refuses; from this on it is refused without a call. 0: every refusal "
        "skips the call (as the hand rules always do).",
    )
    llm_prices: dict[str, tuple[float, float]] = Field(
        {},
        description="USD per million input and output tokens by model, as JSON, e.g. "
        '{"gpt-4o-mini": [0.15, 0.6]}; a model not listed has an unknown (null) cost.',
    )

    # --- API -----------------------------------------------------------------------------
    host: str = Field("127.0.0.1", description="Bind address of `serve`.")
    port: int = Field(8000, ge=1, le=65535, description="Port of `serve`.")
    ui_enabled: bool = Field(
        _CHOSEN["ui_enabled"],
        description="Serve the web app at /ui (ask with cited answers, documents, feedback, "
        "the eval report); it calls the same API with the key a user enters.",
    )
    upload_corpus: str = Field(
        "uploads", description="Corpus that documents uploaded through the API belong to."
    )
    max_upload_files: int = Field(
        20, ge=1, description="Files one upload may carry (each at most RAG_MAX_FILE_BYTES)."
    )
    ingest_nice: int = Field(
        19,
        ge=0,
        le=19,
        description="How much lower the CPU priority of API ingestion jobs is than queries' "
        "(a nice increment, Linux): a job embedding thousands of chunks then slows another "
        "tenant's queries far less (it only matters while queries want the CPU). 0: same "
        "priority.",
    )
    shutdown_grace_s: float = Field(
        10.0,
        ge=0,
        description="On SIGTERM, how long open requests and the file being ingested may take "
        "to finish (seconds); then the service exits (an unfinished upload stays in the inbox "
        "and is ingested at the next start).",
    )

    max_question_chars: int = Field(
        2000, ge=1, le=4000, description="Longest question (or retrieve query) accepted."
    )
    max_filter_values: int = Field(
        20, ge=1, description="Most values one filter (e.g. filters.source) may list."
    )
    max_request_bytes: int = Field(
        65_536,
        ge=1024,
        description="Largest JSON request body; uploads may carry RAG_MAX_UPLOAD_FILES x "
        "RAG_MAX_FILE_BYTES instead.",
    )

    # --- security ------------------------------------------------------------------------
    auth_mode: AuthMode = Field(
        "keys",
        description="keys = every API call but /healthz and /readyz needs an API key "
        "(create one with `keys create`); development = no keys, every caller is the "
        "RAG_TENANT tenant with all scopes (logged loudly at start; never on a shared host).",
    )
    keys_file: Path | None = Field(
        None,
        description="Hashed API keys, written by `keys create` when keys_in is file; with "
        "keys in the store, imported from once if it exists (unset = data_dir/keys.json).",
    )
    keys_in: KeysIn = Field(
        "auto",
        description="Where API keys live: file (keys_file; one process), store (a shelf "
        "beside the corpus that every replica reads), or auto = store with a Qdrant server "
        "(RAG_QDRANT_URL), else file.",
    )
    tenant: str = Field(
        "default",
        pattern=TENANT_PATTERN,
        description="Tenant of documents ingested by the CLI, and of every caller in "
        "development mode.",
    )
    rate_limit_per_minute: int = Field(
        600, ge=0, description="Requests one API key may make per minute (0 = no limit)."
    )
    rate_limit_burst: int = Field(
        60, ge=1, description="Requests one API key may make at once before the rate applies."
    )
    audit_log: Path | None = Field(
        None,
        description="Append-only JSON-lines audit log of queries, uploads and deletes "
        "(unset = data_dir/audit.jsonl).",
    )
    audit_sink: AuditSink = Field(
        "file",
        description="Where audit records go: file (audit_log, appended and synced) or stdout "
        "(one JSON line each, for a cluster's log collector).",
    )
    audit_content: AuditContent = Field(
        "hash",
        description="What the audit log keeps of questions: hash (SHA-256, default) or text.",
    )
    redact_pii: bool = Field(
        False,
        description="Mask e-mail addresses, phone numbers, IBANs, card numbers and IP "
        "addresses in log lines, exported spans and the audit log's question text.",
    )

    # --- Monitoring (see docs/monitoring.md) -----------------------------------------------
    capture_rate: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="Share of answered questions recorded for `monitor` (0 = off, 1 = all).",
    )
    capture_retention_days: float = Field(
        30.0, gt=0, description="Captured questions older than this are deleted."
    )
    monitor_judge_sample: int = Field(
        20,
        ge=0,
        description="Captured answers `monitor` has the LLM judge score (ragas faithfulness "
        "and answer relevancy) when RAG_JUDGE_BASE_URL is set; 0 = none.",
    )

    # --- MCP (see docs/mcp.md) ------------------------------------------------------------
    mcp_enabled: bool = Field(
        _CHOSEN["mcp_enabled"],
        description="Serve the MCP tools over streamable HTTP at /mcp on the API.",
    )
    mcp_write_tools: bool = Field(
        False,
        description="Also offer upload_document, ingestion_status and delete_document (each "
        "needs a key with the ingest scope). Off: MCP clients can only read.",
    )
    mcp_public_url: str | None = Field(
        None,
        description="The MCP endpoint's URL as clients reach it, e.g. "
        "https://rag.example.com/mcp: the resource in /.well-known/oauth-protected-resource, "
        "and its host is allowed (unset = the URL each request came in on).",
    )
    mcp_allowed_hosts: Annotated[list[str], NoDecode] = Field(
        [],
        description="Host headers /mcp answers besides 127.0.0.1, localhost and the public "
        "URL's host (DNS-rebinding protection), comma-separated; host:* allows any port.",
    )
    mcp_allowed_origins: Annotated[list[str], NoDecode] = Field(
        [],
        description="Browser Origin headers /mcp accepts besides loopback ones, "
        "comma-separated (e.g. https://inspector.example.com).",
    )
    mcp_key: SecretStr | None = Field(
        None,
        description="API key the stdio server (`mcp`) acts as; for a desktop client's config.",
    )
    mcp_oauth_issuer: str | None = Field(
        None,
        description="Issuer (iss) of an external OAuth 2.1 server whose JWT access tokens "
        "/mcp also accepts; needs RAG_MCP_OAUTH_JWKS_URL and RAG_MCP_OAUTH_AUDIENCE.",
    )
    mcp_oauth_jwks_url: str | None = Field(
        None, description="Where that server publishes its signing keys (JWKS)."
    )
    mcp_oauth_audience: str | None = Field(
        None, description="Audience (aud) its tokens must be issued for, e.g. the public URL."
    )
    mcp_oauth_tenant_claim: str = Field(
        "tenant", description="Token claim that names the caller's tenant."
    )
    mcp_oauth_algorithms: Annotated[list[str], NoDecode] = Field(
        ["RS256", "ES256"],
        description="Signature algorithms accepted, comma-separated (asymmetric only).",
    )

    # --- tracing -------------------------------------------------------------------------
    trace_exporter: TraceExporter = Field(
        "none", description="none, console (stderr), or otlp (HTTP/protobuf)."
    )
    otlp_endpoint: str | None = Field(
        None,
        description="OTLP traces endpoint, e.g. http://127.0.0.1:4318/v1/traces "
        "(unset = the standard OTEL_EXPORTER_OTLP_* variables).",
    )
    service_name: str = Field(
        CONSOLE_SCRIPT,
        description="service.name on spans and metrics; unless changed from this default, the "
        "standard OTEL_SERVICE_NAME variable wins over it.",
    )
    trace_content: bool = Field(
        False,
        description="Record questions, chunk texts and answers on spans (off: ids and scores "
        "only). They may hold personal or confidential data.",
    )
    trace_openinference: bool = Field(
        False,
        description="Also put OpenInference attributes on retrieval and embedding spans, "
        "so Arize Phoenix renders them.",
    )
    otlp_protocol: OtlpProtocol | None = Field(
        None,
        description="OTLP transport for traces and metrics: http/protobuf or grpc "
        "(unset = the standard OTEL_EXPORTER_OTLP_PROTOCOL, else http/protobuf).",
    )
    metrics_exporter: MetricsExporter = Field(
        "none",
        description="none, console (stderr), otlp, or prometheus (a scrape endpoint at "
        "/metrics on the API).",
    )
    otlp_metrics_endpoint: str | None = Field(
        None,
        description="OTLP metrics endpoint, e.g. http://127.0.0.1:4318/v1/metrics "
        "(unset = the standard OTEL_EXPORTER_OTLP_* variables).",
    )
    log_format: LogFormat = Field(
        "auto",
        description="Logs on stderr: json (one object per line, with trace ids), text, or auto "
        "(text when stderr is a terminal, json otherwise: containers, CI, log shippers).",
    )
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING, ERROR or CRITICAL.")

    # --- evaluation ----------------------------------------------------------------------
    eval_golden_set: Path = Field(Path("evals/golden.jsonl"), description="Golden set JSONL.")
    eval_thresholds: Path = Field(Path("evals/thresholds.toml"), description="Gate thresholds.")
    eval_corpus: Path = Field(Path("data/sample"), description="Corpus the golden set is about.")
    eval_report_dir: Path = Field(Path(".data/eval"), description="Where reports are written.")
    eval_baseline: Path = Field(
        Path("evals/baseline.json"), description="Baseline that --baseline compares against."
    )
    eval_regression_tolerance: float = Field(
        0.02, ge=0, le=1, description="Largest drop of a quality metric vs the baseline allowed."
    )

    # --- LLM judge (optional eval tier and `eval generate`) ------------------------------------
    judge_base_url: str | None = Field(
        None, description="OpenAI-compatible endpoint of the judge LLM, e.g. https://host/v1."
    )
    judge_api_key: SecretStr | None = Field(None, description="Key for the judge endpoint.")
    judge_model: str = Field("gpt-4o-mini", description="Judge model name.")
    judge_embedding_model: str = Field(
        "text-embedding-3-small",
        description="Embedding model on the judge endpoint (response relevancy, generation).",
    )
    judge_timeout_s: float = Field(60.0, gt=0, description="HTTP timeout of one judge call.")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        unknown = _UnknownVariables(settings_cls, env_settings, dotenv_settings)
        return init_settings, unknown, env_settings, dotenv_settings, file_secret_settings

    @field_validator(
        "record_text_fields",
        "record_metadata_fields",
        "mcp_allowed_hosts",
        "mcp_allowed_origins",
        "mcp_oauth_algorithms",
        mode="before",
    )
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [name.strip() for name in value.split(",") if name.strip()]
        return value

    @field_validator("log_level")
    @classmethod
    def _known_log_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"unknown log level {value!r}; use one of {', '.join(LOG_LEVELS)}")
        return level

    @field_validator("llm_temperature", mode="before")
    @classmethod
    def _temperature_may_be_none(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().lower() in ("", "none"):
            return None
        return value

    @field_validator("legacy_encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown encoding {value!r}; e.g. cp1252, cp1250, latin_1") from None
        return value

    @model_validator(mode="after")
    def _check_consistency(self) -> Settings:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError(
                f"chunk_overlap ({self.chunk_overlap}) must be smaller than chunk_size "
                f"({self.chunk_size}); try RAG_CHUNK_OVERLAP={self.chunk_size // 8}"
            )
        if self.default_top_k > self.max_top_k:
            raise ValueError(
                f"default_top_k ({self.default_top_k}) exceeds max_top_k ({self.max_top_k})"
            )
        if self.auth_mode != "development":
            for name in ("qdrant_api_key", "embedding_api_key", "judge_api_key"):
                secret: SecretStr | None = getattr(self, name)
                if secret is not None and secret.get_secret_value().strip().lower() in (
                    PLACEHOLDER_SECRETS
                ):
                    raise ValueError(
                        f"RAG_{name.upper()} is a placeholder ({secret.get_secret_value()!r}); "
                        "set the real secret, or unset it (RAG_AUTH_MODE=development "
                        "accepts placeholders on a developer machine)."
                    )
        if self.audit_sink == "stdout" and self.audit_log is not None:
            raise ValueError(
                "RAG_AUDIT_LOG names a file but RAG_AUDIT_SINK=stdout writes no file; unset "
                "RAG_AUDIT_LOG, or set RAG_AUDIT_SINK=file"
            )
        if self.embedding_provider == "openai" and not self.embedding_base_url:
            raise ValueError(
                "embedding_provider=openai needs RAG_EMBEDDING_BASE_URL, "
                "e.g. RAG_EMBEDDING_BASE_URL=https://api.openai.com/v1"
            )
        oauth = {
            "RAG_MCP_OAUTH_ISSUER": self.mcp_oauth_issuer,
            "RAG_MCP_OAUTH_JWKS_URL": self.mcp_oauth_jwks_url,
            "RAG_MCP_OAUTH_AUDIENCE": self.mcp_oauth_audience,
        }
        if any(oauth.values()) and not all(oauth.values()):
            missing = ", ".join(name for name, value in oauth.items() if not value)
            raise ValueError(
                f"external OAuth tokens need all three of {', '.join(oauth)}; set {missing} "
                "too (or unset them all to accept API keys only)"
            )
        unsafe = [
            a for a in self.mcp_oauth_algorithms if not a.startswith(("RS", "PS", "ES", "Ed"))
        ]
        if unsafe:
            raise ValueError(
                f"RAG_MCP_OAUTH_ALGORITHMS lists {unsafe}: only asymmetric signatures "
                "(RS256, PS256, ES256, EdDSA, ...) can be checked against a JWKS"
            )
        if self.llm_provider == "openai_like" and not self.llm_base_url:
            raise ValueError(
                "llm_provider=openai_like needs RAG_LLM_BASE_URL, "
                "e.g. RAG_LLM_BASE_URL=http://127.0.0.1:11434/v1 (Ollama)"
            )
        return self

    @property
    def qdrant_path(self) -> Path:
        """qdrant-client's local mode (RAG_EMBEDDED_ENGINE=local)."""
        return self.data_dir / "qdrant"

    @property
    def edge_path(self) -> Path:
        """The edge engine: one shard folder per collection."""
        return self.data_dir / "edge"

    @property
    def uploads_path(self) -> Path:
        """Uploaded files are kept here, so a re-ingest or a duplicate's takeover can read them."""
        return self.data_dir / "uploads" / self.upload_corpus

    @property
    def keys_path(self) -> Path:
        return self.keys_file or self.data_dir / "keys.json"

    @property
    def audit_path(self) -> Path:
        return self.audit_log or self.data_dir / "audit.jsonl"

    @property
    def models_path(self) -> Path:
        return self.model_dir or self.data_dir / "models"


class _UnknownVariables(PydanticBaseSettingsSource):
    """Refuses `RAG_*` variables that name no setting: a typo must not mean a default.

    Reads what the environment and the .env sources read (case-insensitively, empty values
    already dropped) and raises one validation error per unknown name, with the nearest
    settings' names; it contributes no values itself.
    """

    def __init__(
        self,
        settings_cls: type[BaseSettings],
        env: PydanticBaseSettingsSource,
        dotenv: PydanticBaseSettingsSource,
    ) -> None:
        super().__init__(settings_cls)
        self._origins: list[tuple[str, PydanticBaseSettingsSource]] = [
            ("in the environment", env),
            ("in .env", dotenv),
        ]

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        prefix = str(self.config.get("env_prefix", "")).lower()
        known = {f"{prefix}{name}" for name in self.settings_cls.model_fields}
        errors: list[InitErrorDetails] = []
        seen: set[str] = set()
        for origin, source in self._origins:
            if not isinstance(source, (EnvSettingsSource, DotEnvSettingsSource)):
                continue
            for name, value in source.env_vars.items():
                lowered = name.lower()
                if not lowered.startswith(prefix) or lowered in known or lowered in seen:
                    continue
                seen.add(lowered)
                errors.append(
                    InitErrorDetails(
                        type=PydanticCustomError(
                            "unknown_setting", "{message}", {"message": _unknown(name, origin)}
                        ),
                        loc=(lowered.removeprefix(prefix),),
                        input=value,
                    )
                )
        if errors:
            raise ValidationError.from_exception_data(self.settings_cls.__name__, errors)
        return {}


def _unknown(name: str, origin: str) -> str:
    """The message for an unknown variable: the nearest setting (a setting that ends with the
    same words, as RAG_TOP_K in RAG_DEFAULT_TOP_K, else difflib's closest spelling)."""
    stem = name.upper().removeprefix("RAG_")
    settings = [field.upper() for field in Settings.model_fields]
    nearest = [field for field in settings if field.endswith(f"_{stem}")][:2] or (
        difflib.get_close_matches(stem, settings, n=1, cutoff=0.6)
    )
    if nearest:
        hint = "did you mean " + " or ".join(f"RAG_{field}" for field in nearest) + "?"
    else:
        hint = "every setting is listed in .env.example"
    return f"unknown setting ({origin}); {hint}"
