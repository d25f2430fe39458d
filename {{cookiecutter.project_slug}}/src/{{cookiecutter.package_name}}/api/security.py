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

from ..errors import ForbiddenError, UnauthorizedError
from ..keys import SCOPES, KeyStore, Scope
from ..settings import Settings
from .limits import RateLimiter

log = logging.getLogger(__name__)
DEVELOPMENT_KEY_ID = "development"

_bearer = HTTPBearer(auto_error=False, description="An API key from `keys create`.")


@dataclass(frozen=True)
class Caller:
    key_id: str
    tenant: str
    scopes: tuple[Scope, ...]


class Authenticator:
    def __init__(self, settings: Settings) -> None:
        self.development = settings.auth_mode == "development"
        self.tenant = settings.tenant
        self.keys = KeyStore(settings.keys_path)
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
        elif not self.keys.keys():
            log.warning(
                "No API keys in %s: every call but /healthz and /readyz will be refused "
                "(401). Create one with `keys create --tenant default --scopes query,ingest`.",
                self.keys.path,
            )
        else:
            log.info("API keys required; %d key(s) in %s", len(self.keys.keys()), self.keys.path)

    def caller(self, credentials: HTTPAuthorizationCredentials | None) -> Caller:
        if self.development:
            return Caller(DEVELOPMENT_KEY_ID, self.tenant, SCOPES)
        if credentials is None:
            raise UnauthorizedError(
                "This endpoint needs an API key: send `Authorization: Bearer <key>` "
                "(create a key with `keys create`)."
            )
        key = self.keys.authenticate(credentials.credentials)
        if key is None:
            raise UnauthorizedError(
                "The API key is not valid (mistyped, revoked, or from another deployment); "
                "`keys list` shows the key ids that exist."
            )
        self.limiter.take(key.id)
        return Caller(key.id, key.tenant, key.scopes)


def require(scope: Scope) -> Callable[..., Caller]:
    """A dependency giving the caller, or 401 (no or bad key) / 403 (scope missing)."""

    def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Caller:
        authenticator: Authenticator = request.app.state.authenticator
        caller = authenticator.caller(credentials)
        if scope not in caller.scopes and "admin" not in caller.scopes:
            raise ForbiddenError(
                f"This key (id {caller.key_id}) lacks the {scope!r} scope; create a key with "
                f"`keys create --scopes {scope}` or use one that has it."
            )
        request.state.caller = caller
        return caller

    return dependency
