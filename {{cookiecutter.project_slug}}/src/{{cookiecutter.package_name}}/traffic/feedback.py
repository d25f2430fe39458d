"""User feedback on answers (`POST /v1/feedback`): one record per vote on a shelf beside the
corpus (`<collection>_feedback`, in the store's own engine), so it works embedded and, on a
server, every replica reads every vote. Votes are looked up by tenant and trace id, never by
similarity.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Literal

from ..errors import StoreUnavailableError
from ..guard import redact
from ..store import RecordShelf, VectorStore
from ..store.records import ShelfRecord

Rating = Literal["up", "down"]
FEEDBACK_SHELF = "feedback"


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
    def __init__(self, shelf: RecordShelf, redact_pii: bool = False) -> None:
        self.shelf = shelf
        self.redact_pii = redact_pii

    @classmethod
    def beside(cls, store: VectorStore, redact_pii: bool) -> FeedbackStore:
        return cls(store.shelf(FEEDBACK_SHELF), redact_pii)

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
        try:
            self.shelf.put([ShelfRecord(id=feedback.feedback_id, payload=asdict(feedback))])
        except (OSError, RuntimeError) as exc:  # the engines' own errors, in one sentence
            raise StoreUnavailableError(f"Feedback could not be stored: {exc}") from exc
        return feedback

    def of_tenant(self, tenant: str, trace_id: str | None = None) -> Iterator[Feedback]:
        """A tenant's feedback (optionally on one answer), in no particular order."""
        equals = (
            {"tenant": tenant} if trace_id is None else {"tenant": tenant, "trace_id": trace_id}
        )
        for record in self.shelf.find(equals=equals):
            yield Feedback(**record.payload)
