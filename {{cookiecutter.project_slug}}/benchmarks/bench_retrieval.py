"""Retrieval quality and refusal on a public corpus: the whole Python 3.11 documentation.

The corpus is Debian's `python3.11-doc` package (fetched by benchmarks/debian_docs.py into
.cache/corpora/): every HTML page (526: library, reference, tutorial, howto, faq, c-api,
whatsnew, ...), so each answer competes with its near neighbours. Questions and their gold
pages are in benchmarks/retrieval_questions.jsonl (kinds: key_terms, non_expert, value,
unanswerable), each in a `dev` or `test` split: choices are made on dev and checked on test.

One run, one table: hit@1/5/10, MRR@10 and nDCG@10 (page level: a page counts once, at the
rank of its best chunk) per question kind, for BM25 alone, dense alone, the hybrid as it
shipped before this benchmark (plain RRF, 30 candidates per prefetch) and the variants measured
against it (fusion, weights, candidates per prefetch, chunking, contextual chunk headers);
refusal on the unanswerable questions per split, with the best trade-off the refusal evidence
allows (thresholds chosen on dev, counted on test); retrieve latency p50/p95 through Retriever.

Dense vectors are cached by text in .cache/bench/: a first run embeds ~50k chunks (about
45 minutes in all on two free cores), later runs only what changed (the store is the embedded
default, Qdrant's engine in-process: its searches are milliseconds).

    uv run python benchmarks/bench_retrieval.py [--json out.json]

The second ranking stage (RAG_SECOND_STAGE, docs/decisions/0014): the fused top candidates
are re-sorted by cheap signals (the MiniLM cosine of each chunk, the share of the question's
BM25 terms in the chunk's title and section, the cosine of the chunk's best sentence) and
that order is fused back by RRF. Each signal's RRF constant and weight are chosen on dev only
(the grid prints dev numbers only), then the chosen setting is reported on dev and test, and
dense_resort also runs through Retriever for its latency.
`--second-stage-only` indexes the shipped chunking alone and runs only those rows.

Refusal (docs/decisions/0018): the shipped retriever's top-5 evidence per question is turned
into the refusal model's features; the model is fitted on dev (evals/calibrate.py) and
reported on dev and test as AUC and as the trade-off table, against every single signal and
the hand thresholds (refusal_rows.py). `--refusal-only` indexes the shipped chunking and runs
only that; `--refusal-from-cache` refits from the last run's evidence without indexing;
`--write-refusal-model PATH` writes the dev-fitted model (the shipped one is
src/{{ cookiecutter.package_name }}/refusal_model.json).

With RAG_RERANK_URL set (and RAG_RERANK_API, RAG_RERANK_MODEL, RAG_RERANK_API_KEY as needed),
the hosted reranker gets a row of its own: its quality and its latency cost, in the same run.
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
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Tracer

from {{ cookiecutter.package_name }}.answer import ExtractiveAnswerer
from {{ cookiecutter.package_name }}.answer.sentences import (
    SentenceScorer,
    split_sentences,
)
from {{ cookiecutter.package_name }}.domain import Chunk, Document, Hit, Point, Query
from {{ cookiecutter.package_name }}.embeddings import (
    DenseEncoder,
    SparseEncoder,
    build_dense_encoder,
    build_sparse_encoder,
    cosine,
)
from {{ cookiecutter.package_name }}.evals.metrics import percentile
from {{ cookiecutter.package_name }}.ingest.chunk import Chunker
from {{ cookiecutter.package_name }}.ingest.load import load_document
from {{ cookiecutter.package_name }}.refusal import FEATURES, RefusalModel, RefusalPolicy
from {{ cookiecutter.package_name }}.rerank import (
    Signal,
    build_reranker,
    query_cosine,
    rrf_fuse,
)
from {{ cookiecutter.package_name }}.retrieve import Retriever
from {{ cookiecutter.package_name }}.settings import Settings
from {{ cookiecutter.package_name }}.store import VectorStore, open_store
from {{ cookiecutter.package_name }}.store.base import DENSE, SPARSE, SearchOptions

sys.path.insert(0, str(Path(__file__).resolve().parent))
import refusal_rows
from debian_docs import doc_root, package_version

HERE = Path(__file__).resolve().parent
QUESTIONS = HERE / "retrieval_questions.jsonl"
CACHE = HERE.parent / ".cache" / "bench"
KINDS = ("key_terms", "non_expert", "value")
SPLITS = ("dev", "test")
RANKED = 10  # pages scored per question
REFUSAL_EVIDENCE = CACHE / "refusal-evidence.json"  # the last run's, for --refusal-from-cache
CANDIDATES = 30  # chunks fetched per question before pages are deduplicated


@dataclass(frozen=True)
class Question:
    id: str
    kind: str
    split: str
    text: str
    gold: tuple[str, ...]


def load_questions(path: Path = QUESTIONS) -> list[Question]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    return [Question(r["id"], r["kind"], r["split"], r["question"], tuple(r["gold"])) for r in rows]


def corpus_pages(root: Path) -> list[Path]:
    """Every page of the documentation; Sphinx's _sources, _static, ... are not pages."""
    return sorted(
        p
        for p in root.rglob("*.html")
        if not any(part.startswith("_") for part in p.relative_to(root).parts[:-1])
    )


