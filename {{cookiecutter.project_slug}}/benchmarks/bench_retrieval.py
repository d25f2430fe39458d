"""Retrieval quality and refusal on a public corpus: the Python 3.11 documentation.

The corpus comes from Debian's `python3.11-doc` package (fetched by benchmarks/debian_docs.py
into .cache/corpora/). A fixed subset is indexed so a run fits on two CPU cores: all of
tutorial/, faq/ and howto/, plus the LIBRARY_PAGES below (every page holding a gold answer is
in it, and the rest are distractors). Questions and their gold pages are in
benchmarks/retrieval_questions.jsonl (kinds: key_terms, non_expert, value, unanswerable).

One run, one table: hit@1/5/10, MRR@10 and nDCG@10 (page level: a page counts once, at the
rank of its best chunk) per question kind, for BM25 alone, dense alone, the hybrid as it
shipped before this benchmark (RRF, 30 candidates per prefetch) and the variants measured
against it (fusion, candidates per prefetch, chunk size, contextual chunk headers); refusal
precision/recall on the unanswerable questions; retrieve latency p50/p95 through Retriever.

Dense vectors are cached by text in .cache/bench/: a first run embeds ~12k chunks (about
10 minutes on two free cores), later runs only what changed (about 5 minutes in all).

    uv run python benchmarks/bench_retrieval.py [--json out.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from opentelemetry.sdk.trace import TracerProvider

from {{ cookiecutter.package_name }}.answer import ExtractiveAnswerer
from {{ cookiecutter.package_name }}.domain import Chunk, Document, Hit, Point, Query
from {{ cookiecutter.package_name }}.embeddings import (
    DenseEncoder,
    SparseEncoder,
    build_dense_encoder,
    build_sparse_encoder,
)
from {{ cookiecutter.package_name }}.evals.metrics import percentile
from {{ cookiecutter.package_name }}.ingest.chunk import Chunker
from {{ cookiecutter.package_name }}.ingest.load import load_document
from {{ cookiecutter.package_name }}.refusal import RefusalPolicy
from {{ cookiecutter.package_name }}.retrieve import Retriever
from {{ cookiecutter.package_name }}.settings import Settings
from {{ cookiecutter.package_name }}.store import DENSE, SPARSE, QdrantStore

sys.path.insert(0, str(Path(__file__).resolve().parent))
from debian_docs import doc_root, package_version

HERE = Path(__file__).resolve().parent
QUESTIONS = HERE / "retrieval_questions.jsonl"
CACHE = HERE.parent / ".cache" / "bench"
SECTIONS = ("tutorial", "faq", "howto")
LIBRARY_PAGES = [
    "pathlib",
    "json",
    "csv",
    "random",
    "venv",
    "shutil",
    "tempfile",
    "os.path",
    "time",
    "math",
    "statistics",
    "timeit",
    "zipfile",
    "sqlite3",
    "functools",
]
KINDS = ("key_terms", "non_expert", "value")
RANKED = 10  # pages scored per question
CANDIDATES = 30  # chunks fetched per question before pages are deduplicated


@dataclass(frozen=True)
class Question:
    id: str
    kind: str
    text: str
    gold: tuple[str, ...]


def load_questions(path: Path = QUESTIONS) -> list[Question]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    return [Question(r["id"], r["kind"], r["question"], tuple(r["gold"])) for r in rows]


def corpus_pages(root: Path) -> list[Path]:
    pages = [p for section in SECTIONS for p in sorted((root / section).glob("*.html"))]
    return pages + [root / "library" / f"{name}.html" for name in LIBRARY_PAGES]


# --- metrics -----------------------------------------------------------------------------
def ranked_pages(hits: Sequence[Hit]) -> list[str]:
    pages: list[str] = []
    for hit in hits:
        if hit.source not in pages:
            pages.append(hit.source)
    return pages[:RANKED]


@dataclass
class Scores:
    hit1: float = 0.0
    hit5: float = 0.0
    hit10: float = 0.0
    mrr: float = 0.0
    ndcg: float = 0.0
    n: int = 0

    def add(self, pages: list[str], gold: tuple[str, ...]) -> None:
        ranks = [i for i, page in enumerate(pages, start=1) if page in gold]
        first = ranks[0] if ranks else None
        self.n += 1
        self.hit1 += first is not None and first <= 1
        self.hit5 += first is not None and first <= 5
        self.hit10 += first is not None and first <= 10
        self.mrr += 1 / first if first else 0.0
        dcg = sum(1 / math.log2(r + 1) for r in ranks)
        ideal = sum(1 / math.log2(r + 1) for r in range(1, min(len(gold), RANKED) + 1))
        self.ndcg += dcg / ideal

    def row(self) -> list[float]:
        n = max(self.n, 1)
        return [100 * v / n for v in (self.hit1, self.hit5, self.hit10, self.mrr, self.ndcg)]


# --- indexing with an embedding cache ------------------------------------------------------
class CachedDense:
    """The service's dense encoder, with vectors remembered by text across runs."""

    def __init__(self, inner: DenseEncoder, path: Path) -> None:
        self.inner = inner
        self.model_id = inner.model_id
        self.path = path
        self.vectors: dict[str, list[float]] = {}
        if path.is_file():
            with np.load(path) as data:
                self.vectors = dict(
                    zip(data["keys"].tolist(), data["vectors"].tolist(), strict=True)
                )
        self.embedded = 0

    @property
    def dimensions(self) -> int:
        return self.inner.dimensions

    @staticmethod
    def _key(text: str) -> str:
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        missing = list(dict.fromkeys(t for t in texts if self._key(t) not in self.vectors))
        if missing:
            for text, vector in zip(missing, self.inner.embed_documents(missing), strict=True):
                self.vectors[self._key(text)] = vector
            self.embedded += len(missing)
        return [self.vectors[self._key(t)] for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self.inner.embed_query(text)

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        keys = np.array(list(self.vectors))
        np.savez(
            self.path, keys=keys, vectors=np.array(list(self.vectors.values()), dtype=np.float32)
        )


@dataclass
class Index:
    name: str
    store: QdrantStore
    chunks: int


def build_index(
    name: str,
    docs: list[Document],
    chunker: Chunker,
    dense: CachedDense,
    sparse: SparseEncoder,
    workdir: Path,
    embed_text: Callable[[Chunk], str],
) -> Index:
    settings = Settings(data_dir=workdir / name, collection="bench")
    store = QdrantStore(settings)
    store.ensure_collection(dense.model_id, dense.dimensions, sparse.model_id)
    chunks = [c for d in docs for c in chunker.chunk(d, "python-docs")]
    for start in range(0, len(chunks), 256):
        batch = chunks[start : start + 256]
        texts = [embed_text(c) for c in batch]
        vectors = dense.embed_documents(texts)
        weights = sparse.embed_documents(texts)
        store.upsert(
            [
                Point(chunk=c, dense=d, sparse=s, corpus="python-docs")
                for c, d, s in zip(batch, vectors, weights, strict=True)
            ]
        )
    dense.save()
    return Index(name, store, len(chunks))


# --- runs ----------------------------------------------------------------------------------
@dataclass
class Result:
    label: str
    by_kind: dict[str, Scores] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    refusal: tuple[int, int] | None = None  # (unanswerable refused, answerable refused)
    evidence: list[dict[str, object]] = field(default_factory=list)  # per question, for tuning

    def overall(self) -> Scores:
        total = Scores()
        for s in self.by_kind.values():
            for name in ("hit1", "hit5", "hit10", "mrr", "ndcg", "n"):
                setattr(total, name, getattr(total, name) + getattr(s, name))
        return total


def run(
    label: str,
    questions: list[Question],
    search: Callable[[Question], list[Hit]],
    answerer: ExtractiveAnswerer | None = None,
    top_k: int = 5,
) -> Result:
    """Score one variant; with an answerer, also count its refusals on the top_k hits."""
    result = Result(label, {kind: Scores() for kind in KINDS})
    refused_un = refused_ans = 0
    for q in questions:
        started = time.perf_counter()
        hits = search(q)
        result.latencies.append(time.perf_counter() - started)
        if q.kind != "unanswerable":
            result.by_kind[q.kind].add(ranked_pages(hits), q.gold)
        if answerer is None:
            continue
        result.evidence.append(
            {
                "id": q.id,
                "kind": q.kind,
                "hits": [(h.dense_score, h.dense_rank, h.sparse_rank) for h in hits[:top_k]],
                "unmatched": hits[0].unmatched_share if hits else None,
            }
        )
        if answerer.answer(q.text, hits[:top_k]).refused:
            if q.kind == "unanswerable":
                refused_un += 1
            else:
                refused_ans += 1
    if answerer is not None:
        result.refusal = (refused_un, refused_ans)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--json", type=Path, help="also write the table as JSON here")
    args = parser.parse_args()

    root = doc_root("python3.11-doc")
    questions = load_questions()
    answerable = [q for q in questions if q.kind != "unanswerable"]
    pages = corpus_pages(root)
    sources = {p.relative_to(root).as_posix() for p in pages}
    missing = sorted({g for q in questions for g in q.gold} - sources)
    if missing:
        raise SystemExit(
            f"Gold pages outside the indexed subset: {missing}. Fix the questions file."
        )
    docs = [load_document(p, root, 50_000_000) for p in pages]
    print(
        f"corpus: python3.11-doc {package_version('python3.11-doc')}, {len(docs)} pages; "
        f"{len(questions)} questions ({len(answerable)} answerable)",
        flush=True,
    )

    shipped = Settings()
    dense = CachedDense(build_dense_encoder(shipped), CACHE / "dense-minilm.npz")
    sparse = build_sparse_encoder(Settings(data_dir=CACHE / "models"))
    tracer = TracerProvider().get_tracer("bench")
    policy = RefusalPolicy.from_settings(shipped)
    # The extractive answerer as it shipped before (sentence cosine only) and as it ships now.
    answerer_before = ExtractiveAnswerer(
        dense, tracer, shipped.answer_min_similarity, shipped.answer_max_sentences
    )
    answerer_now = ExtractiveAnswerer(
        dense, tracer, shipped.answer_min_similarity, shipped.answer_max_sentences, refusal=policy
    )

    # name -> (chunker, what gets embedded). "s": sentence splitting only (before), "b": whole
    # blocks packed (structure-aware); the number is chunk_size; nohdr: no contextual header.
    chunkings: dict[str, tuple[Chunker, Callable[[Chunk], str]]] = {
        "s200": (Chunker(200, 24, pack_blocks=False), Chunk.embedding_text),
        "s200-nohdr": (Chunker(200, 24, pack_blocks=False), lambda c: c.text),
        "s128": (Chunker(128, 16, pack_blocks=False), Chunk.embedding_text),
        "b200": (Chunker(200, 24, pack_blocks=True), Chunk.embedding_text),
    }
    ship = f"{'b' if shipped.chunk_pack_blocks else 's'}{shipped.chunk_size}"
    if ship not in chunkings:
        chunkings[ship] = (
            Chunker(shipped.chunk_size, shipped.chunk_overlap, shipped.chunk_pack_blocks),
            Chunk.embedding_text,
        )
    results: list[Result] = []
    with tempfile.TemporaryDirectory() as tmp:
        indexes: dict[str, Index] = {}
        for name, (chunker, embed_text) in chunkings.items():
            started = time.perf_counter()
            indexes[name] = build_index(name, docs, chunker, dense, sparse, Path(tmp), embed_text)
            print(
                f"index {name}: {indexes[name].chunks} chunks in "
                f"{time.perf_counter() - started:.0f}s ({dense.embedded} embedded so far)",
                flush=True,
            )

        def retriever(name: str, **kwargs: object) -> Callable[[Question], list[Hit]]:
            r = Retriever(indexes[name].store, dense, sparse, tracer, **kwargs)  # type: ignore[arg-type]
            return lambda q: r.retrieve(Query(q.text, CANDIDATES))

        def alone(name: str, using: str) -> Callable[[Question], list[Hit]]:
            def search(q: Question) -> list[Hit]:
                vector = dense.embed_query(q.text) if using == DENSE else sparse.embed_query(q.text)
                return indexes[name].store.search_one(using, vector, CANDIDATES)

            return search

        plans: list[tuple[str, Callable[[Question], list[Hit]], ExtractiveAnswerer | None]] = [
            ("bm25 alone [s200]", alone("s200", SPARSE), None),
            ("dense alone [s200]", alone("s200", DENSE), None),
            (
                "BEFORE: hybrid rrf p30 [s200]",
                retriever("s200", prefetch_limit=30),
                answerer_before,
            ),
            ("hybrid dbsf p30 [s200]", retriever("s200", prefetch_limit=30, fusion="dbsf"), None),
            ("hybrid rrf p30 [s200-nohdr]", retriever("s200-nohdr", prefetch_limit=30), None),
            ("hybrid rrf p30 [s128]", retriever("s128", prefetch_limit=30), None),
            ("hybrid rrf p30 [b200]", retriever("b200", prefetch_limit=30), None),
            (f"bm25 alone [{ship}]", alone(ship, SPARSE), None),
            (f"dense alone [{ship}]", alone(ship, DENSE), None),
            (f"hybrid rrf p10 [{ship}]", retriever(ship, prefetch_limit=10), None),
            (f"hybrid rrf p100 [{ship}]", retriever(ship, prefetch_limit=100), None),
            (f"hybrid dbsf p30 [{ship}]", retriever(ship, prefetch_limit=30, fusion="dbsf"), None),
            (
                f"SHIPPED: hybrid {shipped.fusion} p{shipped.prefetch_limit} + refusal evidence "
                f"[{ship}]",
                retriever(
                    ship,
                    prefetch_limit=shipped.prefetch_limit,
                    fusion=shipped.fusion,
                    evidence_limit=shipped.refusal_evidence_limit,
                ),
                answerer_now,
            ),
        ]
        # When the shipped index is one of the variants above, its rows would repeat them.
        unique: dict[str, tuple[str, Callable[[Question], list[Hit]], ExtractiveAnswerer | None]]
        unique = {}
        for plan in plans:
            unique.setdefault(plan[0], plan)
        plans = list(unique.values())
        for _ in range(2):  # warm-up: the first queries load ONNX sessions and page caches
            for _label, search, _answerer in plans:
                search(questions[0])
        for label, search, answerer in plans:
            results.append(run(label, questions, search, answerer))
            print(f"  ran {label}", flush=True)
        for index in indexes.values():
            index.store.close()

    print_table(results, len(questions) - len(answerable), len(answerable))
    print_bar(results, len(questions) - len(answerable), len(answerable))
    if args.json:
        args.json.write_text(json.dumps([_as_json(r) for r in results], indent=2), encoding="utf-8")


def _as_json(result: Result) -> dict[str, object]:
    names = ["hit@1", "hit@5", "hit@10", "mrr@10", "ndcg@10"]
    return {
        "label": result.label,
        "overall": dict(zip(names, result.overall().row(), strict=True)),
        **{k: dict(zip(names, s.row(), strict=True)) for k, s in result.by_kind.items()},
        "p50_ms": 1000 * percentile(result.latencies, 50),
        "p95_ms": 1000 * percentile(result.latencies, 95),
        "refusal": result.refusal,
        "evidence": result.evidence,
    }


def print_table(results: list[Result], unanswerable: int, answerable: int) -> None:
    header = (
        "| variant | hit@1 | hit@5 | hit@10 | MRR@10 | nDCG@10 | hit@5 key_terms "
        "| hit@5 non_expert | hit@5 value | p50 ms | p95 ms | refused unanswerable "
        "| refused answerable |"
    )
    print()
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for r in results:
        overall = r.overall().row()
        kinds = [r.by_kind[k].row()[1] for k in KINDS]
        refusal = (
            [f"{r.refusal[0]}/{unanswerable}", f"{r.refusal[1]}/{answerable}"]
            if r.refusal
            else ["-", "-"]
        )
        cells = [f"{v:.1f}" for v in overall + kinds] + [
            f"{1000 * percentile(r.latencies, 50):.1f}",
            f"{1000 * percentile(r.latencies, 95):.1f}",
            *refusal,
        ]
        print(f"| {r.label} | " + " | ".join(cells) + " |")
    print()
    print("Per kind (hit@1 / hit@5 / hit@10 / MRR@10 / nDCG@10):")
    for r in results:
        parts = [f"{k}: " + " / ".join(f"{v:.0f}" for v in r.by_kind[k].row()) for k in KINDS]
        print(f"  {r.label}: " + "; ".join(parts))


def print_bar(results: list[Result], unanswerable: int, answerable: int) -> None:
    """The issue's bar, checked on this run: shipped vs the best single retriever on the same
    index, refusal counts, and latency against the hybrid as it was."""
    shipped = next(r for r in results if r.label.startswith("SHIPPED"))
    before = next(r for r in results if r.label.startswith("BEFORE"))
    index = shipped.label.rsplit("[", 1)[1]
    singles = [r for r in results if "alone" in r.label and r.label.endswith(f"[{index}")]

    def hit5(r: Result, kind: str | None = None) -> float:
        return (r.by_kind[kind] if kind else r.overall()).row()[1]

    print()
    for kind in (None, "non_expert"):
        best = max(singles, key=lambda r: hit5(r, kind))
        gain = hit5(shipped, kind) - hit5(best, kind)
        print(
            f"hit@5 {kind or 'overall'}: shipped {hit5(shipped, kind):.1f} vs best single "
            f"({best.label}) {hit5(best, kind):.1f}: {gain:+.1f} points (bar: +5)"
        )
    if shipped.refusal:
        refused, wrongly = shipped.refusal
        print(
            f"refusal: {refused}/{unanswerable} unanswerable refused (bar: >= 9/10), "
            f"{wrongly}/{answerable} answerable refused (bar: <= 1 in 10)"
        )
    ratio = percentile(shipped.latencies, 95) / percentile(before.latencies, 95)
    print(f"retrieve p95: shipped / hybrid before = {ratio:.2f}x (bar: <= 3x)")


if __name__ == "__main__":
    main()
