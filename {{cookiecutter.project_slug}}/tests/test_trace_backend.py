"""A query's trace arrives whole in a real trace backend: Arize Phoenix, started on loopback.

Phoenix is a tool, not a dependency of the service: install it once with
`uv tool install arize-phoenix` (or set PHOENIX_BIN to its `phoenix` executable). Without it
these tests skip and say so; the kit's own tests and this project's CI install it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from {{ cookiecutter.package_name }}.api import create_app
from {{ cookiecutter.package_name }}.container import build_services
from {{ cookiecutter.package_name }}.embeddings import DenseEncoder, SparseEncoder

from .conftest import free_port, keyed_client, make_settings

PHOENIX = os.environ.get("PHOENIX_BIN") or shutil.which("phoenix")

pytestmark = [
    pytest.mark.trace_backend,
    pytest.mark.skipif(
        PHOENIX is None,
        reason="Arize Phoenix is not installed: `uv tool install arize-phoenix` "
        "or set PHOENIX_BIN to run the trace-backend test",
    ),
]


@pytest.fixture(scope="module")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    assert PHOENIX is not None
    port = free_port()
    env = {
        **os.environ,
        "PHOENIX_HOST": "127.0.0.1",
        "PHOENIX_PORT": str(port),
        "PHOENIX_GRPC_PORT": str(free_port()),
        "PHOENIX_WORKING_DIR": str(tmp_path_factory.mktemp("phoenix")),
        "PHOENIX_TELEMETRY_ENABLED": "false",
    }
    log = tmp_path_factory.mktemp("phoenix-log") / "phoenix.log"
    with log.open("w") as out:
        server = subprocess.Popen([PHOENIX, "serve"], env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline, "Phoenix did not start:\n" + log.read_text()[-2000:]
            time.sleep(0.5)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)


def spans_of_trace(base: str, trace_id: str, expected: int) -> list[dict[str, Any]]:
    """Poll Phoenix's REST API until the trace has at least `expected` spans."""
    spans: list[dict[str, Any]] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        response = httpx.get(f"{base}/v1/projects/default/spans", params={"limit": 1000})
        response.raise_for_status()
        spans = [s for s in response.json()["data"] if s["context"]["trace_id"] == trace_id]
        if len(spans) >= expected:
            return spans
        time.sleep(0.5)
    return spans


def test_a_query_trace_arrives_whole_in_phoenix(
    phoenix: str,
    tmp_path: Path,
    model_dir: Path,
    corpus: Path,
    dense: DenseEncoder,
    sparse: SparseEncoder,
) -> None:
    settings = make_settings(
        tmp_path, model_dir, trace_exporter="otlp", otlp_endpoint=f"{phoenix}/v1/traces"
    )
    services = build_services(settings, dense=dense, sparse=sparse)
    services.ingestor.ingest(corpus)
    with keyed_client(create_app(services=services), services.settings) as client:
        body = client.post("/v1/query", json={"question": "How long must a password be?"}).json()
    services.close()  # flushes the batch exporter

    spans = spans_of_trace(phoenix, body["trace_id"], expected=4)
    by_name = {span["name"]: span for span in spans}
    assert {"POST /v1/query", "retrieval test", "answer extractive"} <= set(by_name), by_name
    assert any(name.startswith("embeddings ") for name in by_name)

    ids = {span["context"]["span_id"] for span in spans}
    roots = [span for span in spans if not span.get("parent_id")]
    assert [root["name"] for root in roots] == ["POST /v1/query"]
    assert all(span["parent_id"] in ids for span in spans if span not in roots)

    retrieval = by_name["retrieval test"]["attributes"]
    assert retrieval["gen_ai.operation.name"] == "retrieval"
    assert retrieval["gen_ai.data_source.id"] == "test"
