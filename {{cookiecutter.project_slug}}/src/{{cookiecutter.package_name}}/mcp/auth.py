"""Who calls /mcp, and what a client without a valid token is told.

A bearer token is one of the API's keys (the same tenants, scopes and rate limits as REST) or,
when RAG_MCP_OAUTH_* name an external OAuth 2.1 authorization server, a JWT access token it
signed: checked against its published keys (JWKS), its issuer and our audience, the tenant
taken from a claim and the scopes from `scope` / `scp`.

Without a valid token /mcp answers 401 with `WWW-Authenticate: Bearer resource_metadata=...`
pointing at this server's OAuth protected-resource metadata (RFC 9728), as the MCP
authorization spec asks, and a JSON-RPC error body whose message says what to do (MCP clients
show it). Scopes are checked per tool, not here: one key may search but not upload.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import anyio.to_thread
import jwt
from pydantic import BaseModel, Field
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..api.security import CREDENTIAL_PARAMETERS, Authenticator, Caller
from ..errors import ServiceError, StoreUnavailableError, UnauthorizedError
from ..keys import SCOPES
from ..settings import PROJECT_NAME, TENANT_PATTERN, Settings

log = logging.getLogger(__name__)
CALLER_STATE = "mcp_caller"  # where the guard leaves the Caller in the ASGI scope's state
METADATA_PATH = "/.well-known/oauth-protected-resource"
MCP_PATH = "/mcp"
# JSON-RPC leaves -32000..-32099 to the implementation; the HTTP status says the rest.
_UNAUTHORIZED_CODE = -32001
_REFUSED_CODE = -32002
_LOOPBACK_HOSTS = ("127.0.0.1:*", "localhost:*", "[::1]:*", "127.0.0.1", "localhost", "[::1]")
_LOOPBACK_ORIGINS = ("http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*")


class ProtectedResource(BaseModel):
    """RFC 9728 protected-resource metadata. Our own model rather than the SDK's: its model
    requires an authorization server, and with API keys alone there is none to name."""

    resource: str
    authorization_servers: list[str] | None = None
    scopes_supported: list[str] = Field(default_factory=lambda: [str(s) for s in SCOPES])
    bearer_methods_supported: list[str] = Field(default_factory=lambda: ["header"])
    resource_name: str = PROJECT_NAME
    resource_documentation: str | None = None


class JwtVerifier:
    """Access tokens from an external OAuth 2.1 server: signature (JWKS, cached and
    refreshed when a new key id appears), expiry, issuer and audience, then the tenant."""

    def __init__(self, settings: Settings) -> None:
        # Settings refuse one of the three without the others.
        self.issuer = settings.mcp_oauth_issuer or ""
        self.audience = settings.mcp_oauth_audience or ""
        self.jwks_url = settings.mcp_oauth_jwks_url or ""
        self.tenant_claim = settings.mcp_oauth_tenant_claim
        self.algorithms = list(settings.mcp_oauth_algorithms)
        self._keys = jwt.PyJWKClient(self.jwks_url, cache_keys=True, lifespan=300, timeout=10)

    def caller(self, token: str) -> Caller:
        try:
            signing_key = self._keys.get_signing_key_from_jwt(token)
        except jwt.PyJWKClientConnectionError as exc:
            raise StoreUnavailableError(
                f"The OAuth server's signing keys at {self.jwks_url} could not be fetched "
                f"({exc}); check RAG_MCP_OAUTH_JWKS_URL and that the server is up."
            ) from exc
        except (jwt.PyJWKClientError, jwt.DecodeError) as exc:
            raise UnauthorizedError(
                f"The access token is not signed by a key of {self.issuer} ({exc}); get a "
                "token from that server, or use an API key."
            ) from exc
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                signing_key.key,
                algorithms=self.algorithms,
                audience=self.audience,
                issuer=self.issuer,
                leeway=30,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise UnauthorizedError(
                f"The access token has expired; get a new one from {self.issuer}."
            ) from exc
        except jwt.InvalidAudienceError as exc:
            raise UnauthorizedError(
                f"The access token was issued for another audience, not {self.audience!r}; "
                "request it for this server (the `resource` / audience parameter)."
            ) from exc
        except jwt.InvalidIssuerError as exc:
            raise UnauthorizedError(
                f"The access token was issued by another server, not {self.issuer}."
            ) from exc
        except jwt.PyJWTError as exc:
            raise UnauthorizedError(f"The access token is not valid: {exc}.") from exc
        tenant = claims.get(self.tenant_claim)
        if not isinstance(tenant, str) or not re.match(TENANT_PATTERN, tenant):
            raise UnauthorizedError(
                f"The access token has no usable {self.tenant_claim!r} claim (found "
                f"{tenant!r}); the authorization server must put the caller's tenant in it "
                "(RAG_MCP_OAUTH_TENANT_CLAIM names the claim)."
            )
        granted = _scopes(claims)
        return Caller(
            key_id=f"oauth:{str(claims['sub'])[:64]}",
            tenant=tenant,
            scopes=tuple(s for s in SCOPES if s in granted),
        )


def _scopes(claims: dict[str, Any]) -> set[str]:
    """`scope` is a space-separated string (RFC 9068); some servers send `scp`, a list."""
    found: set[str] = set()
    for name in ("scope", "scp"):
        value = claims.get(name)
        if isinstance(value, str):
            found.update(value.split())
        elif isinstance(value, list):
            found.update(str(v) for v in value)
    return found


class McpCredentials:
    """Turns the bearer token of a request into a Caller, or raises a ServiceError."""

    def __init__(self, authenticator: Authenticator, settings: Settings) -> None:
        self.authenticator = authenticator
        self.jwt = JwtVerifier(settings) if settings.mcp_oauth_issuer else None

    async def caller(self, token: str | None) -> Caller:
        if token is not None and self.jwt is not None and _looks_like_jwt(token):
            # Fetching the key set is blocking I/O: off the event loop.
            return await anyio.to_thread.run_sync(self.jwt.caller, token)
        try:
            return self.authenticator.identify(token)
        except UnauthorizedError as exc:
            raise UnauthorizedError(
                f"{exc.message} MCP clients send it as a header in their server config; "
                "over stdio, set RAG_MCP_KEY."
            ) from exc


def _looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and not token.startswith("rag_")


def bearer_token(headers: Headers) -> str | None:
    value = headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def resource_url(settings: Settings, request: Request) -> str:
    """The MCP endpoint's URL as its clients name it (the RFC 9728 `resource`)."""
    if settings.mcp_public_url:
        return settings.mcp_public_url.rstrip("/")
    return str(request.base_url).rstrip("/") + MCP_PATH


