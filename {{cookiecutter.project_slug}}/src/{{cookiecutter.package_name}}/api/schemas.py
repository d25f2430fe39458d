"""Request and response bodies. The CLI's `ask --json` prints `QueryResponse` too."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from ..domain import Answer, Hit, IndexedDocument
from ..ingest.jobs import IngestionJob
from ..ingest.pipeline import FileOutcome

# Strict: a request is what the schema says or it is refused. `"top_k": "5"` is not an
# integer and `"source": "a.md"` is not an array (lax parsing would accept both).


def _integral_number(value: Any) -> Any:
    # JSON Schema counts 5.0 as an integer, so a client (or schemathesis) may send it; strict
    # mode alone would refuse it. Strings, booleans and 5.5 still fail the strict check.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# A count of at least one, as JSON Schema means it (the bound comes before the validator, or
# the schema says `ge`, which no client understands, instead of `minimum`).
PositiveJsonInt = Annotated[int, Field(ge=1), BeforeValidator(_integral_number)]


class Filters(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    source: list[str] | None = Field(
        None, description="Only chunks from these sources (paths relative to the ingested root)."
    )


class SearchOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, strict=True)

    top_k: PositiveJsonInt | None = Field(
        None, description="Hits to use; defaults to RAG_DEFAULT_TOP_K."
    )
    filters: Filters | None = None


class RetrieveRequest(SearchOptions):
    query: str = Field(min_length=1, max_length=4000, examples=["How do I reset my password?"])


class QueryRequest(SearchOptions):
    question: str = Field(min_length=1, max_length=4000, examples=["How do I reset my password?"])
    stream: bool = Field(
        False,
        description="Answer as Server-Sent Events: `token` events, then one `final` event "
        "with the whole response body (or one `error` event).",
    )


class Evidence(BaseModel):
    """Where the text is in its document, and scores a person can read."""

    page: int | None = Field(None, description="PDF page the text is on.")
    row: int | None = Field(None, description="CSV row it came from.")
    line: int | None = Field(None, description="JSONL line it came from.")
    dense_score: float | None = Field(
        None,
        description="Cosine similarity of question and text (-1..1), when the hit was in the "
        "dense top results: comparable across questions, unlike `score`.",
    )
    rerank_score: float | None = Field(
        None, description="The reranker's relevance score, when a reranker ran."
    )


class HitOut(Evidence):
    chunk_id: str
    source: str
    text: str
    rank: int = Field(description="Position in this response, from 1.")
    score: float = Field(
        description="Fused (reciprocal rank) value that orders this response's hits; it "
        "means nothing outside it: read `rank`, `dense_score` or `rerank_score` instead."
    )
    metadata: dict[str, Any]

    @classmethod
    def of(cls, rank: int, hit: Hit) -> HitOut:
        return cls(
            chunk_id=hit.chunk_id,
            source=hit.source,
            text=hit.text,
            rank=rank,
            score=hit.score,
            metadata=hit.metadata,
            dense_score=hit.dense_score,
            rerank_score=hit.rerank_score,
            **hit.location,
        )


class RetrieveResponse(BaseModel):
    hits: list[HitOut]
    trace_id: str


class CitationOut(Evidence):
    number: int = Field(description="What the answer's [n] markers refer to.")
    chunk_id: str
    source: str
    text: str
    score: float = Field(description="The hit's fused value (see HitOut.score).")


class UsageOut(BaseModel):
    input_tokens: int
    output_tokens: int


class QueryResponse(BaseModel):
    answer: str = Field(description="Cites its evidence as [n], meaning citations[n - 1].")
    citations: list[CitationOut]
    refused: bool = Field(description="True when the documents did not answer the question.")
    grounded: bool = Field(
        description="True when the answer cites at least one chunk and only chunks the model "
        "was given (a refusal needs no citation)."
    )
    model: str | None = Field(description="Model that wrote the answer (extractive: none).")
    prompt_version: str | None = Field(description="Version of the prompt template used.")
    usage: UsageOut
    cost_usd: float | None = Field(
        description="Estimated cost from RAG_LLM_PRICES; null when the model has no price."
    )
    cached: bool = Field(description="True when the answer came from the answer cache.")
    fallback_used: bool = Field(description="True when the fallback model wrote the answer.")
    trace_id: str

    @classmethod
    def of(cls, answer: Answer, trace_id: str) -> QueryResponse:
        return cls(
            answer=answer.text,
            citations=[
                CitationOut(
                    number=c.number,
                    chunk_id=c.chunk_id,
                    source=c.source,
                    text=c.text,
                    score=c.score,
                    dense_score=c.dense_score,
                    rerank_score=c.rerank_score,
                    **c.location,
                )
                for c in answer.citations
            ],
            refused=answer.refused,
            grounded=answer.grounded,
            model=answer.model,
            prompt_version=answer.prompt_version,
            usage=UsageOut(
                input_tokens=answer.usage.input_tokens, output_tokens=answer.usage.output_tokens
            ),
            cost_usd=answer.cost_usd,
            cached=answer.cached,
            fallback_used=answer.fallback_used,
            trace_id=trace_id,
        )


class Problem(BaseModel):
    """RFC 9457 problem details (media type application/problem+json), plus the trace id."""

    type: str = Field(description="URI naming the kind of problem, e.g. urn:problem:bad-request.")
    title: str = Field(description="Short summary of the kind (the HTTP status phrase).")
    status: int
    detail: str = Field(description="What went wrong this time and what to do about it.")
    instance: str = Field(description="The request path.")
    trace_id: str = Field(description="Look the request up in traces and logs with this.")


class Readiness(BaseModel):
    ready: bool
    checks: dict[str, str]


class DocumentOut(BaseModel):
    id: str = Field(description="Use in DELETE /v1/documents/{id}.")
    corpus: str
    source: str = Field(description="Path relative to the ingested folder, or the upload name.")
    sha256: str = Field(description="Of the file's bytes.")
    chunks: int
    ingested_at: str
    duplicate_of: str | None = Field(
        None, description="Same content as this source, which holds the chunks (stored once)."
    )
    duplicates: list[str] = Field(default_factory=list, description="Sources with this content.")

    @classmethod
    def of(cls, document: IndexedDocument) -> DocumentOut:
        return cls(
            id=document.id,
            corpus=document.corpus,
            source=document.source,
            sha256=document.sha256,
            chunks=document.chunks,
            ingested_at=document.ingested_at,
            duplicate_of=document.alias_of,
            duplicates=document.aliases,
        )


class DocumentList(BaseModel):
    documents: list[DocumentOut]


class FileOutcomeOut(BaseModel):
    source: str
    status: str = Field(description="added, updated, unchanged, deleted or skipped.")
    chunks: int
    reason: str = Field(description="Why a file was skipped, or a note on how it was read.")
    warnings: list[str] = Field(description="Parts of a file that landed which were dropped.")

    @classmethod
    def of(cls, outcome: FileOutcome) -> FileOutcomeOut:
        return cls(
            source=outcome.source,
            status=outcome.status,
            chunks=outcome.chunks,
            reason=outcome.reason,
            warnings=list(outcome.warnings),
        )


class IngestionJobOut(BaseModel):
    id: str
    status: str = Field(description="queued, running, succeeded or failed.")
    corpus: str
    files: list[str]
    total: int = Field(description="Files in the job (known once it runs).")
    done: int
    outcomes: list[FileOutcomeOut]
    error: str = Field(description="Why the whole job failed (per-file problems: outcomes).")
    created_at: str
    finished_at: str

    @classmethod
    def of(cls, job: IngestionJob) -> IngestionJobOut:
        return cls(
            id=job.id,
            status=job.status,
            corpus=job.corpus,
            files=list(job.files),
            total=job.total,
            done=job.done,
            outcomes=[FileOutcomeOut.of(o) for o in list(job.outcomes)],
            error=job.error,
            created_at=job.created_at,
            finished_at=job.finished_at,
        )


class DocumentDeleted(BaseModel):
    id: str
    corpus: str
    source: str
    chunks_deleted: int
    note: str


# A W3C trace id, as X-Trace-Id and every response body give it.
TRACE_ID_PATTERN = r"^[0-9a-f]{32}$"
MAX_FEEDBACK_COMMENT_CHARS = 2000


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, strict=True)

    trace_id: str = Field(
        pattern=TRACE_ID_PATTERN,
        description="The answer's trace id (its X-Trace-Id header or `trace_id` field).",
        examples=["4bf92f3577b34da6a3ce929d0e0e4736"],
    )
    rating: Literal["up", "down"]
    comment: str | None = Field(
        None, max_length=MAX_FEEDBACK_COMMENT_CHARS, description="What was right or wrong."
    )


class FeedbackResponse(BaseModel):
    feedback_id: str = Field(description="This vote's id.")
    trace_id: str = Field(description="The answer the vote is about.")
    rating: Literal["up", "down"]