def page_order(pages: list[Path], root: Path, questions: list[Question]) -> list[Path]:
    """Gold pages first, then the rest in a fixed shuffled order: `--pages N` indexes the
    first N, a smaller corpus that still holds every gold page."""
    gold = {g for q in questions for g in q.gold}
    first = [p for p in pages if p.relative_to(root).as_posix() in gold]
    rest = [p for p in pages if p.relative_to(root).as_posix() not in gold]
    rest.sort(key=lambda p: hashlib.sha256(p.relative_to(root).as_posix().encode()).hexdigest())
    return first + rest


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
    store: VectorStore
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
    store = open_store(settings)  # the embedded default, as the service runs it
    store.ensure_collection(dense.model_id, dense.dimensions, sparse.model_id)
    chunks = [c for d in docs for c in chunker.chunk(d, tenant="default", corpus="python-docs")]
    for start in range(0, len(chunks), 256):
        batch = chunks[start : start + 256]
        texts = [embed_text(c) for c in batch]
        vectors = dense.embed_documents(texts)
        weights = sparse.embed_documents(texts)
        store.upsert(
            [
                Point(chunk=c, dense=d, sparse=s, corpus="python-docs", tenant="default")
                for c, d, s in zip(batch, vectors, weights, strict=True)
            ]
        )
    dense.save()
    return Index(name, store, len(chunks))


# --- runs ----------------------------------------------------------------------------------
@dataclass
class Refusals:
    unanswerable: int = 0
    unanswerable_refused: int = 0
    answerable: int = 0
    answerable_refused: int = 0

    def add(self, q: Question, refused: bool) -> None:
        if q.kind == "unanswerable":
            self.unanswerable += 1
            self.unanswerable_refused += refused
        else:
            self.answerable += 1
            self.answerable_refused += refused

    def cells(self) -> list[str]:
        return [
            f"{self.unanswerable_refused}/{self.unanswerable}",
            f"{self.answerable_refused}/{self.answerable}",
        ]


@dataclass
class Evidence:
    """What refusal can be decided from, per question: the hits and the best sentence cosine."""

    question: Question
    hits: list[Hit]
    best_sentence: float


@dataclass
class Result:
    label: str
    by_kind: dict[str, Scores] = field(default_factory=dict)
    by_split: dict[str, Scores] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    refusals: dict[str, Refusals] | None = None  # per split, when an answerer ran
    evidence: list[Evidence] = field(default_factory=list)

    def overall(self) -> Scores:
        total = Scores()
        for s in self.by_kind.values():
            for name in ("hit1", "hit5", "hit10", "mrr", "ndcg", "n"):
                setattr(total, name, getattr(total, name) + getattr(s, name))
        return total


@dataclass(frozen=True)
class Answering:
    """The extractive answerer, after the refusal policy the ask use case applies (if any),
    and the sentence scorer they share (refusal evidence: each hit's best sentence cosine)."""

    answerer: ExtractiveAnswerer
    scorer: SentenceScorer
    refusal: RefusalPolicy | None = None

    def refused(self, text: str, hits: list[Hit]) -> bool:
        decision = self.refusal.decide(hits) if self.refusal is not None else None
        return self.answerer.answer(text, hits, decision=decision).refused


