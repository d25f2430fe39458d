"""Every error is RFC 9457 problem+json: a `detail` a person can act on, and the trace id."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from ..errors import ServiceError
from ..telemetry import current_trace_id
from .schemas import Problem

log = logging.getLogger(__name__)
PROBLEM_MEDIA_TYPE = "application/problem+json"


# What every route behind a key can answer (security.py): no or bad key, a missing scope,
# the key's rate limit spent, keys that cannot be read; and an unexpected error.
KEYED_ROUTE = (401, 403, 429, 500, 503)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, object]]:
    """OpenAPI `responses` for these error statuses: problem details, of media type
    application/problem+json (see openapi.py). Each route lists only what it can answer:
    a body's 413 and 422 where it takes one, 415 where it takes files."""
    return {status: {"model": Problem, "content": {PROBLEM_MEDIA_TYPE: {}}} for status in statuses}


def _phrase(status: int, kind: str) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return kind


def problem_body(status: int, kind: str, message: str, instance: str) -> dict[str, Any]:
    """`type` names the kind of problem (stable, for code); `detail` is this occurrence."""
    if kind == "HTTPError":  # Starlette's own (404 route, 405 method): named by the status
        slug = _phrase(status, kind).lower().replace(" ", "-")
    else:
        # CamelCase to kebab-case, acronyms kept whole: LLMUnavailableError -> llm-unavailable
        name = kind.removesuffix("Error") or kind
        slug = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "-", name).lower()
    return Problem(
        type=f"urn:problem:{slug}",
        title=_phrase(status, kind),
        status=status,
        detail=message,
        instance=instance,
        trace_id=current_trace_id(),
    ).model_dump()


def _error(
    request: Request,
    status: int,
    kind: str,
    message: str,
    *,
    logged: bool = False,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """The JSON error body; logs one line for it unless the caller `logged` it already."""
    if not logged:
        log.log(
            logging.ERROR if status >= 500 else logging.WARNING,
            "%s %s -> %d %s: %s",
            request.method,
            request.url.path,
            status,
            kind,
            message,
            extra={"http_status": status, "error_type": kind},
        )
    return JSONResponse(
        status_code=status,
        content=problem_body(status, kind, message, request.url.path),
        media_type=PROBLEM_MEDIA_TYPE,
        headers=headers,
    )


def _describe(exc: RequestValidationError) -> str:
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
        problems.append(f"{where or 'body'}: {error.get('msg', 'invalid')}")
    return "Invalid request: " + "; ".join(problems)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> JSONResponse:
        return _error(
            request, exc.status_code, type(exc).__name__, exc.message, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(request, 422, "ValidationError", _describe(exc))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return _error(request, exc.status_code, "HTTPError", str(exc.detail), headers=exc.headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception(
            "unhandled error in %s %s (trace %s)",
            request.method,
            request.url.path,
            current_trace_id(),
        )
        return _error(
            request,
            500,
            "InternalError",
            f"Internal error; the server log has it under trace id {current_trace_id()}.",
            logged=True,
        )
