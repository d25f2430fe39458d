"""User feedback on answers (`POST /v1/feedback`): one point per vote in a Qdrant collection
beside the corpus, so it works embedded and, on a server, every replica reads every vote.

The collection has no vectors: feedback is looked up by tenant and trace id, never by
similarity. It is written through the corpus store's own client (embedded Qdrant allows one
client per folder) and under the store's lock (local Qdrant is not safe for concurrent use).
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from ..errors import StoreUnavailableError
from ..guard import redact

Rating = Literal["up", "down"]
FEEDBACK_SUFFIX = "_feedback"


@dataclass(frozen=True)
class Feedback:
    feedback_id: str
    trace_id: str
    tenant: str
    key_id: str
    rating: Rating
    comment: str | None
    time: str  # ISO 8601, UTC


class FeedbackStore:
    def __init__(
        self,
        client: QdrantClient,
        collection: str,
        lock: contextlib.AbstractContextManager[Any] | None = None,
        redact_pii: bool = False,
        embedded: bool = False,
    ) -> None:
        self.client = client
        self.embedded = embedded
        self.collection = collection
        self.redact_pii = redact_pii
        self._lock: contextlib.AbstractContextManager[Any] = lock or threading.RLock()
        self._ready = False

    @classmethod
    def beside(cls, store: object, corpus_collection: str, redact_pii: bool) -> FeedbackStore:
        """The feedback collection next to the corpus, through that store's client and lock."""
        client = getattr(store, "client", None)
        if not isinstance(client, QdrantClient):
            raise StoreUnavailableError(
                f"Feedback is kept in Qdrant beside the corpus, and {type(store).__name__} "
                "exposes no Qdrant client; use the Qdrant store (RAG_QDRANT_URL or embedded)."
            )
        # Why the private attribute: the store serialises embedded calls on one process-wide
        # lock; a second lock here would let a feedback write race a corpus write.
        lock = getattr(store, "_lock", None)
        embedded = bool(getattr(store, "embedded", False))
        return cls(client, corpus_collection + FEEDBACK_SUFFIX, lock, redact_pii, embedded)

    def _ensure(self) -> None:
        if self._ready:
            return
        if not self.client.collection_exists(self.collection):
            self.client.create_collection(self.collection, vectors_config={})
            # A server needs payload indexes for fast filters; local mode ignores them.
            for field in () if self.embedded else ("tenant", "trace_id"):
                self.client.create_payload_index(
                    self.collection, field, models.PayloadSchemaType.KEYWORD
                )
        self._ready = True

    def add(
        self, trace_id: str, tenant: str, key_id: str, rating: Rating, comment: str | None
    ) -> Feedback:
        if comment is not None and self.redact_pii:
            comment = redact(comment)
        feedback = Feedback(
            feedback_id=str(uuid.uuid4()),
            trace_id=trace_id,
            tenant=tenant,
            key_id=key_id,
            rating=rating,
            comment=comment,
            time=datetime.now(UTC).isoformat(timespec="milliseconds"),
        )
        point = models.PointStruct(id=feedback.feedback_id, vector={}, payload=asdict(feedback))
        try:
            with self._lock:
                self._ensure()
                self.client.upsert(self.collection, points=[point], wait=True)
        except (OSError, RuntimeError, ResponseHandlingException, UnexpectedResponse) as exc:
            raise StoreUnavailableError(f"Feedback could not be stored: {exc}") from exc
        return feedback

    def of_tenant(self, tenant: str, trace_id: str | None = None) -> Iterator[Feedback]:
        """A tenant's feedback (optionally on one answer), in no particular order."""
        must = [models.FieldCondition(key="tenant", match=models.MatchValue(value=tenant))]
        if trace_id is not None:
            must.append(
                models.FieldCondition(key="trace_id", match=models.MatchValue(value=trace_id))
            )
        offset: Any = None
        while True:
            with self._lock:
                if not self.client.collection_exists(self.collection):
                    return
                records, offset = self.client.scroll(
                    self.collection,
                    scroll_filter=models.Filter(must=must),
                    limit=256,
                    offset=offset,
                    with_payload=True,
                )
            for record in records:
                yield Feedback(**(record.payload or {}))
            if offset is None:
                return
