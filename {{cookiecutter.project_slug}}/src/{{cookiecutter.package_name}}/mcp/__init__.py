"""The MCP tool surface: the service's search, answers and documents as tools for agents and
IDE assistants, over streamable HTTP (/mcp on the API) and stdio (`mcp`), with the API's keys,
tenants, scopes, rate limits, audit and traces. See docs/mcp.md."""

from .http import McpEndpoint
from .stdio import serve_stdio
from .tools import build_server

__all__ = ["McpEndpoint", "build_server", "serve_stdio"]
