"""Request context over one persistent connection, against a real uvicorn on 127.0.0.1:
every request gets its own trace, whoever sent the request before it on that connection."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider

from {{ cookiecutter.package_name }}.api import create_app
from {{ cookiecutter.package_name }}.container import build_services
from {{ cookiecutter.package_name }}.embeddings import DenseEncoder, SparseEncoder
from {{ cookiecutter.package_name }}.settings import Settings
from {{ cookiecutter.package_name }}.telemetry import configure_logging

from .conftest import TRACE_ID, api_key, auth, make_settings, serve_on_loopback


@dataclass
class Running:
    base: str
    settings: Settings
    alpha: str  # a key of tenant alpha
    beta: str  # a key of tenant beta


@pytest.fixture(scope="module")
def running(
    tmp_path_factory: pytest.TempPathFactory,
    model_dir: Path,
    dense: DenseEncoder,
    sparse: SparseEncoder,
) -> Iterator[Running]:
    settings = make_settings(tmp_path_factory.mktemp("conn"), model_dir)
    services = build_services(
        settings, tracer_provider=TracerProvider(), dense=dense, sparse=sparse
    )
    alpha = api_key(settings, "alpha", ("query", "ingest"))
    beta = api_key(settings, "beta", ("query", "ingest"))
    with serve_on_loopback(create_app(services=services)) as base:
        yield Running(base, settings, alpha, beta)
    services.close()


def _audit_lines(settings: Settings) -> list[dict[str, object]]:
    path = settings.audit_path
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line]


def test_trace_ids_are_per_request_on_one_keep_alive_connection(running: Running) -> None:
    """A body over 64 KiB (an upload), a 413 by Content-Length and a 413 mid-stream, then
    small requests from two tenants, all on ONE connection: every response has its own trace
    id, and every audit line carries the trace id of its own request and tenant."""
    before = len(_audit_lines(running.settings))
    seen: list[tuple[str, str, int]] = []  # (trace id, tenant, status)
    keys = {"alpha": running.alpha, "beta": running.beta}
    transport = httpx.HTTPTransport(limits=httpx.Limits(max_connections=1))
    with httpx.Client(base_url=running.base, transport=transport, timeout=60) as client:

        def retrieve(tenant: str, body: bytes, expect: int) -> None:
            headers = {**auth(keys[tenant]), "content-type": "application/json"}
            response = client.post("/v1/retrieve", content=body, headers=headers)
            assert response.status_code == expect, response.text
            seen.append((response.headers["x-trace-id"], tenant, expect))

        small = json.dumps({"query": "leave"}).encode()
        retrieve("alpha", small, 200)
        # 1. a body over 64 KiB that is accepted: an upload of a 100 KB text file
        upload = client.post(
            "/v1/documents",
            files=[("files", ("big.txt", b"The pump runs at 40 bar. " * 4000, "text/plain"))],
            headers=auth(running.alpha),
        )
        assert upload.status_code == 202, upload.text
        seen.append((upload.headers["x-trace-id"], "alpha", 202))
        for tenant in ("beta", "alpha", "beta"):
            retrieve(tenant, small, 200)
        # 2. a 413 by its Content-Length (the body is never read)
        retrieve("alpha", json.dumps({"query": "x" * 70_000}).encode(), 413)
        for tenant in ("beta", "alpha"):
            retrieve(tenant, small, 200)

        # 3. a 413 found while counting a chunked body (no Content-Length)
        def chunks() -> Iterator[bytes]:
            yield b'{"query": "'
            for _ in range(20):
                yield b"y" * 8192
            yield b'"}'

        response = client.post(
            "/v1/retrieve",
            content=chunks(),
            headers={**auth(running.beta), "content-type": "application/json"},
        )
        assert response.status_code == 413
        seen.append((response.headers["x-trace-id"], "beta", 413))
        for tenant in ("alpha", "beta", "alpha"):
            retrieve(tenant, small, 200)

    trace_ids = [trace_id for trace_id, _, _ in seen]
    assert all(TRACE_ID.match(t) for t in trace_ids)
    assert len(set(trace_ids)) == len(trace_ids), seen
    audited = _audit_lines(running.settings)[before:]
    expected = {(t, tenant) for t, tenant, status in seen if status < 400}
    assert {(str(line["trace_id"]), str(line["tenant"])) for line in audited} == expected
    assert len(audited) == len(expected)


def test_a_key_in_the_url_never_reaches_the_access_log_in_clear(
    running: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(running.settings)
    capsys.readouterr()
    with httpx.Client(base_url=running.base, timeout=30) as client:
        refused = client.get(f"/v1/documents?api_key={running.alpha}&corpus=x")
        assert refused.status_code == 401
        probe = client.get(f"/healthz?token={running.beta}")
        assert probe.status_code == 200
    # The access lines are written after the responses: wait for both (a loaded machine is slow).
    logged = ""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and logged.count("/healthz?token=") < 1:
        time.sleep(0.1)
        logged += capsys.readouterr().err
    time.sleep(0.2)
    logged += capsys.readouterr().err
    assert "/v1/documents?api_key=[REDACTED]&corpus=x" in logged
    assert "/healthz?token=[REDACTED]" in logged
    assert running.alpha not in logged
    assert running.beta not in logged
