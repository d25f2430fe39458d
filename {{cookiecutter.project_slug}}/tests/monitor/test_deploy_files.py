"""The alert rules and the dashboard under deploy/ parse and have what Prometheus and Grafana
need (promtool is not installed here; the structure is what it would check first)."""

from __future__ import annotations

import dataclasses
import json
import re
from functools import cache

import yaml
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import Counter, Histogram
from opentelemetry.sdk.metrics import MeterProvider
from prometheus_client import CollectorRegistry

from {{ cookiecutter.package_name }}.monitor.metrics import FIGURE_GAUGES, MonitorGauges
from {{ cookiecutter.package_name }}.monitor.report import MonitorReport
from {{ cookiecutter.package_name }}.telemetry import RagMetrics

from ..conftest import PROJECT_ROOT

METRIC = re.compile(r"\b(rag_[A-Za-z_]+)\b")


@cache
def exported() -> frozenset[str]:
    """Every rag_* sample name the service's instruments produce through the Prometheus
    exporter (as a collector's would spell them): each RagMetrics instrument recorded once,
    and the monitor's gauges set from a report with every figure."""
    registry = CollectorRegistry()
    provider = MeterProvider(metric_readers=[PrometheusMetricReader(registry=registry)])
    metrics = RagMetrics.create(provider.get_meter("test"))
    for field in dataclasses.fields(metrics):
        instrument = getattr(metrics, field.name)
        if isinstance(instrument, Histogram):
            instrument.record(1.0)
        else:
            assert isinstance(instrument, Counter), field.name
            instrument.add(1)
    report = MonitorReport(
        window=("a", "b"),
        reference="golden",
        n_current=1,
        n_reference=1,
        enough=True,
        figures=dict.fromkeys(FIGURE_GAUGES, 0.5),
        breaches=[],
        checks={"drift_domain_auc": False},
    )
    MonitorGauges.create(provider.get_meter("test")).export(report, "golden", 0.0)
    names = {s.name for family in registry.collect() for s in family.samples}
    provider.shutdown()
    return frozenset(name for name in names if name.startswith("rag_"))


def test_the_drift_figures_are_exported_under_the_names_the_rules_use() -> None:
    assert {
        "rag_monitor_drift_domain_auc",
        "rag_monitor_drift_centroid_distance",
        "rag_monitor_top_score_ks_p",
        "rag_monitor_breach",
        "rag_monitor_run_time_seconds",
    } <= exported()


def test_alert_rules_are_well_formed_and_use_exported_metrics() -> None:
    rules = yaml.safe_load((PROJECT_ROOT / "deploy/prometheus/rag-alerts.yaml").read_text())
    (group,) = rules["groups"]
    assert group["name"]
    assert len(group["rules"]) >= 4
    for rule in group["rules"]:
        assert {"alert", "expr", "labels", "annotations"} <= set(rule), rule
        assert rule["annotations"]["runbook"].startswith("docs/monitoring.md#")
        assert set(METRIC.findall(rule["expr"])) <= exported(), rule["alert"]


def test_dashboard_is_well_formed_and_uses_exported_metrics() -> None:
    dashboard = json.loads((PROJECT_ROOT / "deploy/grafana/rag-dashboard.json").read_text())
    assert {"title", "uid", "panels", "schemaVersion"} <= set(dashboard)
    for panel in dashboard["panels"]:
        assert {"type", "title", "gridPos", "targets"} <= set(panel)
        for target in panel["targets"]:
            assert set(METRIC.findall(target["expr"])) <= exported(), panel["title"]


def test_there_are_rules_and_panels_for_drift() -> None:
    rules = yaml.safe_load((PROJECT_ROOT / "deploy/prometheus/rag-alerts.yaml").read_text())
    exprs = " ".join(rule["expr"] for rule in rules["groups"][0]["rules"])
    assert 'rag_monitor_breach{figure=~"drift_.*"}' in exprs
    dashboard = json.loads((PROJECT_ROOT / "deploy/grafana/rag-dashboard.json").read_text())
    used = {m for p in dashboard["panels"] for t in p["targets"] for m in METRIC.findall(t["expr"])}
    assert {"rag_monitor_drift_domain_auc", "rag_monitor_drift_centroid_distance"} <= used


def test_every_runbook_anchor_is_a_heading_of_the_monitoring_guide() -> None:
    guide = (PROJECT_ROOT / "docs/monitoring.md").read_text(encoding="utf-8")
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in guide.splitlines()
        if line.startswith("#")
    }
    rules = yaml.safe_load((PROJECT_ROOT / "deploy/prometheus/rag-alerts.yaml").read_text())
    for rule in rules["groups"][0]["rules"]:
        assert rule["annotations"]["runbook"].split("#")[1] in anchors, rule["alert"]
