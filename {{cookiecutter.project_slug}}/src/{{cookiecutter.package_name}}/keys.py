"""API keys: each has an id, a tenant and scopes; only a hash of the secret is stored.

A key reads `rag_<id>_<secret>`. The id finds the entry without scanning, and the secret's
SHA-256 is compared in constant time. The secret holds 256 random bits, so a fast hash is
enough: there is nothing to brute-force that a slow hash would protect.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
import threading
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, get_args

from .errors import BadRequestError, ConfigurationError
from .settings import TENANT_PATTERN

Scope = Literal["query", "ingest", "admin"]
SCOPES: tuple[Scope, ...] = get_args(Scope)
_KEY = re.compile(r"^rag_([0-9a-f]{12})_([A-Za-z0-9_-]{20,100})$")
_DUMMY_HASH = hashlib.sha256(b"no such key").hexdigest()


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ApiKey:
    id: str
    tenant: str
    scopes: tuple[Scope, ...]
    sha256: str
    created_at: str
    name: str = ""

    def allows(self, scope: Scope) -> bool:
        return scope in self.scopes or "admin" in self.scopes


def parse_scopes(text: str) -> tuple[Scope, ...]:
    wanted = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [s for s in wanted if s not in SCOPES]
    if unknown or not wanted:
        raise BadRequestError(
            f"Unknown or missing scopes {unknown or text!r}; use a comma-separated list of "
            f"{', '.join(SCOPES)}."
        )
    return tuple(s for s in SCOPES if s in wanted)


class KeyStore:
    """The keys file, re-read when it changes, so `keys create` works on a running server."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._keys: dict[str, ApiKey] = {}

    def keys(self) -> dict[str, ApiKey]:
        with self._lock:
            try:
                stat = self.path.stat()
            except FileNotFoundError:
                self._stamp, self._keys = None, {}
                return self._keys
            stamp = (stat.st_mtime_ns, stat.st_size)
            if stamp != self._stamp:
                self._keys = self._read()
                self._stamp = stamp
            return self._keys

    def _read(self) -> dict[str, ApiKey]:
        try:
            entries = json.loads(self.path.read_text("utf-8"))["keys"]
            return {
                e["id"]: ApiKey(
                    id=e["id"],
                    tenant=e["tenant"],
                    scopes=tuple(e["scopes"]),
                    sha256=e["sha256"],
                    created_at=e["created_at"],
                    name=e.get("name", ""),
                )
                for e in entries
            }
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigurationError(
                f"The keys file {self.path} is unreadable ({exc}); restore it from a backup "
                "or delete it and create the keys again with `keys create`."
            ) from exc

    def authenticate(self, token: str) -> ApiKey | None:
        """The key this token is, or None. The hash is compared even for an unknown id."""
        match = _KEY.match(token.strip())
        key = self.keys().get(match.group(1)) if match else None
        expected = key.sha256 if key else _DUMMY_HASH
        presented = _digest(match.group(2)) if match else _digest(token)
        if hmac.compare_digest(presented, expected) and key is not None:
            return key
        return None

    def create(self, tenant: str, scopes: tuple[Scope, ...], name: str = "") -> tuple[ApiKey, str]:
        """Add a key; returns it and the token, which is shown once and never stored."""
        if not re.match(TENANT_PATTERN, tenant):
            raise BadRequestError(
                f"Tenant {tenant!r} is not a plain name: use lower-case letters, digits, "
                "'-' and '_' (at most 63), e.g. legal-team."
            )
        secret = secrets.token_urlsafe(32)
        key = ApiKey(
            id=secrets.token_hex(6),
            tenant=tenant,
            scopes=scopes,
            sha256=_digest(secret),
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            name=name,
        )
        self._write({**self.keys(), key.id: key})
        return key, f"rag_{key.id}_{secret}"

    def revoke(self, key_id: str) -> ApiKey:
        keys = dict(self.keys())
        key = keys.pop(key_id, None)
        if key is None:
            raise BadRequestError(f"No key with id {key_id!r}; `keys list` shows the ids.")
        self._write(keys)
        return key

    def _write(self, keys: dict[str, ApiKey]) -> None:
        """Atomically, readable by the owner only: hashes are not secrets, but need not leak."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = json.dumps({"keys": [asdict(k) for k in keys.values()]}, indent=2)
        handle, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=".keys-")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                out.write(body + "\n")
                out.flush()
                os.fsync(out.fileno())
            os.chmod(temporary, 0o600)
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
