"""The ask use case: one place for the top_k rules, the tenant, the refusal decision and the
audit line, with a real store, real models and real spans."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from {{ cookiecutter.package_name }}.answer import (
    REFUSAL,
    ExtractiveAnswerer,
    Final,
    Token,
)
from {{ cookiecutter.package_name }}.answer.sentences import SentenceScorer
from {{ cookiecutter.package_name }}.api import create_app
from {{ cookiecutter.package_name }}.ask import Asker, Question
from {{ cookiecutter.package_name }}.cli import main
from {{ cookiecutter.package_name }}.container import Services
from {{ cookiecutter.package_name }}.domain import Hit
from {{ cookiecutter.package_name }}.embeddings import DenseEncoder
from {{ cookiecutter.package_name }}.errors import BadRequestError, ConfigurationError
from {{ cookiecutter.package_name }}.evals.gate import evaluate
from {{ cookiecutter.package_name }}.evals.golden import GoldenItem
from {{ cookiecutter.package_name }}.evals.metrics import RagasScorer
from {{ cookiecutter.package_name }}.refusal import (
    RefusalDecision,
    RefusalModel,
    RefusalPolicy,
)

from .conftest import api_key, auth

QUESTION = "How long must a password be?"


@dataclass(frozen=True)
class CountingPolicy(RefusalPolicy):
    """The shipped policy, counting its decisions."""

    decided: list[int] = field(default_factory=list)

    def decide(self, hits: Sequence[Hit]) -> RefusalDecision:
        self.decided.append(len(hits))
        return super().decide(hits)


@dataclass(frozen=True)
class SentenceReadingModel(RefusalModel):
    """A refusal model on the best sentence's cosine, keeping the hits it was handed."""

    seen: list[list[Hit]] = field(default_factory=list)

    def decide(self, hits: Sequence[Hit]) -> RefusalDecision:
        self.seen.append(list(hits))
        return super().decide(hits)


class CountingEncoder:
    """The real encoder, counting the documents (sentences) it embeds."""

    def __init__(self, inner: DenseEncoder) -> None:
        self.inner = inner
        self.model_id = inner.model_id
        self.embedded: list[str] = []

    @property
    def dimensions(self) -> int:
        return self.inner.dimensions

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        self.embedded += texts
        return self.inner.embed_documents(texts)

    def embed_query(self, text: str) -> list[float]:
        return self.inner.embed_query(text)


def sentence_model() -> SentenceReadingModel:
    return SentenceReadingModel(
        features=("best_sentence",),
        mean=(0.4,),
        scale=(0.1,),
        coef=(-3.0,),
        intercept=0.0,
        threshold=0.5,
    )


def audit_lines(services: Services) -> list[dict[str, Any]]:
    path = services.settings.audit_path
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


@pytest.fixture
def ingested(services: Services, corpus: Path) -> Services:
    services.ingestor.ingest(corpus)
    return services


def test_refusal_is_decided_once_per_question_and_reaches_the_answer_span(
    ingested: Services, spans: InMemorySpanExporter
) -> None:
    policy = CountingPolicy(**vars(ingested.refusal))
    ingested.refusal = policy
    spans.clear()
    asked = ingested.asker.ask(Question(QUESTION, "default"))
    assert policy.decided == [len(asked.hits)]
    assert not asked.answer.refused
    (span,) = [s for s in spans.get_finished_spans() if s.name == "answer extractive"]
    reason = (span.attributes or {})["answer.refusal.reason"]
    assert reason == policy.decide(asked.hits).reason

    streamed = ingested.asker.stream(Question(QUESTION, "default"))
    assert [type(event) for event in streamed.events] == [Token, Final]
    assert len(policy.decided) == 3  # ask, stream, and the check above


def test_weak_evidence_is_refused_before_the_answerer_quotes(
    ingested: Services, spans: InMemorySpanExporter
) -> None:
    """A question whose terms no BM25 result contains: refused by the policy, so the
    answerer does not embed and score sentences at all."""
    hits = ingested.retriever.retrieve(ingested.asker.query(Question(QUESTION, "default")))
    assert not ingested.asker.answer(QUESTION, hits).refused
    weak = [replace(hit, unmatched_share=0.8) for hit in hits]
    spans.clear()
    answer = ingested.asker.answer(QUESTION, weak)
    assert answer.refused
    assert answer.text == REFUSAL
    assert answer.citations == []
    (span,) = [s for s in spans.get_finished_spans() if s.name == "answer extractive"]
    attributes = dict(span.attributes or {})
    assert "BM25" in str(attributes["answer.refusal.reason"])
    assert attributes["answer.refused"] is True
    assert "answer.best_similarity" not in attributes  # no sentence was scored


