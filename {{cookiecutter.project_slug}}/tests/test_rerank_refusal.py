"""Refusal from evidence, the hosted reranker against a fake on 127.0.0.1, fusion options, and
the retrieval benchmark's question file."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from {{ cookiecutter.package_name }}.answer import REFUSAL, ExtractiveAnswerer
from {{ cookiecutter.package_name }}.container import Services, build_services
from {{ cookiecutter.package_name }}.domain import Hit, Query
from {{ cookiecutter.package_name }}.embeddings import DenseEncoder, SparseEncoder
from {{ cookiecutter.package_name }}.errors import RerankError
from {{ cookiecutter.package_name }}.refusal import RefusalPolicy
from {{ cookiecutter.package_name }}.rerank import HostedReranker
from {{ cookiecutter.package_name }}.store import SearchOptions

from .conftest import make_settings

POLICY = RefusalPolicy(min_dense=0.4, strong_dense=0.6, agreement_rank=5)


def hit(
    name: str,
    dense_score: float | None = None,
    dense_rank: int | None = None,
    sparse_rank: int | None = None,
    rerank_score: float | None = None,
) -> Hit:
    return Hit(
        name,
        f"{name}.md",
        f"text of {name}",
        0.5,
        {},
        dense_score=dense_score,
        dense_rank=dense_rank,
        sparse_rank=sparse_rank,
        rerank_score=rerank_score,
    )


# --- refusal policy ------------------------------------------------------------------------
def test_a_strong_dense_match_answers_without_bm25() -> None:
    decision = POLICY.decide([hit("a", 0.65, 1, None)])
    assert not decision.refuse
    assert decision.best_dense == 0.65


def test_a_weak_dense_match_answers_only_when_bm25_agrees() -> None:
    assert not POLICY.decide([hit("a", 0.45, 2, 3)]).refuse
    assert POLICY.decide([hit("a", 0.45, 2, None)]).refuse
    assert POLICY.decide([hit("a", 0.45, 2, 9)]).refuse  # BM25 ranks it too low to count


def test_below_the_floor_bm25_agreement_does_not_rescue() -> None:
    decision = POLICY.decide([hit("a", 0.3, 1, 1)])
    assert decision.refuse
    assert "too low" in decision.reason


def test_hits_without_dense_evidence_are_refused() -> None:
    assert POLICY.decide([hit("a"), hit("b")]).refuse
    assert POLICY.decide([]).refuse


def test_questions_about_terms_the_corpus_lacks_are_refused() -> None:
    policy = RefusalPolicy(0.4, 0.6, 5, max_unmatched_share=0.4)
    strong = Hit("a", "a.md", "text", 0.5, {}, dense_score=0.9, dense_rank=1, sparse_rank=1)
    assert not policy.decide([replace(strong, unmatched_share=0.2)]).refuse
    decision = policy.decide([replace(strong, unmatched_share=0.5)])
    assert decision.refuse
    assert "50% of the question's terms" in decision.reason


def test_with_a_reranker_its_score_decides() -> None:
    policy = RefusalPolicy(0.4, 0.6, 5, min_rerank=0.3)
    assert policy.decide([hit("a", 0.9, 1, 1, rerank_score=0.1)]).refuse
    assert not policy.decide([hit("a", 0.1, None, None, rerank_score=0.8)]).refuse


def test_retrieved_hits_carry_dense_and_bm25_evidence(services: Services, corpus: Path) -> None:
    services.ingestor.ingest(corpus)
    top = services.retriever.retrieve(
        Query(text="How long must passwords be?", top_k=3, tenant="default")
    )[0]
    assert top.source == "policies/passwords.md"
    assert top.dense_rank == 1
    assert top.sparse_rank == 1
    assert top.dense_score is not None
    assert 0.3 < top.dense_score <= 1.0
    assert top.unmatched_share == 0.0  # "long" and "password" are both in the BM25 top hits
    zebra = services.retriever.retrieve(
        Query(text="How long must zebra passwords be?", top_k=3, tenant="default")
    )[0]
    # terms: long, must, zebra, password; no document mentions a zebra
    assert zebra.unmatched_share == pytest.approx(1 / 4)


def test_extractive_answerer_refuses_on_the_policy_before_quoting(dense: DenseEncoder) -> None:
    tracer = TracerProvider().get_tracer("t")
    hits = [Hit("a", "a.md", "Passwords must be at least 14 characters long.", 0.5, {}, 0.45, 1)]
    question = "How long must passwords be?"
    answerer = ExtractiveAnswerer(dense, tracer, 0.2, 3)
    assert not answerer.answer(question, hits).refused
    # The ask use case decides once and hands the decision over (ask.py).
    answer = answerer.answer(question, hits, decision=POLICY.decide(hits))
    assert answer.refused
    assert answer.text == REFUSAL


def test_best_similarity_is_what_the_answerers_threshold_is_compared_with(
    dense: DenseEncoder,
) -> None:
    tracer = TracerProvider().get_tracer("t")
    hits = [Hit("a", "a.md", "Passwords must be at least 14 characters long.", 0.5, {})]
    question = "How long must passwords be?"
    best = ExtractiveAnswerer(dense, tracer, 0.0, 3).best_similarity(question, hits)
    assert 0.3 < best < 1.0
    assert not ExtractiveAnswerer(dense, tracer, best - 0.01, 3).answer(question, hits).refused
    assert ExtractiveAnswerer(dense, tracer, best + 0.01, 3).answer(question, hits).refused
    assert ExtractiveAnswerer(dense, tracer, 0.0, 3).best_similarity(question, []) == -1.0


@pytest.mark.parametrize("fusion", ["rrf", "dbsf"])
def test_both_fusions_find_the_answer(
    fusion: str, tmp_path: Path, model_dir: Path, dense: DenseEncoder, sparse: SparseEncoder,
    corpus: Path,
) -> None:  # fmt: skip
    built = build_services(
        make_settings(tmp_path, model_dir, fusion=fusion), dense=dense, sparse=sparse
    )
    try:
        built.ingestor.ingest(corpus)
        hits = built.retriever.retrieve(
            Query(text="When is the espresso machine descaled?", top_k=2, tenant="default")
        )
        assert hits[0].source == "coffee.txt"
    finally:
        built.close()


def test_rrf_weights_decide_which_ranking_leads(
    tmp_path: Path, model_dir: Path, dense: DenseEncoder, sparse: SparseEncoder, corpus: Path
) -> None:
    """The dense weight reaches the engine: with k=1 a hit scores weight / rank in the dense
    list and 1 / rank in BM25's, so a large weight gives dense's order, a tiny one BM25's."""
    question = "Which days are holidays in the office?"
    built = build_services(make_settings(tmp_path, model_dir), dense=dense, sparse=sparse)
    try:
        built.ingestor.ingest(corpus)
        store = built.store
        by_bm25 = [
            h.source
            for h in store.search_one(
                "bm25", sparse.embed_query(question), tenant="default", top_k=3
            )
        ]
        by_dense = [
            h.source
            for h in store.search_one(
                "dense", dense.embed_query(question), tenant="default", top_k=3
            )
        ]
        assert len(by_bm25) >= 2
        assert by_bm25[:2] != by_dense[:2]

        def fused(weight: float) -> list[str]:
            options = SearchOptions(
                fusion="rrf",
                rrf_k=1,
                rrf_dense_weight=weight,
                prefetch_limit=30,
                evidence_limit=0,
                query_cosines=False,
            )
            hits = store.search(
                dense.embed_query(question),
                sparse.embed_query(question),
                tenant="default",
                top_k=3,
                sources=None,
                options=options,
            )
            return [h.source for h in hits]

        assert fused(1000.0) == by_dense
        assert fused(0.001)[: len(by_bm25)] == by_bm25
    finally:
        built.close()


