"""What every engine stores and reads back the same way: the chunk payload, hits with their
refusal evidence, the document list, the schema check, and the note naming who holds an
embedded store. Engine modules translate their own point types to and from these."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..domain import Hit, IndexedDocument, Point, SparseVector
from ..embeddings import cosine
from ..errors import ConfigurationError

SCHEMA_VERSION = 2  # 2: every chunk carries its tenant

# Payload fields the document list needs (the chunk text stays on disk).
DOCUMENT_FIELDS = (
    "source",
    "corpus",
    "doc_hash",
    "doc_chunks",
    "ingested_at",
    "aliases",
    "metadata",
)


def payload_of(point: Point, ingested_at: str) -> dict[str, Any]:
    return {
        "tenant": point.tenant,
        "source": point.chunk.source,
        "corpus": point.corpus,
        "title": point.chunk.title,
        "section": point.chunk.section,
        "chunk_index": point.chunk.index,
        "text": point.chunk.text,
        "content_hash": point.chunk.content_hash,
        "doc_hash": point.chunk.doc_hash,
        "doc_chunks": point.chunk.doc_chunks,
        "ingested_at": ingested_at,
        "metadata": point.chunk.metadata,
        "aliases": list(point.aliases),
    }


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def hit_of(
    point_id: object,
    payload: Mapping[str, Any] | None,
    score: float = 0.0,
    *,
    dense_rank: int | None = None,
    dense_score: float | None = None,
    sparse_rank: int | None = None,
    sparse_score: float | None = None,
) -> Hit:
    fields = dict(payload or {})
    text = str(fields.pop("text", ""))
    return Hit(
        chunk_id=str(point_id),
        source=str(fields.get("source", "")),
        text=text,
        score=score,
        metadata=fields,
        dense_score=dense_score,
        dense_rank=dense_rank,
        sparse_rank=sparse_rank,
        sparse_score=sparse_score,
    )


@dataclass(frozen=True)
class Scored:
    """One point of an engine's answer, in neutral terms."""

    id: str
    score: float
    payload: Mapping[str, Any] | None = None
    dense: Sequence[float] | None = None  # the stored dense vector, when asked for
    sparse_indices: Sequence[int] | None = None  # the stored sparse vector's terms


@dataclass(frozen=True)
class ShelfRecord:
    """A plain record kept beside the corpus (a vote, a captured question): its payload, and
    optionally one dense vector (a captured question's, for drift)."""

    id: str
    payload: dict[str, Any]
    vector: list[float] | None = None


@dataclass(frozen=True)
class StoredPoint:
    """A point exactly as stored (vectors and payload), for copying between engines."""

    id: str
    dense: list[float]
    sparse: SparseVector
    payload: dict[str, Any]


def single_terms(sparse: SparseVector) -> list[SparseVector]:
    """One BM25 query per distinct query term: its search returns the chunks that hold it."""
    return [SparseVector(indices=[term], values=[1.0]) for term in dict.fromkeys(sparse.indices)]


def hits_with_evidence(
    query_dense: Sequence[float],
    query_terms: Iterable[int],
    fused: Sequence[Scored],
    dense_list: Sequence[Scored] | None,
    sparse_list: Sequence[Scored] | None,
    *,
    query_cosines: bool,
    term_lists: Sequence[Sequence[Scored]] | None = None,
) -> list[Hit]:
    """Fused hits carrying their cosine and ranks in the dense-only and BM25-only lists, the
    share of query terms that no BM25 top result contains, and (from `term_lists`, one
    single-term BM25 search per query term, capped at TERM_COUNT_CAP) how many chunks hold
    each term: evidence for refusal."""
    counts = tuple(len(found) for found in term_lists) if term_lists is not None else None
    dense_ranks: dict[str, tuple[int, float]] = {}
    sparse_ranks: dict[str, tuple[int, float]] = {}
    unmatched: float | None = None
    if dense_list is not None and sparse_list is not None:
        dense_ranks = {p.id: (rank, p.score) for rank, p in enumerate(dense_list, start=1)}
        sparse_ranks = {p.id: (rank, p.score) for rank, p in enumerate(sparse_list, start=1)}
        matched = {term for p in sparse_list for term in (p.sparse_indices or ())}
        terms = set(query_terms)
        unmatched = len(terms - matched) / len(terms) if terms else 0.0
    hits = []
    for point in fused:
        dense_rank, dense_score = dense_ranks.get(point.id, (None, None))
        sparse_rank, sparse_score = sparse_ranks.get(point.id, (None, None))
        hit = hit_of(
            point.id,
            point.payload,
            point.score,
            dense_rank=dense_rank,
            dense_score=dense_score,
            sparse_rank=sparse_rank,
            sparse_score=sparse_score,
        )
        query_cosine = (
            cosine(list(query_dense), list(point.dense)) if query_cosines and point.dense else None
        )
        hits.append(
            replace(
                hit,
                unmatched_share=unmatched,
                term_chunk_counts=counts,
                query_cosine=query_cosine,
            )
        )
    return hits


