"""Eval reports: JSON for machines, Markdown for pull requests, one self-contained HTML page
(inline SVG charts, no scripts or remote assets) for the go/no-go review."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from html import escape
from pathlib import Path

from .baseline import is_quality_metric
from .paired import PairedChange
from .records import EvalReport, MetricRow

_BAR_WIDTH = 240
# Plain string, not an f-string: CSS braces stay single (the file is also a Jinja template).
_CSS = """
body { font: 14px system-ui, sans-serif; margin: 2rem; color: #263238 }
table { border-collapse: collapse; margin: 1rem 0 }
td, th { border: 1px solid #cfd8dc; padding: 4px 8px; text-align: left; vertical-align: top }
.num { text-align: right }
.FAIL, .regressed { color: #c62828; font-weight: bold }
.pass { color: #2e7d32 }
tr.FAIL td { background: #ffebee }
"""


def _number(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f}"


def _json_safe_paired(paired: PairedChange | None) -> dict[str, object] | None:
    """The paired change's N, interval and detectable change (infinite: null)."""
    if paired is None:
        return None
    fields = asdict(paired)
    if math.isinf(paired.detectable):
        fields["detectable"] = None
    return fields


def _json_safe(value: float) -> float | None:
    return None if math.isnan(value) else value


def _without_nan(value: object) -> object:
    """JSON has no NaN: a metric that could not be scored is null."""
    if isinstance(value, float):
        return _json_safe(value)
    if isinstance(value, dict):
        return {key: _without_nan(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_without_nan(item) for item in value]
    return value


def to_json(report: EvalReport) -> str:
    return json.dumps(
        {
            "go": report.go,
            "verdict": report.verdict,
            "context": report.context,
            "summary": {row.name: _json_safe(row.value) for row in report.rows},
            "metrics": [
                {
                    "metric": row.name,
                    "value": _json_safe(row.value),
                    "threshold": asdict(row.threshold) if row.threshold else None,
                    "result": row.verdict,
                    "baseline": row.delta.baseline if row.delta else None,
                    "delta": row.delta.delta if row.delta else None,
                    "regressed": row.delta.regressed if row.delta else False,
                    "paired": _json_safe_paired(row.delta.paired if row.delta else None),
                }
                for row in report.rows
            ],
            "judge_errors": report.judge_errors,
            "results": _without_nan([asdict(result) for result in report.results]),
        },
        indent=2,
        allow_nan=False,
    )


def to_markdown(report: EvalReport) -> str:
    lines = [f"# Eval report: {report.verdict}", ""]
    lines += [f"- {key}: {value}" for key, value in report.context.items()]
    lines += [
        "",
        "| metric | value | threshold | result | vs baseline |",
        "|---|---:|---|---|---:|",
    ]
    for row in report.rows:
        delta = ""
        if row.delta is not None:
            delta = f"{row.delta.delta:+.3f}" + (" **regressed**" if row.delta.regressed else "")
        bar = row.threshold.describe() if row.threshold else ""
        lines.append(f"| {row.name} | {_number(row.value)} | {bar} | {row.verdict} | {delta} |")
    k = report.context.get("k", "5")
    failures = [r for r in report.results if not r.refusal_correct or r.missed(k)]
    if failures:
        lines += ["", "## Questions to look at", ""]
        for r in failures:
            why = "wrong refusal" if not r.refusal_correct else "gold source not retrieved"
            lines.append(f"- `{r.id}` ({why}): {r.question}")
    return "\n".join(lines) + "\n"


def _bar(row: MetricRow) -> str:
    """A bar for a metric on a 0..1 scale, with its threshold marked."""
    if not is_quality_metric(row.name) or math.isnan(row.value) or not 0.0 <= row.value <= 1.0:
        return ""
    colour = {"pass": "#2e7d32", "FAIL": "#c62828"}.get(row.verdict, "#607d8b")
    parts = [
        f'<svg width="{_BAR_WIDTH}" height="14" role="img" aria-label="{row.value:.3f}">',
        f'<rect width="{_BAR_WIDTH}" height="14" fill="#eceff1"/>',
        f'<rect width="{row.value * _BAR_WIDTH:.1f}" height="14" fill="{colour}"/>',
    ]
    limits = (row.threshold.minimum, row.threshold.maximum) if row.threshold else ()
    for bound in (b for b in limits if b is not None):
        x = min(max(bound, 0.0), 1.0) * _BAR_WIDTH
        parts.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="0" y2="14" stroke="#000" stroke-width="2"/>'
        )
    parts.append("</svg>")
    return "".join(parts)


def to_html(report: EvalReport) -> str:
    verdict_colour = "#2e7d32" if report.go else "#c62828"
    context = "".join(
        f"<tr><th>{escape(key)}</th><td>{escape(value)}</td></tr>"
        for key, value in report.context.items()
    )
    metrics = []
    for row in report.rows:
        delta = ""
        if row.delta is not None:
            mark = " regressed" if row.delta.regressed else ""
            delta = f'<span class="{mark.strip()}">{row.delta.delta:+.3f}{mark}</span>'
        bar = row.threshold.describe() if row.threshold else ""
        metrics.append(
            f"<tr><td>{escape(row.name)}</td><td class=num>{_number(row.value)}</td>"
            f"<td>{_bar(row)}</td><td>{escape(bar)}</td>"
            f'<td class="{row.verdict}">{escape(row.verdict)}</td><td class=num>{delta}</td></tr>'
        )
    questions = []
    k = report.context.get("k", "5")
    for r in report.results:
        sources = ", ".join(
            f"<b>{escape(s)}</b>" if s in r.gold_sources else escape(s) for s in r.retrieved_sources
        )
        hit = "" if not r.answerable else ("MISS" if r.missed(k) else "hit")
        refusal = "refused" if r.refused else "answered"
        status = "ok" if r.refusal_correct and hit != "MISS" else "FAIL"
        questions.append(
            f'<tr class="{status}"><td>{escape(r.id)}</td><td>{escape(", ".join(r.tags))}</td>'
            f"<td>{escape(r.question)}</td><td>{'yes' if r.answerable else 'no'}</td>"
            f"<td>{refusal}</td><td>{hit}</td><td>{sources}</td>"
            f"<td>{escape(r.answer[:300])}</td></tr>"
        )
    errors = "".join(f"<li>{escape(error)}</li>" for error in report.judge_errors)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Eval report</title>
<style>{_CSS}</style></head><body>
<h1>Go/no-go: <span style="color:{verdict_colour}">{escape(report.verdict)}</span></h1>
<table>{context}</table>
<h2>Metrics</h2>
<p>Bars show 0 to 1; the black line is the threshold.</p>
<table><tr><th>metric</th><th>value</th><th></th><th>threshold</th><th>result</th>
<th>vs baseline</th></tr>{"".join(metrics)}</table>
{"<h2>Judge errors</h2><ul>" + errors + "</ul>" if errors else ""}
<h2>Questions</h2>
<p>Retrieved sources in bold are gold sources.</p>
<table><tr><th>id</th><th>tags</th><th>question</th><th>answerable</th><th>outcome</th>
<th>hit@{escape(k)}</th><th>retrieved</th><th>answer</th></tr>{"".join(questions)}</table>
</body></html>
"""


def write_reports(report: EvalReport, report_dir: Path) -> list[Path]:
    report_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, render in (
        ("report.json", to_json),
        ("report.md", to_markdown),
        ("report.html", to_html),
    ):
        path = report_dir / name
        path.write_text(render(report), encoding="utf-8")
        paths.append(path)
    return paths
