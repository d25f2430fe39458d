"""How the embedding batch size trades ingestion memory against throughput.

The ingestion pipeline embeds min(RAG_EMBEDDING_BATCH_SIZE, RAG_UPSERT_BATCH_SIZE) chunks per
encoder call. The encoder pads each call to its longest text, and ONNX Runtime keeps the
largest activation buffers it ever needed, so peak memory follows the batch size. For each
batch size, a fresh process loads the local model, then embeds the same real chunks (Python
documentation, the service's Chunker, most near the 256-token limit): peak RSS above the
loaded model, and chunks per second.

    uv run python benchmarks/bench_embed_batch.py [--sizes 64,32,16,8] [--chunks 384]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def texts(count: int) -> list[str]:
    from bench_retrieval import corpus_pages
    from debian_docs import doc_root

    from {{ cookiecutter.package_name }}.ingest.chunk import Chunker
    from {{ cookiecutter.package_name }}.ingest.load import load_document

    root = doc_root("python3.11-doc")
    chunker = Chunker(200, 24, pack_blocks=True)
    found: list[str] = []
    for page in corpus_pages(root)[100:]:
        document = load_document(page, root, 50_000_000)
        found += [c.embedding_text() for c in chunker.chunk(document, tenant="t", corpus="c")]
        if len(found) >= count:
            break
    return sorted(found, key=len, reverse=True)[:count]  # the long ones: the worst case


def one(batch: int, count: int) -> dict[str, float]:
    from {{ cookiecutter.package_name }}.embeddings import build_dense_encoder
    from {{ cookiecutter.package_name }}.settings import Settings

    chunks = texts(count)
    dense = build_dense_encoder(Settings(_env_file=None, embedding_batch_size=batch))
    dense.embed_documents(["warm up"])
    loaded = peak_mib()
    started = time.perf_counter()
    for start in range(0, len(chunks), batch):
        dense.embed_documents(chunks[start : start + batch])
    seconds = time.perf_counter() - started
    return {"batch": batch, "above_model_mib": peak_mib() - loaded, "chunks_s": count / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="64,32,16,8")
    parser.add_argument("--chunks", type=int, default=384)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.chunks)))
        return
    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        done = subprocess.run(
            [sys.executable, __file__, "--one", str(size), "--chunks", str(args.chunks)],
            capture_output=True,
            text=True,
            check=True,
        )
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    base = rows[0]
    print(f"| batch | peak RSS above the model (MiB) | chunks/s | vs batch {base['batch']} |")
    print("|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['batch']} | {row['above_model_mib']:.0f} | {row['chunks_s']:.1f} | "
            f"{row['chunks_s'] / base['chunks_s']:.2f}x |"
        )


if __name__ == "__main__":
    main()