def run(
    label: str,
    questions: list[Question],
    search: Callable[[Question], list[Hit]],
    answerer: Answering | None = None,
    keep_evidence: bool = False,
    top_k: int = 5,
) -> Result:
    """Score one variant; with an answerer, also count its refusals on the top_k hits (and,
    with keep_evidence, keep what refusal is decided from, for the trade-off)."""
    result = Result(
        label, {kind: Scores() for kind in KINDS}, {split: Scores() for split in SPLITS}
    )
    if answerer is not None:
        result.refusals = {split: Refusals() for split in SPLITS}
    for q in questions:
        started = time.perf_counter()
        hits = search(q)
        result.latencies.append(time.perf_counter() - started)
        if q.kind != "unanswerable":
            pages = ranked_pages(hits)
            result.by_kind[q.kind].add(pages, q.gold)
            result.by_split[q.split].add(pages, q.gold)
        if answerer is None or result.refusals is None:
            continue
        result.refusals[q.split].add(q, answerer.refused(q.text, hits[:top_k]))
        if keep_evidence:  # as the ask use case hands them to a refusal that reads sentences
            evidence = answerer.scorer.annotate(q.text, hits[:top_k])
            best = FEATURES["best_sentence"](evidence)
            result.evidence.append(Evidence(q, evidence, best))
    return result


# --- refusal trade-off --------------------------------------------------------------------
@dataclass(frozen=True)
class Tradeoff:
    policy: RefusalPolicy
    min_similarity: float
    counts: dict[str, Refusals]


def refusal_tradeoffs(evidence: list[Evidence], caps: Sequence[float]) -> list[Tradeoff]:
    """For each cap on answerable questions refused (on dev), the thresholds that refuse the
    most unanswerable dev questions, and what they do on test: how far the evidence can go."""

    def counts(policy: RefusalPolicy, min_similarity: float) -> dict[str, Refusals]:
        out = {split: Refusals() for split in SPLITS}
        for e in evidence:
            refused = policy.decide(e.hits).refuse or e.best_sentence < min_similarity
            out[e.question.split].add(e.question, refused)
        return out

    grid = [
        (RefusalPolicy(min_dense, strong, rank, unmatched), similarity)
        for min_dense in (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6)
        for strong in (0.45, 0.5, 0.55, 0.6, 0.7, 0.8, 1.01)
        for rank in (3, 10)
        for unmatched in (None, 0.1, 0.2, 0.3, 0.4)
        for similarity in (0.3, 0.42, 0.5, 0.55, 0.6)
    ]
    scored = [(policy, similarity, counts(policy, similarity)) for policy, similarity in grid]
    chosen = []
    for cap in caps:
        allowed = [
            t for t in scored if t[2]["dev"].answerable_refused <= cap * t[2]["dev"].answerable
        ]
        if allowed:
            policy, similarity, found = max(
                allowed,
                key=lambda t: (t[2]["dev"].unanswerable_refused, -t[2]["dev"].answerable_refused),
            )
            chosen.append(Tradeoff(policy, similarity, found))
    return chosen


# --- second ranking stage -----------------------------------------------------------------
@dataclass
class Candidates:
    """The fused candidates of each question (with their query cosines), the retrieve time,
    and per-signal scores computed once, so every stage setting is scored on the same lists."""

    hits: dict[str, list[Hit]]
    seconds: dict[str, float]
    signals: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # name -> qid ->
    signal_seconds: dict[str, dict[str, float]] = field(default_factory=dict)


def title_match(sparse: SparseEncoder) -> Signal:
    """Share of the question's BM25 terms (stemmed, stopwords out) in the chunk's title and
    section path: a heading that names what is asked."""

    def signal(query: str, hits: Sequence[Hit]) -> list[float]:
        terms = set(sparse.embed_query(query).indices)
        scores = []
        for hit in hits:
            header = f"{hit.metadata.get('title', '')} {hit.metadata.get('section', '')}"
            found = set(sparse.embed_query(header).indices) if header.strip() else set()
            scores.append(len(terms & found) / len(terms) if terms else 0.0)
        return scores

    return signal


def best_sentence(dense: DenseEncoder, top: int = 10) -> Signal:
    """The cosine of the chunk's best sentence to the question, for the first `top` fused
    candidates (the rest sort last): it embeds every sentence of them at query time, about
    70 sentences a question."""

    def signal(query: str, hits: Sequence[Hit]) -> list[float]:
        question = dense.embed_query(query)
        units = [split_sentences(hit.text) or [hit.text] for hit in hits[:top]]
        vectors = iter(dense.embed_documents([u for group in units for u in group]))
        scores = [max(cosine(question, next(vectors)) for _ in group) for group in units]
        return scores + [-2.0] * (len(hits) - len(scores))

    return signal


