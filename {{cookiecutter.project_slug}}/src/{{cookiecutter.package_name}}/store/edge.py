"""The embedded default: Qdrant's own Rust engine in this process, through qdrant-edge-py.

One shard per collection under `<data_dir>/edge/<collection>/`. What the engine lacks is
handled here: collection metadata (the schema check) lives in a side file; a second process
is refused with a message naming the holder (our own lock, taken before the engine's, so it
also covers the moment before the shard exists); deleted points are vacuumed by `maintain()`,
which the ingestion worker calls after writing, because the engine optimises only on request
and queries wait while it does.

Dense search is exact (no HNSW graph): on two cores a whole hybrid request with its refusal
evidence takes about 21 ms at 100k chunks, recall is exact, and there is no index build that
would block queries for 20 s at that size (ADR 0015). The engine is safe under concurrent
reads and writes, so there is no process-wide lock, unlike local mode.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import qdrant_edge as qe

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

log = logging.getLogger(__name__)

_SCHEMA_FILE = "collection.json"
_HOLDER_FILE = "holder.json"  # the name holder_file() gives
_SHARD_DIR = "shard"
_PAGE = 512


def _match(key: str, value: str) -> qe.FieldCondition:
    return qe.FieldCondition(key=key, match=qe.MatchValue(value))


def _document(tenant: str, corpus: str, source: str) -> list[Any]:
    return [_match("tenant", tenant), _match("corpus", corpus), _match("source", source)]


def _source_filter(tenant: str, sources: Sequence[str] | None) -> qe.Filter:
    must: list[Any] = [_match("tenant", tenant)]
    if sources:
        must.append(qe.FieldCondition(key="source", match=qe.MatchAny(list(sources))))
    return qe.Filter(must=must)


def _sparse(vector: SparseVector) -> qe.SparseVector:
    return qe.SparseVector(indices=list(vector.indices), values=list(vector.values))


def _scored(point: Any) -> Scored:
    vector = point.vector if isinstance(point.vector, dict) else {}
    dense, sparse = vector.get(DENSE), vector.get(SPARSE)
    return Scored(
        id=str(point.id),
        score=float(getattr(point, "score", 0.0)),
        payload=point.payload,
        dense=dense if isinstance(dense, list) else None,
        sparse_indices=list(sparse.indices) if isinstance(sparse, qe.SparseVector) else None,
    )


class EdgeStore:
    embedded = True

    def __init__(self, settings: Settings) -> None:
        self.collection = settings.collection
        self._folder = settings.edge_path / settings.collection
        self.location = str(self._folder)
        self._note = HolderNote(self._folder / _HOLDER_FILE)
        self._state = threading.Lock()  # opening, creating and closing; queries run freely
        self._folder.mkdir(parents=True, exist_ok=True)
        self._lock_file = self._claim()
        self._shard: qe.EdgeShard | None = None
        # Opened with the store, closed with it; one per name (a shard opens once per process).
        self._shelves: dict[str, EdgeShelf] = {}
        try:
            if (self._folder / _SHARD_DIR).exists():
                self._shard = self._engine(lambda: qe.EdgeShard.load(str(self._shard_path)))
        except BaseException:
            self._release()
            raise

    @property
    def _shard_path(self) -> Path:
        return self._folder / _SHARD_DIR

    # --- opening and closing -----------------------------------------------------------
    def _claim(self) -> IO[str]:
        handle = (self._folder / ".lock").open("a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            handle.close()
            raise StoreInUseError(self._note.in_use_message(self.location)) from exc
        self._note.write()
        return handle

    def _release(self) -> None:
        self._note.release()
        self._lock_file.close()  # closing the file drops the lock

    def close(self) -> None:
        with self._state:
            if self._lock_file.closed:
                return
            for shelf in self._shelves.values():
                shelf.close()
            if self._shard is not None:
                try:
                    self._shard.flush()
                except Exception as exc:  # the WAL still holds every acknowledged write
                    log.warning("Flushing the store at %s on close failed: %s", self.location, exc)
                self._shard.close()
                self._shard = None
            self._release()

    def _engine(self, call: Any) -> Any:
        """Run an engine call, turning its raw errors into actionable ones."""
        try:
            return call()
        except Exception as exc:
            text = str(exc)
            if "WouldBlock" in text:  # the engine's own WAL lock, held by a tool of its own
                raise StoreInUseError(
                    f"The embedded store at {self.location} is locked by another program that "
                    "opened its files directly (the engine's write-ahead log is locked). Stop "
                    "that program, or set RAG_QDRANT_URL to a Qdrant server."
                ) from exc
            if isinstance(exc, OSError) or "No space left" in text or "Read-only" in text:
                raise StoreUnavailableError(
                    f"The embedded store at {self.location} cannot be written: {text}. Free "
                    "disk space or make the data folder (RAG_DATA_DIR) writable."
                ) from exc
            raise

    def _current(self) -> qe.EdgeShard | None:
        """The open shard, or None before the collection exists."""
        if self._lock_file.closed:
            raise StoreUnavailableError(f"The embedded store at {self.location} is closed.")
        return self._shard

    # --- schema --------------------------------------------------------------------------
    def collection_exists(self) -> bool:
        """Asked of the disk, not only of this process: readiness must see a deleted folder."""
        return self._shard is not None and (self._folder / _SCHEMA_FILE).is_file()

    def ensure_collection(self, dense_model: str, dense_dimensions: int, sparse_model: str) -> None:
        """Create the shard, or check that the existing one was built the same way."""
        wanted = schema_of(dense_model, dense_dimensions, sparse_model)
        schema_file = self._folder / _SCHEMA_FILE
        with self._state:
            if self._shard is None:
                config = qe.EdgeConfig(
                    vectors={
                        DENSE: qe.EdgeVectorParams(
                            size=dense_dimensions, distance=qe.Distance.Cosine
                        )
                    },
                    sparse_vectors={SPARSE: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
                    optimizers=qe.EdgeOptimizersConfig(
                        indexing_threshold=0,  # no HNSW graph: exact dense search (docstring)
                        # Vacuum small shards too, once a tenth is deleted: BM25's IDF counts
                        # deleted points until then (default: 20%, and never below 1000).
                        deleted_threshold=0.1,
                        vacuum_min_vector_number=10,
                    ),
                )
                if self._shard_path.exists():  # a shard created without its schema file
                    shard = self._engine(lambda: qe.EdgeShard.load(str(self._shard_path)))
                else:
                    shard = self._engine(lambda: qe.EdgeShard.create(str(self._shard_path), config))
                    for field in ("source", "corpus"):
                        shard.update(
                            qe.UpdateOperation.create_field_index(
                                field, qe.PayloadSchemaType.Keyword
                            )
                        )
                    # is_tenant: each tenant's points are kept together for filtered search.
                    shard.update(
                        qe.UpdateOperation.create_field_index(
                            "tenant", qe.KeywordIndexParams(is_tenant=True)
                        )
                    )
                    shard.flush()
                if not schema_file.exists():
                    temporary = schema_file.with_suffix(".tmp")
                    temporary.write_text(json.dumps(wanted, indent=2), encoding="utf-8")
                    os.replace(temporary, schema_file)
                self._shard = shard
        found = json.loads(schema_file.read_text(encoding="utf-8"))
        check_schema(self.collection, found, wanted)

    # --- writes --------------------------------------------------------------------------
    def _update(self, operation: qe.UpdateOperation) -> None:
        shard = self._current()
        if shard is None:
            raise StoreUnavailableError(
                f"Collection {self.collection!r} does not exist yet at {self.location}: "
                "ingest documents first."
            )
        self._engine(lambda: shard.update(operation))

    def upsert(self, points: Sequence[Point]) -> None:
        if not points:
            return
        stamp = now()
        self._update(
            qe.UpdateOperation.upsert_points(
                [
                    qe.Point(
                        p.chunk.id,
                        {DENSE: list(p.dense), SPARSE: _sparse(p.sparse)},
                        payload_of(p, stamp),
                    )
                    for p in points
                ]
            )
        )

    def set_aliases(self, *, tenant: str, corpus: str, source: str, aliases: Sequence[str]) -> None:
        self._update(
            qe.UpdateOperation.set_payload_by_filter(
                qe.Filter(must=_document(tenant, corpus, source)), {"aliases": list(aliases)}
            )
        )

    def delete_document(
        self, *, tenant: str, corpus: str, source: str, keep_doc_hash: str | None = None
    ) -> None:
        must_not: list[Any] | None = (
            [_match("doc_hash", keep_doc_hash)] if keep_doc_hash is not None else None
        )
        if self._shard is None:
            return  # nothing stored, nothing to delete
        self._update(
            qe.UpdateOperation.delete_points_by_filter(
                qe.Filter(must=_document(tenant, corpus, source), must_not=must_not)
            )
        )

    def maintain(self) -> bool:
        """Vacuum deleted points (BM25's IDF counts them until then). Queries wait while it
        runs (about 1.6 s after deleting a third of 100k chunks), and it is a no-op in
        milliseconds when nothing was deleted; the ingestion worker calls it after a run."""
        shard = self._current()
        if shard is None:
            return False
        return bool(self._engine(shard.optimize))

    # --- reads ---------------------------------------------------------------------------
    def count(self) -> int:
        shard = self._current()
        if shard is None:
            return 0
        return int(self._engine(lambda: shard.count(qe.CountRequest(exact=True))))

    def _scroll(
        self, query_filter: qe.Filter, with_payload: bool | list[str], limit: int
    ) -> Iterator[Any]:
        shard = self._current()
        if shard is None:
            return
        offset: Any = None
        returned = 0
        while returned < limit:
            request = qe.ScrollRequest(
                offset=offset,
                limit=min(_PAGE, limit - returned),
                filter=query_filter,
                with_payload=with_payload,
                with_vector=False,
            )
            records, offset = self._engine(lambda: shard.scroll(request))  # noqa: B023
            returned += len(records)
            yield from records
            if offset is None:
                break

    def documents(self, *, tenant: str, corpus: str | None = None) -> list[IndexedDocument]:
        must: list[Any] = [_match("tenant", tenant)]
        if corpus is not None:
            must.append(_match("corpus", corpus))
        records = self._scroll(qe.Filter(must=must), list(DOCUMENT_FIELDS), limit=2**62)
        return collect_documents(tenant, (record.payload or {} for record in records))

    def chunks(
        self,
        *,
        tenant: str,
        ids: Sequence[str] | None = None,
        corpus: str | None = None,
        source: str | None = None,
        limit: int,
    ) -> list[Hit]:
        must: list[Any] = [_match("tenant", tenant)]
        if ids is not None:
            valid = [i for i in ids if _is_uuid(i)]
            if not valid:
                return []
            must.append(qe.HasIdCondition(point_ids=set(valid)))
        for key, value in (("corpus", corpus), ("source", source)):
            if value is not None:
                must.append(_match(key, value))
        records = self._scroll(qe.Filter(must=must), True, limit=limit)
        return in_document_order([hit_of(record.id, record.payload) for record in records])

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
        """Hybrid search in the engine, only ever over the tenant's chunks, as QdrantStore
        does it: dense and BM25 prefetch fused by weighted RRF or DBSF, and with an
        `evidence_limit` the dense-only and BM25-only top lists in the same batch."""
        query_filter = _source_filter(tenant, sources)
        limit = max(options.prefetch_limit, top_k)
        sparse_query = _sparse(sparse)
        fusion: Any = (
            qe.Fusion.Rrf(k=options.rrf_k, weights=[options.rrf_dense_weight, 1.0])
            if options.fusion == "rrf"
            else qe.Fusion.Dbsf()
        )
        requests = [
            qe.QueryRequest(
                limit=top_k,
                prefetches=[
                    qe.Prefetch(
                        limit=limit, query=qe.Query.Nearest(dense, using=DENSE), filter=query_filter
                    ),
                    qe.Prefetch(
                        limit=limit,
                        query=qe.Query.Nearest(sparse_query, using=SPARSE),
                        filter=query_filter,
                    ),
                ],
                query=fusion,
                filter=query_filter,
                with_payload=True,
                # The stored chunk vectors: their cosine to the query costs no embedding.
                with_vector=[DENSE] if options.query_cosines else False,
            )
        ]
        if options.evidence_limit > 0:
            for using, vector in ((DENSE, dense), (SPARSE, sparse_query)):
                requests.append(
                    qe.QueryRequest(
                        limit=options.evidence_limit,
                        query=qe.Query.Nearest(vector, using=using),
                        filter=query_filter,
                        with_payload=False,
                        with_vector=[SPARSE] if using == SPARSE else False,
                    )
                )
            terms = single_terms(sparse)
            requests += [
                qe.QueryRequest(
                    limit=TERM_COUNT_CAP,
                    query=qe.Query.Nearest(_sparse(term), using=SPARSE),
                    filter=query_filter,
                    with_payload=False,
                    with_vector=False,
                )
                for term in terms
            ]
        shard = self._current()
        if shard is None:
            return []
        batch = qe.QueryBatchRequest(requests)
        responses = self._engine(lambda: shard.query_batch(batch))
        lists = [[_scored(point) for point in response] for response in responses]
        evidence = options.evidence_limit > 0
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
        query = _sparse(vector) if isinstance(vector, SparseVector) else vector
        request = qe.QueryRequest(
            limit=top_k,
            query=qe.Query.Nearest(query, using=using),
            filter=_source_filter(tenant, sources),
            with_payload=True,
        )
        shard = self._current()
        if shard is None:
            return []
        points = self._engine(lambda: shard.query(request))
        return [hit_of(p.id, p.payload, float(p.score)) for p in points]

    def shelf(self, name: str, dimensions: int = 1) -> EdgeShelf:
        with self._state:
            shelf = self._shelves.get(name)
            if shelf is None:
                folder = self._folder.parent / f"{self.collection}_{name}"
                shelf = self._shelves[name] = EdgeShelf(folder, dimensions)
            return shelf

    # --- copying (`store migrate`) -----------------------------------------------------
    def stored_schema(self) -> dict[str, Any]:
        path = self._folder / _SCHEMA_FILE
        if not path.exists():
            return {}
        return dict(json.loads(path.read_text(encoding="utf-8")))

    def export(self, *, batch: int = _PAGE) -> Iterator[list[StoredPoint]]:
        """Every stored point with its vectors and payload, page by page."""
        shard = self._current()
        if shard is None:
            return
        offset: Any = None
        while True:
            request = qe.ScrollRequest(
                offset=offset, limit=batch, with_payload=True, with_vector=True
            )
            records, offset = self._engine(lambda: shard.scroll(request))  # noqa: B023
            page = []
            for record in records:
                vector = record.vector if isinstance(record.vector, dict) else {}
                sparse = vector.get(SPARSE)
                page.append(
                    StoredPoint(
                        id=str(record.id),
                        dense=list(vector.get(DENSE) or []),
                        sparse=SparseVector(
                            indices=list(sparse.indices) if sparse is not None else [],
                            values=list(sparse.values) if sparse is not None else [],
                        ),
                        payload=dict(record.payload or {}),
                    )
                )
            if page:
                yield page
            if offset is None:
                break

    def import_points(self, points: Sequence[StoredPoint]) -> None:
        self._update(
            qe.UpdateOperation.upsert_points(
                [
                    qe.Point(p.id, {DENSE: p.dense, SPARSE: _sparse(p.sparse)}, p.payload)
                    for p in points
                ]
            )
        )


class EdgeShelf:
    """A record collection in its own shard beside the corpus's, opened on first use; held
    by the process that holds the corpus (one process per embedded store)."""

    def __init__(self, folder: Path, dimensions: int) -> None:
        self.location = str(folder)
        self._folder = folder
        self._dimensions = dimensions
        self._shard: qe.EdgeShard | None = None
        self._lock = threading.Lock()

    def _open(self, create: bool) -> qe.EdgeShard | None:
        with self._lock:
            if self._shard is None and (create or self._folder.exists()):
                config = qe.EdgeConfig(
                    vectors={
                        DENSE: qe.EdgeVectorParams(
                            size=self._dimensions, distance=qe.Distance.Cosine
                        )
                    }
                )
                try:
                    self._shard = (
                        qe.EdgeShard.load(self.location)
                        if self._folder.exists()
                        else qe.EdgeShard.create(self.location, config)
                    )
                except Exception as exc:
                    raise StoreUnavailableError(
                        f"The record store at {self.location} cannot be opened: {exc}"
                    ) from exc
            return self._shard

    def put(self, records: Sequence[ShelfRecord]) -> None:
        if not records:
            return
        shard = self._open(create=True)
        assert shard is not None
        shard.update(
            qe.UpdateOperation.upsert_points(
                [
                    qe.Point(r.id, {DENSE: r.vector} if r.vector is not None else {}, r.payload)
                    for r in records
                ]
            )
        )

    def _filter(
        self, equals: Mapping[str, str] | None, since: float | None, until: float | None
    ) -> qe.Filter | None:
        must: list[Any] = [_match(key, value) for key, value in (equals or {}).items()]
        if since is not None or until is not None:
            must.append(qe.FieldCondition(key="time", range=qe.RangeFloat(gte=since, lt=until)))
        return qe.Filter(must=must) if must else None

    def find(
        self,
        *,
        equals: Mapping[str, str] | None = None,
        since: float | None = None,
        until: float | None = None,
        with_vectors: bool = False,
    ) -> Iterator[ShelfRecord]:
        shard = self._open(create=False)
        if shard is None:
            return
        offset: Any = None
        while True:
            request = qe.ScrollRequest(
                offset=offset,
                limit=_PAGE,
                filter=self._filter(equals, since, until),
                with_payload=True,
                with_vector=[DENSE] if with_vectors else False,
            )
            records, offset = shard.scroll(request)
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
        shard = self._open(create=False)
        if shard is not None:
            selected = self._filter(None, None, time)
            assert selected is not None
            shard.update(qe.UpdateOperation.delete_points_by_filter(selected))

    def close(self) -> None:
        with self._lock:
            if self._shard is not None:
                self._shard.close()
                self._shard = None


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
