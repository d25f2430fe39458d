"""Qdrant through qdrant-client (a server, or local mode): schema, hybrid query, and the rules
local mode needs.

Embedded (local) mode is not thread-safe under mixed reads and writes and allows one client
per storage folder, so every call goes through one process-wide lock, and a second process
gets a message naming the process that holds the folder.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from ..domain import TERM_COUNT_CAP, Hit, IndexedDocument, Point, SparseVector
from ..errors import StoreInUseError, StoreUnavailableError
from ..settings import Settings
from .base import DENSE, SPARSE, SearchOptions
from .records import (
    DOCUMENT_FIELDS,
    HolderNote,
    Scored,
    ShelfRecord,
    StoredPoint,
    check_schema,
    collect_documents,
    hit_of,
    hits_with_evidence,
    in_document_order,
    now,
    payload_of,
    schema_of,
    single_terms,
)

_HOLDER_FILE = "holder.json"

# RRF fuses ranks; DBSF fuses scores normalised by each list's mean and spread.

# One lock for the whole process: FastAPI runs sync endpoints in a thread pool, and local
# Qdrant corrupts its collection under concurrent mixed use (qdrant-client issue 1193).
_EMBEDDED_LOCK = threading.RLock()


def _tenant(tenant: str) -> models.FieldCondition:
    return models.FieldCondition(key="tenant", match=models.MatchValue(value=tenant))


def _document(tenant: str, corpus: str, source: str) -> list[models.Condition]:
    return [
        _tenant(tenant),
        models.FieldCondition(key="corpus", match=models.MatchValue(value=corpus)),
        models.FieldCondition(key="source", match=models.MatchValue(value=source)),
    ]


def _source_filter(tenant: str, sources: Sequence[str] | None) -> models.Filter:
    must: list[models.Condition] = [_tenant(tenant)]
    if sources:
        must.append(models.FieldCondition(key="source", match=models.MatchAny(any=list(sources))))
    return models.Filter(must=must)


class QdrantStore:
    def __init__(self, settings: Settings) -> None:
        self.collection = settings.collection
        self.embedded = settings.qdrant_url is None
        self.location = str(settings.qdrant_path) if self.embedded else str(settings.qdrant_url)
        self._note = HolderNote(settings.qdrant_path / _HOLDER_FILE)
        self._lock: contextlib.AbstractContextManager[Any] = (
            _EMBEDDED_LOCK if self.embedded else contextlib.nullcontext()
        )
        self._client = self._open(settings)

    @property
    def client(self) -> QdrantClient:
        """The engine's own client, for tooling that goes below the interface (tests, copies)."""
        return self._client

    # --- opening and closing -----------------------------------------------------------
    def _open(self, settings: Settings) -> QdrantClient:
        if not self.embedded:
            key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
            return QdrantClient(url=settings.qdrant_url, api_key=key)
        settings.qdrant_path.mkdir(parents=True, exist_ok=True)
        try:
            client = QdrantClient(path=str(settings.qdrant_path))
        except RuntimeError as exc:
            if "already accessed" not in str(exc):
                raise
            raise StoreInUseError(self._note.in_use_message(self.location)) from exc
        self._note.write()
        return client

    def close(self) -> None:
        with self._lock:
            self._client.close()
            if self.embedded:
                self._note.release()

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """Serialise embedded calls and turn connection failures into actionable errors."""
        with self._lock:
            try:
                yield
            except (ConnectionError, OSError, ResponseHandlingException) as exc:
                raise StoreUnavailableError(
                    f"Qdrant at {self.location} is unreachable: {exc}. Check RAG_QDRANT_URL "
                    "and that the server is running."
                ) from exc
            except UnexpectedResponse as exc:
                raise StoreUnavailableError(
                    f"Qdrant at {self.location} answered HTTP {exc.status_code}: "
                    f"{exc.content[:200]!r}. Check RAG_QDRANT_URL and RAG_QDRANT_API_KEY."
                ) from exc

    # --- schema --------------------------------------------------------------------------
    def collection_exists(self) -> bool:
        with self._guard():
            return bool(self._client.collection_exists(self.collection))

    def ensure_collection(self, dense_model: str, dense_dimensions: int, sparse_model: str) -> None:
        """Create the collection, or check that the existing one was built the same way."""
        wanted = schema_of(dense_model, dense_dimensions, sparse_model)
        with self._guard():
            if not self._client.collection_exists(self.collection):
                self._client.create_collection(
                    self.collection,
                    vectors_config={
                        DENSE: models.VectorParams(
                            size=dense_dimensions, distance=models.Distance.COSINE
                        )
                    },
                    sparse_vectors_config={
                        SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)
                    },
                    metadata=wanted,
                )
                if not self.embedded:
                    # A server needs payload indexes for fast filters; local mode ignores them.
                    for field in ("source", "corpus"):
                        self._client.create_payload_index(
                            self.collection, field, models.PayloadSchemaType.KEYWORD
                        )
                    # is_tenant: the server co-locates each tenant's points for filtered search.
                    self._client.create_payload_index(
                        self.collection,
                        "tenant",
                        models.KeywordIndexParams(
                            type=models.KeywordIndexType.KEYWORD, is_tenant=True
                        ),
                    )
                return
            found = self._client.get_collection(self.collection).config.metadata or {}
        check_schema(self.collection, found, wanted)

    # --- writes --------------------------------------------------------------------------
    def upsert(self, points: Sequence[Point]) -> None:
        if not points:
            return
        stamp = now()
        structs = [
            models.PointStruct(
                id=p.chunk.id,
                vector={
                    DENSE: p.dense,
                    SPARSE: models.SparseVector(indices=p.sparse.indices, values=p.sparse.values),
                },
                payload=payload_of(p, stamp),
            )
            for p in points
        ]
        with self._guard():
            self._client.upsert(self.collection, points=structs, wait=True)

    def set_aliases(self, *, tenant: str, corpus: str, source: str, aliases: Sequence[str]) -> None:
        """Record the other names under which a document's exact content was found."""
        selector = models.FilterSelector(
            filter=models.Filter(must=_document(tenant, corpus, source))
        )
        with self._guard():
            self._client.set_payload(
                self.collection, payload={"aliases": list(aliases)}, points=selector, wait=True
            )

    def delete_document(
        self, *, tenant: str, corpus: str, source: str, keep_doc_hash: str | None = None
    ) -> None:
        """Delete a document's chunks; with `keep_doc_hash`, only those of older versions."""
        must = _document(tenant, corpus, source)
        must_not: list[models.Condition] = []
        if keep_doc_hash is not None:
            must_not.append(
                models.FieldCondition(key="doc_hash", match=models.MatchValue(value=keep_doc_hash))
            )
        selector = models.FilterSelector(filter=models.Filter(must=must, must_not=must_not))
        with self._guard():
            self._client.delete(self.collection, points_selector=selector, wait=True)

    # --- reads ---------------------------------------------------------------------------
    def count(self) -> int:
        with self._guard():
            return int(self._client.count(self.collection, exact=True).count)

    def documents(self, *, tenant: str, corpus: str | None = None) -> list[IndexedDocument]:
        must: list[models.Condition] = [_tenant(tenant)]
        if corpus is not None:
            must.append(models.FieldCondition(key="corpus", match=models.MatchValue(value=corpus)))
        scroll_filter = models.Filter(must=must)
        payloads: list[dict[str, Any]] = []
        offset: Any = None
        while True:
            with self._guard():
                records, offset = self._client.scroll(
                    self.collection,
                    scroll_filter=scroll_filter,
                    limit=512,
                    offset=offset,
                    with_payload=list(DOCUMENT_FIELDS),
                    with_vectors=False,
                )
            payloads += [record.payload or {} for record in records]
            if offset is None:
                break
        return collect_documents(tenant, payloads)

    def chunks(
        self,
        *,
        tenant: str,
        ids: Sequence[str] | None = None,
        corpus: str | None = None,
        source: str | None = None,
        limit: int,
    ) -> list[Hit]:
        must: list[models.Condition] = [_tenant(tenant)]
        if ids is not None:
            must.append(models.HasIdCondition(has_id=list(ids)))
        for key, value in (("corpus", corpus), ("source", source)):
            if value is not None:
                must.append(models.FieldCondition(key=key, match=models.MatchValue(value=value)))
        found: list[Hit] = []
        offset: Any = None
        while len(found) < limit:
            with self._guard():
                records, offset = self._client.scroll(
                    self.collection,
                    scroll_filter=models.Filter(must=must),
                    limit=min(512, limit - len(found)),
                    offset=offset,
                    with_payload=True,
                    with_vectors=False,
                )
            found += [hit_of(record.id, record.payload) for record in records]
            if offset is None:
                break
        return in_document_order(found)

    def search(
        self,
        dense: list[float],
        sparse: SparseVector,
        *,
        tenant: str,
        top_k: int,
        sources: Sequence[str] | None,
        options: SearchOptions,
    ) -> list[Hit]:
        """Hybrid search in the engine, only ever over the tenant's chunks: dense and BM25
        prefetch, fused by Qdrant (RRF, weighted by `rrf_dense_weight` against BM25's 1, or
        DBSF). With an `evidence_limit`, the dense-only and BM25-only top lists come back in
        the same request, and each hit carries its cosine and ranks in them (for refusal)."""
        query_filter = _source_filter(tenant, sources)
        limit = max(options.prefetch_limit, top_k)
        evidence_limit = options.evidence_limit
        sparse_query = models.SparseVector(indices=sparse.indices, values=sparse.values)
        prefetch = [
            models.Prefetch(query=dense, using=DENSE, limit=limit, filter=query_filter),
            models.Prefetch(query=sparse_query, using=SPARSE, limit=limit, filter=query_filter),
        ]
        fused = models.QueryRequest(
            prefetch=prefetch,
            query=(
                models.RrfQuery(
                    rrf=models.Rrf(k=options.rrf_k, weights=[options.rrf_dense_weight, 1.0])
                )
                if options.fusion == "rrf"
                else models.FusionQuery(fusion=models.Fusion.DBSF)
            ),
            filter=query_filter,
            limit=top_k,
            with_payload=True,
            # The stored chunk vectors: their cosine to the query costs no embedding.
            with_vector=[DENSE] if options.query_cosines else False,
        )
        requests = [fused]
        if evidence_limit > 0:
            for using, vector in ((DENSE, dense), (SPARSE, sparse_query)):
                requests.append(
                    models.QueryRequest(
                        query=vector,
                        using=using,
                        filter=query_filter,
                        limit=evidence_limit,
                        with_payload=False,
                        with_vector=[SPARSE] if using == SPARSE else False,
                    )
                )
            requests += [
                models.QueryRequest(
                    query=models.SparseVector(indices=term.indices, values=term.values),
                    using=SPARSE,
                    filter=query_filter,
                    limit=TERM_COUNT_CAP,
                    with_payload=False,
                    with_vector=False,
                )
                for term in single_terms(sparse)
            ]
        with self._guard():
            responses = self._client.query_batch_points(self.collection, requests=requests)
        lists = [[_scored(point) for point in response.points] for response in responses]
        evidence = evidence_limit > 0
        return hits_with_evidence(
            dense,
            sparse.indices,
            lists[0],
            lists[1] if evidence else None,
            lists[2] if evidence else None,
            query_cosines=options.query_cosines,
            term_lists=lists[3:] if evidence else None,
        )

    def search_one(
        self,
        using: str,
        vector: list[float] | SparseVector,
        *,
        tenant: str,
        top_k: int,
        sources: Sequence[str] | None = None,
    ) -> list[Hit]:
        """One retriever alone (`DENSE` or `SPARSE`): the baselines hybrid search must beat."""
        query: list[float] | models.SparseVector = (
            models.SparseVector(indices=vector.indices, values=vector.values)
            if isinstance(vector, SparseVector)
            else vector
        )
        with self._guard():
            response = self._client.query_points(
                self.collection,
                query=query,
                using=using,
                query_filter=_source_filter(tenant, sources),
                limit=top_k,
                with_payload=True,
            )
        return [hit_of(p.id, p.payload, float(p.score)) for p in response.points]

    def shelf(self, name: str, dimensions: int = 1) -> QdrantShelf:
        return QdrantShelf(
            self._client, f"{self.collection}_{name}", dimensions, self._guard, self.embedded
        )

    # --- copying (`store migrate`) -----------------------------------------------------
    def stored_schema(self) -> dict[str, Any]:
        with self._guard():
            return dict(self._client.get_collection(self.collection).config.metadata or {})

    def export(self, *, batch: int = 512) -> Iterator[list[StoredPoint]]:
        """Every stored point with its vectors and payload, page by page."""
        offset: Any = None
        while True:
            with self._guard():
                records, offset = self._client.scroll(
                    self.collection,
                    limit=batch,
                    offset=offset,
                    with_payload=True,
                    with_vectors=True,
                )
            page = []
            for record in records:
                vector = record.vector if isinstance(record.vector, dict) else {}
                dense, sparse = vector.get(DENSE), vector.get(SPARSE)
                page.append(
                    StoredPoint(
                        id=str(record.id),
                        dense=[v for v in dense if isinstance(v, float)]
                        if isinstance(dense, list)
                        else [],
                        sparse=SparseVector(
                            indices=list(sparse.indices), values=list(sparse.values)
                        )
                        if isinstance(sparse, models.SparseVector)
                        else SparseVector(indices=[], values=[]),
                        payload=dict(record.payload or {}),
                    )
                )
            if page:
                yield page
            if offset is None:
                break

    def import_points(self, points: Sequence[StoredPoint]) -> None:
        structs = [
            models.PointStruct(
                id=p.id,
                vector={
                    DENSE: p.dense,
                    SPARSE: models.SparseVector(indices=p.sparse.indices, values=p.sparse.values),
                },
                payload=p.payload,
            )
            for p in points
        ]
        with self._guard():
            self._client.upsert(self.collection, points=structs, wait=True)

    def maintain(self) -> bool:
        """Nothing to do: a server optimises in the background, local mode never needs to."""
        return False


