"""Every error is JSON with a message a person can act on, and the trace id to look up."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from ..errors import ServiceError
from ..telemetry import current_trace_id
from .schemas import ErrorBody, ErrorResponse

log = logging.getLogger(__name__)


def _error(
    request: Request, status: int, kind: str, message: str, *, logged: bool = False
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
    body = ErrorResponse(error=ErrorBody(type=kind, message=message, trace_id=current_trace_id()))
    return JSONResponse(status_code=status, content=body.model_dump())


def _describe(exc: RequestValidationError) -> str:
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
        problems.append(f"{where or 'body'}: {error.get('msg', 'invalid')}")
    return "Invalid request: " + "; ".join(problems)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> JSONResponse:
        return _error(request, exc.status_code, type(exc).__name__, exc.message)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(request, 422, "ValidationError", _describe(exc))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return _error(request, exc.status_code, "HTTPError", str(exc.detail))

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
