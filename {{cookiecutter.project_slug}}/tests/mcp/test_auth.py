"""Who may call /mcp: API keys as bearer tokens (401 with a WWW-Authenticate header pointing
at the RFC 9728 metadata otherwise), external OAuth 2.1 JWTs checked against a JWKS the test
serves, and the DNS-rebinding protection's Host and Origin checks."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from mcp.shared.exceptions import MCPError
from opentelemetry.sdk.trace import TracerProvider
from pydantic import ValidationError

from {{ cookiecutter.package_name }}.api import create_app
from {{ cookiecutter.package_name }}.container import Services, build_services
from {{ cookiecutter.package_name }}.embeddings import DenseEncoder, SparseEncoder
from {{ cookiecutter.package_name }}.settings import Settings

from ..conftest import api_key, make_settings, serve_on_loopback
from .support import mcp_session, structured, text

ISSUER = "https://login.example.test/"
AUDIENCE = "https://rag.example.test/mcp"
QUESTION = {"query": "How long must a password be?"}
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "curl", "version": "1"},
    },
}
JSON_RPC_HEADERS = {"Accept": "application/json, text/event-stream"}


class Jwks:
    """An authorization server's published keys, served on loopback."""

    def __init__(self) -> None:
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        keys = [
            {
                **json.loads(RSAAlgorithm.to_jwk(self.rsa.public_key())),
                "kid": "rsa-1",
                "alg": "RS256",
            },
            {**json.loads(ECAlgorithm.to_jwk(self.ec.public_key())), "kid": "ec-1", "alg": "ES256"},
        ]
        body = json.dumps({"keys": keys}).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def token(self, *, kid: str = "rsa-1", key: Any = None, **claims: Any) -> str:
        now = int(time.time())
        payload = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "user-42",
            "iat": now,
            "exp": now + 300,
            "tenant": "acme",
            "scope": "openid query",
            **claims,
        }
        payload = {k: v for k, v in payload.items() if v is not None}
        algorithm = "ES256" if kid == "ec-1" else "RS256"
        signer = key or (self.ec if kid == "ec-1" else self.rsa)
        return jwt.encode(payload, signer, algorithm=algorithm, headers={"kid": kid})


@dataclass
class Served:
    base: str
    settings: Settings
    services: Services
    key: str


def _serve(
    root: Path, model_dir: Path, dense: DenseEncoder, sparse: SparseEncoder, **extra: Any
) -> Iterator[Served]:
    settings = make_settings(root, model_dir, **extra)
    services = build_services(
        settings, tracer_provider=TracerProvider(), dense=dense, sparse=sparse
    )
    corpus = root / "kb"
    corpus.mkdir()
    (corpus / "passwords.md").write_text(
        "# Password policy\n\nPasswords must be at least 14 characters long.\n", encoding="utf-8"
    )
    services.ingestor.for_tenant("acme").ingest(corpus, "handbook")
    key = api_key(settings, "acme", ("query",))
    with serve_on_loopback(create_app(services=services)) as base:
        yield Served(base, settings, services, key)
    services.close()


@pytest.fixture(scope="module")
def jwks() -> Iterator[Jwks]:
    served = Jwks()
    yield served
    served.server.shutdown()


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory,
    model_dir: Path,
    dense: DenseEncoder,
    sparse: SparseEncoder,
    jwks: Jwks,
) -> Iterator[Served]:
    yield from _serve(
        tmp_path_factory.mktemp("auth"),
        model_dir,
        dense,
        sparse,
        mcp_oauth_issuer=ISSUER,
        mcp_oauth_jwks_url=jwks.url,
        mcp_oauth_audience=AUDIENCE,
        mcp_allowed_origins=["https://inspector.example.test"],
    )


def search(served: Served, token: str | None, **kw: Any) -> Any:
    async def go() -> Any:
        async with mcp_session(served.base, token, **kw) as client:
            return await client.call_tool("search", QUESTION)

    return anyio.run(go)


def post(served: Served, token: str | None = None, **headers: str) -> httpx.Response:
    sent = {**JSON_RPC_HEADERS, **headers}
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    return httpx.post(f"{served.base}/mcp", json=INITIALIZE, headers=sent, timeout=30)


# --- API keys ------------------------------------------------------------------------------


def test_a_key_works_over_both_protocol_generations(served: Served) -> None:
    for mode in ("auto", "legacy"):
        hits = structured(search(served, served.key, mode=mode))["hits"]
        assert hits[0]["source"] == "passwords.md", mode


def test_no_key_is_401_pointing_at_the_protected_resource_metadata(served: Served) -> None:
    response = post(served)
    assert response.status_code == 401
    challenge = response.headers["WWW-Authenticate"]
    metadata_url = f"{served.base}/.well-known/oauth-protected-resource/mcp"
    assert challenge == f'Bearer resource_metadata="{metadata_url}"'
    error = response.json()["error"]
    assert "needs an API key" in error["message"]
    assert "RAG_MCP_KEY" in error["message"]
    for url in (metadata_url, f"{served.base}/.well-known/oauth-protected-resource"):
        metadata = httpx.get(url).json()
        assert metadata["resource"] == f"{served.base}/mcp"
        assert metadata["authorization_servers"] == [ISSUER]
        assert metadata["bearer_methods_supported"] == ["header"]
        assert set(metadata["scopes_supported"]) == {"query", "ingest", "admin"}


