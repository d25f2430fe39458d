"""Who is calling: an API key (tenant + scopes) or, only when set explicitly, development mode.

Routes declare the scope they need (`Depends(require("query"))`, aliased in `deps.py` as
`QueryCaller` and so on) and get the `Caller`, whose tenant every store call is filtered by.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..errors import AuthUnavailableError, ConfigurationError, ForbiddenError, UnauthorizedError
from ..keys import SCOPES, KeyStore, Scope
from ..settings import Settings
from .limits import RateLimiter

log = logging.getLogger(__name__)
DEVELOPMENT_KEY_ID = "development"

_bearer = HTTPBearer(auto_error=False, description="An API key from `keys create`.")
# Query parameters that carry a credential: refused (URLs end up in access logs, proxies and
# browser history), and masked in every log line (guard.CredentialQueryFilter).
CREDENTIAL_PARAMETERS = frozenset(
    {"api_key", "apikey", "key", "token", "access_token", "auth", "authorization"}
)


@dataclass(frozen=True)
class Caller:
    key_id: str
    tenant: str
    scopes: tuple[Scope, ...]

    def allows(self, scope: Scope) -> bool:
        return scope in self.scopes or "admin" in self.scopes


class Authenticator:
    def __init__(self, settings: Settings, keys: KeyStore) -> None:
        self.development = settings.auth_mode == "development"
        self.tenant = settings.tenant
        self.keys = keys
        self.limiter = RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst)

    def announce(self) -> None:
        """Said at start-up, loudly when nothing is protected."""
        if self.development:
            log.warning(
                "DEVELOPMENT MODE: the API accepts every caller without a key, as tenant %r "
                "with all scopes. Never run it like this where others can reach it; set "
                "RAG_AUTH_MODE=keys and create keys with `keys create`.",
                self.tenant,
            )
        elif not (keys := self.keys.keys()):
            log.warning(
                "No API keys in %s: every call but /healthz and /readyz will be refused "
                "(401). Create one with `keys create --tenant default --scopes query,ingest`.",
                self.keys.location,
            )
        else:
            log.info("API keys required; %d key(s) in %s", len(keys), self.keys.location)

    def caller(self, credentials: HTTPAuthorizationCredentials | None) -> Caller:
        caller = self.identify(credentials.credentials if credentials else None)
        self.limit(caller)
        return caller

    def identify(self, token: str | None) -> Caller:
        """Who presents this key (401 for none or a bad one); not rate-limited: the MCP
        endpoint limits tool calls, not the protocol's own requests."""
        if self.development:
            return Caller(DEVELOPMENT_KEY_ID, self.tenant, SCOPES)
        if token is None:
            raise UnauthorizedError(
                "This endpoint needs an API key: send `Authorization: Bearer <key>` "
                "(create a key with `keys create`)."
            )
        try:
            key = self.keys.authenticate(token)
        except ConfigurationError as exc:
            # The operator needs the path and the fix; an unauthenticated caller gets neither.
            log.error("%s", exc.message)
            raise AuthUnavailableError(
                "API keys cannot be checked right now; the service's log says why."
            ) from None
        if key is None:
            raise UnauthorizedError(
                "The API key is not valid (mistyped, revoked, or from another deployment); "
                "`keys list` shows the key ids that exist."
            )
        return Caller(key.id, key.tenant, key.scopes)

    def limit(self, caller: Caller) -> None:
        """One request of this caller's budget (429 when spent); development mode has none."""
        if caller.key_id != DEVELOPMENT_KEY_ID:
            self.limiter.take(caller.key_id)


def require(scope: Scope) -> Callable[..., Caller]:
    """A dependency giving the caller, or 401 (no or bad key) / 403 (scope missing)."""

    def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Caller:
        authenticator: Authenticator = request.app.state.authenticator
        sent = CREDENTIAL_PARAMETERS & {name.lower() for name in request.query_params}
        if sent:
            raise UnauthorizedError(
                f"A key in the URL ({', '.join(sorted(sent))}=...) is not accepted: URLs are "
                "logged. Send `Authorization: Bearer <key>`, and revoke a key that was sent "
                "in a URL (`keys revoke`)."
            )
        caller = authenticator.caller(credentials)
        if not caller.allows(scope):
            raise ForbiddenError(
                f"This key (id {caller.key_id}) lacks the {scope!r} scope; create a key with "
                f"`keys create --scopes {scope}` or use one that has it."
            )
        request.state.caller = caller
        return caller

    return dependency
