"""The MCP SDK's own client, and helpers to call the API's tools through it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult


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
