"""The store contract: what every engine behind `VectorStore` must do the same way. Each test
runs on the edge engine (the embedded default) and on qdrant-client's local mode, and on a
Qdrant server where QDRANT_TEST_URL is set."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from {{ cookiecutter.package_name }}.container import Services, build_services
from {{ cookiecutter.package_name }}.domain import (
    TERM_COUNT_CAP,
    Chunk,
    Hit,
    Point,
    Query,
    SparseVector,
)
from {{ cookiecutter.package_name }}.embeddings import DenseEncoder, SparseEncoder
from {{ cookiecutter.package_name }}.errors import ConfigurationError, StoreInUseError
from {{ cookiecutter.package_name }}.settings import Settings
from {{ cookiecutter.package_name }}.store import VectorStore, open_store
from {{ cookiecutter.package_name }}.store.base import DENSE, SPARSE, SearchOptions
from {{ cookiecutter.package_name }}.store.records import ShelfRecord

from .conftest import make_settings

SERVER_URL = os.environ.get("QDRANT_TEST_URL")
ENGINES = [
    "edge",
    "local",
    pytest.param(
        "server",
        marks=[
            pytest.mark.qdrant_server,
            pytest.mark.skipif(not SERVER_URL, reason="no Qdrant server: set QDRANT_TEST_URL"),
        ],
    ),
]
EMBEDDED = ["edge", "local"]


def engine_settings(tmp_path: Path, model_dir: Path, engine: str, **extra: object) -> Settings:
    if engine == "server":
        return make_settings(
            tmp_path,
            model_dir,
            qdrant_url=SERVER_URL,
            collection=f"contract_{uuid.uuid4().hex[:8]}",
            **extra,
        )
    return make_settings(tmp_path, model_dir, embedded_engine=engine, **extra)


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store(tmp_path: Path, model_dir: Path, engine: str) -> Iterator[VectorStore]:
    opened = open_store(engine_settings(tmp_path, model_dir, engine))
    opened.ensure_collection("test/dense", 4, "test/bm25")
    yield opened
    if engine == "server":
        from {{ cookiecutter.package_name }}.store.qdrant import QdrantStore

        assert isinstance(opened, QdrantStore)
        opened.client.delete_collection(opened.collection)
    opened.close()


OPTIONS = SearchOptions(
    fusion="rrf",
    rrf_k=2,
    rrf_dense_weight=3.0,
    prefetch_limit=10,
    evidence_limit=5,
    query_cosines=True,
)


def point(
    n: int,
    dense: list[float],
    terms: list[int],
    *,
    tenant: str = "acme",
    source: str = "a.md",
    doc_hash: str = "v1",
    corpus: str = "kb",
    index: int = 0,
) -> Point:
    chunk = Chunk(
        id=str(uuid.UUID(int=n)),
        source=source,
        text=f"chunk {n} of {source}",
        index=index,
        title=source,
        section="",
        content_hash=f"c{n}",
        doc_hash=doc_hash,
        doc_chunks=2,
        metadata={"sha256": f"sha-{source}"},
    )
    return Point(
        chunk=chunk,
        dense=dense,
        sparse=SparseVector(indices=terms, values=[1.0] * len(terms)),
        corpus=corpus,
        tenant=tenant,
    )


def search(
    store: VectorStore, dense: list[float], terms: list[int], tenant: str = "acme"
) -> list[Hit]:
    sparse = SparseVector(indices=terms, values=[1.0] * len(terms))
    return store.search(dense, sparse, tenant=tenant, top_k=3, sources=None, options=OPTIONS)


def test_written_chunks_come_back_with_evidence_and_only_for_their_tenant(
    store: VectorStore,
) -> None:
    store.upsert(
        [
            point(1, [1, 0, 0, 0], [10, 11], index=0),
            point(2, [0, 1, 0, 0], [12], index=1),
            point(3, [1, 0, 0, 0], [10, 11], tenant="rival", source="secret.md"),
        ]
    )
    assert store.count() == 3
    hits = search(store, [1, 0, 0, 0], [10, 99])
    assert hits[0].chunk_id == str(uuid.UUID(int=1))
    assert {h.source for h in hits} == {"a.md"}  # never the other tenant's chunk
    top = hits[0]
    assert top.text == "chunk 1 of a.md"
    assert top.metadata["corpus"] == "kb"
    assert top.metadata["chunk_index"] == 0
    assert top.dense_rank == 1
    assert top.sparse_rank == 1
    assert top.dense_score == pytest.approx(1.0, abs=1e-5)
    assert top.query_cosine == pytest.approx(1.0, abs=1e-5)
    assert top.unmatched_share == pytest.approx(0.5)  # term 99 is in no chunk
    assert search(store, [1, 0, 0, 0], [10], tenant="nobody") == []


def test_hits_count_each_query_terms_chunks_within_the_tenant_and_sources_up_to_a_cap(
    store: VectorStore,
) -> None:
    """Refusal's term evidence: per distinct query term, the searched chunks holding it (the
    rival tenant's never count, a sources filter narrows them, and counting stops at the cap)."""
    common = [
        point(100 + n, [0, 0, 1, 0], [7], source="c.md", index=n) for n in range(TERM_COUNT_CAP + 3)
    ]
    store.upsert(
        [
            point(1, [1, 0, 0, 0], [10, 11], index=0),
            point(2, [0, 1, 0, 0], [12, 10], index=1),
            point(3, [1, 0, 0, 0], [10, 11, 12, 99], tenant="rival", source="secret.md"),
            *common,
        ]
    )
    hits = search(store, [1, 0, 0, 0], [10, 12, 99, 7])
    assert hits
    assert {h.term_chunk_counts for h in hits} == {(2, 1, 0, TERM_COUNT_CAP)}
    narrowed = store.search(
        [1, 0, 0, 0],
        SparseVector(indices=[10, 7], values=[1.0, 1.0]),
        tenant="acme",
        top_k=3,
        sources=["a.md"],
        options=OPTIONS,
    )
    assert {h.term_chunk_counts for h in narrowed} == {(2, 0)}
    without = replace(OPTIONS, evidence_limit=0)
    plain = store.search(
        [1, 0, 0, 0],
        SparseVector([10], [1.0]),
        tenant="acme",
        top_k=3,
        sources=None,
        options=without,
    )
    assert all(h.term_chunk_counts is None for h in plain)


