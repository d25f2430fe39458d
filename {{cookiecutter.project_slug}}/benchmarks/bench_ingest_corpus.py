"""Ingestion over a real public documentation set: throughput, the embedder's share, and
peak memory at two corpus sizes.

The corpus is the Python 3.11 documentation (HTML, from the Debian package python3.11-doc,
fetched and unpacked by benchmarks/debian_docs.py). For each size, a fresh process:
  1. loads the models (RSS "after load" is the floor every run pays),
  2. ingests the first N pages (sorted paths) into a fresh embedded store: documents/s,
     chunks/s, peak RSS,
  3. embeds the very same chunk texts with the encoders alone (dense + BM25, same batch size):
     the raw embedder's time. pipeline/raw throughput is the figure (aim: >= 0.8, since
     embedding should dominate parsing, chunking and writing).
Peak RSS is read before step 3 (which holds every chunk text at once, unlike the pipeline).
It should not grow with N: the pipeline streams files and embeds and writes in batches.

    uv run python benchmarks/bench_ingest_corpus.py [--sizes 60 240] [--package python3.11-doc]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import TracerProvider

from {{ cookiecutter.package_name }}.container import build_services
from {{ cookiecutter.package_name }}.ingest.load import SkippedFileError, discover
from {{ cookiecutter.package_name }}.settings import Settings

sys.path.insert(0, str(Path(__file__).resolve().parent))
from debian_docs import CorpusUnavailableError, doc_root, package_version


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def measure(package: str, size: int) -> dict[str, Any]:
    """One size, in this process (the parent runs each size in a process of its own)."""
    pages = [p for p in discover(doc_root(package)) if p.suffix == ".html"][:size]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        corpus = work / "corpus"
        source_root = doc_root(package)
        for page in pages:
            target = corpus / page.relative_to(source_root)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(page, target)
        models = Settings().models_path
        settings = Settings(_env_file=None, data_dir=work / "data", model_dir=models)
        services = build_services(settings, tracer_provider=TracerProvider())
        try:
            services.dense.embed_documents(["warm up"])
            services.sparse.embed_documents(["warm up"])
            rss_loaded = peak_rss_mib()

            started = time.perf_counter()
            report = services.ingestor.ingest(corpus, "bench")
            pipeline_s = time.perf_counter() - started
            rss_peak = peak_rss_mib()
            chunks = sum(outcome.chunks for outcome in report.files)

            # The same chunk texts, through the encoders alone.
            texts: list[str] = []
            for path in discover(corpus):
                try:
                    document = services.ingestor.load(path, corpus)
                except SkippedFileError:  # skipped by the pipeline too
                    continue
                texts.extend(c.embedding_text() for c in services.ingestor.chunk(document, "raw"))
            batch = settings.upsert_batch_size
            started = time.perf_counter()
            for start in range(0, len(texts), batch):
                services.dense.embed_documents(texts[start : start + batch])
                services.sparse.embed_documents(texts[start : start + batch])
            raw_s = time.perf_counter() - started
        finally:
            services.close()
    return {
        "pages": len(pages),
        "counts": report.counts,
        "chunks": chunks,
        "raw_chunks": len(texts),
        "pipeline_s": pipeline_s,
        "raw_s": raw_s,
        "docs_per_s": len(pages) / pipeline_s,
        "chunks_per_s": chunks / pipeline_s,
        "raw_chunks_per_s": len(texts) / raw_s,
        "pipeline_over_raw": (chunks / pipeline_s) / (len(texts) / raw_s),
        "rss_after_load_mib": rss_loaded,
        "rss_peak_ingest_mib": rss_peak,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", default="python3.11-doc")
    parser.add_argument("--sizes", type=int, nargs="+", default=[60, 240])
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # child: measure one size
    args = parser.parse_args()
    try:
        root = doc_root(args.package)
    except CorpusUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.one is not None:
        print(json.dumps(measure(args.package, args.one)))
        return 0

    total = sum(1 for p in discover(root) if p.suffix == ".html")
    print(f"corpus: {args.package} {package_version(args.package)} ({total} HTML pages)")
    rows = []
    for size in args.sizes:
        done = subprocess.run(
            [sys.executable, __file__, "--package", args.package, "--one", str(size)],
            capture_output=True,
            text=True,
            check=True,
        )
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    header = (
        f"{'pages':>5} {'chunks':>7} {'skipped':>7} {'docs/s':>7} {'chunks/s':>8} "
        f"{'raw chunks/s':>12} {'pipeline/raw':>12} {'RSS load MiB':>12} {'RSS peak MiB':>12}"
    )
    print(header)
    for r in rows:
        print(
            f"{r['pages']:>5} {r['chunks']:>7} {r['counts']['skipped']:>7} "
            f"{r['docs_per_s']:>7.1f} {r['chunks_per_s']:>8.1f} {r['raw_chunks_per_s']:>12.1f} "
            f"{r['pipeline_over_raw']:>12.2f} {r['rss_after_load_mib']:>12.0f} "
            f"{r['rss_peak_ingest_mib']:>12.0f}"
        )
    small, large = rows[0], rows[-1]
    growth = large["rss_peak_ingest_mib"] - large["rss_after_load_mib"]
    growth_small = small["rss_peak_ingest_mib"] - small["rss_after_load_mib"]
    print(
        f"peak RSS above the loaded models: {growth_small:.0f} MiB at {small['pages']} pages, "
        f"{growth:.0f} MiB at {large['pages']} pages "
        f"({large['chunks'] / max(small['chunks'], 1):.1f}x the chunks)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
