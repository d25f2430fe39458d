"""The `monitor` report: captured traffic over a window against a reference, as figures,
breaches of the thresholds file, and JSON / Markdown / self-contained HTML."""

from __future__ import annotations

import json
import math
import tomllib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import BadRequestError
from ..traffic.capture import CaptureRecord
from .drift import Vector, centroid_distance, domain_classifier_auc, ks_two_sample

if TYPE_CHECKING:
    from .judged import JudgeSummary

NOT_ENOUGH = "not enough traffic"
JUDGE_NOT_ASKED = "judge metrics not run"


@dataclass(frozen=True)
class MonitorThresholds:
    min_sample: int
    bounds: dict[str, tuple[float | None, float | None]]  # figure -> (min, max)


def load_monitor_thresholds(path: Path) -> MonitorThresholds:
    """`min_sample = 30` and `[metrics.NAME] min = ... / max = ...`, like the eval gate's."""
    if not path.is_file():
        raise BadRequestError(f"Monitor thresholds file {path} does not exist (--thresholds).")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise BadRequestError(f"Monitor thresholds file {path} is not valid TOML: {exc}") from exc
    bounds = {}
    for name, bound in data.get("metrics", {}).items():
        if not isinstance(bound, dict) or not bound or not set(bound) <= {"min", "max"}:
            raise BadRequestError(
                f"Monitor thresholds file {path}: [metrics.{name}] needs `min` and/or `max`"
            )
        bounds[name] = (bound.get("min"), bound.get("max"))
    return MonitorThresholds(int(data.get("min_sample", 30)), bounds)


def _percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _share(flags: Sequence[bool]) -> float:
    return sum(flags) / len(flags) if flags else math.nan


@dataclass
class MonitorReport:
    window: tuple[str, str]
    reference: str
    n_current: int
    n_reference: int
    enough: bool
    figures: dict[str, float]
    breaches: list[str]
    # Each figure with a bound in the thresholds file: True when it breached (a figure with
    # no value, "not enough traffic", cannot breach).
    checks: dict[str, bool] = field(default_factory=dict)
    per_tenant_cost: dict[str, float] = field(default_factory=dict)
    per_day: dict[str, dict[str, float]] = field(default_factory=dict)
    judge: JudgeSummary | None = None

    @property
    def judge_note(self) -> str:
        return JUDGE_NOT_ASKED if self.judge is None else self.judge.note

    def _judge_lines(self) -> list[str]:
        lines = [f"Judge: {self.judge_note}."]
        if self.judge is None or not self.judge.ran:
            return lines
        described = self.judge.described
        lines[0] += (
            f" By {described.get('judge_model')} at {described.get('judge_endpoint')} "
            f"({described.get('prompt_version')})."
        )
        if self.judge.skipped:
            lines.append(f"{self.judge.skipped} sampled answers skipped: passages re-ingested.")
        if self.judge.errors:
            lines.append(f"{len(self.judge.errors)} judge errors, first: {self.judge.errors[0]}")
        if self.judge.lowest:
            shown = ", ".join(f"{t} ({v:.2f})" for t, v in self.judge.lowest)
            lines.append(f"Lowest faithfulness (trace ids): {shown}.")
        return lines

    @property
    def ok(self) -> bool:
        return not self.breaches

    def to_json(self) -> str:
        def safe(value: float) -> float | None:
            return None if math.isnan(value) else round(value, 6)

        return json.dumps(
            {
                "window": list(self.window),
                "reference": self.reference,
                "n_current": self.n_current,
                "n_reference": self.n_reference,
                "verdict": self.verdict,
                "figures": {k: safe(v) for k, v in self.figures.items()},
                "breaches": self.breaches,
                "cost_per_tenant_usd": {k: safe(v) for k, v in self.per_tenant_cost.items()},
                "per_day": {d: {k: safe(v) for k, v in f.items()} for d, f in self.per_day.items()},
                "judge": (
                    {"ran": False, "note": self.judge_note}
                    if self.judge is None
                    else self.judge.to_dict()
                ),
            },
            indent=2,
        )

    @property
    def verdict(self) -> str:
        if self.breaches:
            return "BREACH: " + "; ".join(self.breaches)
        return "OK" if self.enough else f"OK ({NOT_ENOUGH} for a drift verdict)"

    def to_markdown(self) -> str:
        lines = [
            "# Monitoring report",
            "",
            f"Window {self.window[0]} to {self.window[1]}: {self.n_current} questions; "
            f"reference {self.reference}: {self.n_reference}.",
            "",
            f"**{self.verdict}**",
            "",
            *self._judge_lines(),
            "",
            "| figure | value |",
            "|---|---|",
        ]
        for name, value in self.figures.items():
            shown = NOT_ENOUGH if math.isnan(value) else f"{value:.4g}"
            lines.append(f"| {name} | {shown} |")
        if self.per_tenant_cost:
            lines += ["", "| tenant | cost (USD) |", "|---|---|"]
            lines += [f"| {t} | {c:.4f} |" for t, c in sorted(self.per_tenant_cost.items())]
        if self.per_day:
            lines += ["", "| day | questions | refusal rate | cost (USD) |", "|---|---|---|---|"]
            for day, f in sorted(self.per_day.items()):
                lines.append(
                    f"| {day} | {f['questions']:.0f} | {f['refusal_rate']:.3f} | "
                    f"{f['cost_usd']:.4f} |"
                )
        return "\n".join(lines) + "\n"

    def to_html(self) -> str:
        days = sorted(self.per_day)
        bars = []
        top = max((self.per_day[d]["questions"] for d in days), default=1.0) or 1.0
        width = max(1, len(days)) * 40
        for i, day in enumerate(days):
            height = 120 * self.per_day[day]["questions"] / top
            refusal = self.per_day[day]["refusal_rate"]
            bars.append(
                f'<rect x="{i * 40 + 5}" y="{130 - height:.1f}" width="30" height="{height:.1f}" '
                f'fill="#4a7"><title>{escape(day)}: {self.per_day[day]["questions"]:.0f} '
                f"questions, refusal {refusal:.2f}</title></rect>"
                f'<circle cx="{i * 40 + 20}" cy="{130 - 120 * refusal:.1f}" r="3" fill="#c33"/>'
            )
        svg = (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="140" '
            f'role="img" aria-label="questions per day (bars) and refusal rate (dots)">'
            + "".join(bars)
            + "</svg>"
        )
        rows = "".join(
            f"<tr><td>{escape(k)}</td><td>{'not enough traffic' if math.isnan(v) else f'{v:.4g}'}"
            "</td></tr>"
            for k, v in self.figures.items()
        )
        return (
            '<!doctype html><html><head><meta charset="utf-8"><title>Monitoring report</title>'
            "<style>body{font-family:sans-serif;margin:2em}td{padding:2px 8px}</style></head>"
            f"<body><h1>Monitoring report</h1><p>{escape(self.verdict)}</p>"
            + "".join(f"<p>{escape(line)}</p>" for line in self._judge_lines())
            + f"<p>Window {escape(self.window[0])} to {escape(self.window[1])}: "
            f"{self.n_current} questions; reference {escape(self.reference)}: "
            f"{self.n_reference}.</p>{svg}<table>{rows}</table></body></html>\n"
        )