def test_a_hits_sparse_score_is_its_score_in_the_bm25_only_list(store: VectorStore) -> None:
    store.upsert(
        [
            point(1, [1, 0, 0, 0], [10, 11], index=0),
            point(2, [0, 1, 0, 0], [11], index=1),
            point(3, [0, 0, 1, 0], [12], source="b.md"),
        ]
    )
    sparse = SparseVector(indices=[10, 11], values=[1.0, 1.0])
    alone = {h.chunk_id: h.score for h in store.search_one(SPARSE, sparse, tenant="acme", top_k=5)}
    hits = store.search([0, 0, 1, 0], sparse, tenant="acme", top_k=3, sources=None, options=OPTIONS)
    with_bm25 = [h for h in hits if h.sparse_rank is not None]
    assert len(with_bm25) == 2
    for hit in with_bm25:
        assert hit.sparse_score == pytest.approx(alone[hit.chunk_id])
    assert all(h.sparse_score is None for h in hits if h.sparse_rank is None)
    assert with_bm25[0].sparse_score is not None
    assert with_bm25[0].sparse_score > 0


def test_documents_list_versions_and_aliases(store: VectorStore) -> None:
    store.upsert([point(1, [1, 0, 0, 0], [1], index=0), point(2, [0, 1, 0, 0], [2], index=1)])
    store.set_aliases(tenant="acme", corpus="kb", source="a.md", aliases=["copy-of-a.md"])
    documents = {d.source: d for d in store.documents(tenant="acme")}
    assert set(documents) == {"a.md", "copy-of-a.md"}
    assert documents["a.md"].chunks == 2
    assert documents["a.md"].stored == {"v1": 2}
    assert documents["a.md"].declared == {"v1": 2}
    assert documents["a.md"].sha256 == "sha-a.md"
    assert documents["copy-of-a.md"].alias_of == "a.md"
    assert store.documents(tenant="rival") == []
    assert store.documents(tenant="acme", corpus="other") == []


def test_chunks_by_id_are_the_tenants_own_in_document_order(store: VectorStore) -> None:
    store.upsert(
        [
            point(2, [0, 1, 0, 0], [2], index=1),
            point(1, [1, 0, 0, 0], [1], index=0),
            point(3, [1, 0, 0, 0], [1], tenant="rival"),
        ]
    )
    ids = [str(uuid.UUID(int=n)) for n in (1, 2, 3)]
    found = store.chunks(tenant="acme", ids=ids, limit=10)
    assert [h.chunk_id for h in found] == ids[:2]
    assert store.chunks(tenant="acme", ids=["not-a-chunk-id"], limit=10) == []
    assert len(store.chunks(tenant="acme", source="a.md", limit=1)) == 1


