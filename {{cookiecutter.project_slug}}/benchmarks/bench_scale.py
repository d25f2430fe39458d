"""Pilot scale on one machine: the service's own store, retriever and API at 2k, 20k and 100k
chunks, for each embedded engine.

Text is real: the chunks of Debian's python3.11-doc pages (the retrieval benchmark's corpus,
chunked by the service's Chunker), then windows of the Python standard library's sources to
go past what the docs hold. BM25 vectors are real for every chunk. Dense vectors are real
MiniLM embeddings for the first --embedded chunks; the rest reuse one of those vectors plus
Gaussian noise (cosine about 0.85 to it), because embedding 100k chunks takes an hour on two
cores. Queries are the retrieval benchmark's questions, embedded by the service at query time.

For each engine and size, a fresh process opens the store through build_services and reports:
open time, RSS the opened store adds, `Retriever.retrieve`, `POST /v1/retrieve` and
`POST /v1/query` p50/p95 (in-process ASGI client, API keys on), dense recall@10 of the
engine's dense leg against exact search in numpy, and what the extractive answer's sentence
vectors cost per question embedded as one padded batch (before) or length-sorted (now).
Upsert time and size on disk come from the writer. The last table is the figure: each
engine's largest size against its smallest.

Local mode (qdrant-client) is linear and slow to fill (about 34 s per 2k chunks), so by
default it runs at the smallest size only; --local-sizes extends it.

    uv run python benchmarks/bench_scale.py [--sizes 2000,20000,100000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from {{ cookiecutter.package_name }} import embeddings
from {{ cookiecutter.package_name }}.domain import Chunk, Point, SparseVector
from {{ cookiecutter.package_name }}.evals.metrics import percentile
from {{ cookiecutter.package_name }}.ingest.chunk import Chunker
from {{ cookiecutter.package_name }}.ingest.load import load_document
from {{ cookiecutter.package_name }}.settings import Settings
from {{ cookiecutter.package_name }}.store import open_store

sys.path.insert(0, str(Path(__file__).parent))
from bench_retrieval import corpus_pages, load_questions
from debian_docs import doc_root

PROJECT = Path(__file__).resolve().parents[1]
CACHE = PROJECT / ".cache" / "bench"
NOISE = 0.03  # per dimension: |noise| ~ 0.59 against a unit vector
QUERIES = 40
TENANT = "default"


def rss_mib() -> float:
    with open("/proc/self/status", encoding="utf-8") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def text_pool(needed: int) -> list[tuple[str, str]]:
    """(source, text) of real chunks: the Python docs, then standard library sources."""
    cached = CACHE / "scale_texts.json"
    pool: list[tuple[str, str]] = []
    if cached.exists():
        pool = [(str(a), str(b)) for a, b in json.loads(cached.read_text(encoding="utf-8"))]
    if len(pool) < needed:
        root = doc_root("python3.11-doc")
        chunker = Chunker(200, 24, pack_blocks=True)
        pool = []
        for page in corpus_pages(root):
            document = load_document(page, root, 50_000_000)
            pool += [
                (c.source, c.text)
                for c in chunker.chunk(document, tenant=TENANT, corpus="python-docs")
            ]
        stdlib = Path(os.__file__).parent
        for path in sorted(stdlib.rglob("*.py")):
            if len(pool) >= needed:
                break
            text = path.read_text(encoding="utf-8", errors="replace")
            source = "stdlib/" + path.relative_to(stdlib).as_posix()
            pool += [(source, text[i : i + 900]) for i in range(0, len(text) - 200, 900)]
        CACHE.mkdir(parents=True, exist_ok=True)
        cached.write_text(json.dumps(pool), encoding="utf-8")
    return pool[:needed]


def base_vectors(texts: list[str], count: int) -> Any:
    cached = CACHE / f"scale_dense_{count}.npy"
    if cached.exists():
        return np.load(cached)
    dense = embeddings.build_dense_encoder(Settings(_env_file=None))
    vectors = np.asarray(dense.embed_documents(texts[:count]), dtype=np.float32)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(cached, vectors)
    return vectors


def dense_for(n: int, base: Any, rng: np.random.Generator) -> Any:
    if n < len(base):
        return base[n]
    v = base[n % len(base)] + rng.normal(0, NOISE, base.shape[1])
    return (v / np.linalg.norm(v)).astype(np.float32)


def fill(engine: str, size: int, data_dir: Path, embedded: int) -> dict[str, Any]:
    """Write `size` chunks through the service's store; returns upsert time and disk size."""
    pool = text_pool(size)
    base = base_vectors([t for _, t in text_pool(embedded)], embedded)
    sparse = embeddings.build_sparse_encoder(Settings(_env_file=None))
    settings = Settings(_env_file=None, data_dir=data_dir, embedded_engine=engine)
    store = open_store(settings)
    dense_model = embeddings.build_dense_encoder(settings)
    store.ensure_collection(dense_model.model_id, dense_model.dimensions, sparse.model_id)
    rng = np.random.default_rng(0)
    matrix = np.zeros((size, base.shape[1]), dtype=np.float32)
    upsert_s = 0.0
    for start in range(0, size, 256):
        batch = pool[start : start + 256]
        weights = sparse.embed_documents([t for _, t in batch])
        points = []
        for offset, ((source, text), weight) in enumerate(zip(batch, weights, strict=True)):
            n = start + offset
            matrix[n] = dense_for(n, base, rng)
            chunk = Chunk(
                id=str(uuid.UUID(int=n + 1)),
                source=f"{source}#{n // 5000}",  # a document per 5k chunks at most per name
                index=n,
                text=text,
                title=source,
                section="",
                content_hash=str(n),
                doc_hash="v1",
                doc_chunks=1,
            )
            points.append(
                Point(
                    chunk=chunk,
                    dense=matrix[n].tolist(),
                    sparse=SparseVector(indices=weight.indices, values=weight.values),
                    corpus="scale",
                    tenant=TENANT,
                )
            )
        started = time.perf_counter()
        store.upsert(points)
        upsert_s += time.perf_counter() - started
    store.close()
    np.save(data_dir / "dense.npy", matrix)
    where = settings.edge_path if engine == "edge" else settings.qdrant_path
    disk = sum(f.stat().st_size for f in where.rglob("*") if f.is_file())
    return {"upsert_s": upsert_s, "disk_mib": disk / 2**20}