def test_a_refusal_reading_sentences_gets_each_hits_best_sentence_embedded_once(
    ingested: Services, dense: DenseEncoder
) -> None:
    """The best sentence's cosine is known before refusal decides, and the extractive
    answerer quotes from the same vectors: no sentence is embedded twice."""
    counting = CountingEncoder(dense)
    scorer = SentenceScorer(counting)
    answerer = ExtractiveAnswerer(
        counting, ingested.tracer_provider.get_tracer("t"), 0.3, 3, scorer=scorer
    )
    model = sentence_model()
    asker = Asker(
        ingested.retriever,
        answerer,
        model,
        ingested.audit,
        default_top_k=5,
        max_top_k=50,
        sentences=scorer,
    )
    asked = asker.ask(Question(QUESTION, "default"))
    (seen,) = model.seen
    assert [h.chunk_id for h in seen] == [h.chunk_id for h in asked.hits]
    assert all(h.sentence_score is not None for h in seen)
    assert asked.hits[0].sentence_score is None  # the caller's hits are not changed
    best = max(h.sentence_score for h in seen if h.sentence_score is not None)
    assert best == pytest.approx(answerer.best_similarity(QUESTION, asked.hits), abs=1e-6)
    assert not asked.answer.refused  # the password question is answered by its best sentence
    assert len(counting.embedded) == len(set(counting.embedded)) > 0
    # A question far from every sentence: the same model refuses it.
    far = asker.ask(Question("What is the boiling point of liquid nitrogen?", "default"))
    assert far.answer.refused


def test_a_refusal_reading_sentences_needs_a_scorer(ingested: Services) -> None:
    with pytest.raises(ConfigurationError, match="best_sentence"):
        Asker(
            ingested.retriever,
            ingested.answerer,
            sentence_model(),
            ingested.audit,
            default_top_k=5,
            max_top_k=50,
        )
    # The hand rules read no sentences: without a scorer nothing is embedded for them.
    hits = ingested.retriever.retrieve(ingested.asker.query(Question(QUESTION, "default")))
    assert ingested.asker.refusal_evidence(QUESTION, hits) is hits


def test_top_k_defaults_to_the_setting_and_is_capped_by_the_limit(services: Services) -> None:
    asker = services.asker
    assert asker.query(Question("x", "default")).top_k == services.settings.default_top_k
    assert asker.query(Question("x", "default", top_k=3)).top_k == 3
    limit = services.settings.max_top_k
    assert asker.query(Question("x", "default", top_k=limit)).top_k == limit
    with pytest.raises(BadRequestError, match=rf"top_k={limit + 1} is over .*RAG_MAX_TOP_K"):
        asker.query(Question("x", "default", top_k=limit + 1))


def test_the_query_carries_the_callers_tenant_and_sources(services: Services) -> None:
    query = services.asker.query(Question("x", "northwind", sources=["a.md"]))
    assert (query.tenant, query.sources) == ("northwind", ["a.md"])


def test_cli_ask_over_the_top_k_limit_prints_one_line(
    cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ask", QUESTION, "--top-k", "500"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (
        "error: top_k=500 is over the limit of 50 (RAG_MAX_TOP_K); ask for fewer hits."
    )


def test_questions_with_a_key_are_audited_and_others_are_not(ingested: Services) -> None:
    asker = ingested.asker
    asker.ask(Question(QUESTION, "default"))  # the CLI and the eval gate ask with no key
    asker.retrieve(Question(QUESTION, "default"))
    assert audit_lines(ingested) == []
    asked = asker.ask(Question(QUESTION, "default", key_id="k1"))
    asker.retrieve(Question(QUESTION, "default", key_id="k1"))
    answered, retrieved = audit_lines(ingested)
    assert (answered["event"], retrieved["event"]) == ("query", "retrieve")
    assert answered["key_id"] == retrieved["key_id"] == "k1"
    assert answered["tenant"] == "default"
    assert answered["trace_id"] == asked.trace_id
    assert answered["sources"][0]["chunk_id"] == asked.hits[0].chunk_id
    assert answered["cited"] == [c.chunk_id for c in asked.answer.citations]


def test_a_streamed_answer_is_audited_when_its_final_event_passes(ingested: Services) -> None:
    streamed = ingested.asker.stream(Question(QUESTION, "default", key_id="k1"))
    token = next(streamed.events)
    assert isinstance(token, Token)
    assert audit_lines(ingested) == []
    final = next(streamed.events)
    assert isinstance(final, Final)
    (line,) = audit_lines(ingested)
    assert line["event"] == "query"
    assert line["cited"] == [c.chunk_id for c in final.answer.citations]


def test_a_stream_closed_early_is_not_audited(ingested: Services) -> None:
    streamed = ingested.asker.stream(Question(QUESTION, "default", key_id="k1"))
    next(streamed.events)
    close = getattr(streamed.events, "close", None)
    assert close is not None
    close()
    assert list(streamed.events) == []
    assert audit_lines(ingested) == []


@pytest.mark.slow
def test_the_eval_gate_and_the_api_give_the_same_answer(
    ingested: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ragas' scorer sets these process-wide; set here, they are restored after the test.
    monkeypatch.setenv("RAGAS_DO_NOT_TRACK", "true")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    item = GoldenItem(
        id="q1",
        question=QUESTION,
        reference_answer="At least 14 characters.",
        gold_sources=["policies/passwords.md"],
        tags=[],
        answerable=True,
    )
    (result,) = evaluate(ingested, [item], 5, RagasScorer(ingested.settings.data_dir / "r"))
    with TestClient(create_app(services=ingested)) as client:
        body = client.post(
            "/v1/query",
            json={"question": QUESTION, "top_k": 5},
            headers=auth(api_key(ingested.settings)),
        ).json()
    assert result.answer == body["answer"]
    assert result.refused is body["refused"]