class QdrantShelf:
    """A record collection beside the corpus, through the store's client and its guard (the
    process-wide lock in local mode; error translation everywhere)."""

    def __init__(
        self,
        client: QdrantClient,
        collection: str,
        dimensions: int,
        guard: Callable[[], contextlib.AbstractContextManager[None]],
        embedded: bool,
    ) -> None:
        self.location = collection
        self._client = client
        self._collection = collection
        self._dimensions = dimensions
        self._guard = guard
        self._embedded = embedded
        self._ready = False

    def _ensure(self) -> None:
        if self._ready or self._client.collection_exists(self._collection):
            self._ready = True
            return
        self._client.create_collection(
            self._collection,
            vectors_config={
                DENSE: models.VectorParams(size=self._dimensions, distance=models.Distance.COSINE)
            },
        )
        if not self._embedded:  # a server filters fast on indexed fields
            for field in ("tenant", "trace_id"):
                self._client.create_payload_index(
                    self._collection, field, models.PayloadSchemaType.KEYWORD
                )
            self._client.create_payload_index(
                self._collection, "time", models.PayloadSchemaType.FLOAT
            )
        self._ready = True

    def put(self, records: Sequence[ShelfRecord]) -> None:
        if not records:
            return
        points = [
            models.PointStruct(
                id=r.id, vector={DENSE: r.vector} if r.vector is not None else {}, payload=r.payload
            )
            for r in records
        ]
        with self._guard():
            self._ensure()
            self._client.upsert(self._collection, points=points, wait=True)

    @staticmethod
    def _filter(
        equals: Mapping[str, str] | None, since: float | None, until: float | None
    ) -> models.Filter | None:
        must: list[models.Condition] = [
            models.FieldCondition(key=key, match=models.MatchValue(value=value))
            for key, value in (equals or {}).items()
        ]
        if since is not None or until is not None:
            must.append(models.FieldCondition(key="time", range=models.Range(gte=since, lt=until)))
        return models.Filter(must=must) if must else None

    def find(
        self,
        *,
        equals: Mapping[str, str] | None = None,
        since: float | None = None,
        until: float | None = None,
        with_vectors: bool = False,
    ) -> Iterator[ShelfRecord]:
        offset: Any = None
        while True:
            with self._guard():
                if not self._client.collection_exists(self._collection):
                    return
                records, offset = self._client.scroll(
                    self._collection,
                    scroll_filter=self._filter(equals, since, until),
                    limit=512,
                    offset=offset,
                    with_payload=True,
                    with_vectors=[DENSE] if with_vectors else False,
                )
            for record in records:
                vector = record.vector.get(DENSE) if isinstance(record.vector, dict) else None
                yield ShelfRecord(
                    id=str(record.id),
                    payload=dict(record.payload or {}),
                    vector=[v for v in vector if isinstance(v, float)]
                    if isinstance(vector, list)
                    else None,
                )
            if offset is None:
                return

    def drop_before(self, time: float) -> None:
        selected = self._filter(None, None, time)
        assert selected is not None
        with self._guard():
            if self._client.collection_exists(self._collection):
                self._client.delete(
                    self._collection,
                    points_selector=models.FilterSelector(filter=selected),
                    wait=True,
                )


def _scored(point: models.ScoredPoint) -> Scored:
    vector = point.vector if isinstance(point.vector, dict) else {}
    dense, sparse = vector.get(DENSE), vector.get(SPARSE)
    return Scored(
        id=str(point.id),
        score=float(point.score),
        payload=point.payload,
        dense=[v for v in dense if isinstance(v, float)] if isinstance(dense, list) else None,
        sparse_indices=list(sparse.indices) if isinstance(sparse, models.SparseVector) else None,
    )
