"""The offline second ranking stage (RAG_SECOND_STAGE=dense_resort): how it re-orders, how the
setting switches it, and that refusal still reads the same dense/BM25 evidence."""

from __future__ import annotations

from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from {{ cookiecutter.package_name }}.container import build_services
from {{ cookiecutter.package_name }}.domain import Hit, Query
from {{ cookiecutter.package_name }}.embeddings import DenseEncoder, SparseEncoder
from {{ cookiecutter.package_name }}.refusal import RefusalPolicy
from {{ cookiecutter.package_name }}.rerank import (
    HostedReranker,
    SignalResort,
    build_reranker,
    dense_resort,
    rrf_fuse,
)
from {{ cookiecutter.package_name }}.settings import Settings

from .conftest import make_settings


def candidate(
    name: str,
    cosine: float | None,
    dense_score: float | None = None,
    dense_rank: int | None = None,
    sparse_rank: int | None = None,
) -> Hit:
    return Hit(
        name,
        f"{name}.md",
        f"text of {name}",
        0.0,
        {},
        dense_score=dense_score,
        dense_rank=dense_rank,
        sparse_rank=sparse_rank,
        query_cosine=cosine,
    )


# Fused order a, b, c, d; by cosine: b, c, a, d.
FUSED = [
    candidate("a", 0.2, dense_score=0.2, dense_rank=4, sparse_rank=1),
    candidate("b", 0.9, dense_score=0.9, dense_rank=1),
    candidate("c", 0.5, sparse_rank=2),
    candidate("d", 0.1),
]


def test_dense_resort_fuses_the_cosine_order_back_with_the_fused_order() -> None:
    # RRF with k 5, both weights 1: rank r scores 1 / (r + 4).
    # a: 1/5 + 1/7 = .343, b: 1/6 + 1/5 = .367, c: 1/7 + 1/6 = .310, d: 1/8 + 1/8 = .250
    reordered = dense_resort(rrf_k=5, weight=1.0).rerank("q", FUSED, top_k=4)
    assert [h.chunk_id for h in reordered] == ["b", "a", "c", "d"]
    assert reordered[0].score == pytest.approx(1 / 6 + 1 / 5)
    assert reordered[-1].score == pytest.approx(1 / 8 + 1 / 8)
    assert [h.chunk_id for h in dense_resort(5, 1.0).rerank("q", FUSED, top_k=2)] == ["b", "a"]


def test_the_weight_decides_how_far_the_cosine_order_leads() -> None:
    # k 1: rank r scores weight / r. Fused a 1, b 1/2; cosine (b first) at weight 4: b 4, a 4/3.
    assert dense_resort(rrf_k=1, weight=4.0).rerank("q", FUSED, top_k=1)[0].chunk_id == "b"
    # at weight 0.25 the cosine order counts a quarter: a 1 + 1/12 keeps its lead on b 1/2 + 1/4
    assert dense_resort(rrf_k=1, weight=0.25).rerank("q", FUSED, top_k=1)[0].chunk_id == "a"


def test_ties_and_missing_cosines_keep_the_fused_order() -> None:
    same = [candidate(name, 0.5) for name in "abc"]
    assert [h.chunk_id for h in dense_resort(5, 1.0).rerank("q", same, 3)] == ["a", "b", "c"]
    # no cosine: last in the cosine order, so it can only fall
    # a: 1/5 + 1/7, b: 1/6 + 1/5, c: 1/7 + 1/6
    hits = [candidate("a", None), candidate("b", 0.3), candidate("c", 0.2)]
    assert [h.chunk_id for h in dense_resort(5, 1.0).rerank("q", hits, 3)] == ["b", "a", "c"]
    assert dense_resort(5, 1.0).rerank("q", [], 5) == []


def test_the_stage_changes_order_and_score_never_the_refusal_evidence() -> None:
    reordered = {h.chunk_id: h for h in dense_resort(5, 1.0).rerank("q", FUSED, top_k=4)}
    for before in FUSED:
        after = reordered[before.chunk_id]
        assert (after.dense_score, after.dense_rank, after.sparse_rank) == (
            before.dense_score,
            before.dense_rank,
            before.sparse_rank,
        )
        assert after.rerank_score is None  # the score RAG_REFUSAL_MIN_RERANK would read
        assert after.query_cosine == before.query_cosine


def test_rrf_fuse_rejects_scores_that_do_not_match_the_hits() -> None:
    with pytest.raises(ValueError, match="2 scores for 4 hits"):
        rrf_fuse(FUSED, [([0.1, 0.2], 1.0)], 5)


def test_the_setting_switches_the_stage(tmp_path: Path) -> None:
    assert build_reranker(Settings(_env_file=None, second_stage="none")) is None
    stage = build_reranker(
        Settings(
            _env_file=None,
            second_stage="dense_resort",
            second_stage_rrf_k=10,
            second_stage_weight=2.0,
        )
    )
    assert isinstance(stage, SignalResort)
    assert stage.name == "dense_resort"
    assert stage.reads_query_cosines
    assert stage.span_attributes() == {"rerank.stage": "dense_resort", "rerank.rrf.k": 10}
    # A hosted cross-encoder reads query and passage together: it replaces the offline stage.
    hosted = build_reranker(
        Settings(_env_file=None, second_stage="dense_resort", rerank_url="http://127.0.0.1:9/r")
    )
    assert isinstance(hosted, HostedReranker)
    assert not hosted.reads_query_cosines
    hosted.close()


def test_an_unknown_stage_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_SECOND_STAGE", "cross_encoder")
    with pytest.raises(ValueError, match="second_stage") as caught:
        Settings(_env_file=None)
    assert "dense_resort" in str(caught.value)


def test_the_service_resorts_with_stored_cosines_and_keeps_refusal_evidence(
    tmp_path: Path, model_dir: Path, dense: DenseEncoder, sparse: SparseEncoder, corpus: Path
) -> None:
    question = "How long must passwords be?"
    found: dict[str, list[Hit]] = {}
    for stage in ("none", "dense_resort"):
        settings = make_settings(tmp_path / stage, model_dir, second_stage=stage)
        spans = InMemorySpanExporter()  # closing the services shuts its exporter down
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(spans))
        built = build_services(settings, tracer_provider=provider, dense=dense, sparse=sparse)
        try:
            built.ingestor.ingest(corpus)
            found[stage] = built.retriever.retrieve(Query(text=question, top_k=3, tenant="default"))
        finally:
            built.close()
    plain, resorted = found["none"], found["dense_resort"]
    assert resorted[0].source == "policies/passwords.md"
    assert all(h.query_cosine is None for h in plain)  # no stage: no vectors fetched
    for hit in resorted:
        # Computed from the stored vectors: the same cosine the dense-only search reports.
        assert hit.query_cosine is not None
        if hit.dense_score is not None:
            assert hit.query_cosine == pytest.approx(hit.dense_score, abs=1e-4)
    # The same chunks carry the same refusal evidence with and without the stage.
    evidence = {h.chunk_id: (h.dense_score, h.dense_rank, h.sparse_rank) for h in plain}
    for hit in resorted:
        if hit.chunk_id in evidence:
            assert (hit.dense_score, hit.dense_rank, hit.sparse_rank) == evidence[hit.chunk_id]
    policy = RefusalPolicy.from_settings(make_settings(tmp_path, model_dir))
    assert policy.decide(resorted).refuse == policy.decide(plain).refuse
    stage_spans = [s for s in spans.get_finished_spans() if s.name == "rerank"]
    assert len(stage_spans) == 1
    assert dict(stage_spans[0].attributes or {})["rerank.stage"] == "dense_resort"
