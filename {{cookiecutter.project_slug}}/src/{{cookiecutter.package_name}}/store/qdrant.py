"""Qdrant through qdrant-client (a server, or local mode): schema, hybrid query, and the rules
local mode needs.

Embedded (local) mode is not thread-safe under mixed reads and writes and allows one client
per storage folder, so every call goes through one process-wide lock, and a second process
gets a message naming the process that holds the folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from ..domain import Hit, IndexedDocument, Point, SparseVector
from ..embeddings import cosine
from ..errors import ConfigurationError, StoreInUseError, StoreUnavailableError
from ..settings import Settings
from .base import DENSE, SCHEMA_VERSION, SPARSE, SearchOptions

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
        self._holder_path = settings.qdrant_path / _HOLDER_FILE
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
            raise StoreInUseError(self._in_use_message()) from exc
        self._holder_path.write_text(
            json.dumps(
                {
                    "pid": os.getpid(),
                    "command": " ".join(Path(sys.argv[0]).name.split() + sys.argv[1:]),
                    "since": datetime.now(UTC).isoformat(timespec="seconds"),
                }
            ),
            encoding="utf-8",
        )
        return client

    def _in_use_message(self) -> str:
        holder = "another process"
        with contextlib.suppress(OSError, ValueError, KeyError):
            info = json.loads(self._holder_path.read_text(encoding="utf-8"))
            holder = f"process {info['pid']} (`{info['command']}`, since {info['since']})"
        return (
            f"The embedded store at {self.location} is in use by {holder}. Embedded Qdrant "
            "allows one process at a time: stop that process (questions can go to its API "
            "while it runs), or set RAG_QDRANT_URL to a Qdrant server that many processes "
            "can share."
        )

    def close(self) -> None:
        with self._lock:
            self._client.close()
            if self.embedded:
                with contextlib.suppress(OSError, ValueError, KeyError):
                    info = json.loads(self._holder_path.read_text(encoding="utf-8"))
                    if info["pid"] == os.getpid():
                        self._holder_path.unlink()

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
        wanted = {
            "schema_version": SCHEMA_VERSION,
            "dense_model": dense_model,
            "dense_dimensions": dense_dimensions,
            "sparse_model": sparse_model,
        }
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
        mismatched = {k: (found.get(k), v) for k, v in wanted.items() if found.get(k) != v}
        if mismatched:
            details = ", ".join(
                f"{k}: stored {a!r}, configured {b!r}" for k, (a, b) in mismatched.items()
            )
            raise ConfigurationError(
                f"Collection {self.collection!r} was built with other embedding settings "
                f"({details}). Vectors from different models cannot be mixed: set "
                "RAG_COLLECTION to a new name and ingest again, or restore the previous settings."
            )

    # --- writes --------------------------------------------------------------------------
    def upsert(self, points: Sequence[Point]) -> None:
        if not points:
            return
        now = datetime.now(UTC).isoformat(timespec="seconds")
        structs = [
            models.PointStruct(
                id=p.chunk.id,
                vector={
                    DENSE: p.dense,
                    SPARSE: models.SparseVector(indices=p.sparse.indices, values=p.sparse.values),
                },
                payload={
                    "tenant": p.tenant,
                    "source": p.chunk.source,
                    "corpus": p.corpus,
                    "title": p.chunk.title,
                    "section": p.chunk.section,
                    "chunk_index": p.chunk.index,
                    "text": p.chunk.text,
                    "content_hash": p.chunk.content_hash,
                    "doc_hash": p.chunk.doc_hash,
                    "doc_chunks": p.chunk.doc_chunks,
                    "ingested_at": now,
                    "metadata": p.chunk.metadata,
                    "aliases": list(p.aliases),
                },
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
        """One tenant's documents, from chunk payloads (the store is the sync state). The
        same source in two corpora is two documents; duplicates' names are listed too."""
        must: list[models.Condition] = [_tenant(tenant)]
        if corpus is not None:
            must.append(models.FieldCondition(key="corpus", match=models.MatchValue(value=corpus)))
        scroll_filter = models.Filter(must=must)
        found: dict[tuple[str, str], IndexedDocument] = {}
        offset: Any = None
        while True:
            with self._guard():
                records, offset = self._client.scroll(
                    self.collection,
                    scroll_filter=scroll_filter,
                    limit=512,
                    offset=offset,
                    with_payload=[
                        "source",
                        "corpus",
                        "doc_hash",
                        "doc_chunks",
                        "ingested_at",
                        "aliases",
                        "metadata",
                    ],
                    with_vectors=False,
                )
            for record in records:
                payload = record.payload or {}
                source, in_corpus = str(payload["source"]), str(payload["corpus"])
                document = found.setdefault(
                    (in_corpus, source),
                    IndexedDocument(tenant=tenant, corpus=in_corpus, source=source),
                )
                version = str(payload["doc_hash"])
                document.chunks += 1
                document.stored[version] = document.stored.get(version, 0) + 1
                document.declared[version] = int(payload.get("doc_chunks", -1))
                document.ingested_at = max(document.ingested_at, str(payload.get("ingested_at")))
                document.aliases = list(payload.get("aliases") or [])
                document.sha256 = str((payload.get("metadata") or {}).get("sha256", ""))
            if offset is None:
                break
        for document in list(found.values()):
            for alias in document.aliases:
                alias_entry = replace(document, source=alias, aliases=[], alias_of=document.source)
                found.setdefault((document.corpus, alias), alias_entry)
        return list(found.values())

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
            found += [_hit(record) for record in records]
            if offset is None:
                break
        return sorted(
            found,
            key=lambda h: (
                str(h.metadata.get("corpus", "")),
                h.source,
                int(h.metadata.get("chunk_index", 0)),
            ),
        )

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
        with self._guard():
            responses = self._client.query_batch_points(self.collection, requests=requests)
        dense_ranks: dict[str, tuple[int | None, float | None]] = {}
        sparse_ranks: dict[str, int] = {}
        unmatched: float | None = None
        if evidence_limit > 0:
            for rank, point in enumerate(responses[1].points, start=1):
                dense_ranks[str(point.id)] = (rank, float(point.score))
            matched: set[int] = set()
            for rank, point in enumerate(responses[2].points, start=1):
                sparse_ranks[str(point.id)] = rank
                stored = point.vector.get(SPARSE) if isinstance(point.vector, dict) else None
                if isinstance(stored, models.SparseVector):
                    matched.update(stored.indices)
            terms = set(sparse.indices)
            unmatched = len(terms - matched) / len(terms) if terms else 0.0
        hits = []
        for point in responses[0].points:
            dense_rank, dense_score = dense_ranks.get(str(point.id), (None, None))
            hit = _hit(point, dense_rank, dense_score, sparse_ranks.get(str(point.id)))
            cosine = _query_cosine(dense, point) if options.query_cosines else None
            hits.append(replace(hit, unmatched_share=unmatched, query_cosine=cosine))
        return hits

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
        return [_hit(point) for point in response.points]


def _query_cosine(query: list[float], point: models.ScoredPoint) -> float | None:
    stored = point.vector.get(DENSE) if isinstance(point.vector, dict) else None
    if not isinstance(stored, list) or not stored or not isinstance(stored[0], float):
        return None  # a dense vector is a flat list of floats
    return cosine(query, [float(v) for v in stored if isinstance(v, float)])


def _hit(
    point: models.ScoredPoint | models.Record,
    dense_rank: int | None = None,
    dense_score: float | None = None,
    sparse_rank: int | None = None,
) -> Hit:
    payload = dict(point.payload or {})
    text = str(payload.pop("text", ""))
    return Hit(
        chunk_id=str(point.id),
        source=str(payload.get("source", "")),
        text=text,
        score=float(point.score) if isinstance(point, models.ScoredPoint) else 0.0,
        metadata=payload,
        dense_score=dense_score,
        dense_rank=dense_rank,
        sparse_rank=sparse_rank,
    )