def collect_signals(
    candidates: Candidates, questions: list[Question], signals: dict[str, Signal]
) -> None:
    for name, signal in signals.items():
        scores, seconds = {}, {}
        for q in questions:
            started = time.perf_counter()
            scores[q.id] = signal(q.text, candidates.hits[q.id])
            seconds[q.id] = time.perf_counter() - started
        candidates.signals[name] = scores
        candidates.signal_seconds[name] = seconds
        print(f"  signal {name} scored", flush=True)


# (signal name, weight) pairs fused with the fused order; one stage setting.
Mix = tuple[tuple[str, float], ...]


def score_stage(
    label: str, questions: list[Question], candidates: Candidates, mix: Mix, k: int
) -> Result:
    """One stage setting over the stored candidates: quality, and latency as the candidate
    retrieve plus computing the signals plus the fusion."""
    result = Result(
        label, {kind: Scores() for kind in KINDS}, {split: Scores() for split in SPLITS}
    )
    for q in questions:
        started = time.perf_counter()
        hits = candidates.hits[q.id]
        fused = rrf_fuse(hits, [(candidates.signals[n][q.id], w) for n, w in mix], k)
        spent = time.perf_counter() - started + candidates.seconds[q.id]
        spent += sum(candidates.signal_seconds[n][q.id] for n, _ in mix)
        result.latencies.append(spent)
        if q.kind != "unanswerable":
            pages = ranked_pages(fused)
            result.by_kind[q.kind].add(pages, q.gold)
            result.by_split[q.split].add(pages, q.gold)
    return result


def dev_key(result: Result) -> tuple[float, float]:
    """What a stage setting is chosen by, on dev only: MRR@10, then hit@1."""
    dev = result.by_split["dev"].row()
    return (dev[3], dev[0])


def mix_label(mix: Mix, k: int) -> str:
    return "second stage " + " + ".join(f"{n} w{w:g}" for n, w in mix) + f" k{k}"


def choose_stages(
    questions: list[Question], candidates: Candidates
) -> tuple[list[Result], tuple[int, float]]:
    """Per signal, and per signal added to the chosen cosine stage, the setting with the best
    dev MRR@10 (the grid is printed with dev numbers only); returns those results and
    dense_resort's chosen (k, weight)."""

    def best(family: str, mixes: Sequence[tuple[Mix, int]]) -> tuple[Result, Mix, int]:
        scored = [
            (score_stage(mix_label(m, k), questions, candidates, m, k), m, k) for m, k in mixes
        ]
        print(f"\n{family}: dev hit@1 / hit@5 / MRR@10 per setting (test not shown)")
        for r, _m, _k in scored:
            dev = r.by_split["dev"].row()
            print(f"  {r.label}: {dev[0]:.1f} / {dev[1]:.1f} / {dev[3]:.1f}")
        result, mix, k = max(scored, key=lambda t: dev_key(t[0]))
        result.label += " (chosen on dev)"
        return result, mix, k

    grid = [(k, w) for k in (2, 5, 10, 30, 60) for w in (0.5, 1.0, 2.0, 4.0)]
    chosen = {name: best(name, [(((name, w),), k) for k, w in grid]) for name in candidates.signals}
    results = [result for result, _m, _k in chosen.values()]
    _r, dense_mix, dense_k = chosen["cosine"]
    dense_w = dense_mix[0][1]
    for other in (n for n in candidates.signals if n != "cosine"):
        mixes: list[tuple[Mix, int]] = [
            ((("cosine", dense_w), (other, w)), dense_k) for w in (0.25, 0.5, 1.0, 2.0)
        ]
        results.append(best(f"cosine + {other}", mixes)[0])
    return results, (dense_k, dense_w)


def second_stage_rows(
    questions: list[Question],
    store: VectorStore,
    dense: CachedDense,
    sparse: SparseEncoder,
    tracer: Tracer,
    shipped: Settings,
    signals: dict[str, Signal],
) -> tuple[list[Result], tuple[int, float]]:
    """The shipped hybrid's candidates with their cosines, once per question; every stage
    setting is then scored on them (choose_stages)."""
    options = replace(SearchOptions.from_settings(shipped), query_cosines=True)
    retriever = Retriever(store, dense, sparse, tracer, options)
    retriever.retrieve(Query(text=questions[0].text, top_k=CANDIDATES, tenant="default"))
    candidates = Candidates({}, {})
    for q in questions:
        started = time.perf_counter()
        found = retriever.retrieve(Query(text=q.text, top_k=CANDIDATES, tenant="default"))
        candidates.seconds[q.id] = time.perf_counter() - started
        candidates.hits[q.id] = found
    print("  candidates retrieved", flush=True)
    collect_signals(candidates, questions, signals)
    return choose_stages(questions, candidates)


