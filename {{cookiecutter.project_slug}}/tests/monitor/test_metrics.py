"""`monitor` exports its figures as OpenTelemetry gauges through the service's meter provider:
the values a metrics backend sees are the report's."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint

from {{ cookiecutter.package_name }}.container import Services
from {{ cookiecutter.package_name }}.monitor.command import run_monitor
from {{ cookiecutter.package_name }}.monitor.metrics import (
    BREACH_GAUGE,
    FIGURE_GAUGES,
    RUN_GAUGE,
)

from .test_report import T0, THRESHOLDS_TOML, topic, traffic

WEEK_S = 7 * 86400.0


def _gauges(reader: InMemoryMetricReader) -> dict[str, list[tuple[dict[str, object], float]]]:
    data = reader.get_metrics_data()
    assert data is not None
    return {
        metric.name: [
            (dict(p.attributes or {}), p.value)
            for p in metric.data.data_points
            if isinstance(p, NumberDataPoint)
        ]
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name.startswith("rag.monitor.")
    }


@pytest.fixture
def shifted_traffic(services: Services) -> Services:
    """A week of questions on another topic, with lower scores, after a week on the first."""
    dim = services.dense.dimensions
    earlier = traffic(topic(1, dim), 120, seed=10)
    current = traffic(topic(2, dim), 120, seed=11, score=0.6)
    records = [dataclasses.replace(r, time=r.time - 60) for r in current] + [
        dataclasses.replace(r, time=r.time - 60 - WEEK_S) for r in earlier
    ]
    services.capture.sink.write(records)
    return services


def test_monitor_figures_are_exported_as_gauges_equal_to_the_report(
    shifted_traffic: Services, metrics: InMemoryMetricReader, tmp_path: Path
) -> None:
    limits = tmp_path / "monitor.toml"
    limits.write_text(THRESHOLDS_TOML, encoding="utf-8")
    out = tmp_path / "report"
    assert run_monitor(shifted_traffic, 7, "previous", limits, out, now=T0) == 1
    report = json.loads((out / "monitor.json").read_text(encoding="utf-8"))
    gauges = _gauges(metrics)

    exported = [f for f in FIGURE_GAUGES if f in report["figures"]]
    assert {"drift_domain_auc", "drift_centroid_distance", "top_score_ks_p"} <= set(exported)
    assert {"out_of_corpus_rate", "refusal_rate", "ungrounded_rate"} <= set(exported)
    for figure in exported:
        ((labels, value),) = gauges[FIGURE_GAUGES[figure][0]]
        assert labels == {"reference": "previous"}
        assert value == pytest.approx(report["figures"][figure], abs=1e-6), figure
    assert report["figures"]["drift_domain_auc"] > 0.9  # the shift is there to be seen

    flags = {labels["figure"]: value for labels, value in gauges[BREACH_GAUGE]}
    breached = {b.split()[0] for b in report["breaches"]}
    assert breached >= {"drift_domain_auc", "top_score_ks_p"}
    assert flags == {
        name: int(name in breached)
        for name in (
            "drift_domain_auc",
            "drift_centroid_distance",
            "top_score_ks_p",
            "refusal_rate",
        )
    }
    ((_, ran),) = gauges[RUN_GAUGE]
    assert ran == T0


def test_figures_without_enough_traffic_are_not_exported_and_not_breached(
    services: Services, metrics: InMemoryMetricReader, tmp_path: Path
) -> None:
    services.capture.sink.write(traffic(topic(2, services.dense.dimensions), 10, seed=13)[:10])
    limits = tmp_path / "monitor.toml"
    limits.write_text(THRESHOLDS_TOML, encoding="utf-8")
    assert run_monitor(services, 7, "previous", limits, tmp_path / "r", now=T0 + 60) == 0
    gauges = _gauges(metrics)
    assert FIGURE_GAUGES["drift_domain_auc"][0] not in gauges  # "not enough traffic"
    ((_, questions),) = gauges[FIGURE_GAUGES["questions"][0]]
    assert questions == 10
    flags = {labels["figure"]: value for labels, value in gauges[BREACH_GAUGE]}
    assert flags["drift_domain_auc"] == 0