def build_report(
    current: Sequence[CaptureRecord],
    reference_vectors: Sequence[Vector],
    reference_scores: Sequence[float],
    thresholds: MonitorThresholds,
    window: tuple[float, float],
    reference: str,
    out_of_corpus_dense: float,
    judge: JudgeSummary | None = None,
) -> MonitorReport:
    """Figures over `current` against the reference; a breach is a figure outside its bound.
    Drift figures need `min_sample` questions on both sides; below it they are NaN
    ("not enough traffic") and cannot breach."""
    n_ref = len(reference_vectors)
    enough = len(current) >= thresholds.min_sample and n_ref >= thresholds.min_sample
    figures: dict[str, float] = {"questions": float(len(current))}
    vectors = [r.vector for r in current if r.vector]
    scores = [s for r in current for s in r.scores[:1]]
    if enough and vectors:
        figures["drift_centroid_distance"] = centroid_distance(reference_vectors, vectors)
        figures["drift_domain_auc"] = domain_classifier_auc(reference_vectors, vectors)
    else:
        figures["drift_centroid_distance"] = figures["drift_domain_auc"] = math.nan
    if enough and scores and reference_scores:
        figures["top_score_ks_p"] = ks_two_sample(reference_scores, scores)[1]
    else:
        figures["top_score_ks_p"] = math.nan
    answered = [r for r in current if r.refused is not None]  # not the retrievals
    figures["refusal_rate"] = _share([bool(r.refused) for r in answered])
    figures["ungrounded_rate"] = _share([not r.refused and not r.citations_valid for r in answered])
    figures["out_of_corpus_rate"] = _share(
        [
            max((d for d in r.dense_scores if d is not None), default=0.0) < out_of_corpus_dense
            for r in current
        ]
    )
    figures["cache_hit_rate"] = _share([r.cache_hit for r in answered])
    figures["fallback_rate"] = _share([r.fallback_used for r in answered])
    stages = sorted({s for r in current for s in r.latency_ms})
    for stage in stages:
        values = [r.latency_ms[stage] for r in current if stage in r.latency_ms]
        figures[f"latency_{stage}_p50_ms"] = _percentile(values, 50)
        figures[f"latency_{stage}_p95_ms"] = _percentile(values, 95)
    if judge is not None and judge.ran:  # judge_faithfulness, judge_answer_relevancy
        figures.update(judge.scores)
    costs = [r.cost_usd for r in current if r.cost_usd is not None]
    figures["cost_per_query_usd"] = sum(costs) / len(costs) if costs else math.nan
    per_tenant: dict[str, float] = defaultdict(float)
    per_day: dict[str, list[CaptureRecord]] = defaultdict(list)
    for r in current:
        per_tenant[r.tenant] += r.cost_usd or 0.0
        per_day[datetime.fromtimestamp(r.time, UTC).date().isoformat()].append(r)
    breaches = []
    checks: dict[str, bool] = {}
    for name, (low, high) in thresholds.bounds.items():
        value = figures.get(name, math.nan)
        checks[name] = False
        if math.isnan(value):
            continue
        if low is not None and value < low:
            breaches.append(f"{name} {value:.4g} < {low:g}")
            checks[name] = True
        if high is not None and value > high:
            breaches.append(f"{name} {value:.4g} > {high:g}")
            checks[name] = True
    iso = [datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds") for t in window]
    return MonitorReport(
        window=(iso[0], iso[1]),
        reference=reference,
        n_current=len(current),
        n_reference=n_ref,
        enough=enough,
        figures=figures,
        breaches=breaches,
        checks=checks,
        judge=judge,
        per_tenant_cost=dict(per_tenant),
        per_day={
            day: {
                "questions": float(len(rs)),
                "refusal_rate": _share([bool(r.refused) for r in rs]),
                "cost_usd": sum(r.cost_usd or 0.0 for r in rs),
            }
            for day, rs in per_day.items()
        },
    )
