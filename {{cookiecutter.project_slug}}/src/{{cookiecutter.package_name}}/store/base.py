"""What the rest of the service may ask of a vector store, and how a search is tuned.

Ingestion, retrieval and the API call only these methods; each engine is one module beside
this one (edge.py: Qdrant's engine in-process, the embedded default; qdrant.py: a Qdrant server,
or qdrant-client's local mode), chosen by `open_store` from the settings.
Every read and write that concerns documents takes the tenant as a required keyword, so no new
caller can forget it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ..domain import Hit, IndexedDocument, Point, SparseVector
from ..settings import Fusion, Settings

if TYPE_CHECKING:
    from .records import ShelfRecord, StoredPoint

DENSE = "dense"  # the named vectors of every collection
SPARSE = "bm25"


@dataclass(frozen=True)
class SearchOptions:
    """How hybrid search fuses and what evidence it returns; built once from Settings, with
    no defaults here, so no caller can silently run another retriever."""

    fusion: Fusion
    rrf_k: int
    rrf_dense_weight: float  # BM25's weight is 1
    prefetch_limit: int  # candidates each of dense and BM25 bring to fusion
    evidence_limit: int  # dense-only and BM25-only top lists for refusal; 0: none
    query_cosines: bool  # every fused hit carries its query cosine (for a second stage)

    @classmethod
    def from_settings(cls, settings: Settings) -> SearchOptions:
        return cls(
            fusion=settings.fusion,
            rrf_k=settings.rrf_k,
            rrf_dense_weight=settings.rrf_dense_weight,
            prefetch_limit=settings.prefetch_limit,
            evidence_limit=settings.refusal_evidence_limit,
            query_cosines=False,  # the Retriever turns it on for a stage that reads it
        )


class RecordShelf(Protocol):
    """Records beside the corpus, in the same engine (so a server's replicas share them):
    found by exact payload fields and a time window, never by similarity."""

    def put(self, records: Sequence[ShelfRecord]) -> None: ...

    def find(
        self,
        *,
        equals: Mapping[str, str] | None = None,
        since: float | None = None,
        until: float | None = None,
        with_vectors: bool = False,
    ) -> Iterator[ShelfRecord]:
        """Records whose fields equal these and whose `time` (epoch seconds) is in
        [since, until); in no particular order."""
        ...

    def drop_before(self, time: float) -> None:
        """Delete the records whose `time` is before this (retention)."""
        ...


class VectorStore(Protocol):
    collection: str
    location: str  # a path or URL, for messages
    embedded: bool  # runs in this process (one process per storage folder)

    # --- schema
    def collection_exists(self) -> bool: ...

    def ensure_collection(
        self, dense_model: str, dense_dimensions: int, sparse_model: str
    ) -> None: ...

    # --- writes
    def upsert(self, points: Sequence[Point]) -> None: ...

    def set_aliases(
        self, *, tenant: str, corpus: str, source: str, aliases: Sequence[str]
    ) -> None: ...

    def delete_document(
        self, *, tenant: str, corpus: str, source: str, keep_doc_hash: str | None = None
    ) -> None: ...

    def maintain(self) -> bool:
        """Vacuum what replaced and deleted chunks left behind, where the engine does not do
        it by itself; True when it did something. Queries may wait while it runs, so the
        ingestion worker calls it after a run, never the request path."""
        ...

    # --- reads
    def count(self) -> int: ...

    def documents(self, *, tenant: str, corpus: str | None = None) -> list[IndexedDocument]: ...

    def chunks(
        self,
        *,
        tenant: str,
        ids: Sequence[str] | None = None,
        corpus: str | None = None,
        source: str | None = None,
        limit: int,
    ) -> list[Hit]:
        """The tenant's stored chunks with these ids, or of this corpus and source, in
        document order (corpus, source, chunk index); score 0. Another tenant's id is not
        found, exactly like an id that does not exist."""
        ...

    def search(
        self,
        dense: list[float],
        sparse: SparseVector,
        *,
        tenant: str,
        top_k: int,
        sources: Sequence[str] | None,
        options: SearchOptions,
    ) -> list[Hit]: ...

    def shelf(self, name: str, dimensions: int = 1) -> RecordShelf:
        """The record collection `<collection>_<name>` beside the corpus (created on first
        write), whose records may carry a dense vector of `dimensions`."""
        ...

    # --- copying between engines (`store migrate`)
    def stored_schema(self) -> dict[str, Any]:
        """How the collection was built (models, dimensions, schema version)."""
        ...

    def export(self, *, batch: int) -> Iterator[list[StoredPoint]]: ...

    def import_points(self, points: Sequence[StoredPoint]) -> None: ...

    def search_one(
        self,
        using: str,
        vector: list[float] | SparseVector,
        *,
        tenant: str,
        top_k: int,
        sources: Sequence[str] | None = None,
    ) -> list[Hit]:
        """One retriever alone (DENSE or SPARSE): the baselines hybrid search must beat."""
        ...

    def close(self) -> None: ...