def collect_documents(tenant: str, payloads: Iterable[Mapping[str, Any]]) -> list[IndexedDocument]:
    """One tenant's documents from their chunks' payloads (the store is the sync state). The
    same source in two corpora is two documents; duplicates' names are listed too."""
    found: dict[tuple[str, str], IndexedDocument] = {}
    for payload in payloads:
        source, in_corpus = str(payload["source"]), str(payload["corpus"])
        document = found.setdefault(
            (in_corpus, source), IndexedDocument(tenant=tenant, corpus=in_corpus, source=source)
        )
        version = str(payload["doc_hash"])
        document.chunks += 1
        document.stored[version] = document.stored.get(version, 0) + 1
        document.declared[version] = int(payload.get("doc_chunks", -1))
        document.ingested_at = max(document.ingested_at, str(payload.get("ingested_at")))
        document.aliases = list(payload.get("aliases") or [])
        document.sha256 = str((payload.get("metadata") or {}).get("sha256", ""))
    for document in list(found.values()):
        for alias in document.aliases:
            alias_entry = replace(document, source=alias, aliases=[], alias_of=document.source)
            found.setdefault((document.corpus, alias), alias_entry)
    return list(found.values())


def in_document_order(hits: list[Hit]) -> list[Hit]:
    return sorted(
        hits,
        key=lambda h: (
            str(h.metadata.get("corpus", "")),
            h.source,
            int(h.metadata.get("chunk_index", 0)),
        ),
    )


def schema_of(dense_model: str, dense_dimensions: int, sparse_model: str) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "dense_model": dense_model,
        "dense_dimensions": dense_dimensions,
        "sparse_model": sparse_model,
    }


def check_schema(collection: str, found: Mapping[str, Any], wanted: Mapping[str, Any]) -> None:
    mismatched = {k: (found.get(k), v) for k, v in wanted.items() if found.get(k) != v}
    if mismatched:
        details = ", ".join(
            f"{k}: stored {a!r}, configured {b!r}" for k, (a, b) in mismatched.items()
        )
        raise ConfigurationError(
            f"Collection {collection!r} was built with other embedding settings "
            f"({details}). Vectors from different models cannot be mixed: set "
            "RAG_COLLECTION to a new name and ingest again, or restore the previous settings."
        )


class HolderNote:
    """A small file naming the process that holds an embedded store, so the next one to try
    is told who to stop instead of getting the engine's raw lock error."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self) -> None:
        self.path.write_text(
            json.dumps(
                {
                    "pid": os.getpid(),
                    "command": " ".join(Path(sys.argv[0]).name.split() + sys.argv[1:]),
                    "since": now(),
                }
            ),
            encoding="utf-8",
        )

    def holder(self) -> str:
        with contextlib.suppress(OSError, ValueError, KeyError):
            info = json.loads(self.path.read_text(encoding="utf-8"))
            return f"process {info['pid']} (`{info['command']}`, since {info['since']})"
        return "another process"

    def in_use_message(self, location: str) -> str:
        return (
            f"The embedded store at {location} is in use by {self.holder()}. The embedded "
            "store allows one process at a time: stop that process (questions can go to its "
            "API while it runs), or set RAG_QDRANT_URL to a Qdrant server that many processes "
            "can share."
        )

    def release(self) -> None:
        with contextlib.suppress(OSError, ValueError, KeyError):
            info = json.loads(self.path.read_text(encoding="utf-8"))
            if info["pid"] == os.getpid():
                self.path.unlink()
