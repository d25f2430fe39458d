"""Routes stay thin: validate, call a service, shape the response."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, File, HTTPException, Request, Response, UploadFile
from fastapi import Query as QueryParam
from fastapi.responses import JSONResponse, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from ..answer import AnswerEvent, Final
from ..container import Services
from ..domain import Answer, Query
from ..errors import BadRequestError, PayloadTooLargeError, ServiceError
from ..ingest.uploads import safe_filename
from ..telemetry import current_trace_id
from .errors import PROBLEM_MEDIA_TYPE, problem_body
from .limits import check_search_limits
from .schemas import (
    DocumentDeleted,
    DocumentList,
    DocumentOut,
    HitOut,
    IngestionJobOut,
    Problem,
    QueryRequest,
    QueryResponse,
    Readiness,
    RetrieveRequest,
    RetrieveResponse,
    SearchOptions,
)
from .security import AdminCaller, Caller, IngestCaller, QueryCaller


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


log = logging.getLogger(__name__)
ServicesDep = Annotated[Services, Depends(get_services)]
_ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": Problem, "content": {PROBLEM_MEDIA_TYPE: {}}}
    for code in (400, 401, 403, 413, 422, 429, 500, 503)
}
_DOCUMENT_ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": Problem, "content": {PROBLEM_MEDIA_TYPE: {}}} for code in (404, 409, 415)
}
_READ_BLOCK = 1 << 20

health = APIRouter(tags=["health"])
v1 = APIRouter(prefix="/v1", tags=["search"], responses=_ERRORS)
documents = APIRouter(prefix="/v1", tags=["documents"], responses=_ERRORS | _DOCUMENT_ERRORS)


def _query(services: Services, text: str, body: SearchOptions, caller: Caller) -> Query:
    check_search_limits(services.settings, text, body)
    top_k = body.top_k or services.settings.default_top_k
    if top_k > services.settings.max_top_k:
        raise BadRequestError(
            f"top_k={top_k} is over the limit of {services.settings.max_top_k} "
            "(RAG_MAX_TOP_K); ask for fewer hits."
        )
    sources = body.filters.source if body.filters else None
    return Query(text=text, top_k=top_k, sources=sources, tenant=caller.tenant)


@health.get("/healthz")
def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@health.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
def readyz(services: ServicesDep) -> JSONResponse:
    """Readiness: store reachable, collection present, embedding model loaded."""
    checks: dict[str, str] = {}
    try:
        checks["collection"] = (
            "ok" if services.store.collection_exists() else f"missing: {services.store.collection}"
        )
        checks["store"] = "ok"
    except Exception as exc:  # report, never raise: this endpoint exists to say what is wrong
        checks["store"] = f"unavailable: {exc}"
    checks["embedding_model"] = f"ok: {services.dense.model_id} ({services.dense.dimensions}d)"
    ready = all(value.startswith("ok") for value in checks.values())
    return JSONResponse(
        status_code=200 if ready else 503,
        content=Readiness(ready=ready, checks=checks).model_dump(),
    )


@health.get("/metrics", include_in_schema=False)
def metrics(services: ServicesDep, caller: AdminCaller) -> Response:
    """Prometheus scrape endpoint (RAG_METRICS_EXPORTER=prometheus); 404 otherwise."""
    registry = services.prometheus_registry
    if registry is None:
        raise HTTPException(
            status_code=404,
            detail="Metrics are not served here: set RAG_METRICS_EXPORTER=prometheus.",
        )
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


@v1.post("/retrieve", response_model=RetrieveResponse)
def retrieve(body: RetrieveRequest, services: ServicesDep, caller: QueryCaller) -> RetrieveResponse:
    """Hybrid (dense + BM25) search; hits are ranked by Qdrant's reciprocal rank fusion."""
    hits = services.retriever.retrieve(_query(services, body.query, body, caller))
    services.audit.query(caller.key_id, caller.tenant, current_trace_id(), body.query, hits)
    return RetrieveResponse(hits=[HitOut.of(h) for h in hits], trace_id=current_trace_id())


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


