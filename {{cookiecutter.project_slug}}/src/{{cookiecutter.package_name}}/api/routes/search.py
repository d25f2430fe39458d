"""Search and answers: POST /v1/retrieve and POST /v1/query, both through the ask use case."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from ...ask import Question
from ...telemetry import current_trace_id
from ..deps import QueryCaller, ServicesDep
from ..errors import KEYED_ROUTE, problem_responses
from ..limits import check_search_limits
from ..schemas import (
    HitOut,
    QueryRequest,
    QueryResponse,
    RetrieveRequest,
    RetrieveResponse,
    SearchOptions,
)
from ..security import Caller
from ..sse import answer_events

router = APIRouter(
    prefix="/v1",
    tags=["search"],
    # 400: the limits that are settings; 502: a remote embedding or LLM endpoint failed.
    responses=problem_responses(*KEYED_ROUTE, 400, 413, 422, 502),
)

_SSE_DOC: dict[int | str, dict[str, object]] = {
    200: {
        "content": {
            "text/event-stream": {
                "example": 'event: token\ndata: {"text": "Passwords"}\n\n'
                'event: final\ndata: {"answer": "...", "citations": [...], "trace_id": "..."}\n\n'
            }
        },
        "description": "JSON, or with `stream: true` Server-Sent Events.",
    }
}


def _question(services: ServicesDep, text: str, body: SearchOptions, caller: Caller) -> Question:
    """The request as the ask use case takes it, after the limits that are settings."""
    check_search_limits(services.settings, text, body)
    sources = body.filters.source if body.filters else None
    return Question(text, caller.tenant, body.top_k, sources, key_id=caller.key_id)


@router.post("/retrieve", response_model=RetrieveResponse)
def retrieve(body: RetrieveRequest, services: ServicesDep, caller: QueryCaller) -> RetrieveResponse:
    """Hybrid (dense + BM25) search; hits are ranked by Qdrant's reciprocal rank fusion."""
    hits = services.asker.retrieve(_question(services, body.query, body, caller))
    return RetrieveResponse(
        hits=[HitOut.of(rank, h) for rank, h in enumerate(hits, start=1)],
        trace_id=current_trace_id(),
    )


@router.post("/query", response_model=QueryResponse, responses=_SSE_DOC)
def query(
    body: QueryRequest, services: ServicesDep, caller: QueryCaller, request: Request
) -> Response:
    """Answer a question from the documents, citing them; refuses when they do not say."""
    question = _question(services, body.question, body, caller)
    if body.stream:
        streamed = services.asker.stream(question)
        return StreamingResponse(
            answer_events(streamed.events, request, streamed.trace_id),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    asked = services.asker.ask(question)
    return JSONResponse(QueryResponse.of(asked.answer, asked.trace_id).model_dump())
