"""The MCP endpoint inside the API: streamable HTTP at /mcp, stateless, sharing the app's
services, keys and rate limits, started and stopped by the app's lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from ..api.limits import mcp_request_limit
from ..api.security import Authenticator
from ..container import Services
from .auth import (
    MCP_PATH,
    METADATA_PATH,
    McpCredentials,
    McpGuard,
    ProtectedResource,
    allowed_hosts,
    allowed_origins,
    protected_resource,
)
from .tools import build_server


class McpEndpoint:
    def __init__(self, services: Services, authenticator: Authenticator) -> None:
        self.services = services
        self.server = build_server(services, authenticator)
        self._manager: StreamableHTTPSessionManager | None = None
        self._guard = McpGuard(
            self._dispatch,
            McpCredentials(authenticator, services.settings),
            services.settings,
            started=lambda: self._manager is not None,
        )

    def _new_manager(self) -> StreamableHTTPSessionManager:
        """A session manager runs once; each lifespan (a test may start an app twice) gets
        its own, from the SDK's streamable HTTP app (whose own routing we do not use)."""
        settings = self.services.settings
        self.server.streamable_http_app(
            streamable_http_path=MCP_PATH,
            stateless_http=True,  # no session state: any replica answers any request
            json_response=True,  # one JSON body per call: tools do not stream
            max_request_body_size=mcp_request_limit(settings),
            transport_security=TransportSecuritySettings(
                enable_dns_rebinding_protection=True,
                allowed_hosts=allowed_hosts(settings),
                allowed_origins=allowed_origins(settings),
            ),
        )
        return self.server.session_manager

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        manager = self._new_manager()
        async with manager.run():
            self._manager = manager
            try:
                yield
            finally:
                self._manager = None

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self._manager is not None
        await StreamableHTTPASGIApp(self._manager)(scope, receive, send)

    def install(self, app: FastAPI) -> None:
        """/mcp, and the RFC 9728 metadata at the well-known path (also with the resource
        path appended, as section 3.1 builds it, e.g. /.well-known/oauth-protected-resource/mcp)."""
        # A plain ASGI route: the SDK's transport reads and writes the HTTP exchange itself.
        app.router.routes.append(Route(MCP_PATH, self._guard, methods=["GET", "POST", "DELETE"]))
        settings = self.services.settings

        def metadata(request: Request) -> JSONResponse:
            body: dict[str, Any] = protected_resource(settings, request).model_dump(
                exclude_none=True
            )
            return JSONResponse(body, headers={"Cache-Control": "public, max-age=3600"})

        for path in (METADATA_PATH, METADATA_PATH + "/{resource:path}"):
            app.add_api_route(
                path,
                metadata,
                methods=["GET"],
                response_model=ProtectedResource,
                tags=["mcp"],
                summary="OAuth protected-resource metadata of /mcp (RFC 9728)",
                include_in_schema=path == METADATA_PATH,
            )
