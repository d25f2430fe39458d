"""`monitor`: the report over the last days of captured traffic; exit 1 on a breach."""

from __future__ import annotations

import time
from pathlib import Path

from ..container import Services
from ..errors import BadRequestError
from ..evals.golden import load_golden_set
from .judged import run_judge
from .metrics import MonitorGauges
from .report import build_report, load_monitor_thresholds

DAY_S = 86400.0


def run_monitor(
    services: Services,
    days: float,
    reference: str,
    thresholds: Path,
    out_dir: Path,
    now: float | None = None,
    judge_sample: int | None = None,
) -> int:
    """`reference` is "golden" (the golden set's questions) or "previous" (the window of
    the same length before this one). `judge_sample`: answers the LLM judge scores, when one
    is configured (None: RAG_MONITOR_JUDGE_SAMPLE)."""
    if judge_sample is not None and judge_sample < 0:
        raise BadRequestError(f"--judge-sample {judge_sample}: give 0 (no judge) or more.")
    limits = load_monitor_thresholds(thresholds)
    until = time.time() if now is None else now
    since = until - days * DAY_S
    sink = services.capture.sink
    current = list(sink.read(since, until))
    if reference == "golden":
        items = load_golden_set(services.settings.eval_golden_set)
        vectors = [services.dense.embed_query(item.question) for item in items]
        scores: list[float] = []  # the golden set has no production scores: no KS test
        described = f"golden set {services.settings.eval_golden_set}"
    else:
        earlier = list(sink.read(since - days * DAY_S, since))
        vectors = [r.vector for r in earlier if r.vector]
        scores = [r.scores[0] for r in earlier if r.scores]
        described = f"the previous {days:g} days"
    size = services.settings.monitor_judge_sample if judge_sample is None else judge_sample
    judge = run_judge(services, current, size)
    report = build_report(
        current,
        vectors,
        scores,
        limits,
        (since, until),
        described,
        services.settings.refusal_min_dense,
        judge,
    )
    gauges = MonitorGauges.create(services.meter_provider.get_meter(__name__))
    gauges.export(report, reference, until)  # sent as the meter provider shuts down
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for suffix, text in (
        ("json", report.to_json()),
        ("md", report.to_markdown()),
        ("html", report.to_html()),
    ):
        path = out_dir / f"monitor.{suffix}"
        path.write_text(text, encoding="utf-8")
        paths.append(str(path))
    print(report.to_markdown())
    print(f"{report.verdict}; reports: {', '.join(paths)}")
    return 0 if report.ok else 1
