"""Ingestion and retrieval throughput of the service against the raw libraries it wraps.

Runs, in one process and on the same data:
  service ingest   Ingestor.ingest over N copies of the sample corpus (load, chunk, embed, upsert)
  raw ingest       the same chunk texts through FastEmbed (dense + BM25) and QdrantClient.upsert
                   (chunking is not in the baseline: the gap includes parsing and chunking)
  service retrieve Retriever.retrieve for the golden questions, repeated
  raw retrieve     the same queries as raw FastEmbed query embeddings + QdrantClient.query_points
Service and raw queries alternate in one loop, so both see the same machine state.
The ratios (service / raw) are the figures to watch; absolute numbers depend on the machine.

    uv run python benchmarks/bench_ingest_retrieve.py [--copies 4] [--rounds 4]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from fastembed import SparseTextEmbedding, TextEmbedding
from opentelemetry.sdk.trace import TracerProvider
from qdrant_client import QdrantClient, models

from {{ cookiecutter.package_name }}.container import build_services
from {{ cookiecutter.package_name }}.domain import Query
from {{ cookiecutter.package_name }}.embeddings import LOCAL_MODEL_ID, _english_stopwords
from {{ cookiecutter.package_name }}.evals.metrics import percentile
from {{ cookiecutter.package_name }}.ingest.chunk import Chunker
from {{ cookiecutter.package_name }}.ingest.load import discover, load_document
from {{ cookiecutter.package_name }}.settings import Settings

PROJECT = Path(__file__).resolve().parents[1]


def make_corpus(target: Path, copies: int) -> Path:
    for n in range(copies):
        shutil.copytree(PROJECT / "data" / "sample", target / f"copy{n}")
    return target


class RawPipeline:
    """The libraries called directly, with the same models and collection schema."""

    def __init__(self, settings: Settings, workdir: Path) -> None:
        self.dense = TextEmbedding(
            LOCAL_MODEL_ID, specific_model_path=str(settings.models_path / "all-minilm-l6-v2-int8")
        )
        self.sparse = SparseTextEmbedding(
            "Qdrant/bm25",
            specific_model_path=str(settings.models_path / "bm25"),
            stopwords=_english_stopwords(),
        )
        self.client = QdrantClient(path=str(workdir / "raw-qdrant"))
        self.client.create_collection(
            "raw",
            vectors_config={
                "dense": models.VectorParams(size=384, distance=models.Distance.COSINE)
            },
            sparse_vectors_config={"bm25": models.SparseVectorParams(modifier=models.Modifier.IDF)},
        )

    def ingest(self, texts: list[str], batch: int, embed_batch: int) -> float:
        started = time.perf_counter()
        for start in range(0, len(texts), batch):
            part = texts[start : start + batch]
            vectors = list(self.dense.embed(part, batch_size=embed_batch))
            weights = list(self.sparse.embed(part))
            self.client.upsert(
                "raw",
                points=[
                    models.PointStruct(
                        id=start + i,
                        vector={"dense": v.tolist(), "bm25": self._sparse(w)},
                        payload={"text": part[i]},
                    )
                    for i, (v, w) in enumerate(zip(vectors, weights, strict=True))
                ],
            )
        return time.perf_counter() - started

    @staticmethod
    def _sparse(weights: Any) -> models.SparseVector:
        return models.SparseVector(indices=weights.indices.tolist(), values=weights.values.tolist())

    def retrieve(self, question: str, top_k: int, prefetch: int) -> None:
        vector = next(iter(self.dense.query_embed(question))).tolist()
        weights = next(iter(self.sparse.query_embed(question)))
        self.client.query_points(
            "raw",
            prefetch=[
                models.Prefetch(query=vector, using="dense", limit=prefetch),
                models.Prefetch(query=self._sparse(weights), using="bm25", limit=prefetch),
            ],
            query=models.FusionQuery(fusion=models.Fusion.RRF),
            limit=top_k,
            with_payload=True,
        )


def chunk_texts(settings: Settings, corpus: Path) -> list[str]:
    chunker = Chunker(settings.chunk_size, settings.chunk_overlap)
    return [
        chunk.embedding_text()
        for path in discover(corpus)
        for chunk in chunker.chunk(
            load_document(path, corpus, settings.max_file_bytes), tenant="default", corpus="raw"
        )
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=4, help="copies of the sample corpus")
    parser.add_argument("--rounds", type=int, default=4, help="passes over the golden questions")
    args = parser.parse_args()

    golden = PROJECT / "evals" / "golden.jsonl"
    lines = golden.read_text(encoding="utf-8").splitlines()
    questions = [json.loads(line)["question"] for line in lines if line.strip()] * args.rounds

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        corpus = make_corpus(workdir / "corpus", args.copies)
        settings = Settings(_env_file=None, data_dir=workdir / "data", model_dir=workdir / "models")
        services = build_services(settings, tracer_provider=TracerProvider())
        raw = RawPipeline(settings, workdir)
        try:
            started = time.perf_counter()
            report = services.ingestor.ingest(corpus)
            service_ingest_s = time.perf_counter() - started
            chunks = services.store.count()
            texts = chunk_texts(settings, corpus)
            raw_chunks = len(texts)
            raw_ingest_s = raw.ingest(
                texts, settings.upsert_batch_size, settings.embedding_batch_size
            )
            top_k, prefetch = settings.default_top_k, settings.prefetch_limit
            service_latencies, raw_latencies = [], []
            for question in questions:
                started = time.perf_counter()
                services.retriever.retrieve(Query(text=question, top_k=top_k, tenant="default"))
                service_latencies.append((time.perf_counter() - started) * 1000)
                started = time.perf_counter()
                raw.retrieve(question, top_k, prefetch)
                raw_latencies.append((time.perf_counter() - started) * 1000)
        finally:
            services.close()
            raw.client.close()

    files = report.counts["added"]
    service_rate, raw_rate = chunks / service_ingest_s, raw_chunks / raw_ingest_s
    print(
        f"corpus: {files} files, {chunks} chunks (raw baseline: {raw_chunks} chunks); "
        f"{len(questions)} queries, top_k={top_k}"
    )
    print(f"{'measure':<22}{'service':>12}{'raw libs':>12}{'ratio':>9}")
    print(
        f"{'ingest chunks/s':<22}{service_rate:>12.1f}{raw_rate:>12.1f}"
        f"{service_rate / raw_rate:>9.2f}"
    )
    for label, q in (("retrieve p50 ms", 50), ("retrieve p95 ms", 95)):
        ours, theirs = percentile(service_latencies, q), percentile(raw_latencies, q)
        print(f"{label:<22}{ours:>12.2f}{theirs:>12.2f}{ours / theirs:>9.2f}")
    print(
        f"{'retrieve mean ms':<22}{statistics.fmean(service_latencies):>12.2f}"
        f"{statistics.fmean(raw_latencies):>12.2f}"
    )


if __name__ == "__main__":
    main()