# --- hosted reranker -------------------------------------------------------------------------
Reply = Callable[[dict[str, Any]], tuple[int, Any]]


@contextmanager
def fake_reranker(reply: Reply) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A rerank endpoint on 127.0.0.1 answering with `reply(request body)`."""
    requests: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            requests.append({"body": body, "auth": self.headers.get("Authorization")})
            status, payload = reply(body)
            data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/rerank", requests
    finally:
        server.shutdown()
        server.server_close()


def word_overlap(query: str, text: str) -> float:
    q = set(query.lower().split())
    return len(q & set(text.lower().replace(".", "").split())) / len(q)


def cohere_reply(body: dict[str, Any]) -> tuple[int, Any]:
    docs = body["documents"]
    results = [
        {"index": i, "relevance_score": word_overlap(body["query"], d)} for i, d in enumerate(docs)
    ]
    return 200, {"results": sorted(results, key=lambda r: -r["relevance_score"])}


def tei_reply(body: dict[str, Any]) -> tuple[int, Any]:
    return 200, [
        {"index": i, "score": word_overlap(body["query"], t)} for i, t in enumerate(body["texts"])
    ]


HITS = [
    Hit("1", "a.md", "Oat milk is restocked on Mondays.", 0.9, {}),
    Hit("2", "b.md", "The espresso machine is descaled every Friday.", 0.8, {}),
    Hit("3", "c.md", "Passwords are rotated every 180 days.", 0.7, {}),
]


@pytest.mark.parametrize(("api", "reply"), [("cohere", cohere_reply), ("tei", tei_reply)])
def test_reranker_reorders_by_its_scores(api: Any, reply: Reply) -> None:
    with fake_reranker(reply) as (url, requests):
        reranker = HostedReranker(url, api, "rerank-x", "sekret", 5.0)
        ranked = reranker.rerank("when is the espresso machine descaled", HITS, 2)
    assert [h.chunk_id for h in ranked] == ["2", "1"]  # word overlap 5/6 and 1/6
    assert ranked[0].rerank_score == pytest.approx(5 / 6)
    assert ranked[0].text == HITS[1].text
    assert requests[0]["auth"] == "Bearer sekret"
    assert ("model" in requests[0]["body"]) == (api == "cohere")


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (lambda body: (500, "boom"), "HTTP 500"),
        (lambda body: (401, "no"), "RAG_RERANK_API_KEY"),
        (lambda body: (200, "not json"), "did not answer JSON"),
        (lambda body: (200, {"results": [{"index": 0}]}), "neither Cohere/Jina"),
        (lambda body: (200, {"data": []}), "neither Cohere/Jina"),
        (lambda body: (200, {"results": [{"index": 0, "relevance_score": 1}]}), "scored 1 of 3"),
    ],
)
def test_reranker_failures_name_the_problem(reply: Reply, message: str) -> None:
    with fake_reranker(reply) as (url, _), pytest.raises(RerankError, match=message):
        HostedReranker(url, "cohere", None, None, 5.0).rerank("q", HITS, 2)


def test_unreachable_reranker_names_the_setting() -> None:
    from .conftest import free_port

    reranker = HostedReranker(f"http://127.0.0.1:{free_port()}/rerank", "cohere", None, None, 2.0)
    with pytest.raises(RerankError, match="RAG_RERANK_URL"):
        reranker.rerank("q", HITS, 2)


def test_service_reranks_candidates_to_top_k(
    tmp_path: Path, model_dir: Path, dense: DenseEncoder, sparse: SparseEncoder, corpus: Path
) -> None:
    with fake_reranker(cohere_reply) as (url, requests):
        settings = make_settings(tmp_path, model_dir, rerank_url=url, rerank_candidates=4)
        spans = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(spans))
        built = build_services(settings, tracer_provider=provider, dense=dense, sparse=sparse)
        try:
            built.ingestor.ingest(corpus)
            hits = built.retriever.retrieve(
                Query(text="when is the espresso machine descaled", top_k=1, tenant="default")
            )
        finally:
            built.close()
    assert len(requests[0]["body"]["documents"]) == 4
    assert len(hits) == 1
    assert hits[0].source == "coffee.txt"
    assert hits[0].rerank_score is not None
    # The rerank stage is a span of its own, under the retrieval span, with what it returned.
    by_name = {s.name: s for s in spans.get_finished_spans()}
    rerank = by_name["rerank"]
    assert rerank.parent is not None
    assert rerank.parent.span_id == by_name[f"retrieval {settings.collection}"].context.span_id
    attributes = dict(rerank.attributes or {})
    assert attributes["rerank.candidates"] == 4
    assert attributes["rerank.chunk_ids"] == (hits[0].chunk_id,)


# --- the benchmark's question file -------------------------------------------------------------
QUESTIONS = Path(__file__).resolve().parents[1] / "benchmarks" / "retrieval_questions.jsonl"


def test_benchmark_questions_are_well_formed() -> None:
    rows = [json.loads(line) for line in QUESTIONS.read_text(encoding="utf-8").splitlines()]
    kinds = [row["kind"] for row in rows]
    assert len(rows) >= 80
    assert len({row["id"] for row in rows}) == len(rows)
    assert set(kinds) == {"key_terms", "non_expert", "value", "unanswerable"}
    assert kinds.count("unanswerable") >= 20
    answerable = len(rows) - kinds.count("unanswerable")
    assert kinds.count("key_terms") >= answerable // 4
    assert kinds.count("non_expert") >= answerable // 4
    # Thresholds are chosen on dev and counted on test: every kind needs both.
    splits = {(row["kind"], row["split"]) for row in rows}
    assert splits == {(kind, split) for kind in set(kinds) for split in ("dev", "test")}
    for row in rows:
        assert set(row) == {"id", "kind", "split", "question", "gold"}, row
        assert row["question"].strip().endswith("?"), row
        assert (row["kind"] == "unanswerable") == (not row["gold"]), row
        for page in row["gold"]:
            assert page.endswith(".html"), row
            assert not page.startswith("/"), row
