"""Request and response bodies. The CLI's `ask --json` prints `QueryResponse` too."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..domain import Answer, Hit


class Filters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: list[str] | None = Field(
        None, description="Only chunks from these sources (paths relative to the ingested root)."
    )

    @field_validator("source", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class SearchOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    top_k: int | None = Field(None, ge=1, description="Hits to use; defaults to RAG_DEFAULT_TOP_K.")
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


class HitOut(BaseModel):
    chunk_id: str
    source: str
    text: str
    score: float
    metadata: dict[str, Any]

    @classmethod
    def of(cls, hit: Hit) -> HitOut:
        return cls(
            chunk_id=hit.chunk_id,
            source=hit.source,
            text=hit.text,
            score=hit.score,
            metadata=hit.metadata,
        )


class RetrieveResponse(BaseModel):
    hits: list[HitOut]
    trace_id: str


class CitationOut(BaseModel):
    chunk_id: str
    source: str
    text: str
    score: float


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


class ErrorBody(BaseModel):
    type: str
    message: str
    trace_id: str


class ErrorResponse(BaseModel):
    error: ErrorBody


class Readiness(BaseModel):
    ready: bool
    checks: dict[str, str]
