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


def _error(status: int, kind: str, message: str) -> JSONResponse:
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
    async def service_error(_: Request, exc: ServiceError) -> JSONResponse:
        return _error(exc.status_code, type(exc).__name__, exc.message)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, "ValidationError", _describe(exc))

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        return _error(exc.status_code, "HTTPError", str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error (trace %s)", current_trace_id())
        return _error(
            500,
            "InternalError",
            f"Internal error; the server log has it under trace id {current_trace_id()}.",
        )