@v1.post("/query", response_model=QueryResponse, responses=_SSE_DOC)
def query(
    body: QueryRequest, services: ServicesDep, caller: QueryCaller, request: Request
) -> Response:
    """Answer a question from the documents, citing them; refuses when they do not say."""
    hits = services.retriever.retrieve(_query(services, body.question, body, caller))
    trace = current_trace_id()

    def audit(answer: Answer) -> None:
        services.audit.query(caller.key_id, caller.tenant, trace, body.question, hits, answer)

    if body.stream:
        events = services.answerer.stream(body.question, hits)
        return StreamingResponse(
            _sse_events(events, request, trace, on_final=audit),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    answer = services.answerer.answer(body.question, hits)
    audit(answer)
    return JSONResponse(QueryResponse.of(answer, trace).model_dump())


def _blocks(upload: UploadFile) -> Iterator[bytes]:
    while block := upload.file.read(_READ_BLOCK):
        yield block


@documents.post("/documents", status_code=202, response_model=IngestionJobOut)
def upload_documents(
    services: ServicesDep,
    caller: IngestCaller,
    response: Response,
    files: Annotated[list[UploadFile], File(description="One or more documents.")],
) -> IngestionJobOut:
    """Upload documents; they are ingested by a background job, whose id this returns.
    A file of the same name as an earlier upload replaces it."""
    settings = services.settings
    if len(files) > settings.max_upload_files:
        raise PayloadTooLargeError(
            f"{len(files)} files in one upload; the limit is {settings.max_upload_files} "
            "(RAG_MAX_UPLOAD_FILES). Send them in several uploads."
        )
    names = [safe_filename(upload.filename or "") for upload in files]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise BadRequestError(f"The same file name appears twice in one upload: {repeated}.")
    for name, upload in zip(names, files, strict=True):
        if upload.size is not None and upload.size > settings.max_file_bytes:
            raise PayloadTooLargeError(
                f"{name} is {upload.size:,} bytes, over the {settings.max_file_bytes:,}-byte "
                "limit per file (RAG_MAX_FILE_BYTES)."
            )
    saved = [
        services.jobs.inbox(caller.tenant).save(name, _blocks(upload))
        for name, upload in zip(names, files, strict=True)
    ]
    job = services.jobs.submit(saved, tenant=caller.tenant)
    services.audit.upload(caller.key_id, caller.tenant, current_trace_id(), job.id, saved)
    response.headers["Location"] = f"/v1/ingestions/{job.id}"
    return IngestionJobOut.of(job)


@documents.get("/ingestions/{job_id}", response_model=IngestionJobOut)
def ingestion_job(job_id: str, services: ServicesDep, caller: IngestCaller) -> IngestionJobOut:
    """Progress of an ingestion job and the outcome of each of its files."""
    return IngestionJobOut.of(services.jobs.get(job_id, tenant=caller.tenant))


@documents.get("/documents", response_model=DocumentList)
def list_documents(
    services: ServicesDep,
    caller: IngestCaller,
    corpus: Annotated[str | None, QueryParam(description="Only this corpus.")] = None,
) -> DocumentList:
    """Every stored document of your tenant: source, hash, chunk count, when it was ingested."""
    stored = services.store.documents(tenant=caller.tenant, corpus=corpus)
    return DocumentList(documents=[DocumentOut.of(d) for d in sorted(stored, key=lambda d: d.id)])


@documents.delete("/documents/{document_id}", response_model=DocumentDeleted)
def delete_document(
    document_id: str, services: ServicesDep, caller: IngestCaller
) -> DocumentDeleted:
    """Delete a document's chunks (and, for an upload, its file)."""
    found, outcome = services.jobs.delete_document(document_id, tenant=caller.tenant)
    trace = current_trace_id()
    services.audit.delete(caller.key_id, caller.tenant, trace, document_id, found.source)
    return DocumentDeleted(
        id=document_id,
        corpus=found.corpus,
        source=found.source,
        chunks_deleted=0 if found.alias_of else found.chunks,
        note=outcome.reason,
    )


def _sse(event: str, data: str) -> str:
    return f"event: {event}\ndata: {data}\n\n"


async def _sse_events(
    events: Iterator[AnswerEvent],
    request: Request,
    trace_id: str,
    on_final: Callable[[Answer], None],
) -> AsyncIterator[str]:
    """Token events, then `final` (or `error`). A client that disconnects stops generation:
    closing the answer stream closes the model's HTTP stream."""
    try:
        while not await request.is_disconnected():
            event = await run_in_threadpool(next, events, None)
            if event is None:
                break
            if isinstance(event, Final):
                await run_in_threadpool(on_final, event.answer)
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


def _problem(status: int, kind: str, message: str, trace_id: str) -> str:
    """An RFC 9457 problem as an SSE `error` event (the status line was sent already)."""
    return json.dumps({**problem_body(status, kind, message, "/v1/query"), "trace_id": trace_id})


def _close(events: Iterator[AnswerEvent]) -> None:
    close = getattr(events, "close", None)
    if close is not None:
        close()
