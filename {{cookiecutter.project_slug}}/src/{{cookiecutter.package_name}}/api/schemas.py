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


class QueryResponse(BaseModel):
    answer: str = Field(description="Cites its evidence as [n], meaning citations[n - 1].")
    citations: list[CitationOut]
    refused: bool = Field(description="True when the documents did not answer the question.")
    trace_id: str

    @classmethod
    def of(cls, answer: Answer, trace_id: str) -> QueryResponse:
        return cls(
            answer=answer.text,
            citations=[
                CitationOut(chunk_id=c.chunk_id, source=c.source, text=c.text, score=c.score)
                for c in answer.citations
            ],
            refused=answer.refused,
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
