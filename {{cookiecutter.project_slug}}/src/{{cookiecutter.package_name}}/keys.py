"""API keys: each has an id, a tenant and scopes; only a hash of the secret is stored.

A key reads `rag_<id>_<secret>`. The id finds the entry without scanning, and the secret's
SHA-256 is compared in constant time. The secret holds 256 random bits, so a fast hash is
enough: there is nothing to brute-force that a slow hash would protect.

Where keys live (RAG_KEYS_IN): in the keys file (one process: the embedded store's), or on the
`<collection>_keys` shelf beside the corpus, so every replica of a Qdrant server deployment
reads the keys any of them (or `keys create`) wrote, and a revoke holds everywhere at once.
At each start a shelf imports the keys of the keys file it does not hold yet (a revoked key
stays revoked), so a fork moving to a server keeps its keys.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import tempfile
import threading
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args

from .errors import BadRequestError, ConfigurationError, StoreUnavailableError
from .settings import TENANT_PATTERN

if TYPE_CHECKING:
    from .settings import Settings
    from .store import RecordShelf, VectorStore

Scope = Literal["query", "ingest", "admin"]
SCOPES: tuple[Scope, ...] = get_args(Scope)
_KEY = re.compile(r"^rag_([0-9a-f]{12})_([A-Za-z0-9_-]{20,100})$")
log = logging.getLogger(__name__)
_DUMMY_HASH = hashlib.sha256(b"no such key").hexdigest()
KEYS_SHELF = "keys"
# Shelf record ids are UUIDs: a key's is derived from its id, so a re-import finds it.
_KEY_RECORDS = uuid.UUID("5b0f6c1e-7a51-4c8e-9b1e-3f2d8a6c4e10")


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


def _entry(e: dict[str, object]) -> ApiKey:
    scopes = e["scopes"]
    if not isinstance(scopes, list | tuple):
        raise TypeError("scopes is not a list")
    return ApiKey(
        id=str(e["id"]),
        tenant=str(e["tenant"]),
        scopes=tuple(scopes),
        sha256=str(e["sha256"]),
        created_at=str(e["created_at"]),
        name=str(e.get("name", "")),
    )


class KeyStore:
    """The keys file, re-read when it changes, so `keys create` works on a running server."""

    where = "file"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.location = str(path)  # where the keys are, for messages
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
            return {e["id"]: _entry(e) for e in entries}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigurationError(
                f"The keys file {self.path} is unreadable ({exc}); restore it from a backup "
                "or delete it and create the keys again with `keys create`."
            ) from exc

    def authenticate(self, token: str) -> ApiKey | None:
        """The key this token is, or None. The hash is compared even for an unknown id."""
        match = _KEY.match(token.strip())
        key = self.find(match.group(1)) if match else None
        expected = key.sha256 if key else _DUMMY_HASH
        presented = _digest(match.group(2)) if match else _digest(token)
        if hmac.compare_digest(presented, expected) and key is not None:
            return key
        return None

    def find(self, key_id: str) -> ApiKey | None:
        return self.keys().get(key_id)

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
        self._add(key)
        return key, f"rag_{key.id}_{secret}"

    def _add(self, key: ApiKey) -> None:
        self._write({**self.keys(), key.id: key})

    def revoke(self, key_id: str) -> ApiKey:
        key = self.find(key_id)
        if key is None:
            raise BadRequestError(f"No key with id {key_id!r}; `keys list` shows the ids.")
        self._remove(key)
        return key

    def _remove(self, key: ApiKey) -> None:
        keys = dict(self.keys())
        keys.pop(key.id, None)
        self._write(keys)

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


class ShelfKeyStore(KeyStore):
    """Keys on a shelf beside the corpus: read from the store on every lookup, so a key made
    or revoked through any replica holds on all of them at once. A revoke keeps the record
    (marked revoked, hash and all), so the keys file it came from cannot bring it back."""

    where = "store"

    def __init__(self, shelf: RecordShelf, import_from: Path | None = None) -> None:
        super().__init__(import_from or Path("keys.json"))
        self.shelf = shelf
        self.location = f"the store's {KEYS_SHELF} shelf"
        if import_from is not None and import_from.exists():
            self._import(import_from)

    @staticmethod
    def _record_id(key_id: str) -> str:
        return str(uuid.uuid5(_KEY_RECORDS, key_id))

    def _records(self, equals: dict[str, str] | None = None) -> list[dict[str, object]]:
        try:
            return [r.payload for r in self.shelf.find(equals=equals)]
        except (OSError, RuntimeError) as exc:  # the engines' own errors, in one sentence
            raise StoreUnavailableError(f"The API keys could not be read: {exc}") from exc

    def _put(self, payload: dict[str, object]) -> None:
        from .store.records import ShelfRecord

        try:
            self.shelf.put([ShelfRecord(id=self._record_id(str(payload["id"])), payload=payload)])
        except (OSError, RuntimeError) as exc:
            raise StoreUnavailableError(f"The API key could not be stored: {exc}") from exc

    def _import(self, path: Path) -> None:
        """The keys of a keys file the shelf does not hold (revoked ones included)."""
        known = {str(p["id"]) for p in self._records()}
        new = [k for k in KeyStore(path).keys().values() if k.id not in known]
        for key in new:
            self._put(asdict(key))
        if new:
            log.warning(
                "Imported %d API key(s) from %s into %s; keys are managed there now "
                "(`keys create`, `keys revoke`), the file is no longer read.",
                len(new),
                path,
                self.location,
            )

    def keys(self) -> dict[str, ApiKey]:
        try:
            return {str(p["id"]): _entry(p) for p in self._records() if not p.get("revoked_at")}
        except (KeyError, TypeError) as exc:
            raise ConfigurationError(
                f"A key record in {self.location} is malformed: {exc}"
            ) from exc

    def find(self, key_id: str) -> ApiKey | None:
        for payload in self._records({"id": key_id}):
            if not payload.get("revoked_at"):
                try:
                    return _entry(payload)
                except (KeyError, TypeError) as exc:
                    raise ConfigurationError(
                        f"The key record {key_id} in {self.location} is malformed: {exc}"
                    ) from exc
        return None

    def _add(self, key: ApiKey) -> None:
        self._put(asdict(key))

    def _remove(self, key: ApiKey) -> None:
        revoked = datetime.now(UTC).isoformat(timespec="seconds")
        self._put({**asdict(key), "revoked_at": revoked})


def keys_in_store(settings: Settings) -> bool:
    """Whether keys live on the store's shelf (RAG_KEYS_IN; auto: when it is a server)."""
    if settings.keys_in == "auto":
        return settings.qdrant_url is not None
    return settings.keys_in == "store"


def open_keys(settings: Settings, store: VectorStore) -> KeyStore:
    """The keys the settings name: on the store's shelf, or in the keys file."""
    if keys_in_store(settings):
        return ShelfKeyStore(store.shelf(KEYS_SHELF), import_from=settings.keys_path)
    return KeyStore(settings.keys_path)