def test_delete_removes_old_versions_or_the_whole_document(store: VectorStore) -> None:
    store.upsert([point(1, [1, 0, 0, 0], [1], doc_hash="v1")])
    store.upsert([point(2, [0, 1, 0, 0], [2], doc_hash="v2", index=1)])
    store.delete_document(tenant="acme", corpus="kb", source="a.md", keep_doc_hash="v2")
    assert [d.stored for d in store.documents(tenant="acme")] == [{"v2": 1}]
    store.delete_document(tenant="rival", corpus="kb", source="a.md")  # another tenant's name
    assert store.count() == 1
    store.delete_document(tenant="acme", corpus="kb", source="a.md")
    assert store.count() == 0
    assert search(store, [0, 1, 0, 0], [2]) == []
    store.maintain()  # vacuuming an emptied store is harmless
    assert store.count() == 0


def test_bm25_forgets_deleted_chunks_once_maintained(
    store: VectorStore, tmp_path: Path, model_dir: Path
) -> None:
    """IDF is over the stored chunks: after deletes and maintain(), a BM25 score is what a
    store that never held the deleted chunks gives (edge counts them until vacuumed)."""
    store.upsert([point(1, [1, 0, 0, 0], [5, 6], source="keep.md")])
    store.upsert([point(n, [0, 1, 0, 0], [5], source=f"gone-{n}.md") for n in range(2, 40)])
    for n in range(2, 40):
        store.delete_document(tenant="acme", corpus="kb", source=f"gone-{n}.md")
    store.maintain()
    fresh = open_store(make_settings(tmp_path / "fresh", model_dir, collection="fresh"))
    try:
        fresh.ensure_collection("test/dense", 4, "test/bm25")
        fresh.upsert([point(1, [1, 0, 0, 0], [5, 6], source="keep.md")])
        query = SparseVector(indices=[5], values=[1.0])
        [kept] = store.search_one(SPARSE, query, tenant="acme", top_k=5)
        [expected] = fresh.search_one(SPARSE, query, tenant="acme", top_k=5)
        assert kept.score == pytest.approx(expected.score, rel=1e-4)
    finally:
        fresh.close()


def test_single_retrievers_rank_by_their_own_signal(store: VectorStore) -> None:
    store.upsert([point(1, [1, 0, 0, 0], [7]), point(2, [0, 1, 0, 0], [8, 9], index=1)])
    by_dense = store.search_one(DENSE, [0, 1, 0, 0], tenant="acme", top_k=2)
    by_bm25 = store.search_one(
        SPARSE, SparseVector(indices=[7], values=[1.0]), tenant="acme", top_k=2
    )
    assert by_dense[0].chunk_id == str(uuid.UUID(int=2))
    assert [h.chunk_id for h in by_bm25] == [str(uuid.UUID(int=1))]


def test_export_then_import_is_the_same_store(
    store: VectorStore, tmp_path: Path, model_dir: Path
) -> None:
    store.upsert([point(n, [1, n, 0, 0], [n]) for n in range(1, 40)])
    copy = open_store(make_settings(tmp_path / "copy", model_dir, collection="copy"))
    try:
        copy.ensure_collection(*_schema_args(store))
        for page in store.export(batch=16):
            copy.import_points(page)
        assert copy.count() == store.count() == 39
        assert [h.chunk_id for h in search(copy, [1, 5, 0, 0], [5])] == [
            h.chunk_id for h in search(store, [1, 5, 0, 0], [5])
        ]
    finally:
        copy.close()


def _schema_args(store: VectorStore) -> tuple[str, int, str]:
    schema = store.stored_schema()
    return str(schema["dense_model"]), int(schema["dense_dimensions"]), str(schema["sparse_model"])


def test_collection_built_with_another_model_is_refused(store: VectorStore) -> None:
    assert store.stored_schema()["dense_model"] == "test/dense"
    with pytest.raises(ConfigurationError, match="RAG_COLLECTION"):
        store.ensure_collection("some/other-model", 768, "test/bm25")