def print_stage_bar(results: list[Result]) -> None:
    """The issue's latency bar: the retriever with dense_resort against the hybrid without."""
    through = [r for r in results if "refusal evidence" in r.label]
    without = next((r for r in through if "dense_resort" not in r.label), None)
    with_stage = next((r for r in through if "dense_resort" in r.label), None)
    if without is None or with_stage is None:
        return
    ratio = percentile(with_stage.latencies, 95) / percentile(without.latencies, 95)
    print(f"retrieve p95: with dense_resort / without = {ratio:.2f}x (bar: <= 1.5x)")
    for split in SPLITS:
        a, b = without.by_split[split].row(), with_stage.by_split[split].row()
        print(
            f"{split}: hit@1 {a[0]:.1f} -> {b[0]:.1f}, hit@5 {a[1]:.1f} -> {b[1]:.1f}, "
            f"MRR@10 {a[3]:.1f} -> {b[3]:.1f}"
        )


# --- main ----------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--json", type=Path, help="also write the table as JSON here")
    parser.add_argument(
        "--second-stage-only",
        action="store_true",
        help="index the shipped chunking only; run the second-stage rows and their baseline",
    )
    parser.add_argument(
        "--skip-sentence-signal",
        action="store_true",
        help="leave out the best-sentence signal (it embeds ~70 sentences per question)",
    )
    parser.add_argument(
        "--refusal-only",
        action="store_true",
        help="index the shipped chunking only; run the refusal rows (and their retrieval)",
    )
    parser.add_argument(
        "--refusal-from-cache",
        action="store_true",
        help="no indexing: refit and report refusal from the last run's evidence",
    )
    parser.add_argument(
        "--write-refusal-model", type=Path, help="write the dev-fitted refusal model here"
    )
    parser.add_argument(
        "--pages",
        type=int,
        help="index only the gold pages and then other pages up to this many (fixed order): "
        "quicker, and not comparable with a run over the whole corpus",
    )
    args = parser.parse_args()
    shipped = Settings()
    if args.refusal_from_cache:
        if not REFUSAL_EVIDENCE.is_file():
            raise SystemExit(f"No {REFUSAL_EVIDENCE} yet: run with --refusal-only first.")
        payload = refusal_rows.report(
            refusal_rows.load(REFUSAL_EVIDENCE),
            shipped.answer_min_similarity,
            {},
            args.write_refusal_model,
        )
        if args.json:
            args.json.write_text(json.dumps({"refusal": payload}, indent=2), encoding="utf-8")
        return

    root = doc_root("python3.11-doc")
    questions = load_questions()
    pages = corpus_pages(root)
    sources = {p.relative_to(root).as_posix() for p in pages}
    missing = sorted({g for q in questions for g in q.gold} - sources)
    if missing:
        raise SystemExit(f"Gold pages that are not in the corpus: {missing}. Fix the questions.")
    if args.pages is not None:
        pages = page_order(pages, root, questions)[: args.pages]
    docs = [load_document(p, root, 50_000_000) for p in pages]
    unanswerable = sum(q.kind == "unanswerable" for q in questions)
    print(
        f"corpus: python3.11-doc {package_version('python3.11-doc')}, {len(docs)} pages"
        f"{f' (--pages {args.pages})' if args.pages is not None else ''}; "
        f"{len(questions)} questions ({len(questions) - unanswerable} answerable, "
        f"{unanswerable} unanswerable; dev {sum(q.split == 'dev' for q in questions)}, "
        f"test {sum(q.split == 'test' for q in questions)})",
        flush=True,
    )

    dense = CachedDense(build_dense_encoder(shipped), CACHE / "dense-minilm.npz")
    sparse = build_sparse_encoder(Settings(data_dir=CACHE / "models"))
    tracer = TracerProvider().get_tracer("bench")
    # The extractive answerer as it shipped before (sentence cosine only) and as it ships now.
    scorer = SentenceScorer(dense)
    extractive = ExtractiveAnswerer(
        dense, tracer, shipped.answer_min_similarity, shipped.answer_max_sentences, scorer=scorer
    )
    answerer_before = Answering(extractive, scorer)
    answerer_now = Answering(extractive, scorer, RefusalPolicy.from_settings(shipped))

    # name -> (chunker, what gets embedded). "s": sentence splitting (the default), "b": whole
    # blocks packed (structure-aware); the number is chunk_size; nohdr: no contextual header.
    size, overlap = shipped.chunk_size, shipped.chunk_overlap
    chunkings: dict[str, tuple[Chunker, Callable[[Chunk], str]]] = {
        "s200": (Chunker(200, 24, pack_blocks=False), Chunk.embedding_text),
        "b200": (Chunker(200, 24, pack_blocks=True), Chunk.embedding_text),
        "s200-nohdr": (Chunker(200, 24, pack_blocks=False), lambda c: c.text),
    }
    ship = f"{'b' if shipped.chunk_pack_blocks else 's'}{size}"
    chunkings.setdefault(
        ship, (Chunker(size, overlap, shipped.chunk_pack_blocks), Chunk.embedding_text)
    )
    if args.second_stage_only or args.refusal_only:
        chunkings = {ship: chunkings[ship]}
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

        def search_with(retriever: Retriever) -> Callable[[Question], list[Hit]]:
            return lambda q: retriever.retrieve(
                Query(text=q.text, top_k=CANDIDATES, tenant="default")
            )

        def describe(name: str, prefetch: int, fusion: str, k: int, weight: float) -> str:
            how = f"rrf k{k} w{weight:g}" if fusion == "rrf" else fusion
            return f"hybrid {how} p{prefetch} [{name}]"

        def hybrid(
            name: str, prefetch: int, fusion: str = "rrf", k: int = 2, weight: float = 1.0
        ) -> tuple[str, Callable[[Question], list[Hit]]]:
            r = Retriever(
                indexes[name].store,
                dense,
                sparse,
                tracer,
                SearchOptions(
                    fusion=fusion,  # type: ignore[arg-type]
                    rrf_k=k,
                    rrf_dense_weight=weight,
                    prefetch_limit=prefetch,
                    evidence_limit=0,
                    query_cosines=False,
                ),
            )
            return describe(name, prefetch, fusion, k, weight), search_with(r)

        def alone(name: str, using: str) -> tuple[str, Callable[[Question], list[Hit]]]:
            def search(q: Question) -> list[Hit]:
                vector = dense.embed_query(q.text) if using == DENSE else sparse.embed_query(q.text)
                return indexes[name].store.search_one(
                    using, vector, tenant="default", top_k=CANDIDATES
                )

            return f"{'dense' if using == DENSE else 'bm25'} alone [{name}]", search

        weight = shipped.rrf_dense_weight
        k, prefetch = shipped.rrf_k, shipped.prefetch_limit
        before_label, before_search = hybrid(ship, 30)
        plans: list[tuple[str, Callable[[Question], list[Hit]], Answering | None]] = []
        if not (args.second_stage_only or args.refusal_only):
            plans += [
                (*alone(ship, SPARSE), None),
                (*alone(ship, DENSE), None),
                (f"BEFORE: {before_label}", before_search, answerer_before),
                (*hybrid(ship, prefetch), None),
                (*hybrid(ship, prefetch, k=k, weight=weight / 2), None),
                (*hybrid(ship, 30, k=k, weight=weight), None),
                (*hybrid(ship, prefetch, k=k, weight=weight), None),
                (*hybrid(ship, prefetch, fusion="dbsf"), None),
                *[
                    (*hybrid(name, prefetch, k=k, weight=weight), None)
                    for name in chunkings
                    if name != ship
                ],
            ]
        store = indexes[ship].store
        signals: dict[str, Signal] = {"cosine": query_cosine, "title": title_match(sparse)}
        if not args.skip_sentence_signal:  # embeds for real, not through the cache: honest cost
            signals["sentence"] = best_sentence(dense.inner)
        stage_results: list[Result] = []
        stage_k, stage_w = shipped.second_stage_rrf_k, shipped.second_stage_weight
        if not args.refusal_only:
            stage_results, (stage_k, stage_w) = second_stage_rows(
                questions, store, dense, sparse, tracer, shipped, signals
            )
        # The retrievers the service builds from its settings, refusal evidence included:
        # without a second stage, and with dense_resort as chosen on dev. SHIPPED is the default.
        label = describe(ship, prefetch, shipped.fusion, k, weight)
        for stage in ("none",) if args.refusal_only else ("none", "dense_resort"):
            settings = shipped.model_copy(
                update={
                    "second_stage": stage,
                    "second_stage_rrf_k": stage_k,
                    "second_stage_weight": stage_w,
                }
            )
            retriever = Retriever.from_settings(
                settings, store, dense, sparse, tracer, reranker=build_reranker(settings)
            )
            how = f" + dense_resort k{stage_k} w{stage_w:g}" if stage != "none" else ""
            default = stage == shipped.second_stage and (
                stage == "none"
                or (stage_k, stage_w) == (shipped.second_stage_rrf_k, shipped.second_stage_weight)
            )
            row = f"{'SHIPPED: ' if default else ''}{label}{how} + refusal evidence"
            plans.append((row, search_with(retriever), answerer_now))
        if shipped.rerank_url is not None:  # measure the hosted second stage too
            reranked = Retriever.from_settings(
                shipped, store, dense, sparse, tracer, reranker=build_reranker(shipped)
            )
            model = shipped.rerank_model or shipped.rerank_api
            plans.append((f"hybrid + hosted rerank {model} [{ship}]", search_with(reranked), None))
        for _ in range(2):  # warm-up: the first queries load ONNX sessions and page caches
            for _label, search, _answerer in plans:
                search(questions[0])
        for label, search, answerer in plans:
            keep = label.startswith("SHIPPED")
            results.append(run(label, questions, search, answerer, keep_evidence=keep))
            print(f"  ran {label}", flush=True)
        results += stage_results
        for index in indexes.values():
            index.store.close()
    dense.save()

    print_table(results)
    shipped_result = next(r for r in results if r.label.startswith("SHIPPED"))
    tradeoffs = refusal_tradeoffs(shipped_result.evidence, caps=(0.1, 0.2, 0.3, 0.5))
    print_tradeoffs(tradeoffs)
    cold_ms = sentence_cost(dense.inner, shipped_result)
    refusal = refusal_report(shipped_result, shipped, args.write_refusal_model, cold_ms)
    if not (args.second_stage_only or args.refusal_only):
        print_bar(results)
    print_stage_bar(results)
    if args.json:
        payload = {
            "results": [_as_json(r) for r in results],
            "refusal_tradeoffs": [_tradeoff_json(t) for t in tradeoffs],
            "refusal": refusal,
        }
        args.json.write_text(json.dumps(payload, indent=2), encoding="utf-8")


