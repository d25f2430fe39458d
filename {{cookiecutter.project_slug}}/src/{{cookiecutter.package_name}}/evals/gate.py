"""Run the golden set, compare with thresholds and a baseline, write reports, exit 1 on a miss."""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from ..ask import Question
from ..container import Services
from ..errors import BadRequestError
from ..refusal import RefusalModel
from ..wording import plural
from .baseline import (
    RECORD_ONE,
    Baseline,
    Delta,
    compare,
    golden_fingerprint,
    load_baseline,
    save_baseline,
)
from .golden import GoldenItem, load_golden_set
from .metrics import (
    RagasScorer,
    hit_at_k,
    mean,
    ndcg_at_k,
    percentile,
    recall_at_k,
    reciprocal_rank,
    require_eval_group,
)
from .records import EvalReport, MetricRow, QuestionResult, Threshold
from .report import write_reports


class AnswerJudge(Protocol):
    """An LLM judge (see evals/judge.py); optional."""

    errors: list[str]

    def score(
        self, question: str, answer: str, reference: str, contexts: list[str]
    ) -> dict[str, float]: ...

    def describe(self) -> dict[str, str]: ...


@dataclass(frozen=True)
class GateOptions:
    golden: Path
    thresholds: Path
    corpus: Path | None
    report_dir: Path
    baseline: Path | None = None
    save_baseline: Path | None = None
    allow_unreviewed: bool = False


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


def evaluate(
    services: Services,
    items: list[GoldenItem],
    k: int,
    scorer: RagasScorer,
    judge: AnswerJudge | None = None,
) -> list[QuestionResult]:
    results = []
    asker = services.asker
    for item in items:
        asked = asker.ask(Question(item.question, services.settings.tenant, top_k=k))
        hits, answer = asked.hits, asked.answer
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
            retrieve_ms=asked.retrieve_ms,
            answer_ms=asked.answer_ms,
            cost_usd=math.nan if answer.cost_usd is None else answer.cost_usd,
        )
        if item.answerable:
            gold = item.gold_sources
            result.scores = {
                f"hit_at_{k}": hit_at_k(retrieved, gold, k),
                f"recall_at_{k}": recall_at_k(retrieved, gold, k),
                "mrr": reciprocal_rank(retrieved, gold),
                f"ndcg_at_{k}": ndcg_at_k(retrieved, gold, k),
                **scorer.score(item.question, answer.text, item.reference_answer, retrieved, gold),
            }
            if judge is not None and not answer.refused:
                contexts = [hit.text for hit in hits]
                result.scores.update(
                    judge.score(item.question, answer.text, item.reference_answer, contexts)
                )
        results.append(result)
    return results


def _nan_mean(values: list[float]) -> float:
    present = [v for v in values if not math.isnan(v)]
    return mean(present) if present else math.nan


def summarise(results: list[QuestionResult], k: int) -> dict[str, float]:
    answerable = [r for r in results if r.answerable]
    unanswerable = [r for r in results if not r.answerable]
    metric_names = list(dict.fromkeys(name for r in answerable for name in r.scores))
    summary = {
        name: _nan_mean([r.scores[name] for r in answerable if name in r.scores])
        for name in metric_names
    }
    summary["refusal_accuracy"] = mean([1.0 if r.refused != r.answerable else 0.0 for r in results])
    summary["refused_unanswerable"] = mean([1.0 if r.refused else 0.0 for r in unanswerable])
    summary["answered_answerable"] = mean([0.0 if r.refused else 1.0 for r in answerable])
    # Of the questions refused, the share that should have been (NaN when none was refused);
    # recall is the share of unanswerable ones refused (refused_unanswerable).
    refused = [r for r in results if r.refused]
    summary["refusal_precision"] = (
        mean([0.0 if r.answerable else 1.0 for r in refused]) if refused else math.nan
    )
    summary["refusal_recall"] = summary["refused_unanswerable"]
    for stage in ("retrieve", "answer", "total"):
        latencies = [
            r.retrieve_ms + r.answer_ms if stage == "total" else getattr(r, f"{stage}_ms")
            for r in results
        ]
        summary[f"latency_{stage}_p50_ms"] = percentile(latencies, 50)
        summary[f"latency_{stage}_p95_ms"] = percentile(latencies, 95)
    # Each answer's estimated cost (zero for the extractive answerer); NaN when any is unknown.
    summary["cost_per_query_usd"] = mean([r.cost_usd for r in results]) if results else 0.0
    return summary


def per_question_scores(results: list[QuestionResult], k: int) -> dict[str, dict[str, float]]:
    """What the paired comparison reads, by question id: hit@k and MRR (answerable
    questions), and whether the refusal decision was right (every question)."""
    table = {}
    for r in results:
        scores = {"refusal_accuracy": 1.0 if r.refused != r.answerable else 0.0}
        for name in (f"hit_at_{k}", "mrr"):
            if name in r.scores:
                scores[name] = r.scores[name]
        table[r.id] = scores
    return table


def _check_reviewed(items: list[GoldenItem], golden: Path, allowed: bool) -> None:
    drafts = [item.id for item in items if not item.reviewed]
    if drafts and not allowed:
        shown = ", ".join(drafts[:10]) + (" ..." if len(drafts) > 10 else "")
        raise BadRequestError(
            f"Golden set {golden} has {plural(len(drafts), 'unreviewed draft row')} ({shown}). "
            "A person "
            'must check each question, answer and gold source, then set "reviewed": true; '
            "or pass --allow-unreviewed to run them anyway (not for a go/no-go decision)."
        )


