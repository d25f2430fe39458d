"""The app factory: `create_app(settings)` builds everything the API needs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

from .. import __version__
from ..container import Services, build_services
from ..settings import PROJECT_NAME, Settings
from ..telemetry import current_trace_id
from .errors import install_error_handlers
from .limits import BodyLimit
from .openapi import document_limits
from .routes import documents, health, v1
from .security import Authenticator


def create_app(settings: Settings | None = None, services: Services | None = None) -> FastAPI:
    """Build the API. Pass `services` to share already-built components (tests, CLI)."""
    settings = settings or (services.settings if services else Settings())
    built = services or build_services(settings)
    authenticator = Authenticator(built.settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.services = built
        authenticator.announce()
        # Uploads accepted before a restart (or a crash) are in the inbox: finish them.
        built.jobs.submit_inbox()
        yield
        if services is None:  # we built them, we close them
            built.close()

    app = FastAPI(
        title=PROJECT_NAME,
        version=__version__,
        description="Retrieval and cited answers over your documents.",
        lifespan=lifespan,
    )
    app.state.services = built
    app.state.authenticator = authenticator
    app.include_router(health)
    app.include_router(v1)
    app.include_router(documents)
    install_error_handlers(app)
    document_limits(app, built.settings)

    @app.middleware("http")
    async def trace_header(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        response.headers["X-Trace-Id"] = current_trace_id()
        return response

    app.add_middleware(BodyLimit, settings=built.settings)
    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=built.tracer_provider,
        meter_provider=built.meter_provider,
        excluded_urls="healthz,readyz,metrics",
    )
    return app