def sentence_cost(dense: DenseEncoder, result: Result, questions: int = 40) -> list[float]:
    """What the best-sentence evidence costs where nothing else embeds the sentences (an LLM
    answerer): a fresh scorer per question, the real encoder (no cache), in ms."""
    timings = []
    for e in result.evidence[:questions]:
        scorer = SentenceScorer(dense)
        started = time.perf_counter()
        scorer.annotate(e.question.text, e.hits)
        timings.append((time.perf_counter() - started) * 1000)
    return timings


def refusal_report(
    shipped_result: Result, shipped: Settings, model_out: Path | None, sentence_ms: list[float]
) -> dict[str, object]:
    """The refusal model's rows from the shipped retriever's evidence (cached for
    --refusal-from-cache), with the decision latency of the model and of the rules."""
    rules = RefusalPolicy.from_settings(shipped)
    observed = [
        refusal_rows.observe(
            e.question.id,
            e.question.split,
            e.question.kind == "unanswerable",
            e.hits,
            e.best_sentence,
            rules,
        )
        for e in shipped_result.evidence
    ]
    refusal_rows.save(observed, REFUSAL_EVIDENCE)
    model = RefusalModel.load()  # the shipped model: its decide() is what the service runs
    decide_ms: dict[str, list[float]] = {
        "shipped model": [],
        "hand rules": [],
        "sentence evidence, cold (first 40 questions)": sentence_ms,
    }
    for e in shipped_result.evidence:
        decide_ms["shipped model"].append(refusal_rows.timed(model.decide, e.hits))
        decide_ms["hand rules"].append(refusal_rows.timed(rules.decide, e.hits))
    return refusal_rows.report(observed, shipped.answer_min_similarity, decide_ms, model_out)