@pytest.mark.parametrize("engine", EMBEDDED, indirect=True)
def test_second_opener_in_the_same_process_gets_an_actionable_error(
    store: VectorStore, tmp_path: Path, model_dir: Path, engine: str
) -> None:
    with pytest.raises(StoreInUseError) as error:
        open_store(engine_settings(tmp_path, model_dir, engine))
    message = str(error.value)
    assert store.location in message
    assert "RAG_QDRANT_URL" in message
    assert f"process {os.getpid()} " in message


@pytest.mark.parametrize("engine", EMBEDDED, indirect=True)
def test_store_held_by_another_process_names_that_process(
    tmp_path: Path, model_dir: Path, engine: str
) -> None:
    settings = engine_settings(tmp_path, model_dir, engine)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import time
                from {{ cookiecutter.package_name }}.settings import Settings
                from {{ cookiecutter.package_name }}.store import open_store
                store = open_store(Settings(_env_file=None, data_dir={str(settings.data_dir)!r},
                                            collection="test", embedded_engine={engine!r}))
                print("holding", flush=True)
                time.sleep(60)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(StoreInUseError, match=f"process {holder.pid} "):
            open_store(settings)
    finally:
        holder.kill()
        holder.wait()
    open_store(settings).close()  # released when the holder dies


