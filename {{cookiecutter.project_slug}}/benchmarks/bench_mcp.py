"""MCP overhead: the `search` tool over streamable HTTP beside POST /v1/retrieve, same run.

Starts `serve` (embedded store, API keys on, rate limit off) as a subprocess on a free
127.0.0.1 port over a fresh data folder holding the sample corpus, then asks the same
questions both ways, alternating which goes first, one at a time (latency, not throughput):
  rest  POST /v1/retrieve with an httpx client that keeps its connection
  mcp   `search` through the MCP SDK's own client, one session kept open (stateless server:
        every call is one POST /mcp carrying a JSON-RPC request)
and once: the cost of opening an MCP session (discovery or initialize, then tools/list).
Both return the same hits (checked); the difference is the protocol: JSON-RPC framing, the
SDK's dispatch and argument validation. Prints p50/p95 per way and the p50 ratio (aim: at most
1.2x); exits 1 on any error or any mismatch.

    uv run python benchmarks/bench_mcp.py [--requests 100] [--top-k 5]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from {{ cookiecutter.package_name }}.evals.metrics import percentile
from {{ cookiecutter.package_name }}.keys import KeyStore

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sample_server import free_port, start_server

QUESTIONS = (
    "How many days of paid leave do employees get?",
    "When does the FleetOS REST API v1 reach end of life?",
    "How long is the warranty on NR-7 batteries?",
    "How do I reset my password?",
    "Who approves expense reports?",
    "What happens when a robot's emergency stop is pressed?",
    "How are support tickets escalated?",
)
AIM = 1.2


def start_ready_server(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    server = start_server(data_dir, port)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if server.poll() is not None:
            raise SystemExit("serve exited before it was ready")
        time.sleep(0.2)
    server.terminate()
    raise SystemExit("serve did not become ready in 120 s")


async def measure(base: str, key: str, requests: int, top_k: int) -> int:
    headers = {"Authorization": f"Bearer {key}"}
    rest_times: list[float] = []
    mcp_times: list[float] = []
    errors: list[str] = []
    async with (
        httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as rest,
        httpx2.AsyncClient(headers=headers, timeout=60) as http,
    ):
        opened = time.perf_counter()
        async with Client(streamable_http_client(f"{base}/mcp", http_client=http)) as mcp:
            await mcp.list_tools()
            session_s = time.perf_counter() - opened

            async def via_rest(question: str) -> list[str]:
                started = time.perf_counter()
                response = await rest.post("/v1/retrieve", json={"query": question, "top_k": top_k})
                rest_times.append(time.perf_counter() - started)
                if response.status_code != 200:
                    errors.append(f"rest {response.status_code}: {response.text[:200]}")
                    return []
                return [hit["chunk_id"] for hit in response.json()["hits"]]

            async def via_mcp(question: str) -> list[str]:
                started = time.perf_counter()
                result = await mcp.call_tool("search", {"query": question, "top_k": top_k})
                mcp_times.append(time.perf_counter() - started)
                if result.is_error or result.structured_content is None:
                    errors.append(f"mcp: {result.content}")
                    return []
                return [hit["chunk_id"] for hit in result.structured_content["hits"]]

            for question in QUESTIONS:  # warm-up: caches, connections, first-call costs
                await via_rest(question)
                await via_mcp(question)
            rest_times.clear()
            mcp_times.clear()
            for i in range(requests):
                question = QUESTIONS[i % len(QUESTIONS)]
                if i % 2:
                    rest_ids, mcp_ids = await via_rest(question), await via_mcp(question)
                else:
                    mcp_ids, rest_ids = await via_mcp(question), await via_rest(question)
                if rest_ids != mcp_ids:
                    errors.append(f"different hits for {question!r}: {rest_ids} vs {mcp_ids}")

    rest_p50, mcp_p50 = percentile(rest_times, 50), percentile(mcp_times, 50)
    print(f"{requests} questions each way, top_k={top_k}, one at a time, same server")
    print(f"{'':<22}{'p50 ms':>9}{'p95 ms':>9}")
    for name, times in (("POST /v1/retrieve", rest_times), ("MCP search", mcp_times)):
        print(f"{name:<22}{percentile(times, 50) * 1000:>9.1f}{percentile(times, 95) * 1000:>9.1f}")
    ratio = mcp_p50 / rest_p50
    print(f"MCP session open (discover/initialize + tools/list): {session_s * 1000:.1f} ms")
    verdict = "met" if ratio <= AIM else "missed"
    print(f"p50 ratio MCP / REST: {ratio:.2f}x (aim: at most {AIM}x: {verdict})")
    for error in errors[:10]:
        print(f"error: {error}", file=sys.stderr)
    return 1 if errors else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100, help="questions each way")
    parser.add_argument("--top-k", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-mcp-") as folder:
        data_dir = Path(folder) / ".data"
        key = KeyStore(data_dir / "keys.json").create("default", ("query",))[1]
        port = free_port()
        server = start_ready_server(data_dir, port)
        try:
            return asyncio.run(measure(f"http://127.0.0.1:{port}", key, args.requests, args.top_k))
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    raise SystemExit(main())