def _as_json(result: Result) -> dict[str, object]:
    names = ["hit@1", "hit@5", "hit@10", "mrr@10", "ndcg@10"]
    return {
        "label": result.label,
        "overall": dict(zip(names, result.overall().row(), strict=True)),
        **{k: dict(zip(names, s.row(), strict=True)) for k, s in result.by_kind.items()},
        **{k: dict(zip(names, s.row(), strict=True)) for k, s in result.by_split.items()},
        "p50_ms": 1000 * percentile(result.latencies, 50),
        "p95_ms": 1000 * percentile(result.latencies, 95),
        "refusals": {k: vars(v) for k, v in (result.refusals or {}).items()},
    }


def _tradeoff_json(t: Tradeoff) -> dict[str, object]:
    return {
        "policy": vars(t.policy),
        "answer_min_similarity": t.min_similarity,
        "counts": {k: vars(v) for k, v in t.counts.items()},
    }


def print_table(results: list[Result]) -> None:
    header = (
        "| variant | hit@1 | hit@5 | hit@10 | MRR@10 | nDCG@10 | hit@5 key_terms "
        "| hit@5 non_expert | hit@5 value | hit@5 dev | hit@5 test | p50 ms | p95 ms "
        "| refused unanswerable dev | refused answerable dev "
        "| refused unanswerable test | refused answerable test |"
    )
    print()
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for r in results:
        overall = r.overall().row()
        kinds = [r.by_kind[k].row()[1] for k in KINDS]
        splits = [r.by_split[s].row()[1] for s in SPLITS]
        refusal = (
            [cell for split in SPLITS for cell in r.refusals[split].cells()]
            if r.refusals
            else ["-"] * 4
        )
        cells = [f"{v:.1f}" for v in overall + kinds + splits] + [
            f"{1000 * percentile(r.latencies, 50):.1f}",
            f"{1000 * percentile(r.latencies, 95):.1f}",
            *refusal,
        ]
        print(f"| {r.label} | " + " | ".join(cells) + " |")
    print()
    print("Per split (hit@1 / hit@5 / MRR@10):")
    for r in results:
        parts = [
            f"{split}: " + " / ".join(f"{r.by_split[split].row()[i]:.1f}" for i in (0, 1, 3))
            for split in SPLITS
        ]
        print(f"  {r.label}: " + "; ".join(parts))
    print()
    print("Per kind (hit@1 / hit@5 / hit@10 / MRR@10 / nDCG@10):")
    for r in results:
        parts = [f"{k}: " + " / ".join(f"{v:.0f}" for v in r.by_kind[k].row()) for k in KINDS]
        print(f"  {r.label}: " + "; ".join(parts))


