"""Replicas share state through the store: API keys and ingestion jobs written through one
are read by another. In-process, two Services over one open store stand for two replicas of
a server deployment (each with its own data folder: keys file, upload inbox, audit log); the
same runs against a real server when QDRANT_TEST_URL is set."""

from __future__ import annotations

import io
import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import TracerProvider
from pydantic import ValidationError

from {{ cookiecutter.package_name }}.api import create_app
from {{ cookiecutter.package_name }}.audit import AuditLog
from {{ cookiecutter.package_name }}.container import Services, build_services
from {{ cookiecutter.package_name }}.embeddings import DenseEncoder, SparseEncoder
from {{ cookiecutter.package_name }}.errors import ConfigurationError
from {{ cookiecutter.package_name }}.keys import KEYS_SHELF, KeyStore, ShelfKeyStore
from {{ cookiecutter.package_name }}.settings import Settings
from {{ cookiecutter.package_name }}.store import VectorStore

from .conftest import auth, make_settings, qdrant_client

SERVER_URL = os.environ.get("QDRANT_TEST_URL")


def _replica(
    tmp_path: Path,
    model_dir: Path,
    name: str,
    dense: DenseEncoder,
    sparse: SparseEncoder,
    store: VectorStore | None = None,
    **overrides: Any,
) -> Services:
    """One replica: its own data folder; the store given (shared), else one it opens."""
    # Jobs at the queries' priority: this is about sharing, and a loaded machine starves nice 19.
    values: dict[str, Any] = {"keys_in": "store", "ingest_nice": 0, **overrides}
    settings = make_settings(tmp_path / name, model_dir, **values)
    return build_services(
        settings, tracer_provider=TracerProvider(), dense=dense, sparse=sparse, store=store
    )


@pytest.fixture
def replicas(
    tmp_path: Path, model_dir: Path, dense: DenseEncoder, sparse: SparseEncoder
) -> Iterator[tuple[Services, Services]]:
    first = _replica(tmp_path, model_dir, "a", dense, sparse)
    second = _replica(tmp_path, model_dir, "b", dense, sparse, store=first.store)
    yield first, second
    second.close()
    first.close()


