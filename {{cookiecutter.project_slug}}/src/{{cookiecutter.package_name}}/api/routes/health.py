"""Liveness, readiness and the Prometheus scrape endpoint."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..deps import AdminCaller, ServicesDep
from ..schemas import Readiness

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
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


@router.get("/metrics", include_in_schema=False)
def metrics(services: ServicesDep, caller: AdminCaller) -> Response:
    """Prometheus scrape endpoint (RAG_METRICS_EXPORTER=prometheus); 404 otherwise."""
    registry = services.prometheus_registry
    if registry is None:
        raise HTTPException(
            status_code=404,
            detail="Metrics are not served here: set RAG_METRICS_EXPORTER=prometheus.",
        )
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