def measure(engine: str, data_dir: Path) -> dict[str, Any]:
    """In a fresh process: open through build_services, then time the service's paths."""
    from fastapi.testclient import TestClient

    from {{ cookiecutter.package_name }}.answer.sentences import (
        SentenceVectors,
        split_sentences,
    )
    from {{ cookiecutter.package_name }}.api import create_app
    from {{ cookiecutter.package_name }}.container import build_services
    from {{ cookiecutter.package_name }}.domain import Query
    from {{ cookiecutter.package_name }}.keys import KeyStore

    settings = Settings(
        _env_file=None, data_dir=data_dir, embedded_engine=engine, rate_limit_per_minute=0
    )
    dense = embeddings.build_dense_encoder(settings)
    sparse = embeddings.build_sparse_encoder(settings)
    dense.embed_query("warm up")
    before = rss_mib()
    started = time.perf_counter()
    services = build_services(settings, dense=dense, sparse=sparse)
    open_s = time.perf_counter() - started
    questions = [q.text for q in load_questions()][:QUERIES]
    services.retriever.retrieve(Query(text=questions[0], top_k=5, tenant=TENANT))
    store_rss = rss_mib() - before

    retrieve_ms = []
    for question in questions:
        t = time.perf_counter()
        services.retriever.retrieve(Query(text=question, top_k=5, tenant=TENANT))
        retrieve_ms.append((time.perf_counter() - t) * 1000)

    # Dense recall@10: the engine's dense leg against exact cosine over every stored vector.
    matrix = np.load(data_dir / "dense.npy")
    recalls = []
    for question in questions[:20]:
        q = np.asarray(dense.embed_query(question), dtype=np.float32)
        exact = {str(uuid.UUID(int=int(i) + 1)) for i in np.argsort(-(matrix @ q))[:10]}
        found = services.store.search_one("dense", q.tolist(), tenant=TENANT, top_k=10)
        recalls.append(len(exact & {h.chunk_id for h in found}) / 10)

    # The answer path's sentence vectors: one padded batch (before) against length-sorted
    # small batches (SentenceVectors, a fresh cache each time so no sentence is reused).
    one_batch_ms, sorted_ms = [], []
    for question in questions:
        hits = services.retriever.retrieve(Query(text=question, top_k=5, tenant=TENANT))
        sentences = list(dict.fromkeys(s for h in hits for s in split_sentences(h.text)))
        if not sentences:
            continue
        t = time.perf_counter()
        dense.embed_documents(sentences)
        one_batch_ms.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        SentenceVectors(dense).vectors(sentences)
        sorted_ms.append((time.perf_counter() - t) * 1000)

    _, key = KeyStore(settings.keys_path).create(tenant=TENANT, scopes=("query",))
    headers = {"Authorization": f"Bearer {key}"}
    api: dict[str, list[float]] = {"retrieve": [], "query": []}
    with TestClient(create_app(services=services)) as client:
        for route, field in (("retrieve", "query"), ("query", "question")):
            client.post(f"/v1/{route}", json={field: questions[0]}, headers=headers)
            for question in questions:
                t = time.perf_counter()
                response = client.post(f"/v1/{route}", json={field: question}, headers=headers)
                api[route].append((time.perf_counter() - t) * 1000)
                response.raise_for_status()
    services.close()

    def p(values: list[float], q: float) -> float:
        return percentile(values, q)

    return {
        "open_s": open_s,
        "store_rss_mib": store_rss,
        "retrieve_p50": p(retrieve_ms, 50),
        "retrieve_p95": p(retrieve_ms, 95),
        "api_retrieve_p50": p(api["retrieve"], 50),
        "api_retrieve_p95": p(api["retrieve"], 95),
        "api_query_p50": p(api["query"], 50),
        "api_query_p95": p(api["query"], 95),
        "dense_recall_at_10": sum(recalls) / len(recalls),
        "sentences_one_batch_p50": p(one_batch_ms, 50),
        "sentences_sorted_p50": p(sorted_ms, 50),
        "sentences_one_batch_p95": p(one_batch_ms, 95),
        "sentences_sorted_p95": p(sorted_ms, 95),
    }


