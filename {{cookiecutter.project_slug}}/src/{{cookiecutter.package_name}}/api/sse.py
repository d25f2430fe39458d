"""An answer as Server-Sent Events: `token` events, then one `final` (or one `error`)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterator

import anyio
from fastapi import Request
from starlette.concurrency import run_in_threadpool

from ..answer import AnswerEvent, Final
from ..errors import ServiceError
from .errors import problem_body
from .schemas import QueryResponse

log = logging.getLogger(__name__)


async def answer_events(
    events: Iterator[AnswerEvent], request: Request, trace_id: str
) -> AsyncIterator[str]:
    """Token events, then `final` (or `error`). A client that disconnects stops generation:
    closing the answer stream closes the model's HTTP stream."""
    try:
        while not await request.is_disconnected():
            event = await run_in_threadpool(next, events, None)
            if event is None:
                break
            if isinstance(event, Final):
                yield _sse("final", QueryResponse.of(event.answer, trace_id).model_dump_json())
                break
            yield _sse("token", json.dumps({"text": event.text}))
    except ServiceError as exc:  # headers are sent: the error travels as an event
        log.error("POST /v1/query stream -> %s: %s", type(exc).__name__, exc.message)
        yield _sse("error", _problem(exc.status_code, type(exc).__name__, exc.message, trace_id))
    except Exception:
        log.exception("unhandled error in POST /v1/query stream (trace %s)", trace_id)
        message = f"Internal error; the server log has it under trace id {trace_id}."
        yield _sse("error", _problem(500, "InternalError", message, trace_id))
    finally:
        with anyio.CancelScope(shield=True):
            await run_in_threadpool(_close, events)


def _sse(event: str, data: str) -> str:
    return f"event: {event}\ndata: {data}\n\n"


def _problem(status: int, kind: str, message: str, trace_id: str) -> str:
    """An RFC 9457 problem as an SSE `error` event (the status line was sent already)."""
    return json.dumps({**problem_body(status, kind, message, "/v1/query"), "trace_id": trace_id})


def _close(events: Iterator[AnswerEvent]) -> None:
    close = getattr(events, "close", None)
    if close is not None:
        close()
