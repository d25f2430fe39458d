"""The app factory: `create_app(settings)` builds everything the API needs."""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from typing import Protocol, cast

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from opentelemetry import context as otel_context
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import __version__
from ..container import Services, build_services
from ..errors import ConfigurationError
from ..settings import PROJECT_NAME, Settings
from ..telemetry import current_trace_id
from .errors import install_error_handlers
from .limits import BodyLimit
from .openapi import document_limits
from .routes import ROUTERS
from .security import Authenticator

# Where the vendored Swagger UI / ReDoc files are served (public, like /docs itself).
DOCS_ASSETS = "/docs-assets"


class ServiceApp(FastAPI):
    """FastAPI, with every request started in an empty OpenTelemetry context.

    Why: on a keep-alive connection uvicorn pauses reading when a body passes its 64 KiB
    buffer, and resumes it from inside the request. asyncio then runs every later read of
    that connection in the context of that request, and uvicorn starts each later request's
    task from it, so the old request's span became the parent of every new one: the same trace
    id, for any tenant, until the connection closed. Whatever the server's callbacks carry,
    a request's trace (and so its X-Trace-Id and audit lines) starts here, from nothing but
    the request's own `traceparent` header."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = otel_context.attach(otel_context.Context())
        try:
            await super().__call__(scope, receive, send)
        finally:
            otel_context.detach(token)


class TraceHeaderMiddleware:
    """Adds X-Trace-Id to every response. Plain ASGI rather than `@app.middleware("http")`:
    that wrapper keeps a streamed body running after the client disconnects, and an answer
    stream must stop (and stop the model) when its reader goes away."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_trace_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["X-Trace-Id"] = current_trace_id()
            await send(message)

        await self.app(scope, receive, send_with_trace_id)


class _McpAdapter(Protocol):
    """What the app needs of mcp.http.McpEndpoint."""

    def running(self) -> AbstractAsyncContextManager[None]: ...

    def install(self, app: FastAPI) -> None: ...


def _mcp_endpoint(services: Services, authenticator: Authenticator) -> _McpAdapter:
    """The MCP adapter, imported by name when enabled: it builds on this package's security
    and schemas, and a project generated with mcp_server=no has no mcp/ package."""
    package = __package__.rpartition(".")[0]
    try:
        module = importlib.import_module(f"{package}.mcp.http")
    except ModuleNotFoundError as error:
        if error.name != f"{package}.mcp":
            raise
        raise ConfigurationError(
            "RAG_MCP_ENABLED=true, but this project was generated without the MCP server "
            "(mcp_server=no): unset RAG_MCP_ENABLED"
        ) from None
    return cast(_McpAdapter, module.McpEndpoint(services, authenticator))


def _install_ui(app: FastAPI) -> None:
    """The web app at /ui, imported by name when enabled: a project generated with ui=no has
    no ui/ package and no routes/ui.py."""
    package = __package__.rpartition(".")[0]
    try:
        module = importlib.import_module(f"{__package__}.routes.ui")
    except ModuleNotFoundError as error:
        if error.name not in (f"{__package__}.routes.ui", f"{package}.ui"):
            raise
        raise ConfigurationError(
            "RAG_UI_ENABLED=true, but this project was generated without the web app "
            "(ui=no): unset RAG_UI_ENABLED"
        ) from None
    cast(Callable[[FastAPI], None], module.install_ui)(app)


def create_app(settings: Settings | None = None, services: Services | None = None) -> FastAPI:
    """Build the API. Pass `services` to share already-built components (tests, CLI)."""
    settings = settings or (services.settings if services else Settings())
    built = services or build_services(settings)
    authenticator = Authenticator(built.settings, built.keys)
    # The MCP tools at /mcp: the same services, keys and limits (see docs/mcp.md).
    mcp = _mcp_endpoint(built, authenticator) if built.settings.mcp_enabled else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.services = built
        authenticator.announce()
        # Uploads accepted before a restart (or a crash) are in the inbox: finish them.
        built.jobs.submit_inbox()
        async with mcp.running() if mcp else nullcontext():
            yield
        if services is None:  # we built them, we close them
            built.close()

    # /docs (Swagger UI) and /redoc load their scripts and styles from this service (the
    # assets fastapi-offline vendors), never from a CDN; no validator badge call either.
    app = FastAPIOffline(
        title=PROJECT_NAME,
        version=__version__,
        description="Retrieval and cited answers over your documents.",
        lifespan=lifespan,
        static_url=DOCS_ASSETS,
        swagger_ui_parameters={"validatorUrl": None},
    )
    # fastapi-offline builds a plain FastAPI; ServiceApp only overrides __call__ (no state of
    # its own), so the built app takes its class to start each request in an empty context.
    app.__class__ = ServiceApp
    app.state.services = built
    app.state.authenticator = authenticator
    for router in ROUTERS:
        app.include_router(router)
    if mcp is not None:
        mcp.install(app)
    if built.settings.ui_enabled:
        _install_ui(app)
    install_error_handlers(app)
    document_limits(app, built.settings)

    app.add_middleware(TraceHeaderMiddleware)

    app.add_middleware(BodyLimit, settings=built.settings)
    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=built.tracer_provider,
        meter_provider=built.meter_provider,
        excluded_urls="healthz,readyz,metrics",
    )
    return app