def test_a_wrong_key_is_401_invalid_token(served: Served) -> None:
    # The last one differs from the real key in its last character (whatever that was).
    altered = served.key[:-1] + ("B" if served.key.endswith("A") else "A")
    for token in ("rag_000000000000_" + "x" * 43, "not-a-key", altered):
        response = post(served, token)
        assert response.status_code == 401, token
        challenge = response.headers["WWW-Authenticate"]
        assert challenge.startswith('Bearer resource_metadata="')
        assert 'error="invalid_token"' in challenge
        assert "not valid" in response.json()["error"]["message"]


def test_a_key_in_the_url_is_refused(served: Served) -> None:
    response = httpx.post(
        f"{served.base}/mcp?api_key={served.key}", json=INITIALIZE, headers=JSON_RPC_HEADERS
    )
    assert response.status_code == 401
    assert "in the URL" in response.json()["error"]["message"]


def test_the_sdk_client_without_a_key_is_told_what_to_do(served: Served) -> None:
    with pytest.raises(BaseExceptionGroup) as caught:
        search(served, None)
    assert caught.group_contains(MCPError, match="needs an API key.*RAG_MCP_KEY", depth=None)


def test_the_public_url_is_the_resource_when_set(
    tmp_path: Path, model_dir: Path, dense: DenseEncoder, sparse: SparseEncoder
) -> None:
    settings = make_settings(tmp_path, model_dir, mcp_public_url="https://rag.example.test/mcp")
    services = build_services(
        settings, tracer_provider=TracerProvider(), dense=dense, sparse=sparse
    )
    with serve_on_loopback(create_app(services=services)) as base:
        response = httpx.post(f"{base}/mcp", json=INITIALIZE, headers=JSON_RPC_HEADERS)
        metadata = httpx.get(f"{base}/.well-known/oauth-protected-resource").json()
        allowed = httpx.post(
            f"{base}/mcp", json=INITIALIZE, headers={**JSON_RPC_HEADERS, "Host": "rag.example.test"}
        )
    assert response.headers["WWW-Authenticate"] == (
        'Bearer resource_metadata="https://rag.example.test/.well-known/oauth-protected-resource/mcp"'
    )
    assert metadata == {
        "resource": "https://rag.example.test/mcp",
        "scopes_supported": ["query", "ingest", "admin"],
        "bearer_methods_supported": ["header"],
        "resource_name": metadata["resource_name"],
    }
    services.close()
    assert allowed.status_code == 401  # the host passes; the missing key is what is refused


# --- transport security --------------------------------------------------------------------


def test_an_unknown_host_is_421_naming_the_setting(served: Served) -> None:
    response = post(served, served.key, Host="evil.example.test")
    assert response.status_code == 421
    assert "RAG_MCP_ALLOWED_HOSTS" in response.json()["error"]["message"]


def test_an_unknown_origin_is_403_naming_the_setting(served: Served) -> None:
    response = post(served, served.key, Origin="https://evil.example.test")
    assert response.status_code == 403
    assert "RAG_MCP_ALLOWED_ORIGINS" in response.json()["error"]["message"]
    assert post(served, served.key, Origin="https://inspector.example.test").status_code == 200


# --- external OAuth 2.1 tokens ---------------------------------------------------------------


def test_a_jwt_from_the_authorization_server_reads_its_tenant(served: Served, jwks: Jwks) -> None:
    for kid in ("rsa-1", "ec-1"):
        hits = structured(search(served, jwks.token(kid=kid)))["hits"]
        assert hits, kid
        assert hits[0]["source"] == "passwords.md", kid
    other = structured(search(served, jwks.token(tenant="globex")))
    assert other["hits"] == []  # tenant globex has no documents here
    audit = [json.loads(line) for line in served.settings.audit_path.read_text().splitlines()]
    assert audit[-1]["key_id"] == "oauth:user-42"
    assert audit[-1]["tenant"] == "globex"


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({"exp": int(time.time()) - 3600}, "expired"),
        ({"aud": "https://other.example.test"}, "another audience"),
        ({"iss": "https://evil.example.test/"}, "another server"),
        ({"tenant": None}, "'tenant' claim"),
        ({"tenant": "../../etc"}, "'tenant' claim"),
        ({"sub": None}, "sub"),
    ],
)
def test_a_bad_jwt_is_401(served: Served, jwks: Jwks, claims: dict[str, Any], message: str) -> None:
    response = post(served, jwks.token(**claims))
    assert response.status_code == 401
    assert message in response.json()["error"]["message"]
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_a_jwt_signed_by_another_key_is_401(served: Served, jwks: Jwks) -> None:
    forged = jwks.token(key=rsa.generate_private_key(public_exponent=65537, key_size=2048))
    assert post(served, forged).status_code == 401
    unknown_kid = jwks.token(kid="rsa-9")
    response = post(served, unknown_kid)
    assert response.status_code == 401
    assert "not signed by a key" in response.json()["error"]["message"]
    hmac = jwt.encode(
        {"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": time.time() + 60, "tenant": "acme"},
        "s" * 64,
        headers={"kid": "rsa-1"},
    )
    assert post(served, hmac).status_code == 401


def test_a_jwt_without_the_query_scope_cannot_search(served: Served, jwks: Jwks) -> None:
    result = search(served, jwks.token(scope="openid profile"))
    assert result.is_error
    assert "'query' scope" in text(result)
    listed = search(served, jwks.token(scope=None, scp=["query"]))
    assert not listed.is_error


def test_oauth_settings_come_together() -> None:
    with pytest.raises(ValidationError, match="RAG_MCP_OAUTH_AUDIENCE"):
        Settings(_env_file=None, mcp_oauth_issuer=ISSUER, mcp_oauth_jwks_url="http://x/jwks")
    with pytest.raises(ValidationError, match="asymmetric"):
        Settings(_env_file=None, mcp_oauth_algorithms="RS256,HS256")
