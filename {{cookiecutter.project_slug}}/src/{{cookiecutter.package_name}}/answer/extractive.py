"""An answerer without an LLM: quote the hits' sentences that best match the question.

Each quoted sentence is cited as [n], where n points at `Answer.citations[n - 1]`. Refusal
rests on the cosine similarity between question and sentence embeddings, which has an
absolute meaning (unlike a fused RRF score): when no sentence reaches the threshold the
answerer says it does not know instead of quoting noise. Before that, the ask use case
(ask.py) has asked the refusal policy (refusal.py) whether the retrievers' evidence says the
corpus answers at all; a refusing decision is written as the refusal, without quoting.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

from opentelemetry.trace import Tracer

from ..domain import Answer, Citation, Hit
from ..embeddings import DenseEncoder, cosine
from ..refusal import RefusalDecision
from ..telemetry import RagMetrics, SpanContent
from .base import AnswerEvent, Final, Token
from .sentences import SentenceVectors

REFUSAL = "I don't know: the ingested documents do not answer this question."
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
_TABLE_RULE = re.compile(r"^\|?[\s:|-]+\|?$")
_EMPHASIS = re.compile(r"(\*\*|__|`)")
# Sentences scoring within this margin of the best one are quoted too.
_MARGIN = 0.08


@dataclass(frozen=True)
class _Candidate:
    text: str
    hit: Hit
    score: float


def split_sentences(text: str) -> list[str]:
    """Sentences and list items of a chunk, and each row of a Markdown table as one unit with
    its header names (`Role: Adjuster; Limit: 5,000`; a row whose header is not in the chunk
    is not quoted: without it the cells mean nothing). Headings, table rules and questions (an
    FAQ's question lines match the user's question best, but answer nothing) are not evidence."""
    units: list[str] = []
    table: list[str] = []
    for raw_line in [*text.splitlines(), ""]:
        line = _EMPHASIS.sub("", raw_line).strip()
        if line.startswith("|"):
            table.append(line)
            continue
        if table:
            units += [row for row in _table_rows(table) if _is_evidence(row)]
            table = []
        line = line.lstrip("-*+ ").strip()
        if not line or line.startswith("#"):
            continue
        units += [s.strip() for s in _SENTENCE_END.split(line) if _is_evidence(s.strip())]
    return units


def record_unit(text: str) -> str:
    """A CSV row or JSONL record as one quotable unit: its `field: value` lines joined."""
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


def _table_rows(lines: list[str]) -> list[str]:
    def cells(line: str) -> list[str]:
        return [cell.strip() for cell in line.strip().strip("|").split("|")]

    if len(lines) < 3 or not _TABLE_RULE.match(lines[1]):
        return []
    header = cells(lines[0])
    return [
        "; ".join(
            f"{name}: {value}" for name, value in zip(header, cells(row), strict=False) if value
        )
        for row in lines[2:]
        if not _TABLE_RULE.match(row)
    ]


def _is_evidence(unit: str) -> bool:
    return len(re.findall(r"\w+", unit)) >= 3 and not unit.endswith("?")


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
    ) -> None:
        self._dense = dense
        self._sentences = SentenceVectors(dense)
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

    def _score(self, question: str, hits: list[Hit]) -> list[_Candidate]:
        seen: set[str] = set()
        pairs: list[tuple[str, Hit]] = []
        for hit in hits:
            units = [record_unit(hit.text)] if hit.is_record else split_sentences(hit.text)
            for sentence in units:
                key = sentence.lower()
                if key not in seen:
                    seen.add(key)
                    pairs.append((sentence, hit))
        if not pairs:
            return []
        question_vector = self._dense.embed_query(question)
        vectors = self._sentences.vectors([sentence for sentence, _ in pairs])
        candidates = [
            _Candidate(sentence, hit, cosine(question_vector, vector))
            for (sentence, hit), vector in zip(pairs, vectors, strict=True)
        ]
        return sorted(candidates, key=lambda c: c.score, reverse=True)

    @staticmethod
    def _compose(chosen: list[_Candidate]) -> Answer:
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