def metadata_url(resource: str) -> str:
    """RFC 9728 section 3.1: the well-known path goes between the host and the resource path."""
    parts = urlsplit(resource)
    return f"{parts.scheme}://{parts.netloc}{METADATA_PATH}{parts.path.rstrip('/')}"


def protected_resource(settings: Settings, request: Request) -> ProtectedResource:
    return ProtectedResource(
        resource=resource_url(settings, request),
        authorization_servers=[settings.mcp_oauth_issuer] if settings.mcp_oauth_issuer else None,
    )


def allowed_hosts(settings: Settings) -> list[str]:
    """Host headers /mcp answers (DNS-rebinding protection): loopback, the public URL's
    host, and RAG_MCP_ALLOWED_HOSTS."""
    hosts = list(_LOOPBACK_HOSTS)
    if settings.mcp_public_url:
        netloc = urlsplit(settings.mcp_public_url).netloc
        hosts += [netloc, f"{netloc}:*"] if ":" not in netloc else [netloc]
    return hosts + list(settings.mcp_allowed_hosts)


def allowed_origins(settings: Settings) -> list[str]:
    origins = list(_LOOPBACK_ORIGINS)
    if settings.mcp_public_url:
        parts = urlsplit(settings.mcp_public_url)
        origins.append(f"{parts.scheme}://{parts.netloc}")
    return origins + list(settings.mcp_allowed_origins)


