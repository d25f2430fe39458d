"""Routes stay thin: validate, call a service, shape the response."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..container import Services
from ..domain import Query
from ..errors import BadRequestError
from ..telemetry import current_trace_id
from .schemas import (
    ErrorResponse,
    HitOut,
    QueryRequest,
    QueryResponse,
    Readiness,
    RetrieveRequest,
    RetrieveResponse,
    SearchOptions,
)


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]
_ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorResponse} for code in (400, 422, 500, 503)
}

health = APIRouter(tags=["health"])
v1 = APIRouter(prefix="/v1", tags=["search"], responses=_ERRORS)


def _query(services: Services, text: str, body: SearchOptions) -> Query:
    top_k = body.top_k or services.settings.default_top_k
    if top_k > services.settings.max_top_k:
        raise BadRequestError(
            f"top_k={top_k} is over the limit of {services.settings.max_top_k} "
            "(RAG_MAX_TOP_K); ask for fewer hits."
        )
    sources = body.filters.source if body.filters else None
    return Query(text=text, top_k=top_k, sources=sources)


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
def metrics(services: ServicesDep) -> Response:
    """Prometheus scrape endpoint (RAG_METRICS_EXPORTER=prometheus); 404 otherwise."""
    registry = services.prometheus_registry
    if registry is None:
        raise HTTPException(
            status_code=404,
            detail="Metrics are not served here: set RAG_METRICS_EXPORTER=prometheus.",
        )
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


@v1.post("/retrieve", response_model=RetrieveResponse)
def retrieve(body: RetrieveRequest, services: ServicesDep) -> RetrieveResponse:
    """Hybrid (dense + BM25) search; hits are ranked by Qdrant's reciprocal rank fusion."""
    hits = services.retriever.retrieve(_query(services, body.query, body))
    return RetrieveResponse(hits=[HitOut.of(h) for h in hits], trace_id=current_trace_id())


@v1.post("/query", response_model=QueryResponse)
def query(body: QueryRequest, services: ServicesDep) -> QueryResponse:
    """Answer a question from the documents, citing them; refuses when they do not say."""
    hits = services.retriever.retrieve(_query(services, body.question, body))
    answer = services.answerer.answer(body.question, hits)
    return QueryResponse.of(answer, current_trace_id())
