"""What an eval run produces: per-question results, metric rows and the report."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .baseline import Delta


@dataclass(frozen=True)
class Threshold:
    minimum: float | None = None
    maximum: float | None = None

    def passes(self, value: float) -> bool:
        if math.isnan(value):
            return False
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
    retrieve_ms: float = 0.0
    answer_ms: float = 0.0
    cost_usd: float = 0.0  # NaN when the answer model has no price (RAG_LLM_PRICES)

    @property
    def refusal_correct(self) -> bool:
        return self.refused != self.answerable

    def missed(self, k: str | int) -> bool:
        """An answerable question whose gold sources were not among the top k hits."""
        return self.answerable and not self.scores.get(f"hit_at_{k}")


@dataclass(frozen=True)
class MetricRow:
    name: str
    value: float
    threshold: Threshold | None
    delta: Delta | None

    @property
    def verdict(self) -> str:
        if self.threshold is None:
            return "-"
        return "pass" if self.threshold.passes(self.value) else "FAIL"


@dataclass
class EvalReport:
    go: bool
    verdict: str
    rows: list[MetricRow]
    results: list[QuestionResult]
    context: dict[str, str]
    judge_errors: list[str] = field(default_factory=list)

    def table(self) -> str:
        lines = [f"\n{'metric':<26} {'value':>9}  {'threshold':<14} {'result':<6} vs baseline"]
        for row in self.rows:
            bar = row.threshold.describe() if row.threshold else ""
            delta = ""
            if row.delta is not None:
                delta = f"{row.delta.delta:+.3f}" + (" REGRESSED" if row.delta.regressed else "")
            lines.append(f"{row.name:<26} {row.value:>9.3f}  {bar:<14} {row.verdict:<6} {delta}")
        k = self.context.get("k", "5")
        for r in self.results:
            if r.missed(k):
                lines.append(
                    f"  miss: {r.id} {r.question!r}: gold {r.gold_sources}, "
                    f"got {r.retrieved_sources}"
                )
        for r in self.results:
            if not r.refusal_correct:
                what = "refused an answerable" if r.refused else "answered an unanswerable"
                lines.append(f"  refusal: {r.id} {what} question {r.question!r}")
        lines.extend(f"  judge error: {error}" for error in self.judge_errors)
        if "baseline_warning" in self.context:
            lines.append(f"  {self.context['baseline_warning']}")
        return "\n".join(lines)