def jsonrpc_error(code: int, message: str) -> bytes:
    return json.dumps(
        {"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}}
    ).encode("utf-8")


def _header_value(text: str) -> str:
    """Safe inside a quoted WWW-Authenticate parameter: printable ASCII, no quotes."""
    return "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "'" for c in text)[:300]


class McpGuard:
    """ASGI wrapper of the MCP endpoint: authenticates, leaves the Caller in the scope's
    state for the tools, and turns the SDK's bare transport refusals (wrong Host: 421,
    wrong Origin: 403) into messages that name the setting to change."""

    def __init__(
        self,
        app: ASGIApp,
        credentials: McpCredentials,
        settings: Settings,
        started: Callable[[], bool],
    ) -> None:
        self.app = app
        self.credentials = credentials
        self.settings = settings
        self.started = started

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        if not self.started():
            await _reply(
                send,
                503,
                jsonrpc_error(
                    _REFUSED_CODE,
                    "The MCP endpoint is not running: the app's lifespan has not started it.",
                ),
            )
            return
        token = bearer_token(request.headers)
        try:
            in_url = CREDENTIAL_PARAMETERS & {name.lower() for name in request.query_params}
            if in_url:  # as for REST: URLs end up in logs
                raise UnauthorizedError(
                    f"A key in the URL ({', '.join(sorted(in_url))}=...) is not accepted: URLs "
                    "are logged. Send `Authorization: Bearer <key>`, and revoke that key."
                )
            caller: Caller = await self.credentials.caller(token)
        except ServiceError as exc:
            await self._refuse(request, send, exc, token_given=token is not None)
            return
        scope.setdefault("state", {})[CALLER_STATE] = caller
        await self.app(scope, receive, self._explaining(request, send))

    async def _refuse(
        self, request: Request, send: Send, exc: ServiceError, *, token_given: bool
    ) -> None:
        log.warning("%s %s -> %d: %s", request.method, MCP_PATH, exc.status_code, exc.message)
        headers: list[tuple[bytes, bytes]] = []
        if exc.status_code == 401:
            challenge = (
                f'Bearer resource_metadata="{metadata_url(resource_url(self.settings, request))}"'
            )
            if token_given:  # RFC 6750 3.1: no error code when no credentials were sent
                challenge += (
                    f', error="invalid_token", error_description="{_header_value(exc.message)}"'
                )
            headers.append((b"www-authenticate", challenge.encode("ascii")))
        code = _UNAUTHORIZED_CODE if exc.status_code == 401 else _REFUSED_CODE
        await _reply(send, exc.status_code, jsonrpc_error(code, exc.message), headers)

    def _explaining(self, request: Request, send: Send) -> Send:
        replaced = False

        async def sending(message: Message) -> None:
            nonlocal replaced
            if message["type"] == "http.response.start" and message["status"] in (421, 403):
                replaced = True
                await _reply(send, message["status"], self._transport_refusal(request, message))
                return
            if not replaced:
                await send(message)

        return sending

    def _transport_refusal(self, request: Request, start: Message) -> bytes:
        if start["status"] == 421:
            detail = (
                f"This server does not answer to Host {request.headers.get('host')!r} on /mcp "
                "(DNS-rebinding protection); set RAG_MCP_PUBLIC_URL to the URL clients use, or "
                "add the host to RAG_MCP_ALLOWED_HOSTS."
            )
        else:
            detail = (
                f"Origin {request.headers.get('origin')!r} may not call /mcp; add it to "
                "RAG_MCP_ALLOWED_ORIGINS if that web page is trusted."
            )
        log.warning("%s %s -> %d: %s", request.method, MCP_PATH, start["status"], detail)
        return jsonrpc_error(_REFUSED_CODE, detail)


async def _reply(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
