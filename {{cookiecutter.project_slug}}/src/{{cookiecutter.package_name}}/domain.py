"""The plain types that carry work through the pipeline, one way.

In: Document -> Chunk -> Point.  Out: Query -> Hit -> Answer(citations).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class Segment:
    """A part of a document that no chunk crosses: a PDF page, a CSV row, a JSONL record."""

    text: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Document:
    """One source file, read and cleaned. `source` is its path relative to the ingested root."""

    source: str
    text: str
    title: str
    content_hash: str
    format: str
    metadata: dict[str, Any] = field(default_factory=dict)
    segments: tuple[Segment, ...] = ()
    warnings: tuple[str, ...] = ()  # what was dropped on the way, e.g. a malformed JSONL line

    def parts(self) -> list[Document]:
        """The pieces to chunk separately: one per segment, each with its own metadata."""
        if not self.segments:
            return [self]
        return [
            replace(self, text=s.text, metadata={**self.metadata, **s.metadata}, segments=())
            for s in self.segments
        ]


@dataclass(frozen=True)
class Chunk:
    """A retrievable piece of a document, with a deterministic id."""

    id: str
    source: str
    index: int
    text: str
    title: str
    section: str
    content_hash: str
    doc_hash: str
    doc_chunks: int  # chunks in this version of the document: tells complete from partial
    metadata: dict[str, Any] = field(default_factory=dict)  # front matter, page, row, ...

    def embedding_text(self) -> str:
        """What gets embedded: the title and section give a short chunk its context."""
        header = " > ".join(part for part in (self.title, self.section) if part)
        return f"{header}\n{self.text}" if header else self.text


@dataclass(frozen=True)
class SparseVector:
    indices: list[int]
    values: list[float]


@dataclass(frozen=True)
class Point:
    """A chunk with its vectors, ready for the store."""

    chunk: Chunk
    dense: list[float]
    sparse: SparseVector
    corpus: str
    aliases: tuple[str, ...] = ()  # other names of the same exact content
    tenant: str = "default"


@dataclass(frozen=True)
class Query:
    text: str
    top_k: int
    sources: list[str] | None = None
    tenant: str = "default"  # retrieval only ever sees this tenant's chunks


@dataclass(frozen=True)
class Hit:
    chunk_id: str
    source: str
    text: str
    score: float
    metadata: dict[str, Any]
    # Evidence for refusal (a fused score has no absolute meaning): the hit's cosine and rank
    # in the dense-only list and its rank in the BM25-only list, when it is in their top few.
    dense_score: float | None = None
    dense_rank: int | None = None
    sparse_rank: int | None = None
    # Share of the query's terms that none of the BM25 top results contains (the same on every
    # hit of a query): a question about something the corpus never mentions leaves them unmatched.
    unmatched_share: float | None = None
    # A second-stage reranker's relevance score (0..1 for Cohere/Jina/TEI), when one ran.
    rerank_score: float | None = None


@dataclass(frozen=True)
class Citation:
    number: int
    chunk_id: str
    source: str
    text: str
    score: float


@dataclass(frozen=True)
class Usage:
    """Tokens an answer cost; zero for answerers that call no model."""

    input_tokens: int = 0
    output_tokens: int = 0


@dataclass(frozen=True)
class Answer:
    text: str
    citations: list[Citation]
    refused: bool
    # Every citation points at a chunk the answerer was given (and there is at least one).
    grounded: bool = True
    usage: Usage = field(default_factory=Usage)
    cost_usd: float | None = 0.0  # None: the model has no price in RAG_LLM_PRICES
    cached: bool = False
    model: str | None = None
    prompt_version: str | None = None
    fallback_used: bool = False