def _wait(client: TestClient, job_id: str, key: str, timeout_s: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        response = client.get(f"/v1/ingestions/{job_id}", headers=auth(key))
        assert response.status_code == 200, response.text
        job: dict[str, Any] = response.json()
        if job["status"] not in ("queued", "running"):
            return job
        assert time.monotonic() < deadline, f"job still {job['status']}: {job}"
        time.sleep(0.05)


def _shares_keys_and_jobs(first: Services, second: Services) -> None:
    with (
        TestClient(create_app(services=first)) as one,
        TestClient(create_app(services=second)) as other,
    ):
        _, token = first.keys.create("default", ("query", "ingest"), "made on one")
        assert other.get("/v1/documents", headers=auth(token)).status_code == 200

        response = one.post(
            "/v1/documents",
            headers=auth(token),
            files=[
                ("files", ("parking.md", b"# Parking\n\nVisitors park on level -2.\n")),
                ("files", ("broken.pdf", b"%PDF-1.4 nothing else")),
            ],
        )
        assert response.status_code == 202, response.text
        job = _wait(other, response.json()["id"], token)  # read through the other replica
        assert job["status"] == "succeeded"
        assert (job["total"], job["done"]) == (2, 2)
        outcomes = {o["source"]: o for o in job["outcomes"]}
        assert outcomes["parking.md"]["status"] == "added"
        assert outcomes["broken.pdf"]["status"] == "skipped"
        assert "not a readable PDF" in outcomes["broken.pdf"]["reason"]
        # Another tenant's job does not exist for it, on any replica.
        _, stranger = second.keys.create("other", ("query", "ingest"))
        missing = other.get(f"/v1/ingestions/{job['id']}", headers=auth(stranger))
        assert missing.status_code == 404

        # A revoke through one replica holds on the other at once.
        key_id = token.split("_")[1]
        second.keys.revoke(key_id)
        assert one.get("/v1/documents", headers=auth(token)).status_code == 401


def test_a_key_and_a_job_made_through_one_replica_are_seen_by_another(
    replicas: tuple[Services, Services],
) -> None:
    first, second = replicas
    assert not second.settings.keys_path.exists()  # no keys file on either: the store holds them
    _shares_keys_and_jobs(first, second)
    assert not first.settings.keys_path.exists()
    assert not second.settings.keys_path.exists()


def test_keys_are_kept_on_the_shelf_as_hashes_only(replicas: tuple[Services, Services]) -> None:
    first, _ = replicas
    key, token = first.keys.create("default", ("query",))
    stored = [r.payload for r in first.store.shelf(KEYS_SHELF).find()]
    assert [p["sha256"] for p in stored] == [key.sha256]
    assert token.split("_", 2)[2] not in json.dumps(stored)  # the secret is never stored


def test_an_existing_keys_file_is_imported_once_and_a_revoke_is_not_undone_by_it(
    replicas: tuple[Services, Services],
) -> None:
    first, _ = replicas
    keys_file = first.settings.keys_path
    old, token = KeyStore(keys_file).create("default", ("query",), "before the move")
    kept, kept_token = KeyStore(keys_file).create("default", ("query",))
    shelf = first.store.shelf(KEYS_SHELF)

    moved = ShelfKeyStore(shelf, import_from=keys_file)
    assert moved.authenticate(token) == old
    assert moved.authenticate(kept_token) == kept
    moved.revoke(old.id)
    again = ShelfKeyStore(shelf, import_from=keys_file)  # the next start reads the file again
    assert again.authenticate(token) is None
    assert again.authenticate(kept_token) == kept
    assert set(again.keys()) == {kept.id}


def test_the_keys_cli_writes_to_the_store_that_a_replica_then_reads(
    cli_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    dense: DenseEncoder,
    sparse: SparseEncoder,
) -> None:
    from {{ cookiecutter.package_name }}.cli import main

    monkeypatch.setenv("RAG_KEYS_IN", "store")
    assert main(["keys", "create", "--tenant", "northwind", "--scopes", "query"]) == 0
    out, err = capsys.readouterr()
    token = out.strip()
    assert "keys shelf" in err
    settings = Settings()
    assert not settings.keys_path.exists()
    services = build_services(
        settings, tracer_provider=TracerProvider(), dense=dense, sparse=sparse
    )
    try:
        key = services.keys.authenticate(token)
        assert key is not None
        assert (key.tenant, key.scopes) == ("northwind", ("query",))
    finally:
        services.close()
    assert main(["keys", "revoke", key.id]) == 0
    assert "Revoked" in capsys.readouterr().out
    assert main(["keys", "list"]) == 0
    assert key.id not in capsys.readouterr().out


def test_keys_stay_in_the_keys_file_with_an_embedded_store_by_default(
    tmp_path: Path, model_dir: Path
) -> None:
    from {{ cookiecutter.package_name }}.keys import keys_in_store

    assert not keys_in_store(make_settings(tmp_path, model_dir))
    assert keys_in_store(make_settings(tmp_path, model_dir, qdrant_url="http://qdrant:6333"))
    assert not keys_in_store(
        make_settings(tmp_path, model_dir, qdrant_url="http://qdrant:6333", keys_in="file")
    )


def test_the_stdout_audit_sink_writes_one_json_line_per_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = AuditLog(tmp_path / "audit.jsonl", sink="stdout")
    log.write("upload", "key1", "default", "trace1", job_id="j1", files=[])
    log.write("delete", "key2", "legal", "trace2", document_id="d1", source="a.md")
    lines = capsys.readouterr().out.splitlines()
    records = [json.loads(line) for line in lines]
    assert [(r["log"], r["event"], r["key_id"], r["tenant"]) for r in records] == [
        ("audit", "upload", "key1", "default"),
        ("audit", "delete", "key2", "legal"),
    ]
    assert records[1]["source"] == "a.md"
    assert records[0]["time"]
    assert not (tmp_path / "audit.jsonl").exists()  # no file written beside it
    with pytest.raises(ConfigurationError, match="RAG_AUDIT_SINK=file"):
        list(log.records())


def test_the_audit_sink_setting_reaches_the_api_and_refuses_a_file_it_would_not_write(
    tmp_path: Path,
    model_dir: Path,
    dense: DenseEncoder,
    sparse: SparseEncoder,
) -> None:
    with pytest.raises(ValidationError, match="RAG_AUDIT_LOG names a file"):
        make_settings(tmp_path, model_dir, audit_sink="stdout", audit_log=tmp_path / "a.jsonl")
    services = _replica(tmp_path, model_dir, "a", dense, sparse, audit_sink="stdout")
    out = io.StringIO()
    services.audit = AuditLog(services.settings.audit_path, sink=services.audit.sink, stream=out)
    try:
        _, token = services.keys.create("default", ("query",))
        with TestClient(create_app(services=services)) as client:
            response = client.post(
                "/v1/retrieve", headers=auth(token), json={"query": "parking", "top_k": 1}
            )
        assert response.status_code == 200, response.text
        (record,) = [json.loads(line) for line in out.getvalue().splitlines()]
        assert (record["log"], record["event"]) == ("audit", "retrieve")
        assert not services.settings.audit_path.exists()
    finally:
        services.close()


@pytest.mark.qdrant_server
@pytest.mark.skipif(
    not SERVER_URL,
    reason="no Qdrant server: set QDRANT_TEST_URL=http://host:6333 to run server-mode tests",
)
def test_two_replicas_on_a_qdrant_server_share_keys_and_jobs(
    tmp_path: Path, model_dir: Path, dense: DenseEncoder, sparse: SparseEncoder
) -> None:
    collection = f"test_{uuid.uuid4().hex[:8]}"
    server: dict[str, Any] = {"qdrant_url": SERVER_URL, "collection": collection, "keys_in": "auto"}
    first = _replica(tmp_path, model_dir, "a", dense, sparse, **server)
    second = _replica(tmp_path, model_dir, "b", dense, sparse, **server)  # its own client
    try:
        _shares_keys_and_jobs(first, second)
    finally:
        client = qdrant_client(first)
        for name in [c.name for c in client.get_collections().collections]:
            if name.startswith(collection):
                client.delete_collection(name)
        second.close()
        first.close()
