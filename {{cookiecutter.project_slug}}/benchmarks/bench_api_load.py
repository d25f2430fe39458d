"""Load on the HTTP API: mixed queries and uploads from several concurrent clients, then
proof that no accepted upload was lost.

Starts `serve` (embedded store, API keys on) as a subprocess on a free 127.0.0.1 port over a
fresh data folder holding the sample corpus, and drives it with asyncio + httpx:
  1. baseline  GET /healthz at the same concurrency: the HTTP floor of this machine
  2. load      a fixed number of requests (queries, and uploads of small unique documents),
               from --clients concurrent clients over two tenants' keys; stops at --requests or
               --time-limit, whichever comes first
  3. proof     waits for the ingestion jobs, then checks every upload that got a 2xx: listed by
               GET /v1/documents, and found by a question only it answers; and that the audit
               log has one line per accepted request
Prints throughput and p50/p95/p99 latency per kind, and the ratio to the baseline; exits 1 on
any error or any lost upload. Rate limiting is off here (RAG_RATE_LIMIT_PER_MINUTE=0): this
measures the service, not the limiter.

With --hostile, a second phase follows on the same server: tenant `second` asks questions
alone (idle), then again while tenant `default` uploads the worst files we know (JSON nested
past the recursion limit, zip and deflate bombs, a zip directory that lies, a 7.5 MB line, a
PDF of thousands of pages, a name over 255 bytes, and a legal but heavy 1 MB text) and each
tenant uploads one good file. It
prints the victim's query p50/p95 beside idle, the errors (a 5xx or a dropped connection; a
refusal with a 4xx is the right answer to a bad name) and the good uploads lost.

    uv run python benchmarks/bench_api_load.py [--requests 300] [--clients 8] [--time-limit 120]
                                               [--hostile]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from {{ cookiecutter.package_name }}.evals.metrics import percentile
from {{ cookiecutter.package_name }}.keys import KeyStore

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sample_server import free_port, start_server
from tests.messy_files import (
    flate_bomb_pdf_bytes,
    lying_zip_docx_bytes,
    pdf_bytes,
    zip_bomb_docx_bytes,
)

QUESTIONS = (
    "How many days of paid leave do employees get?",
    "When does the FleetOS REST API v1 reach end of life?",
    "How long is the warranty on NR-7 batteries?",
    "How do I reset my password?",
    "Who approves expense reports?",
)
WORDS = ("amber", "basalt", "cobalt", "dune", "ember", "fjord", "garnet", "heron", "indigo")


@dataclass
class Results:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    uploads: list[tuple[str, str, str, str]] = field(default_factory=list)  # key, name, code, job

    def record(self, kind: str, seconds: float) -> None:
        self.latencies.setdefault(kind, []).append(seconds)


async def wait_ready(client: httpx.AsyncClient, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"serve exited with {server.returncode}")
        try:
            if (await client.get("/readyz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.2)
    raise SystemExit("serve did not become ready in 120 s")


def document(code: str) -> bytes:
    text = f"# Locker {code}\n\nThe spare badge for project {code} is kept in locker {code}.\n"
    return text.encode()


async def run(
    client: httpx.AsyncClient,
    keys: list[str],
    total: int,
    clients: int,
    time_limit: float,
    upload_share: float,
    results: Results,
) -> float:
    counter = iter(range(total))
    rng = random.Random(7)
    deadline = time.monotonic() + time_limit

    async def worker(index: int) -> None:
        key = keys[index % len(keys)]
        headers = {"Authorization": f"Bearer {key}"}
        for n in counter:
            if time.monotonic() > deadline:
                return
            started = time.perf_counter()
            try:
                if rng.random() < upload_share:
                    code = f"{rng.choice(WORDS)}{n:05d}"
                    name = f"locker-{code}.md"
                    response = await client.post(
                        "/v1/documents",
                        files=[("files", (name, document(code)))],
                        headers=headers,
                    )
                    kind = "upload"
                    if response.is_success:
                        results.uploads.append((key, name, code, response.json()["id"]))
                else:
                    response = await client.post(
                        "/v1/query", json={"question": rng.choice(QUESTIONS)}, headers=headers
                    )
                    kind = "query"
            except httpx.HTTPError as exc:
                results.errors.append(f"{type(exc).__name__}: {exc}")
                continue
            results.record(kind, time.perf_counter() - started)
            if not response.is_success:
                results.errors.append(f"{kind} -> {response.status_code}: {response.text[:200]}")

    started = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(clients)))
    return time.perf_counter() - started


async def baseline(
    client: httpx.AsyncClient, total: int, clients: int
) -> tuple[list[float], float]:
    latencies: list[float] = []
    counter = iter(range(total))

    async def worker() -> None:
        for _ in counter:
            started = time.perf_counter()
            (await client.get("/healthz")).raise_for_status()
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    return latencies, time.perf_counter() - started


async def prove_nothing_lost(client: httpx.AsyncClient, results: Results) -> list[str]:
    """Every upload that got a 2xx: its job finished, it is listed, a question finds it."""
    lost = []
    for key, name, code, job_id in results.uploads:
        headers = {"Authorization": f"Bearer {key}"}
        deadline = time.monotonic() + 300
        while True:
            job = (await client.get(f"/v1/ingestions/{job_id}", headers=headers)).json()
            if job["status"] not in ("queued", "running") or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        listed = (await client.get("/v1/documents", headers=headers)).json()["documents"]
        hits = (
            await client.post(
                "/v1/retrieve",
                json={"query": f"Where is the spare badge for project {code}?", "top_k": 3},
                headers=headers,
            )
        ).json()["hits"]
        if job["status"] != "succeeded":
            lost.append(f"{name}: job {job['status']} {job.get('error', '')}")
        elif name not in {d["source"] for d in listed}:
            lost.append(f"{name}: not listed")
        elif name not in {hit["source"] for hit in hits}:
            lost.append(f"{name}: not retrieved by its own question")
    return lost


def hostile_files() -> list[tuple[str, bytes]]:
    """The worst uploads we know of; each a separate upload, as an attacker sends them."""
    return [
        ("deep.jsonl", b"[" * 5_000 + b"]" * 5_000 + b"\n"),
        ("lying.docx", lying_zip_docx_bytes("A claim form.", 1_500_000_000)),
        ("bomb.docx", zip_bomb_docx_bytes(1_000_000_000)),
        ("bomb.pdf", flate_bomb_pdf_bytes(1_000_000_000)),
        ("one-line.txt", b"claim" * 1_500_000),  # 7.5 MB, no space, no newline
        ("pages.pdf", pdf_bytes([f"Page {n} of the appendix." for n in range(5_000)])),
        ("\u00e9" * 130 + ".md", b"A name of 263 bytes."),  # refused with 400
        # Within every bound, and heavy: about a thousand chunks of real sentences.
        ("heavy.txt", heavy_text(1_000_000)),
    ]


def heavy_text(chars: int) -> bytes:
    rng = random.Random(3)
    sentences: list[str] = []
    size = 0
    while size < chars:
        words = " ".join(rng.choice(WORDS) for _ in range(12))
        sentences.append(f"Clause {len(sentences)} of the annex says {words}. ")
        size += len(sentences[-1])
    return "".join(sentences).encode()


@dataclass
class Hostile:
    idle: list[float] = field(default_factory=list)
    attacked: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    refused: int = 0
    good: list[tuple[str, str, str, str]] = field(default_factory=list)  # as Results.uploads
    jobs: list[str] = field(default_factory=list)  # the attacker's accepted jobs
    attack_seconds: float = 0.0  # from the first hostile upload to its last job's end


async def hostile_mix(
    client: httpx.AsyncClient, attacker: str, victim: str, queries: int
) -> Hostile:
    out = Hostile()
    rng = random.Random(11)

    async def ask(latencies: list[float], until: asyncio.Task[None] | None = None) -> None:
        asked = 0
        while asked < queries or (until is not None and not until.done()):
            asked += 1
            started = time.perf_counter()
            try:
                response = await client.post(
                    "/v1/query",
                    json={"question": rng.choice(QUESTIONS)},
                    headers={"Authorization": f"Bearer {victim}"},
                )
            except httpx.HTTPError as exc:
                out.errors.append(f"victim query: {type(exc).__name__}: {exc}")
                continue
            latencies.append(time.perf_counter() - started)
            if not response.is_success:
                out.errors.append(f"victim query -> {response.status_code}")

    async def upload(key: str, name: str, content: bytes, good: bool) -> None:
        try:
            response = await client.post(
                "/v1/documents",
                files=[("files", (name, content))],
                headers={"Authorization": f"Bearer {key}"},
            )
        except httpx.HTTPError as exc:
            out.errors.append(f"upload {name[:40]}: {type(exc).__name__}: {exc}")
            return
        if response.status_code >= 500:
            out.errors.append(f"upload {name[:40]} -> {response.status_code}")
        elif not response.is_success:
            out.refused += 1
        elif key == attacker:
            out.jobs.append(response.json()["id"])
        if response.is_success and good:
            code = name.removeprefix("locker-").removesuffix(".md")
            out.good.append((key, name, code, response.json()["id"]))

    async def attack() -> None:
        # The victim keeps asking until every hostile job has ended: the whole attack is
        # measured, not only its uploads.
        started = time.perf_counter()
        for name, content in worst:
            await upload(attacker, name, content, good=False)
        await upload(attacker, "locker-attacker01.md", document("attacker01"), good=True)
        headers = {"Authorization": f"Bearer {attacker}"}
        for job_id in out.jobs:
            while (await client.get(f"/v1/ingestions/{job_id}", headers=headers)).json()[
                "status"
            ] in ("queued", "running"):
                await asyncio.sleep(0.2)
        out.attack_seconds = time.perf_counter() - started

    worst = hostile_files()  # built first: building them blocks this event loop for seconds
    await ask(out.idle)
    attacking = asyncio.create_task(attack())
    await asyncio.sleep(1)  # the first hostile files are in the job queue
    await upload(victim, "locker-victim01.md", document("victim01"), good=True)
    await ask(out.attacked, until=attacking)
    await attacking
    return out


def print_hostile(hostile: Hostile, lost: list[str]) -> None:
    idle = sorted(x * 1000 for x in hostile.idle)
    attacked = sorted(x * 1000 for x in hostile.attacked)
    p95_ratio = percentile(attacked, 95) / percentile(idle, 95)
    print(
        "Hostile mix: tenant `default` uploads the worst files while `second` asks "
        f"({len(hostile.attacked)} questions over the {hostile.attack_seconds:.1f} s the attack's "
        "jobs took)"
    )
    print(
        f"  victim idle      p50 {percentile(idle, 50):7.1f} ms  p95 {percentile(idle, 95):7.1f} ms"
    )
    print(
        f"  victim attacked  p50 {percentile(attacked, 50):7.1f} ms  "
        f"p95 {percentile(attacked, 95):7.1f} ms   p95 {p95_ratio:.2f}x idle (aim: at most 3x)"
    )
    print(f"  hostile uploads refused with a 4xx: {hostile.refused}; errors: {len(hostile.errors)}")
    for error in hostile.errors[:10]:
        print(f"    {error}")
    print(f"  good uploads lost: {len(lost)} of {len(hostile.good)}")
    for problem in lost:
        print(f"    {problem}")


def line(kind: str, latencies: list[float], seconds: float) -> str:
    ms = sorted(x * 1000 for x in latencies)
    return (
        f"  {kind:<8} {len(ms):>5} req  {len(ms) / seconds:7.1f} req/s   "
        f"p50 {percentile(ms, 50):7.1f} ms  p95 {percentile(ms, 95):7.1f} ms  "
        f"p99 {percentile(ms, 99):7.1f} ms"
    )


async def main_async(args: argparse.Namespace) -> int:
    data_dir = Path(tempfile.mkdtemp(prefix="bench-load-"))
    port = free_port()
    store = KeyStore(data_dir / "keys.json")
    keys = [
        store.create(tenant, ("query", "ingest"))[1]
        for tenant in ("default", "default", "second", "second")
    ]
    server = start_server(data_dir, port, quiet=True)
    limits = httpx.Limits(max_connections=args.clients * 2)
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", timeout=120, limits=limits
        ) as client:
            await wait_ready(client, server)
            floor, floor_seconds = await baseline(client, args.requests // 2, args.clients)
            results = Results()
            seconds = await run(
                client, keys, args.requests, args.clients, args.time_limit, args.uploads, results
            )
            lost = await prove_nothing_lost(client, results)
            audit = (data_dir / "audit.jsonl").read_text("utf-8").splitlines()
            hostile, hostile_lost = None, []
            if args.hostile:
                hostile = await hostile_mix(client, keys[0], keys[2], queries=40)
                hostile_lost = await prove_nothing_lost(client, Results(uploads=hostile.good))
    finally:
        stop_started = time.monotonic()
        server.terminate()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        stop_seconds = time.monotonic() - stop_started
        shutil.rmtree(data_dir, ignore_errors=True)

    done = sum(len(v) for v in results.latencies.values())
    accepted = done - len([e for e in results.errors if "->" in e])
    events = [json.loads(x)["event"] for x in audit]
    load_events = sum(1 for e in events if e in ("query", "upload"))
    print(
        f"API load: {args.clients} clients, {done} requests in {seconds:.1f} s "
        f"({done / seconds:.1f} req/s), {len(results.uploads)} uploads accepted"
    )
    floor_p50 = percentile(sorted(x * 1000 for x in floor), 50)
    print(line("healthz", floor, floor_seconds) + "   (baseline: the HTTP floor)")
    for kind, latencies in sorted(results.latencies.items()):
        p50 = percentile(sorted(x * 1000 for x in latencies), 50)
        print(line(kind, latencies, seconds) + f"   p50 {p50 / floor_p50:6.1f}x baseline")
    print(f"  errors: {len(results.errors)}")
    for error in results.errors[:10]:
        print(f"    {error}")
    print(
        f"  uploads lost: {len(lost)} of {len(results.uploads)} "
        "(each checked: job succeeded, listed, retrieved by its own question)"
    )
    for problem in lost[:10]:
        print(f"    {problem}")
    audit_ok = load_events == accepted
    print(f"  audit log: {load_events} query/upload lines for {accepted} accepted requests")
    stopped = stop_seconds < 60
    print(
        f"  SIGTERM to exit: {stop_seconds:.1f} s"
        + ("" if stopped else " (did not stop within 60 s: killed)")
    )
    hostile_ok = stopped
    if hostile is not None:
        print_hostile(hostile, hostile_lost)
        hostile_ok = hostile_ok and not hostile.errors and not hostile_lost
    return 0 if not results.errors and not lost and audit_ok and hostile_ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="requests in the load phase")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    parser.add_argument("--time-limit", type=float, default=120.0, help="seconds, at most")
    parser.add_argument("--uploads", type=float, default=0.2, help="share of uploads (0..1)")
    parser.add_argument(
        "--hostile", action="store_true", help="then the hostile mix (see the docstring)"
    )
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