def print_tradeoffs(tradeoffs: list[Tradeoff]) -> None:
    print()
    print(
        "Refusal trade-off (thresholds chosen on dev under a cap on answerable refused; "
        "unanswerable / answerable refused):"
    )
    for t in tradeoffs:
        p = t.policy
        dev, test = t.counts["dev"], t.counts["test"]
        print(
            f"  min_dense {p.min_dense}, strong_dense {p.strong_dense}, agreement_rank "
            f"{p.agreement_rank}, unmatched_share {p.max_unmatched_share}, "
            f"answer_min_similarity {t.min_similarity}: dev {' '.join(dev.cells())}, "
            f"test {' '.join(test.cells())}"
        )


def print_bar(results: list[Result]) -> None:
    """The issue's bar, checked on this run: shipped vs the best single retriever on the same
    index, refusal on the held-out split, and latency against the hybrid as it was."""
    shipped = next(r for r in results if r.label.startswith("SHIPPED"))
    before = next(r for r in results if r.label.startswith("BEFORE"))
    index = shipped.label.rsplit("[", 1)[1].split("]")[0]
    singles = [r for r in results if "alone" in r.label and r.label.endswith(f"[{index}]")]

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
    if shipped.refusals:
        test = shipped.refusals["test"]
        print(
            f"refusal (test split): {test.unanswerable_refused}/{test.unanswerable} "
            f"unanswerable refused (bar: >= 9 in 10), {test.answerable_refused}/"
            f"{test.answerable} answerable refused (bar: <= 1 in 10)"
        )
    ratio = percentile(shipped.latencies, 95) / percentile(before.latencies, 95)
    print(f"retrieve p95: shipped / hybrid before = {ratio:.2f}x (bar: <= 3x)")


if __name__ == "__main__":
    main()