@pytest.mark.parametrize("engine", EMBEDDED, indirect=True)
def test_mixed_concurrent_reads_and_writes_give_no_errors(
    tmp_path: Path,
    model_dir: Path,
    engine: str,
    corpus: Path,
    dense: DenseEncoder,
    sparse: SparseEncoder,
) -> None:
    """FastAPI runs sync routes in threads: queries must be answered while a job writes (edge
    needs no lock for it; local mode holds one process-wide lock)."""
    services: Services = build_services(
        engine_settings(tmp_path, model_dir, engine), dense=dense, sparse=sparse
    )
    try:
        services.ingestor.ingest(corpus)
        errors: list[BaseException] = []
        deadline = time.monotonic() + 60

        def reader() -> None:
            try:
                for _ in range(15):
                    services.retriever.retrieve(
                        Query(text="password length", top_k=3, tenant="default")
                    )
            except BaseException as exc:
                errors.append(exc)

        def writer(n: int) -> None:
            try:
                for i in range(5):
                    (corpus / f"w{n}-{i}.md").write_text(f"# Note {n} {i}\n\nText {i}.", "utf-8")
                    services.ingestor.ingest(corpus)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=reader) for _ in range(3)]
        threads += [threading.Thread(target=writer, args=(n,)) for n in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        assert not errors
        assert not any(thread.is_alive() for thread in threads)
        assert services.store.count() > 0
        found = services.retriever.retrieve(
            Query(text="password length", top_k=1, tenant="default")
        )
        assert found
    finally:
        services.close()


def test_edge_and_local_mode_rank_and_score_alike(tmp_path: Path, model_dir: Path) -> None:
    """The same points and query give the same fused order and scores on both embedded
    engines, so moving a store to edge changes no answer."""
    rng = random.Random(7)  # distinct vectors and term sets: no ties for engines to break
    points = [
        replace(
            point(n, [rng.uniform(-1, 1) for _ in range(4)], [], index=n),
            sparse=SparseVector(
                indices=sorted(rng.sample(range(30), 3)),
                values=[rng.uniform(0.5, 2) for _ in range(3)],
            ),
        )
        for n in range(1, 80)
    ]
    results = {}
    for engine in EMBEDDED:
        opened = open_store(engine_settings(tmp_path / engine, model_dir, engine))
        try:
            opened.ensure_collection("test/dense", 4, "test/bm25")
            opened.upsert(points)
            hits = search(opened, [1.0, 0.5, 0.2, 0.1], [3, 21, 99])
            results[engine] = [(h.chunk_id, round(h.score, 5), h.dense_rank) for h in hits]
        finally:
            opened.close()
    assert results["edge"] == results["local"]


def test_a_local_mode_store_is_not_silently_replaced_by_an_empty_edge_one(
    tmp_path: Path, model_dir: Path
) -> None:
    local = open_store(engine_settings(tmp_path, model_dir, "local"))
    local.ensure_collection("test/dense", 4, "test/bm25")
    local.upsert([point(1, [1, 0, 0, 0], [1])])
    local.close()
    with pytest.raises(ConfigurationError, match="store migrate --from local --to edge"):
        open_store(engine_settings(tmp_path, model_dir, "edge"))


def test_migrate_local_to_edge_copies_and_checks(tmp_path: Path, model_dir: Path) -> None:
    from {{ cookiecutter.package_name }}.store.migrate import migrate

    local_settings = engine_settings(tmp_path, model_dir, "local")
    local = open_store(local_settings)
    local.ensure_collection("test/dense", 4, "test/bm25")
    local.upsert([point(n, [1, n % 5, 0, 0], [n % 9], index=n) for n in range(1, 60)])
    local.close()
    report = migrate(local_settings, "local", "edge")
    assert report.ok, report.summary()
    assert report.copied == report.source_count == report.target_count == 59
    assert report.queries == report.same_results == 20
    edge = open_store(engine_settings(tmp_path, model_dir, "edge"))
    try:
        assert edge.count() == 59
        assert edge.stored_schema()["dense_model"] == "test/dense"
    finally:
        edge.close()
    with pytest.raises(ConfigurationError, match="already holds 59 points"):
        migrate(local_settings, "local", "edge")


def test_store_migrate_command_reports_and_refuses_in_one_line(
    tmp_path: Path,
    model_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from {{ cookiecutter.package_name }}.cli import main

    settings = engine_settings(tmp_path, model_dir, "edge")
    edge = open_store(settings)
    edge.ensure_collection("test/dense", 4, "test/bm25")
    edge.upsert([point(n, [n % 3, 1, n % 5, 0], [n % 7], index=n) for n in range(1, 30)])
    edge.close()
    monkeypatch.setenv("RAG_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("RAG_MODEL_DIR", str(model_dir))
    monkeypatch.setenv("RAG_COLLECTION", "test")
    report = tmp_path / "migrate.json"
    assert (
        main(["store", "migrate", "--from", "edge", "--to", "local", "--report", str(report)]) == 0
    )
    out = capsys.readouterr().out
    assert "29 points; counts 29 / 29" in out
    assert json.loads(report.read_text(encoding="utf-8"))["ok"] is True
    local = open_store(engine_settings(tmp_path, model_dir, "local"))
    try:
        assert local.count() == 29
    finally:
        local.close()
    assert main(["store", "migrate", "--from", "local", "--to", "edge"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("error: ")
    assert "already holds 29 points" in err[0]
    assert main(["store", "migrate", "--from", "edge", "--to", "server"]) == 2
    assert "RAG_QDRANT_URL" in capsys.readouterr().err


def test_edge_files_opened_by_another_program_give_a_message_not_the_raw_wal_error(
    tmp_path: Path, model_dir: Path
) -> None:
    import qdrant_edge

    settings = engine_settings(tmp_path, model_dir, "edge")
    created = open_store(settings)
    created.ensure_collection("test/dense", 4, "test/bm25")
    created.close()
    foreign = qdrant_edge.EdgeShard.load(str(settings.edge_path / "test" / "shard"))
    try:
        with pytest.raises(StoreInUseError, match="locked by another program") as error:
            open_store(settings)
        assert "WouldBlock" not in str(error.value)
    finally:
        foreign.close()
    open_store(settings).close()  # and the lock is released with the failed open


# --- records beside the corpus (feedback, captured questions) ---------------------------
def shelf_record(
    n: int, tenant: str, time: float, vector: list[float] | None = None
) -> ShelfRecord:
    payload = {"tenant": tenant, "trace_id": f"t{n}", "time": time}
    return ShelfRecord(id=str(uuid.UUID(int=n)), payload=payload, vector=vector)


def test_records_are_found_by_field_and_time_and_dropped_by_age(store: VectorStore) -> None:
    shelf = store.shelf("votes", dimensions=4)
    assert list(shelf.find(equals={"tenant": "acme"})) == []  # nothing written yet
    shelf.put(
        [
            shelf_record(1, "acme", 100.0, [1.0, 0.0, 0.0, 0.0]),
            shelf_record(2, "acme", 200.0),
            shelf_record(3, "rival", 150.0),
        ]
    )
    mine = {r.payload["trace_id"] for r in shelf.find(equals={"tenant": "acme"})}
    assert mine == {"t1", "t2"}
    [one] = shelf.find(equals={"tenant": "acme", "trace_id": "t1"}, with_vectors=True)
    assert one.vector == [1.0, 0.0, 0.0, 0.0]
    assert [r.payload["trace_id"] for r in shelf.find(since=120.0, until=180.0)] == ["t3"]
    shelf.drop_before(160.0)
    assert {r.payload["trace_id"] for r in shelf.find()} == {"t2"}
    assert store.count() == 0  # the corpus never sees them
