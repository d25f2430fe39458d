"""Feedback on answers: POST /v1/feedback, a vote (and comment) on one answer by its trace id."""

from __future__ import annotations

from fastapi import APIRouter

from ...telemetry import current_trace_id
from ..deps import QueryCaller, ServicesDep
from ..errors import KEYED_ROUTE, problem_responses
from ..schemas import FeedbackRequest, FeedbackResponse

router = APIRouter(
    prefix="/v1", tags=["feedback"], responses=problem_responses(*KEYED_ROUTE, 413, 422)
)


@router.post("/feedback", response_model=FeedbackResponse, status_code=202)
def feedback(body: FeedbackRequest, services: ServicesDep, caller: QueryCaller) -> FeedbackResponse:
    """Say whether an answer helped. Kept under the caller's tenant; down-votes feed
    `eval harvest`, which drafts golden-set rows from them for a person to review."""
    comment = body.comment or None  # an empty comment is no comment
    stored = services.feedback.add(
        body.trace_id, caller.tenant, caller.key_id, body.rating, comment
    )
    services.audit.write(
        "feedback",
        caller.key_id,
        caller.tenant,
        current_trace_id(),
        answer_trace_id=body.trace_id,
        feedback_id=stored.feedback_id,
        rating=body.rating,
        commented=comment is not None,
    )
    return FeedbackResponse(
        feedback_id=stored.feedback_id, trace_id=stored.trace_id, rating=stored.rating
    )
