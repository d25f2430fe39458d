"""Run the golden set, compare with the thresholds, print a table, exit 1 on a miss."""

from __future__ import annotations

import json
import time
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..container import Services
from ..domain import Query
from ..errors import BadRequestError
from .golden import GoldenItem, load_golden_set
from .metrics import RagasScorer, hit_at_k, mean, percentile, reciprocal_rank


@dataclass(frozen=True)
class Threshold:
    minimum: float | None = None
    maximum: float | None = None

    def passes(self, value: float) -> bool:
        return (self.minimum is None or value >= self.minimum) and (
            self.maximum is None or value <= self.maximum
        )

    def describe(self) -> str:
        parts = []
        if self.minimum is not None:
            parts.append(f">= {self.minimum:g}")
        if self.maximum is not None:
            parts.append(f"<= {self.maximum:g}")
        return " and ".join(parts)


@dataclass
class QuestionResult:
    id: str
    question: str
    answerable: bool
    refused: bool
    answer: str
    retrieved_sources: list[str]
    gold_sources: list[str]
    tags: list[str] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)
    latency_ms: float = 0.0


def load_thresholds(path: Path) -> tuple[int, dict[str, Threshold]]:
    """`k = 5` and `[metrics.NAME] min = ... / max = ...`."""
    if not path.is_file():
        raise BadRequestError(f"Thresholds file {path} does not exist (RAG_EVAL_THRESHOLDS).")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise BadRequestError(f"Thresholds file {path} is not valid TOML: {exc}") from exc
    thresholds = {}
    for name, bounds in data.get("metrics", {}).items():
        if not isinstance(bounds, dict) or not set(bounds) <= {"min", "max"} or not bounds:
            raise BadRequestError(
                f"Thresholds file {path}: [metrics.{name}] needs `min` and/or `max`, e.g. min = 0.8"
            )
        thresholds[name] = Threshold(bounds.get("min"), bounds.get("max"))
    return int(data.get("k", 5)), thresholds


def _evaluate(
    services: Services, items: list[GoldenItem], k: int, scorer: RagasScorer
) -> list[QuestionResult]:
    results = []
    for item in items:
        started = time.perf_counter()
        hits = services.retriever.retrieve(Query(text=item.question, top_k=k))
        answer = services.answerer.answer(item.question, hits)
        latency_ms = (time.perf_counter() - started) * 1000
        retrieved = list(dict.fromkeys(hit.source for hit in hits))  # ranked, de-duplicated
        result = QuestionResult(
            id=item.id,
            question=item.question,
            answerable=item.answerable,
            refused=answer.refused,
            answer=answer.text,
            retrieved_sources=retrieved,
            gold_sources=item.gold_sources,
            tags=item.tags,
            latency_ms=latency_ms,
        )
        if item.answerable:
            result.scores = {
                f"hit_at_{k}": hit_at_k(retrieved, item.gold_sources, k),
                "mrr": reciprocal_rank(retrieved, item.gold_sources),
                **scorer.score(
                    item.question, answer.text, item.reference_answer, retrieved, item.gold_sources
                ),
            }
        results.append(result)
    return results


def summarise(results: list[QuestionResult], k: int) -> dict[str, float]:
    answerable = [r for r in results if r.answerable]
    unanswerable = [r for r in results if not r.answerable]
    metric_names = sorted({name for r in answerable for name in r.scores})
    summary = {name: mean([r.scores[name] for r in answerable]) for name in metric_names}
    summary["refusal_accuracy"] = mean([1.0 if r.refused != r.answerable else 0.0 for r in results])
    summary["refused_unanswerable"] = mean([1.0 if r.refused else 0.0 for r in unanswerable])
    summary["answered_answerable"] = mean([0.0 if r.refused else 1.0 for r in answerable])
    latencies = [r.latency_ms for r in results]
    summary["latency_p50_ms"] = percentile(latencies, 50)
    summary["latency_p95_ms"] = percentile(latencies, 95)
    return summary


def run_gate(
    services: Services,
    golden_path: Path,
    thresholds_path: Path,
    corpus: Path | None,
    report_dir: Path,
) -> int:
    items = load_golden_set(golden_path)
    k, thresholds = load_thresholds(thresholds_path)
    if corpus is not None:
        print(f"Eval collection: {services.store.collection}")
        print(services.ingestor.ingest(corpus).summary())
    scorer = RagasScorer(services.settings.data_dir / "ragas")
    results = _evaluate(services, items, k, scorer)
    summary = summarise(results, k)

    unknown = sorted(set(thresholds) - set(summary))
    if unknown:
        raise BadRequestError(
            f"Thresholds name unknown metrics {unknown}; known: {sorted(summary)}"
        )
    rows: list[dict[str, Any]] = []
    print(f"\n{'metric':<22} {'value':>9}  {'threshold':<16} result")
    for name, value in summary.items():
        bar = thresholds.get(name)
        verdict = "-" if bar is None else ("pass" if bar.passes(value) else "FAIL")
        print(f"{name:<22} {value:>9.3f}  {bar.describe() if bar else '':<16} {verdict}")
        rows.append(
            {
                "metric": name,
                "value": value,
                "threshold": asdict(bar) if bar else None,
                "result": verdict,
            }
        )
    failed = [row["metric"] for row in rows if row["result"] == "FAIL"]

    misses = [r for r in results if r.answerable and not r.scores.get(f"hit_at_{k}")]
    wrong_refusals = [r for r in results if r.refused == r.answerable]
    for r in misses:
        print(f"  miss: {r.id} {r.question!r}: gold {r.gold_sources}, got {r.retrieved_sources}")
    for r in wrong_refusals:
        what = "refused an answerable" if r.refused else "answered an unanswerable"
        print(f"  refusal: {r.id} {what} question {r.question!r}")

    report_dir.mkdir(parents=True, exist_ok=True)
    report_path = report_dir / "report.json"
    report_path.write_text(
        json.dumps(
            {
                "k": k,
                "questions": len(results),
                "summary": summary,
                "metrics": rows,
                "go": not failed,
                "results": [asdict(r) for r in results],
            },
            indent=2,
        ),
        encoding="utf-8",
    )
    verdict = "GO" if not failed else f"NO-GO: {', '.join(failed)} missed the bar"
    print(f"\n{verdict} ({len(results)} questions, k={k}); report: {report_path}")
    return 0 if not failed else 1
