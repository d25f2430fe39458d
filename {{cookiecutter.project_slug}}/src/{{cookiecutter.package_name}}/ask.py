"""Asking, the one use case: question -> Query -> retrieve -> refuse or answer -> audit.

The API (`/v1/retrieve`, `/v1/query`), the CLI (`ask`, `demo`) and the eval gate all ask
through an `Asker`, so the top_k rules, the tenant, the refusal decision and the audit line
are the same whichever way a question comes in. The answerers only write answers: whether the
retrieved evidence is good enough to answer at all is decided here, once, by the refusal
(refusal.py: the calibrated model or the hand rules),
and handed to the answerer, which writes the refusal in its own words (an LLM answerer
without calling the model) and puts the reason on its span.

A question with a key (the API's and the MCP tools', never the CLI's or the eval gate's) is
audited and offered to capture (`monitor`), whichever way it was asked: answered, streamed,
or a retrieval.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from .answer import Answerer, AnswerEvent, Final
from .answer.sentences import SentenceScorer
from .audit import AuditLog
from .domain import Answer, Hit, Query
from .errors import BadRequestError, ConfigurationError
from .refusal import Refusal
from .retrieve import Retriever
from .telemetry import current_trace_id


class Capturer(Protocol):
    """Samples production questions for `monitor` (traffic.capture.Capture); never raises."""

    def offer(
        self,
        query: Query,
        hits: list[Hit],
        answer: Answer | None,
        trace_id: str,
        key_id: str,
        latency_ms: dict[str, float],
    ) -> bool: ...


@dataclass(frozen=True)
class Question:
    """What a caller asks, before the service's rules are applied."""

    text: str
    tenant: str  # whose documents answer it; required, so no caller can forget it
    top_k: int | None = None  # None: RAG_DEFAULT_TOP_K
    sources: list[str] | None = None  # only these sources
    key_id: str | None = None  # the API key asking; its questions are audited under it
    tool: str | None = None  # the MCP tool asking, audited with it


@dataclass(frozen=True)
class Asked:
    """One answered question: what was searched, what was found, what was said."""

    query: Query
    hits: list[Hit]
    answer: Answer
    trace_id: str
    retrieve_ms: float
    answer_ms: float


@dataclass(frozen=True)
class Streamed:
    """A question being answered: the hits now, the answer as `events` (tokens, then one
    Final, audited as it passes). Closing `events` early stops generation."""

    query: Query
    hits: list[Hit]
    events: Iterator[AnswerEvent]
    trace_id: str


