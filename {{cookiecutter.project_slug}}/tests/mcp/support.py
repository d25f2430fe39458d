"""A real API on 127.0.0.1 (uvicorn in a thread) and the MCP SDK's own client to call it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx2
import uvicorn
from fastapi import FastAPI
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult

from ..conftest import free_port


@contextmanager
def running(app: FastAPI) -> Iterator[str]:
    """Serve the app on a free loopback port; yields its base URL."""
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


@dataclass
class Statuses:
    """Every HTTP status the client saw: no tool input may ever cause a 5xx."""

    seen: list[int] = field(default_factory=list)

    async def record(self, response: httpx2.Response) -> None:
        self.seen.append(response.status_code)


@asynccontextmanager
async def mcp_session(
    base: str, key: str | None, *, mode: str = "auto", statuses: Statuses | None = None
) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    hooks = {"response": [statuses.record]} if statuses else {}
    async with (
        httpx2.AsyncClient(headers=headers, event_hooks=hooks, timeout=60) as http,
        Client(streamable_http_client(f"{base}/mcp", http_client=http), mode=mode) as client,
    ):
        yield client


def structured(result: CallToolResult) -> dict[str, Any]:
    """The tool's JSON result (structured content, and the text block says the same)."""
    assert not result.is_error, text(result)
    assert result.structured_content is not None
    assert json.loads(text(result)) == result.structured_content
    return dict(result.structured_content)


def text(result: CallToolResult) -> str:
    return "\n".join(getattr(block, "text", "") for block in result.content)