COLUMNS = (
    ("upsert_s", "upsert s", "{:.1f}"),
    ("disk_mib", "disk MiB", "{:.0f}"),
    ("open_s", "open s", "{:.2f}"),
    ("store_rss_mib", "store RSS MiB", "{:+.0f}"),
    ("retrieve_p50", "retrieve p50", "{:.0f}"),
    ("retrieve_p95", "p95", "{:.0f}"),
    ("api_retrieve_p50", "/v1/retrieve p50", "{:.0f}"),
    ("api_retrieve_p95", "p95", "{:.0f}"),
    ("api_query_p50", "/v1/query p50", "{:.0f}"),
    ("api_query_p95", "p95", "{:.0f}"),
    ("dense_recall_at_10", "recall@10", "{:.3f}"),
    ("sentences_one_batch_p95", "answer sentences p95, one batch", "{:.0f}"),
    ("sentences_sorted_p95", "sorted batches", "{:.0f}"),
)


def table(rows: list[dict[str, Any]]) -> str:
    header = "| engine | chunks | " + " | ".join(label for _, label, _ in COLUMNS) + " |"
    lines = [header, "|" + "---|" * (len(COLUMNS) + 2)]
    for row in rows:
        cells = [fmt.format(row[key]) for key, _, fmt in COLUMNS]
        lines.append(f"| {row['engine']} | {row['size']:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ratios(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| engine | largest / smallest | retrieve p50 | p95 | /v1/retrieve p95 | "
        "/v1/query p95 | upsert s per chunk |",
        "|---|---|---|---|---|---|---|",
    ]
    for engine in sorted({r["engine"] for r in rows}):
        mine = sorted((r for r in rows if r["engine"] == engine), key=lambda r: r["size"])
        if len(mine) < 2:
            continue
        small, large = mine[0], mine[-1]

        def x(key: str, small: dict[str, Any] = small, large: dict[str, Any] = large) -> str:
            return f"{large[key] / small[key]:.2f}x"

        per_chunk = (large["upsert_s"] / large["size"]) / (small["upsert_s"] / small["size"])
        lines.append(
            f"| {engine} | {large['size']:,} / {small['size']:,} | {x('retrieve_p50')} | "
            f"{x('retrieve_p95')} | {x('api_retrieve_p95')} | {x('api_query_p95')} | "
            f"{per_chunk:.2f}x |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2000,20000,100000")
    parser.add_argument("--local-sizes", default="2000")
    parser.add_argument("--embedded", type=int, default=2000, help="chunks embedded for real")
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--measure", nargs=2, metavar=("ENGINE", "DATA_DIR"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure[0], Path(args.measure[1]))))
        return
    plan = [("edge", int(s)) for s in args.sizes.split(",")]
    plan += [("local", int(s)) for s in args.local_sizes.split(",") if s]
    rows = []
    workdir = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    try:
        for engine, size in plan:
            data_dir = workdir / f"{engine}-{size}"
            print(f"{engine} {size:,}: filling ...", file=sys.stderr, flush=True)
            row: dict[str, Any] = {"engine": engine, "size": size}
            row |= fill(engine, size, data_dir, min(args.embedded, size))
            print(f"{engine} {size:,}: measuring ...", file=sys.stderr, flush=True)
            done = subprocess.run(
                [sys.executable, __file__, "--measure", engine, str(data_dir)],
                capture_output=True,
                text=True,
                check=True,
            )
            row |= json.loads(done.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(table([row]).splitlines()[-1], file=sys.stderr, flush=True)
            shutil.rmtree(data_dir, ignore_errors=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"Latencies in ms; machine load average {os.getloadavg()[0]:.1f} at the end.")
    print(table(rows))
    print()
    print(ratios(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
