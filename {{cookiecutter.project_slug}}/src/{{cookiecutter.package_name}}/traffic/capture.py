"""Capture: a sampled record of production questions (RAG_CAPTURE_RATE; 0 = off, 1 = all),
for `monitor` (drift, refusal and score shift, operations) and `eval harvest`.

Records go to a shelf beside the corpus, in the store's own engine (store.base.RecordShelf),
with the question's dense vector (drift is measured on it). Off the request's path: a request
only enqueues; a worker thread embeds and writes. A capture error never fails a question:
it is counted (`errors`) and logged. The question is kept as text or SHA-256 like the audit
log (RAG_AUDIT_CONTENT), redacted when RAG_REDACT_PII is on.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from ..domain import Answer, Hit, Query
from ..guard import redact
from ..settings import AuditContent
from ..store import RecordShelf, VectorStore
from ..store.records import ShelfRecord

log = logging.getLogger(__name__)
CAPTURE_SHELF = "capture"
_QUEUE_LIMIT = 10_000  # beyond this, records are dropped (and counted), never waited for


@dataclass
class CaptureRecord:
    time: float  # Unix seconds, UTC (a range filter prunes by it)
    tenant: str
    key_id: str
    trace_id: str
    question: dict[str, str]  # {"text": ...} or {"sha256": ...}, as the audit log keeps it
    chunk_ids: list[str]
    sources: list[str]
    scores: list[float]
    dense_scores: list[float | None]
    refused: bool | None  # None: a retrieval, no answer
    grounded: bool | None
    citations_valid: bool | None
    latency_ms: dict[str, float]
    model: str | None
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    cache_hit: bool
    fallback_used: bool
    answer_text: str | None = None  # with RAG_AUDIT_CONTENT=text only; None for a retrieval
    vector: list[float] = field(default_factory=list, repr=False)

    def payload(self) -> dict[str, Any]:
        fields = asdict(self)
        fields.pop("vector")
        fields["iso_time"] = datetime.fromtimestamp(self.time, UTC).isoformat(timespec="seconds")
        return fields


class CaptureSink(Protocol):
    def write(self, records: list[CaptureRecord]) -> None: ...

    def read(self, since: float, until: float) -> Iterator[CaptureRecord]: ...

    def prune(self, before: float) -> None: ...


class ShelfCaptureSink:
    """Capture records on the `<collection>_capture` shelf beside the corpus, one record per
    question, carrying the question's dense vector."""

    def __init__(self, shelf: RecordShelf) -> None:
        self.shelf = shelf

    @classmethod
    def beside(cls, store: VectorStore, dimensions: int) -> ShelfCaptureSink:
        return cls(store.shelf(CAPTURE_SHELF, dimensions))

    def write(self, records: list[CaptureRecord]) -> None:
        self.shelf.put(
            [
                ShelfRecord(id=str(uuid.uuid4()), payload=r.payload(), vector=r.vector)
                for r in records
            ]
        )

    def read(self, since: float, until: float) -> Iterator[CaptureRecord]:
        for record in self.shelf.find(since=since, until=until, with_vectors=True):
            payload = dict(record.payload)
            payload.pop("iso_time", None)
            yield CaptureRecord(**payload, vector=list(record.vector or []))

    def prune(self, before: float) -> None:
        self.shelf.drop_before(before)


class Capture:
    """Samples production questions at `rate` and writes them through `sink` from a thread."""

    def __init__(
        self,
        sink: CaptureSink,
        embed: Callable[[str], list[float]],
        rate: float,
        content: AuditContent = "hash",
        redact_pii: bool = False,
        retention_days: float = 30.0,
        seed: int | None = None,
    ) -> None:
        self.sink = sink
        self.embed = embed
        self.rate = rate
        self.content = content
        self.redact_pii = redact_pii
        self.retention_s = retention_days * 86400
        self.errors = 0
        self.dropped = 0
        self._random = random.Random(seed)  # noqa: S311 - sampling, not a secret
        self._queue: queue.Queue[tuple[CaptureRecord, str] | None] = queue.Queue(_QUEUE_LIMIT)
        self._worker: threading.Thread | None = None
        self._last_prune = 0.0

    def _question(self, text: str) -> dict[str, str]:
        if self.content == "text":
            return {"text": redact(text) if self.redact_pii else text}
        return {"sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()}

    def offer(
        self,
        query: Query,
        hits: list[Hit],
        answer: Answer | None,
        trace_id: str,
        key_id: str,
        latency_ms: dict[str, float],
    ) -> bool:
        """Sample this question (answered, streamed, or a retrieval: `answer` None); True when
        it was queued. Never raises."""
        if self.rate <= 0 or self._random.random() >= self.rate:
            return False
        try:
            record = CaptureRecord(
                time=time.time(),
                tenant=query.tenant,
                key_id=key_id,
                trace_id=trace_id,
                question=self._question(query.text),
                chunk_ids=[h.chunk_id for h in hits],
                sources=[h.source for h in hits],
                scores=[h.score for h in hits],
                dense_scores=[h.dense_score for h in hits],
                latency_ms=dict(latency_ms),
                **self._answer_fields(answer),
            )
            self._start()
            self._queue.put_nowait((record, query.text))
        except queue.Full:
            self.dropped += 1
            return False
        except Exception:  # capture must never fail the question it records
            self.errors += 1
            log.exception("capture: a record could not be made")
            return False
        return True

    def _answer_fields(self, answer: Answer | None) -> dict[str, Any]:
        if answer is None:  # a retrieval: nothing was answered
            return {
                "refused": None,
                "grounded": None,
                "citations_valid": None,
                "model": None,
                "input_tokens": 0,
                "output_tokens": 0,
                "cost_usd": None,
                "cache_hit": False,
                "fallback_used": False,
            }
        text = None
        if self.content == "text":  # kept like the question, for the judge (`monitor --judge`)
            text = redact(answer.text) if self.redact_pii else answer.text
        return {
            "refused": answer.refused,
            "grounded": not answer.refused and bool(answer.citations),
            "citations_valid": answer.grounded,
            "model": answer.model,
            "input_tokens": answer.usage.input_tokens,
            "output_tokens": answer.usage.output_tokens,
            "cost_usd": answer.cost_usd,
            "cache_hit": answer.cached,
            "fallback_used": answer.fallback_used,
            "answer_text": text,
        }

    def _start(self) -> None:
        if self._worker is None:
            self._worker = threading.Thread(target=self._run, name="capture", daemon=True)
            self._worker.start()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            record, text = item
            try:
                record.vector = self.embed(text)
                self.sink.write([record])
                if record.time - self._last_prune > 3600:  # at most hourly
                    self.sink.prune(record.time - self.retention_s)
                    self._last_prune = record.time
            except Exception:
                self.errors += 1
                log.exception("capture: a record could not be written (%d so far)", self.errors)
            finally:
                self._queue.task_done()
        self._queue.task_done()

    def flush(self) -> None:
        """Wait until every queued record is written (tests, shutdown)."""
        if self._worker is not None:
            self._queue.join()

    def close(self) -> None:
        if self._worker is not None:
            self._queue.put(None)
            self._worker.join(timeout=10)
            self._worker = None