def sync_eval_corpus(services: Services, corpus: Path) -> None:
    """Make the eval collection hold exactly this corpus: a sync keeps one corpus (named
    after its folder) up to date but leaves others alone, so the sample an earlier `make
    eval` left there would be retrieved beside (and cited instead of) the client's files."""
    report = services.ingestor.ingest(corpus)
    tenant = services.settings.tenant
    others = [
        doc
        for doc in services.store.documents(tenant=tenant)
        if doc.corpus != report.corpus and doc.alias_of is None  # aliases go with the holder
    ]
    for doc in others:
        services.store.delete_document(tenant=tenant, corpus=doc.corpus, source=doc.source)
    removed = sorted({doc.corpus for doc in others})
    note = f"; removed {len(others)} documents of {', '.join(removed)}" if others else ""
    print(f"Eval collection: {services.store.collection}, corpus {report.corpus}{note}")
    print(report.summary())


def error_bars(deltas: dict[str, Delta], tolerance: float, baseline: Baseline | None) -> list[str]:
    """N, the interval and the smallest detectable change of each paired metric, and a
    warning when the set is too small to gate on at this tolerance."""
    if baseline is not None and not baseline.per_question and deltas:
        return [
            f"Baseline {baseline.path} has no per-question results: means compared without "
            f"error bars; {RECORD_ONE} again for the paired comparison."
        ]
    lines = []
    for name, delta in deltas.items():
        p = delta.paired
        if p is None:
            continue
        lines.append(
            f"{name}: paired change {p.mean:+.3f}, 95% CI [{p.low:+.3f}, {p.high:+.3f}], "
            f"N={p.n}, smallest detectable change {p.detectable:.3f}"
            + (" REGRESSED" if p.regressed else "")
        )
        if p.too_small:
            lines.append(
                f"  WARNING: {p.n} questions cannot detect a {tolerance:g} change in {name} "
                f"(they detect {p.detectable:.3f}); add questions before gating on it."
            )
    return lines


def _refusal_in_use(services: Services) -> str:
    """Which refusal decided, so a report says what its refusal precision and recall are of."""
    settings = services.settings
    if isinstance(services.refusal, RefusalModel):
        where = services.refusal.source or "the shipped model"
        return f"model {where} (threshold {services.refusal.threshold:.3f})"
    return f"rules (RAG_REFUSAL={settings.refusal})"


def run_gate(services: Services, options: GateOptions, judge: AnswerJudge | None = None) -> int:
    require_eval_group("The eval gate")  # before the corpus sync, not after it
    items = load_golden_set(options.golden)
    _check_reviewed(items, options.golden, options.allow_unreviewed)
    golden = golden_fingerprint(items)
    k, thresholds = load_thresholds(options.thresholds)
    baseline = load_baseline(options.baseline) if options.baseline else None
    # Deltas against another golden set's run mean nothing: no regression can be read off them.
    not_comparable = baseline.not_comparable(golden) if baseline else None
    if options.corpus is not None:
        sync_eval_corpus(services, options.corpus)
    scorer = RagasScorer(services.settings.data_dir / "ragas")
    results = evaluate(services, items, k, scorer, judge)
    summary = summarise(results, k)
    per_question = per_question_scores(results, k)

    if judge is None:  # judge bars apply only to runs with the judge
        thresholds = {k: v for k, v in thresholds.items() if not k.startswith("judge_")}
    unknown = sorted(set(thresholds) - set(summary))
    if unknown:
        raise BadRequestError(
            f"Thresholds name unknown metrics {unknown}; known: {sorted(summary)}"
        )
    deltas: dict[str, Delta] = (
        compare(summary, baseline, services.settings.eval_regression_tolerance, per_question)
        if baseline and not not_comparable
        else {}
    )
    rows = [
        MetricRow(name, value, thresholds.get(name), deltas.get(name))
        for name, value in summary.items()
    ]
    misses = [row.name for row in rows if row.verdict == "FAIL"]
    regressions = [row.name for row in rows if row.delta is not None and row.delta.regressed]
    go = not misses and not regressions
    reasons = [f"{', '.join(misses)} missed the bar"] if misses else []
    if regressions:
        tolerance = services.settings.eval_regression_tolerance
        reasons.append(f"{', '.join(regressions)} regressed by more than {tolerance:g}")
    context = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "collection": services.store.collection,
        "embedding_model": services.dense.model_id,
        "golden": f"{options.golden} ({golden})",
        "thresholds": str(options.thresholds),
        "k": str(k),
        "refusal": _refusal_in_use(services),
    }
    if baseline:
        context["baseline"] = f"{baseline.path} ({baseline.created_at})"
        if not_comparable:
            context["baseline_warning"] = not_comparable
    if judge is not None:
        for key, value in judge.describe().items():
            context[key if key.startswith("judge_") else f"judge_{key}"] = value
    report = EvalReport(
        go=go,
        verdict="GO" if go else "NO-GO: " + "; ".join(reasons),
        rows=rows,
        results=results,
        context=context,
        judge_errors=list(judge.errors) if judge is not None else [],
    )
    print(report.table())
    for line in error_bars(deltas, services.settings.eval_regression_tolerance, baseline):
        print(line)
    paths = write_reports(report, options.report_dir)
    if options.save_baseline:
        save_baseline(options.save_baseline, summary, golden, per_question)
        print(f"Baseline written: {options.save_baseline}")
    print(
        f"\n{report.verdict} ({plural(len(results), 'question')}, k={k}); reports: "
        + ", ".join(str(p) for p in paths)
    )
    return 0 if go else 1
