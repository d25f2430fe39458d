"""`<slug> mcp`: the MCP tools over stdio, for desktop clients that start a command.

Embedded Qdrant allows one process per store, so this either holds the store itself (and
acts as the RAG_MCP_KEY key, checked like the API checks it), or, when the API holds it,
passes every message through to the API's /mcp endpoint (where the key is checked). With
`--url` it always goes through that endpoint; with a Qdrant server it can always hold it.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
import httpx
import httpx2
from mcp.client.streamable_http import streamable_http_client
from mcp.server.stdio import stdio_server
from mcp.shared.message import SessionMessage

from ..api.security import Authenticator, Caller
from ..container import build_services
from ..errors import StoreInUseError, UnauthorizedError
from ..keys import KeyStore, keys_in_store
from ..settings import CONSOLE_SCRIPT, Settings
from .auth import MCP_PATH
from .tools import build_server

log = logging.getLogger(__name__)


def _token(settings: Settings) -> str | None:
    return settings.mcp_key.get_secret_value() if settings.mcp_key else None


def serve_stdio(settings: Settings, url: str | None = None) -> int:
    if url is not None:
        return bridge(url, _token(settings))
    # Before the models load, fail fast on a bad key, when keys are in the file; keys in the
    # store are read once it is open.
    early = (
        None
        if keys_in_store(settings)
        else _caller(Authenticator(settings, KeyStore(settings.keys_path)), _token(settings))
    )
    try:
        services = build_services(settings)
    except StoreInUseError as exc:
        api = f"http://{settings.host}:{settings.port}"
        if _answers(api + "/healthz"):
            log.info("The API at %s holds the embedded store: relaying to its %s", api, MCP_PATH)
            return bridge(api + MCP_PATH, _token(settings))
        raise StoreInUseError(
            f"{exc.message} `{CONSOLE_SCRIPT} mcp` goes through a running API when it holds "
            f"the store: start `{CONSOLE_SCRIPT} serve` (it is then found at {api}), or pass "
            "--url with the API's /mcp URL."
        ) from exc
    try:
        authenticator = Authenticator(settings, services.keys)
        caller = early or _caller(authenticator, _token(settings))
        server = build_server(services, authenticator, caller=caller)
        services.jobs.submit_inbox()  # as the API does at start: finish accepted uploads
        log.info("MCP over stdio as key %s (tenant %r)", caller.key_id, caller.tenant)
        anyio.run(server.run_stdio_async)
        return 0
    finally:
        services.close()


def _caller(authenticator: Authenticator, token: str | None) -> Caller:
    try:
        return authenticator.identify(token)
    except UnauthorizedError:
        if token is None:
            raise UnauthorizedError(
                f"`{CONSOLE_SCRIPT} mcp` needs an API key to act as: set RAG_MCP_KEY (in the "
                "MCP client's server config under `env`, or in .env) to a key made with "
                f"`{CONSOLE_SCRIPT} keys create --tenant <tenant> --scopes query`."
            ) from None
        raise UnauthorizedError(
            "RAG_MCP_KEY is not a valid API key here (mistyped, revoked, or from another "
            f"deployment); `{CONSOLE_SCRIPT} keys list` shows the key ids that exist."
        ) from None


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def bridge(url: str, token: str | None) -> int:
    """Relay MCP messages between this process's stdin/stdout and a streamable HTTP
    endpoint, unchanged: the endpoint's tools, auth and errors are what the client sees."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    log.info("MCP over stdio relayed to %s", url)
    anyio.run(_relay, url, headers)
    return 0


async def _relay(url: str, headers: dict[str, str]) -> None:
    timeout = httpx2.Timeout(30.0, read=300.0)
    async with (
        httpx2.AsyncClient(headers=headers, timeout=timeout) as http,
        stdio_server() as (from_client, to_client),
        streamable_http_client(url, http_client=http) as (from_server, to_server),
        anyio.create_task_group() as tasks,
    ):

        async def upstream() -> None:
            await _pump(from_client, to_server, "client")
            tasks.cancel_scope.cancel()  # the client closed stdin: we are done

        tasks.start_soon(upstream)
        tasks.start_soon(_pump, from_server, to_client, "server")


async def _pump(source: Any, sink: Any, side: str) -> None:
    async for item in source:
        if isinstance(item, SessionMessage):
            await sink.send(item)
        else:  # a line that is not JSON-RPC, or a transport failure: say so, keep going
            log.warning("MCP relay: the %s sent something unusable: %s", side, item)
