"""`mcp` over stdio, driven by the SDK's own stdio client: it holds the embedded store
itself as the RAG_MCP_KEY key, or, when the API holds the store, relays to the API's /mcp;
either way a desktop client gets the same tools and results as the REST API."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.shared.exceptions import MCPError
from opentelemetry.sdk.trace import TracerProvider

from {{ cookiecutter.package_name }}.api import create_app
from {{ cookiecutter.package_name }}.ask import Question
from {{ cookiecutter.package_name }}.container import build_services
from {{ cookiecutter.package_name }}.embeddings import DenseEncoder, SparseEncoder
from {{ cookiecutter.package_name }}.settings import PACKAGE_NAME, Settings

from ..conftest import api_key, auth, free_port, make_settings, serve_on_loopback
from .support import structured

QUESTION = "How long must a password be?"
QUERY: dict[str, Any] = {"query": QUESTION, "top_k": 2}


def _environment(settings: Settings, **extra: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(settings.data_dir.parent),
        "HF_HUB_OFFLINE": "1",
        "RAG_DATA_DIR": str(settings.data_dir),
        "RAG_MODEL_DIR": str(settings.models_path),
        "RAG_COLLECTION": settings.collection,
        "RAG_LOG_LEVEL": "WARNING",
        **extra,
    }


def _stdio(settings: Settings, *args: str, **env: str) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", PACKAGE_NAME, "mcp", *args],
        env=_environment(settings, **env),
        cwd=str(settings.data_dir.parent),
    )


def _search(parameters: StdioServerParameters) -> tuple[set[str], Any]:
    async def go() -> tuple[set[str], Any]:
        async with Client(parameters) as client:
            tools = {tool.name for tool in (await client.list_tools()).tools}
            return tools, await client.call_tool("search", QUERY)

    return anyio.run(go)


@pytest.fixture
def indexed(
    tmp_path: Path, model_dir: Path, corpus: Path, dense: DenseEncoder, sparse: SparseEncoder
) -> Settings:
    settings = make_settings(tmp_path, model_dir)
    services = build_services(
        settings, tracer_provider=TracerProvider(), dense=dense, sparse=sparse
    )
    try:
        services.ingestor.ingest(corpus)
    finally:
        services.close()
    return settings


@pytest.mark.slow
def test_stdio_holds_the_store_and_acts_as_its_key(
    indexed: Settings, dense: DenseEncoder, sparse: SparseEncoder
) -> None:
    key = api_key(indexed, "default", ("query",))
    tools, result = _search(_stdio(indexed, RAG_MCP_KEY=key))
    assert {"search", "ask", "list_documents", "get_document", "get_chunk"} == tools
    hits = structured(result)["hits"]
    services = build_services(indexed, tracer_provider=TracerProvider(), dense=dense, sparse=sparse)
    try:
        expected = services.asker.retrieve(Question(QUESTION, "default", 2))
    finally:
        services.close()
    assert [h["chunk_id"] for h in hits] == [h.chunk_id for h in expected]
    audit = indexed.audit_path.read_text(encoding="utf-8")
    assert key.split("_")[1] in audit
    assert '"tool":"search"' in audit


@pytest.mark.slow
def test_stdio_without_a_key_says_how_to_give_one(indexed: Settings) -> None:
    parameters = _stdio(indexed)
    finished = subprocess.run(
        [parameters.command, *parameters.args],
        env=parameters.env,
        cwd=parameters.cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert finished.returncode == 2
    assert "RAG_MCP_KEY" in finished.stderr
    assert "keys create" in finished.stderr
    assert "Traceback" not in finished.stderr


@pytest.mark.slow
def test_while_the_api_holds_the_store_stdio_relays_to_it(
    indexed: Settings, dense: DenseEncoder, sparse: SparseEncoder
) -> None:
    key = api_key(indexed, "default", ("query",))
    services = build_services(indexed, tracer_provider=TracerProvider(), dense=dense, sparse=sparse)
    try:
        with serve_on_loopback(create_app(services=services)) as base:
            port = base.rsplit(":", 1)[1]
            tools, result = _search(_stdio(indexed, RAG_MCP_KEY=key, RAG_PORT=port))
            rest = httpx.post(f"{base}/v1/retrieve", json=QUERY, headers=auth(key)).json()
            # A wrong key is refused by the API, and the client reads why.
            with pytest.raises(BaseExceptionGroup) as refused:
                _search(_stdio(indexed, "--url", f"{base}/mcp", RAG_MCP_KEY="rag_nope"))
    finally:
        services.close()
    assert "search" in tools
    assert [h["chunk_id"] for h in structured(result)["hits"]] == [
        h["chunk_id"] for h in rest["hits"]
    ]
    assert refused.group_contains(MCPError, match="API key is not valid", depth=None)


@pytest.mark.slow
def test_while_another_process_holds_the_store_stdio_says_what_to_do(
    indexed: Settings, dense: DenseEncoder, sparse: SparseEncoder
) -> None:
    key = api_key(indexed, "default", ("query",))
    services = build_services(indexed, tracer_provider=TracerProvider(), dense=dense, sparse=sparse)
    try:
        parameters = _stdio(indexed, RAG_MCP_KEY=key, RAG_PORT=str(free_port()))
        finished = subprocess.run(
            [parameters.command, *parameters.args],
            env=parameters.env,
            cwd=parameters.cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        services.close()
    assert finished.returncode == 2
    assert "in use by" in finished.stderr
    assert " serve" in finished.stderr
    assert "--url" in finished.stderr
    assert "Traceback" not in finished.stderr
