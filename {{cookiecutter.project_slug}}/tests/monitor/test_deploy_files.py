"""The alert rules and the dashboard under deploy/ parse and have what Prometheus and Grafana
need (promtool is not installed here; the structure is what it would check first)."""

from __future__ import annotations

import json
import re

import yaml

from ..conftest import PROJECT_ROOT

# Metric names the service exports (telemetry.py, as the Prometheus exporter spells them).
EXPORTED = {
    "rag_answers_total",
    "rag_retrieval_duration_seconds_bucket",
    "rag_answer_duration_seconds_bucket",
    "rag_llm_fallbacks_total",
    "rag_llm_cost_USD_total",
    "rag_answer_cache_lookups_total",
}
METRIC = re.compile(r"\b(rag_[A-Za-z_]+)\b")


def test_alert_rules_are_well_formed_and_use_exported_metrics() -> None:
    rules = yaml.safe_load((PROJECT_ROOT / "deploy/prometheus/rag-alerts.yaml").read_text())
    (group,) = rules["groups"]
    assert group["name"]
    assert len(group["rules"]) >= 4
    for rule in group["rules"]:
        assert {"alert", "expr", "labels", "annotations"} <= set(rule), rule
        assert rule["annotations"]["runbook"].startswith("docs/monitoring.md#")
        assert set(METRIC.findall(rule["expr"])) <= EXPORTED, rule["alert"]


def test_dashboard_is_well_formed_and_uses_exported_metrics() -> None:
    dashboard = json.loads((PROJECT_ROOT / "deploy/grafana/rag-dashboard.json").read_text())
    assert {"title", "uid", "panels", "schemaVersion"} <= set(dashboard)
    for panel in dashboard["panels"]:
        assert {"type", "title", "gridPos", "targets"} <= set(panel)
        for target in panel["targets"]:
            assert set(METRIC.findall(target["expr"])) <= EXPORTED, panel["title"]


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