class Asker:
    def __init__(
        self,
        retriever: Retriever,
        answerer: Answerer,
        refusal: Refusal,
        audit: AuditLog,
        *,
        default_top_k: int,
        max_top_k: int,
        capture: Capturer | None = None,
        sentences: SentenceScorer | None = None,
    ) -> None:
        if refusal.reads_sentences and sentences is None:
            raise ConfigurationError(
                "The refusal model reads the best sentence's cosine (feature best_sentence), "
                "but no sentence scorer was given to the Asker; build it with one."
            )
        self._sentences = sentences
        self._retriever = retriever
        self._capture = capture
        self._answerer = answerer
        self._refusal = refusal
        self._audit = audit
        self._default_top_k = default_top_k
        self._max_top_k = max_top_k

    def query(self, question: Question) -> Query:
        """The top_k rules live here and nowhere else: the default, and the limit."""
        top_k = self._default_top_k if question.top_k is None else question.top_k
        if top_k < 1:  # 0 is not "the default": the API and MCP refuse it too
            raise BadRequestError(
                f"top_k={top_k} must be at least 1; leave it out for the default "
                f"({self._default_top_k}, RAG_DEFAULT_TOP_K)."
            )
        if top_k > self._max_top_k:
            raise BadRequestError(
                f"top_k={top_k} is over the limit of {self._max_top_k} "
                "(RAG_MAX_TOP_K); ask for fewer hits."
            )
        return Query(
            text=question.text, top_k=top_k, sources=question.sources, tenant=question.tenant
        )

    def retrieve(self, question: Question) -> list[Hit]:
        """Hits only, no answer (audited as a retrieval)."""
        query = self.query(question)
        started = time.perf_counter()
        hits = self._retriever.retrieve(query)
        retrieve_ms = (time.perf_counter() - started) * 1000
        self._record(question, query, current_trace_id(), hits, None, {"retrieve": retrieve_ms})
        return hits

    def ask(self, question: Question) -> Asked:
        query = self.query(question)
        started = time.perf_counter()
        hits = self._retriever.retrieve(query)
        retrieved = time.perf_counter()
        answer = self.answer(question.text, hits)
        answered = time.perf_counter()
        trace_id = current_trace_id()
        retrieve_ms, answer_ms = (retrieved - started) * 1000, (answered - retrieved) * 1000
        latency = {"retrieve": retrieve_ms, "answer": answer_ms}
        self._record(question, query, trace_id, hits, answer, latency)
        return Asked(query, hits, answer, trace_id, retrieve_ms=retrieve_ms, answer_ms=answer_ms)

    def stream(self, question: Question) -> Streamed:
        """Retrieval happens now (its errors are the caller's to report before streaming);
        the answer is written as the events are read."""
        query = self.query(question)
        started = time.perf_counter()
        hits = self._retriever.retrieve(query)
        retrieved = time.perf_counter()
        # Taken now: the events may be read where the request's span is no longer current.
        trace_id = current_trace_id()

        def audit(answer: Answer) -> None:
            # Answer time: until the final event, including the client's reading of tokens.
            latency = {
                "retrieve": (retrieved - started) * 1000,
                "answer": (time.perf_counter() - retrieved) * 1000,
            }
            self._record(question, query, trace_id, hits, answer, latency)

        events = _audited(self.answer_events(question.text, hits), audit)
        return Streamed(query, hits, events, trace_id)

    def answer(self, text: str, hits: list[Hit]) -> Answer:
        """The refusal decision, then the answerer (for callers that hold hits already)."""
        decision = self._refusal.decide(self.refusal_evidence(text, hits))
        return self._answerer.answer(text, hits, decision=decision)

    def answer_events(self, text: str, hits: list[Hit]) -> Iterator[AnswerEvent]:
        decision = self._refusal.decide(self.refusal_evidence(text, hits))
        return self._answerer.stream(text, hits, decision=decision)

    def refusal_evidence(self, text: str, hits: list[Hit]) -> list[Hit]:
        """The hits as refusal reads them: with each one's best sentence cosine when the
        refusal reads it (the extractive answerer shares the scorer, so its vectors are
        computed once)."""
        if self._sentences is None or not self._refusal.reads_sentences:
            return hits
        return self._sentences.annotate(text, hits)

    def _record(
        self,
        question: Question,
        query: Query,
        trace_id: str,
        hits: list[Hit],
        answer: Answer | None,
        latency_ms: dict[str, float],
    ) -> None:
        """Audit, and offer to capture, a question asked with a key."""
        if question.key_id is not None:
            if self._capture is not None:  # sampled; queued, written off the request
                self._capture.offer(query, hits, answer, trace_id, question.key_id, latency_ms)
            self._audit.query(
                question.key_id,
                question.tenant,
                trace_id,
                question.text,
                hits,
                answer,
                tool=question.tool,
            )


def _audited(
    events: Iterator[AnswerEvent], audit: Callable[[Answer], None]
) -> Iterator[AnswerEvent]:
    """The events as they come, the final answer audited before it is passed on; closing
    this closes the answerer's stream (and with it the model's HTTP stream)."""
    try:
        for event in events:
            if isinstance(event, Final):
                audit(event.answer)
            yield event
    finally:
        close = getattr(events, "close", None)
        if close is not None:
            close()
