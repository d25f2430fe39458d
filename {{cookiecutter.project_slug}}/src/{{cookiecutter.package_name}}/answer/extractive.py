"""An answerer without an LLM: quote the hits' sentences that best match the question.

Each quoted sentence is cited as [n], where n points at `Answer.citations[n - 1]`. Refusal
rests on the cosine similarity between question and sentence embeddings, which has an
absolute meaning (unlike a fused RRF score): when no sentence reaches the threshold the
answerer says it does not know instead of quoting noise. Before that, the ask use case
(ask.py) has asked the refusal policy (refusal.py) whether the retrievers' evidence says the
corpus answers at all; a refusing decision is written as the refusal, without quoting.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from opentelemetry.trace import Tracer

from ..domain import Answer, Citation, Hit
from ..embeddings import DenseEncoder
from ..refusal import RefusalDecision
from ..telemetry import RagMetrics, SpanContent
from .base import AnswerEvent, Final, Token
from .sentences import ScoredUnit, SentenceScorer

REFUSAL = "I don't know: the ingested documents do not answer this question."
# Sentences scoring within this margin of the best one are quoted too.
_MARGIN = 0.08


class ExtractiveAnswerer:
    def __init__(
        self,
        dense: DenseEncoder,
        tracer: Tracer,
        min_similarity: float,
        max_sentences: int,
        *,
        metrics: RagMetrics | None = None,
        content: SpanContent | None = None,
        scorer: SentenceScorer | None = None,
    ) -> None:
        self._scorer = scorer or SentenceScorer(dense)
        self._tracer = tracer
        self._min_similarity = min_similarity
        self._max_sentences = max_sentences
        self._metrics = metrics or RagMetrics.noop()
        self._content = content or SpanContent()

    def answer(
        self, question: str, hits: list[Hit], *, decision: RefusalDecision | None = None
    ) -> Answer:
        started = time.perf_counter()
        try:
            answer = self._answer(question, hits, decision)
        finally:
            self._metrics.answer_duration.record(time.perf_counter() - started)
        self._metrics.answers.add(1, {"refused": answer.refused})
        return answer

    def stream(
        self, question: str, hits: list[Hit], *, decision: RefusalDecision | None = None
    ) -> Iterator[AnswerEvent]:
        """The whole answer as one token: quoting is not generated word by word."""
        answer = self.answer(question, hits, decision=decision)
        yield Token(answer.text)
        yield Final(answer)

    def _answer(self, question: str, hits: list[Hit], decision: RefusalDecision | None) -> Answer:
        with self._tracer.start_as_current_span("answer extractive") as span:
            span.set_attribute("gen_ai.operation.name", "extract")
            span.set_attribute("answer.hits", len(hits))
            if decision is not None:
                span.set_attribute("answer.refusal.reason", decision.reason)
                if decision.refuse:
                    span.set_attribute("answer.refused", True)
                    span.set_attribute("answer.citations", 0)
                    return Answer(text=REFUSAL, citations=[], refused=True)
            candidates = self._score(question, hits)
            best = candidates[0].score if candidates else -1.0
            span.set_attribute("answer.best_similarity", round(best, 4))
            if best < self._min_similarity:
                answer = Answer(text=REFUSAL, citations=[], refused=True, model="extractive")
            else:
                floor = max(self._min_similarity, best - _MARGIN)
                chosen = [c for c in candidates if c.score >= floor][: self._max_sentences]
                answer = self._compose(chosen)
            span.set_attribute("answer.refused", answer.refused)
            span.set_attribute("answer.citations", len(answer.citations))
            if self._content.record_content:
                span.set_attribute("answer.question", question)
                span.set_attribute("answer.text", answer.text)
            return answer

    def best_similarity(self, question: str, hits: list[Hit]) -> float:
        """The cosine of the hits' best sentence to the question (-1 without sentences): what
        `answer_min_similarity` is compared with."""
        candidates = self._score(question, hits)
        return candidates[0].score if candidates else -1.0

    def _score(self, question: str, hits: list[Hit]) -> list[ScoredUnit]:
        return self._scorer.score(question, hits)

    @staticmethod
    def _compose(chosen: list[ScoredUnit]) -> Answer:
        numbers: dict[str, int] = {}
        citations: list[Citation] = []
        parts: list[str] = []
        for candidate in chosen:
            hit = candidate.hit
            if hit.chunk_id not in numbers:
                numbers[hit.chunk_id] = len(numbers) + 1
                citations.append(Citation.of(numbers[hit.chunk_id], hit))
            sentence = candidate.text.rstrip()
            if sentence[-1] not in ".!?":
                sentence += "."
            parts.append(f"{sentence} [{numbers[hit.chunk_id]}]")
        return Answer(text=" ".join(parts), citations=citations, refused=False, model="extractive")
