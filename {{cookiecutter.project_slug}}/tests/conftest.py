"""Shared fixtures: real encoders (loaded once), a real embedded store per test, in-memory spans."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from qdrant_client import QdrantClient

from {{ cookiecutter.package_name }}.container import Services, build_services
from {{ cookiecutter.package_name }}.domain import IndexedDocument, by_source
from {{ cookiecutter.package_name }}.embeddings import (
    DenseEncoder,
    SparseEncoder,
    build_dense_encoder,
    build_sparse_encoder,
)
from {{ cookiecutter.package_name }}.keys import KeyStore, Scope
from {{ cookiecutter.package_name }}.settings import CONSOLE_SCRIPT, Settings
from {{ cookiecutter.package_name }}.store.qdrant import QdrantStore
from {{ cookiecutter.package_name }}.telemetry import NOISY_LIBRARY_LOGGERS

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_CORPUS = PROJECT_ROOT / "data" / "sample"


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests see only the settings they set: no RAG_* variables, no .env, no network."""
    for name in list(os.environ):
        if name.startswith(("RAG_", "OTEL_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # Whatever LLM provider the project was generated for, tests (and the CLI they start) get
    # the offline answerer and the template's provider defaults unless they set their own;
    # tests/test_project_choices.py checks the chosen defaults against their fake server.
    monkeypatch.setenv("RAG_ANSWERER", "extractive")
    monkeypatch.setenv("RAG_LLM_PROVIDER", "openai")
    monkeypatch.setenv("RAG_LLM_MODEL", "gpt-4o-mini")
    monkeypatch.chdir(tmp_path)


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """The CLI configures the root logger; later tests get it back as it was."""
    loggers = [logging.getLogger(name) for name in ("", *NOISY_LIBRARY_LOGGERS)]
    saved = [(logger, list(logger.handlers), logger.level) for logger in loggers]
    yield
    for logger, handlers, level in saved:
        logger.handlers[:] = handlers
        logger.setLevel(level)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


def make_settings(tmp_path: Path, model_dir: Path, **overrides: object) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path / ".data",
        "model_dir": model_dir,
        "collection": "test",
        # Explicit: the API needs keys (tests send real ones); polling loops are not limited.
        "auth_mode": "keys",
        "rate_limit_per_minute": 0,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


@pytest.fixture
def settings(tmp_path: Path, model_dir: Path) -> Settings:
    return make_settings(tmp_path, model_dir)


@pytest.fixture(scope="session")
def dense(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> DenseEncoder:
    return build_dense_encoder(make_settings(tmp_path_factory.mktemp("d"), model_dir))


@pytest.fixture(scope="session")
def sparse(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> SparseEncoder:
    return build_sparse_encoder(make_settings(tmp_path_factory.mktemp("s"), model_dir))


@pytest.fixture
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def metrics() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
def services(
    settings: Settings,
    dense: DenseEncoder,
    sparse: SparseEncoder,
    spans: InMemorySpanExporter,
    metrics: InMemoryMetricReader,
) -> Iterator[Services]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    built = build_services(
        settings,
        tracer_provider=provider,
        dense=dense,
        sparse=sparse,
        meter_provider=MeterProvider(metric_readers=[metrics], shutdown_on_exit=False),
    )
    yield built
    built.close()


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """A small folder of real documents in all three formats."""
    root = tmp_path / "kb"
    (root / "policies").mkdir(parents=True)
    (root / "policies" / "passwords.md").write_text(
        "# Password policy\n\n## Length\n\nPasswords must be at least 14 characters long.\n\n"
        "## Rotation\n\nPasswords are rotated every 180 days or after a suspected leak.\n",
        encoding="utf-8",
    )
    (root / "coffee.txt").write_text(
        "The espresso machine on the third floor is descaled every Friday morning.\n\n"
        "Oat milk is restocked on Mondays.\n",
        encoding="utf-8",
    )
    (root / "holidays.html").write_text(
        "<html><head><title>Public holidays</title><style>body{color:red}</style>"
        "<script>trackVisitor('secret-tracking-code')</script></head><body>"
        "<nav>Home | Intranet | Login</nav><main><h1>Public holidays</h1>"
        "<p>The office is closed on King's Day, 27 April, every year.</p></main>"
        "<footer>Copyright Example Corp</footer></body></html>",
        encoding="utf-8",
    )
    return root


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, model_dir: Path) -> Path:
    """Environment for running the CLI in-process: its own data folder, the shared models."""
    monkeypatch.setenv("RAG_DATA_DIR", str(tmp_path / ".data"))
    monkeypatch.setenv("RAG_MODEL_DIR", str(model_dir))
    return tmp_path


def api_key(
    settings: Settings, tenant: str = "default", scopes: tuple[Scope, ...] = ("query", "ingest")
) -> str:
    """A real key in the settings' keys file, as `keys create` makes one."""
    return KeyStore(settings.keys_path).create(tenant, scopes)[1]


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def keyed_client(
    app: Any,
    settings: Settings,
    tenant: str = "default",
    scopes: tuple[Scope, ...] = ("query", "ingest"),
) -> Any:
    """A TestClient that sends a fresh key of this tenant and scopes with every request."""
    from fastapi.testclient import TestClient

    return TestClient(app, headers=auth(api_key(settings, tenant, scopes)))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def copy_sample_corpus(target: Path) -> Path:
    shutil.copytree(SAMPLE_CORPUS, target)
    return target


TRACE_ID = re.compile(r"^[0-9a-f]{32}$")


def assert_error(response: object, status: int, *fragments: str) -> None:
    """An RFC 9457 problem: its media type and fields, the trace id, and a `detail` that
    holds every fragment."""
    assert response.status_code == status, response.text  # type: ignore[attr-defined]
    assert response.headers["content-type"] == "application/problem+json"  # type: ignore[attr-defined]
    problem = response.json()  # type: ignore[attr-defined]
    assert problem["status"] == status
    assert problem["type"].startswith("urn:problem:")
    assert problem["title"]
    assert problem["instance"].startswith("/")
    assert TRACE_ID.match(problem["trace_id"])
    for fragment in fragments:
        assert fragment in problem["detail"]


def sse_events(text: str) -> list[tuple[str, Any]]:
    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((fields["event"], json.loads(fields["data"])))
    return events


def indexed(
    services: Services, *, tenant: str = "default", corpus: str | None = None
) -> dict[str, IndexedDocument]:
    """A tenant's stored documents by source (tests default to the `default` tenant)."""
    return by_source(services.store.documents(tenant=tenant, corpus=corpus))


def drop_collection(services: Services) -> None:
    """Remove the collection behind the service's back, as an operator's mistake would."""
    store = services.store
    if isinstance(store, QdrantStore):
        store.client.delete_collection(store.collection)
    else:
        shutil.rmtree(store.location)


def qdrant_client(services: Services) -> QdrantClient:
    """The qdrant-client under a QdrantStore, for tests that inspect the engine itself."""
    assert isinstance(services.store, QdrantStore), type(services.store)
    return services.store.client


@contextmanager
def serve_on_loopback(app: Any) -> Iterator[str]:
    """Serve an ASGI app with uvicorn in a thread on a free loopback port; yields its base URL.
    For tests that need a real connection (keep-alive, streaming, an MCP client)."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "server exited"
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@contextmanager
def cli_server(
    env: Mapping[str, str] | None = None,
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """`serve` as a user runs it: the console script in a subprocess (with `env`, else this
    environment's RAG_* settings) on a free loopback port. Yields its base URL once /readyz
    answers 200, and the process; stops it after (if it still runs)."""
    port = free_port()
    script = Path(sys.executable).parent / CONSOLE_SCRIPT
    server = subprocess.Popen(
        [str(script), "serve", "--port", str(port)],
        env=dict(env) if env is not None else os.environ.copy(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120  # a loaded machine loads the models slowly
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, server.stderr.read() if server.stderr else ""
            assert time.monotonic() < deadline, "serve did not become ready"
            time.sleep(0.2)
        yield base, server
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture
def ragas_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The ragas scorer sets these process-wide; put them back after each test that uses it."""
    for name in ("RAGAS_DO_NOT_TRACK", "XDG_DATA_HOME", "TIKTOKEN_CACHE_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
