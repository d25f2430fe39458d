"""The `monitor` figures as OpenTelemetry gauges, through the service's meter provider
(RAG_METRICS_EXPORTER, telemetry.build_meter_provider), so the Prometheus rules and the
Grafana dashboard under deploy/ see drift beside the per-request metrics.

`monitor` is a short-lived command (cron, CI): with `otlp` its values are pushed when the
command exits (Services.close shuts the meter provider down, which exports once more) to
the collector, whose Prometheus exporter keeps them until the next run. A figure the report
has no value for ("not enough traffic") is not set (the SDK drops NaN) and its breach flag
is 0: alert on `rag.monitor.breach`, which every run sets. Dimensionless figures carry no
unit: with "1" a collector's Prometheus exporter appends `_ratio` and the Python one does
not, so the names would differ between the two paths.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from opentelemetry.metrics import Meter, _Gauge

from .report import MonitorReport

# Report figure -> (instrument name, unit, description).
FIGURE_GAUGES: dict[str, tuple[str, str, str]] = {
    "questions": (
        "rag.monitor.questions",
        "{question}",
        "Captured questions in the monitor window.",
    ),
    "drift_centroid_distance": (
        "rag.monitor.drift.centroid_distance",
        "",
        "Cosine distance between the window's and the reference's mean query embeddings.",
    ),
    "drift_domain_auc": (
        "rag.monitor.drift.domain_auc",
        "",
        "AUC of a classifier telling the window's questions from the reference (0.5 = same).",
    ),
    "top_score_ks_p": (
        "rag.monitor.top_score.ks_p",
        "",
        "KS test p-value of the top retrieval score against the previous window.",
    ),
    "out_of_corpus_rate": (
        "rag.monitor.out_of_corpus.rate",
        "",
        "Share of questions whose best dense score is below RAG_REFUSAL_MIN_DENSE.",
    ),
    "refusal_rate": ("rag.monitor.refusal.rate", "", "Share of answered questions refused."),
    "ungrounded_rate": (
        "rag.monitor.ungrounded.rate",
        "",
        "Share of answered questions answered without valid citations.",
    ),
    "judge_faithfulness": (
        "rag.monitor.judge.faithfulness",
        "",
        "Mean ragas faithfulness of the judged sample of production answers.",
    ),
    "judge_answer_relevancy": (
        "rag.monitor.judge.answer_relevancy",
        "",
        "Mean ragas answer relevancy of the judged sample of production answers.",
    ),
}
BREACH_GAUGE = "rag.monitor.breach"
RUN_GAUGE = "rag.monitor.run.time"


@dataclass(frozen=True)
class MonitorGauges:
    figures: dict[str, _Gauge]
    breach: _Gauge
    run_time: _Gauge

    @classmethod
    def create(cls, meter: Meter) -> MonitorGauges:
        return cls(
            figures={
                figure: meter.create_gauge(name, unit=unit, description=description)
                for figure, (name, unit, description) in FIGURE_GAUGES.items()
            },
            breach=meter.create_gauge(
                BREACH_GAUGE,
                unit="{breach}",
                description="1 when the `figure` breached its bound in evals/monitor.toml.",
            ),
            run_time=meter.create_gauge(
                RUN_GAUGE, unit="s", description="When `monitor` last ran (Unix time)."
            ),
        )

    def export(self, report: MonitorReport, reference: str, now: float) -> None:
        """Set every gauge from `report`; `reference` ("golden" or "previous") labels them."""
        labels = {"reference": reference}
        for figure, gauge in self.figures.items():
            value = report.figures.get(figure, math.nan)  # judge figures: when the judge ran
            if not math.isnan(value):
                gauge.set(value, labels)
        for figure, breached in report.checks.items():
            self.breach.set(int(breached), {**labels, "figure": figure})
        self.run_time.set(now, labels)
