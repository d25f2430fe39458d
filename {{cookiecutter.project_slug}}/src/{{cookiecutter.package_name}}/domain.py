"""The plain types that carry work through the pipeline, one way.

In: Document -> Chunk -> Point.  Out: Query -> Hit -> Answer(citations).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

# Fixed forever: changing either would give every stored chunk or document a new id.
CHUNK_NAMESPACE = uuid.UUID("6f1c2a52-3f8e-4d0b-9a57-2b3f3c1d9e10")
DOCUMENT_NAMESPACE = uuid.UUID("0d5b0c64-5d0e-4f43-9a0e-6b1f0e3c7a21")


def chunk_id(*, tenant: str, corpus: str, source: str, index: int, content_hash: str) -> str:
    """Deterministic: the same content at the same place is the same point. The tenant is in
    it, so two tenants' identical files never share a point."""
    key = f"{tenant}/{corpus}/{source}#{index}:{content_hash}"
    return str(uuid.uuid5(CHUNK_NAMESPACE, key))


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
    tenant: str
    aliases: tuple[str, ...] = ()  # other names of the same exact content


@dataclass(frozen=True, kw_only=True)
class Query:
    text: str
    top_k: int
    tenant: str  # retrieval only ever sees this tenant's chunks
    sources: list[str] | None = None


# Chunks counted per query term for refusal's evidence (`Hit.term_chunk_counts`): enough to
# tell a term the corpus never or rarely uses from a common one.
TERM_COUNT_CAP = 32


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
    # The query's dense cosine to this chunk for every fused hit, when a second stage asked
    # for it. Ranking only: refusal's evidence stays `dense_score` (the dense top list).
    query_cosine: float | None = None
    # More refusal evidence, after the fields above so positional construction keeps working.
    # The hit's BM25 score in the BM25-only list (Qdrant's IDF times the stored term
    # weights): unlike a fused score it grows with how rare the matched terms are.
    sparse_score: float | None = None
    # Per query term, how many of the searched chunks contain it, counted up to a cap (the
    # same on every hit): a question naming what the corpus never mentions has a term in
    # none of them, and one that is merely worded oddly keeps its other terms common.
    term_chunk_counts: tuple[int, ...] | None = None
    # The cosine of the hit's best quotable unit (sentence, table row, record) to the question,
    # when the refusal reads it (answer/sentences.py); -1.0 when the hit has none.
    sentence_score: float | None = None

    @property
    def location(self) -> dict[str, int]:
        """Where in its document the text is: PDF `page`, CSV `row`, JSONL `line` (those
        that apply)."""
        inner = self.metadata.get("metadata") or {}
        return {name: int(inner[name]) for name in LOCATIONS if inner.get(name) is not None}

    @property
    def is_record(self) -> bool:
        """A CSV row or JSONL record: one unit of meaning, quoted whole or not at all."""
        return "row" in self.location or "line" in self.location


# The fields that say where a chunk is inside its document.
LOCATIONS = ("page", "row", "line")


@dataclass(frozen=True)
class Citation:
    number: int
    chunk_id: str
    source: str
    text: str
    score: float
    location: dict[str, int] = field(default_factory=dict)  # page, row, line: see Hit
    dense_score: float | None = None
    rerank_score: float | None = None

    @classmethod
    def of(cls, number: int, hit: Hit) -> Citation:
        return cls(
            number,
            hit.chunk_id,
            hit.source,
            hit.text,
            hit.score,
            hit.location,
            hit.dense_score,
            hit.rerank_score,
        )


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


@dataclass
class IndexedDocument:
    """A document as the store holds it, version by version. A clean store holds one
    complete version; more than one, or fewer chunks than the version declares, means an
    ingest was interrupted, and the next one repairs it."""

    tenant: str
    corpus: str
    source: str
    chunks: int = 0
    ingested_at: str = ""
    stored: dict[str, int] = field(default_factory=dict)  # version -> chunks present
    declared: dict[str, int] = field(default_factory=dict)  # version -> chunks it should have
    # Exact duplicates are stored once: the first name holds the chunks, the others are aliases.
    aliases: list[str] = field(default_factory=list)
    alias_of: str | None = None
    sha256: str = ""  # of the file's bytes

    @property
    def id(self) -> str:
        """Stable id of the document in the API (sources may hold slashes)."""
        return str(uuid.uuid5(DOCUMENT_NAMESPACE, f"{self.tenant}/{self.corpus}/{self.source}"))

    def holds_only(self, version: str) -> bool:
        """True when exactly this version is stored, with all of its chunks."""
        return set(self.stored) == {version} and self.stored[version] == self.declared[version]


def by_source(documents: Iterable[IndexedDocument]) -> dict[str, IndexedDocument]:
    """One corpus's documents keyed by source: what a sync compares its folder against."""
    return {document.source: document for document in documents}
