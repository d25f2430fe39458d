"""Keys and scopes, tenant isolation, limits, rate limiting and the audit log, through the API."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import TracerProvider
from pydantic import ValidationError

from {{ cookiecutter.package_name }}.api import create_app
from {{ cookiecutter.package_name }}.container import Services, build_services
from {{ cookiecutter.package_name }}.embeddings import DenseEncoder, SparseEncoder
from {{ cookiecutter.package_name }}.keys import KeyStore
from {{ cookiecutter.package_name }}.settings import Settings

from .api.routes.test_documents import upload
from .conftest import TRACE_ID, api_key, assert_error, auth, keyed_client, make_settings
from .messy_files import pdf_bytes, zip_bomb_docx_bytes

QUESTION = {"question": "Where do visitors park?"}
PARKING = ("parking.md", b"# Parking\n\nVisitor parking is on level -2 of the east garage.\n")


@pytest.fixture
def app(services: Services) -> Any:
    return create_app(services=services)


@pytest.fixture
def anonymous(app: Any) -> Iterator[TestClient]:
    with TestClient(app) as client:
        yield client


def audit_lines(services: Services) -> list[dict[str, Any]]:
    text = services.settings.audit_path.read_text("utf-8")
    return [json.loads(line) for line in text.splitlines()]


# --- who may do what -------------------------------------------------------------------------


def test_health_probes_need_no_key_everything_else_does(anonymous: TestClient) -> None:
    assert anonymous.get("/healthz").status_code == 200
    assert anonymous.get("/readyz").status_code == 200
    for method, path, body in [
        ("POST", "/v1/query", QUESTION),
        ("POST", "/v1/retrieve", {"query": "x"}),
        ("GET", "/v1/documents", None),
        ("GET", "/v1/ingestions/abc", None),
        ("DELETE", "/v1/documents/abc", None),
        ("GET", "/metrics", None),
    ]:
        response = anonymous.request(method, path, json=body)
        assert_error(response, 401, "needs an API key", "Authorization: Bearer")
        assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "token",
    [
        "nonsense",
        "rag_000000000000_" + "A" * 43,  # well-formed, unknown id
        "",
    ],
)
def test_wrong_keys_are_401(anonymous: TestClient, services: Services, token: str) -> None:
    api_key(services.settings)  # a key exists; these are not it
    response = anonymous.post("/v1/query", json=QUESTION, headers=auth(token))
    assert response.status_code == 401


def test_a_key_with_a_changed_secret_is_refused(anonymous: TestClient, services: Services) -> None:
    key = api_key(services.settings)
    assert anonymous.post("/v1/query", json=QUESTION, headers=auth(key)).status_code == 200
    tampered = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    assert_error(
        anonymous.post("/v1/query", json=QUESTION, headers=auth(tampered)), 401, "not valid"
    )


def test_missing_scope_is_403_naming_the_scope(anonymous: TestClient, services: Services) -> None:
    query_only = auth(api_key(services.settings, scopes=("query",)))
    ingest_only = auth(api_key(services.settings, scopes=("ingest",)))
    files = [("files", PARKING)]
    assert_error(anonymous.post("/v1/documents", files=files, headers=query_only), 403, "'ingest'")
    assert_error(anonymous.get("/v1/documents", headers=query_only), 403, "'ingest'")
    assert_error(anonymous.post("/v1/query", json=QUESTION, headers=ingest_only), 403, "'query'")
    assert_error(anonymous.get("/metrics", headers=ingest_only), 403, "'admin'")
    assert anonymous.post("/v1/query", json=QUESTION, headers=query_only).status_code == 200
    admin = auth(api_key(services.settings, scopes=("admin",)))  # admin implies every scope
    assert anonymous.get("/v1/documents", headers=admin).status_code == 200


def test_keys_are_stored_hashed_and_revocation_takes_effect_at_once(
    anonymous: TestClient, services: Services
) -> None:
    store = KeyStore(services.settings.keys_path)
    key, token = store.create("default", ("query",), name="ci")
    stored = services.settings.keys_path.read_text("utf-8")
    secret = token.split("_", 2)[2]
    assert secret not in stored
    assert hashlib.sha256(secret.encode()).hexdigest() in stored
    assert services.settings.keys_path.stat().st_mode & 0o077 == 0
    assert anonymous.post("/v1/query", json=QUESTION, headers=auth(token)).status_code == 200
    store.revoke(key.id)
    assert anonymous.post("/v1/query", json=QUESTION, headers=auth(token)).status_code == 401


def test_development_mode_is_explicit_and_loud(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    services.settings.auth_mode = "development"
    with caplog.at_level(logging.WARNING), TestClient(create_app(services=services)) as client:
        assert client.post("/v1/query", json=QUESTION).status_code == 200
        assert client.get("/v1/documents").status_code == 200
    assert any("DEVELOPMENT MODE" in r.getMessage() for r in caplog.records)
    assert audit_lines(services)[0]["key_id"] == "development"


def test_default_is_keys_and_a_keyless_start_says_how_to_create_one(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    assert Settings(_env_file=None).auth_mode == "keys"
    with caplog.at_level(logging.WARNING), TestClient(create_app(services=services)):
        pass
    assert any("keys create" in r.getMessage() for r in caplog.records)


def test_placeholder_secrets_are_refused_outside_development(
    tmp_path: Path, model_dir: Path
) -> None:
    with pytest.raises(ValidationError, match="RAG_QDRANT_API_KEY is a placeholder"):
        make_settings(tmp_path, model_dir, qdrant_api_key="changeme")
    with pytest.raises(ValidationError, match="RAG_JUDGE_API_KEY is a placeholder"):
        make_settings(tmp_path, model_dir, judge_api_key="your-api-key")
    relaxed = make_settings(tmp_path, model_dir, qdrant_api_key="changeme", auth_mode="development")
    assert relaxed.qdrant_api_key is not None


def test_keys_cli_creates_lists_and_revokes(
    cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from {{ cookiecutter.package_name }}.cli import main

    assert main(["keys", "create", "--tenant", "northwind", "--scopes", "query,ingest"]) == 0
    out, err = capsys.readouterr()
    token = out.strip()
    assert token.startswith("rag_")
    assert "shown only this once" in err
    key_id = token.split("_")[1]
    assert main(["keys", "list"]) == 0
    listed = capsys.readouterr().out
    assert key_id in listed
    assert "query,ingest" in listed
    assert token not in listed
    assert main(["keys", "create", "--tenant", "Bad Name"]) == 2
    assert "not a plain name" in capsys.readouterr().err
    assert main(["keys", "create", "--tenant", "t", "--scopes", "read"]) == 2
    assert "query, ingest, admin" in capsys.readouterr().err
    assert main(["keys", "revoke", key_id]) == 0
    assert "Revoked" in capsys.readouterr().out
    assert main(["keys", "list"]) == 0
    assert key_id not in capsys.readouterr().out


# --- tenants ----------------------------------------------------------------------------------


def test_a_tenant_never_sees_lists_or_deletes_another_tenants_documents(
    app: Any, services: Services
) -> None:
    with (
        keyed_client(app, services.settings, tenant="alpha") as alpha,
        keyed_client(app, services.settings, tenant="beta") as beta,
    ):
        alpha_job = upload(alpha, PARKING, ("secret.md", b"The merger code name is BLUEBIRD.\n"))
        assert alpha_job["status"] == "succeeded"
        alpha_docs = alpha.get("/v1/documents").json()["documents"]
        assert {d["source"] for d in alpha_docs} == {"parking.md", "secret.md"}

        # Beta asks for it, by question and by naming the source: nothing.
        for body in (
            {"query": "merger code name"},
            {"query": "merger code name", "filters": {"source": "secret.md"}},
        ):
            assert beta.post("/v1/retrieve", json=body).json()["hits"] == []
        refused = beta.post("/v1/query", json={"question": "What is the merger code name?"})
        assert refused.json()["refused"] is True
        assert "BLUEBIRD" not in refused.text
        assert beta.get("/v1/documents").json()["documents"] == []
        # Guessing ids: alpha's document ids and job id are 404 for beta, and stay intact.
        for document in alpha_docs:
            assert_error(beta.delete(f"/v1/documents/{document['id']}"), 404, "No document")
        assert_error(beta.get(f"/v1/ingestions/{alpha_job['id']}"), 404, "No ingestion job")
        assert len(alpha.get("/v1/documents").json()["documents"]) == 2

        # The same file name (and the same bytes) in both tenants: two separate documents.
        beta_job = upload(beta, ("secret.md", b"The merger code name is BLUEBIRD.\n"))
        assert beta_job["outcomes"][0]["status"] == "added"
        beta_doc = beta.get("/v1/documents").json()["documents"][0]
        assert beta_doc["id"] not in {d["id"] for d in alpha_docs}
        assert beta.delete(f"/v1/documents/{beta_doc['id']}").status_code == 200
        hits = alpha.post("/v1/retrieve", json={"query": "merger code name"}).json()["hits"]
        assert hits[0]["source"] == "secret.md"
        assert hits[0]["metadata"]["tenant"] == "alpha"
        assert (services.settings.uploads_path / "alpha" / "secret.md").is_file()
        assert not (services.settings.uploads_path / "beta" / "secret.md").exists()


def test_cli_ingest_writes_its_tenant(services: Services, corpus: Path, app: Any) -> None:
    services.ingestor.for_tenant("northwind").ingest(corpus)
    question = {"question": "How long must a password be?"}
    with keyed_client(app, services.settings, tenant="northwind") as northwind:
        assert northwind.post("/v1/query", json=question).json()["refused"] is False
    with keyed_client(app, services.settings, tenant="default") as default:
        assert default.post("/v1/query", json=question).json()["refused"] is True


# --- hostile input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "payload", "fragment"),
    [
        ("/v1/query", {"question": "x" * 2001}, "RAG_MAX_QUESTION_CHARS"),
        ("/v1/retrieve", {"query": "x" * 2001}, "RAG_MAX_QUESTION_CHARS"),
        (
            "/v1/retrieve",
            {"query": "x", "filters": {"source": [f"s{i}" for i in range(21)]}},
            "RAG_MAX_FILTER_VALUES",
        ),
    ],
)
def test_limits_are_problems_that_name_the_setting(
    app: Any, services: Services, path: str, payload: dict[str, Any], fragment: str
) -> None:
    with keyed_client(app, services.settings) as client:
        assert_error(client.post(path, json=payload), 400, fragment)


def test_oversized_bodies_are_refused_before_they_are_read(app: Any, services: Services) -> None:
    big = json.dumps({"question": "x", "pad": "y" * 70_000}).encode()
    with keyed_client(app, services.settings) as client:
        declared = client.post(
            "/v1/query", content=big, headers={"Content-Type": "application/json"}
        )
        assert_error(declared, 413, "RAG_MAX_REQUEST_BYTES")
        chunked = client.post(
            "/v1/query",
            content=iter([big[:40_000], big[40_000:]]),  # no Content-Length: counted
            headers={"Content-Type": "application/json"},
        )
        assert_error(chunked, 413, "RAG_MAX_REQUEST_BYTES")


def test_hostile_uploads_are_skipped_with_the_reason(
    tmp_path: Path, model_dir: Path, dense: DenseEncoder, sparse: SparseEncoder
) -> None:
    settings = make_settings(tmp_path, model_dir, max_file_bytes=100_000)
    services = build_services(
        settings, tracer_provider=TracerProvider(), dense=dense, sparse=sparse
    )
    with keyed_client(create_app(services=services), settings) as client:
        job = upload(
            client,
            ("bomb.docx", zip_bomb_docx_bytes(50_000_000)),
            ("fake.docx", b"not a zip at all"),
            ("fake.pdf", b"#!/bin/sh\nrm -rf /\n"),
            ("real.pdf", pdf_bytes(["The arm lifts at most 12 kilograms."])),
        )
    outcomes = {o["source"]: o for o in job["outcomes"]}
    assert "zip bomb" in outcomes["bomb.docx"]["reason"]
    assert outcomes["fake.docx"]["status"] == "skipped"
    assert outcomes["fake.pdf"]["status"] == "skipped"
    assert outcomes["real.pdf"]["status"] == "added"
    services.close()


def test_rate_limit_per_key_answers_429_with_retry_after(app: Any, services: Services) -> None:
    services.settings.rate_limit_per_minute = 6
    services.settings.rate_limit_burst = 2
    limited = create_app(services=services)
    with keyed_client(limited, services.settings) as first:
        assert first.post("/v1/retrieve", json={"query": "x"}).status_code == 200
        assert first.post("/v1/retrieve", json={"query": "x"}).status_code == 200
        third = first.post("/v1/retrieve", json={"query": "x"})
        assert_error(third, 429, "RAG_RATE_LIMIT_PER_MINUTE")
        assert 1 <= int(third.headers["Retry-After"]) <= 10
    with keyed_client(limited, services.settings) as other:  # another key: its own bucket
        assert other.post("/v1/retrieve", json={"query": "x"}).status_code == 200


# --- the audit log -----------------------------------------------------------------------------


def test_audit_log_records_queries_uploads_and_deletes(app: Any, services: Services) -> None:
    with keyed_client(app, services.settings, tenant="alpha") as client:
        job = upload(client, PARKING)
        query = client.post("/v1/query", json=QUESTION).json()
        client.post("/v1/query", json={"question": "Who won the 1998 world cup?"})
        document = client.get("/v1/documents").json()["documents"][0]
        client.delete(f"/v1/documents/{document['id']}")
    events = audit_lines(services)
    assert [e["event"] for e in events] == ["upload", "query", "query", "delete"]
    key_ids = {e["key_id"] for e in events}
    assert len(key_ids) == 1
    assert all(e["tenant"] == "alpha" and TRACE_ID.match(e["trace_id"]) for e in events)
    uploaded, asked, refused, deleted = events
    assert uploaded["job_id"] == job["id"]
    assert uploaded["files"] == [
        {
            "name": "parking.md",
            "bytes": len(PARKING[1]),
            "sha256": hashlib.sha256(PARKING[1]).hexdigest(),
        }
    ]
    assert asked["trace_id"] == query["trace_id"]
    assert asked["question"] == {
        "sha256": hashlib.sha256(QUESTION["question"].encode()).hexdigest()
    }
    assert asked["sources"][0]["source"] == "parking.md"
    assert (asked["grounded"], refused["grounded"]) == (True, False)
    assert asked["cited"] == [c["chunk_id"] for c in query["citations"]]
    assert deleted["document_id"] == document["id"]


def test_audit_log_keeps_question_text_only_when_set(services: Services) -> None:
    services.settings.audit_content = "text"
    from {{ cookiecutter.package_name }}.audit import AuditLog

    services.audit = AuditLog(services.settings.audit_path, "text")
    with keyed_client(create_app(services=services), services.settings) as client:
        client.post("/v1/retrieve", json={"query": "visitor parking"})
    (event,) = audit_lines(services)
    assert event["event"] == "retrieve"
    assert event["question"] == {"text": "visitor parking"}
