"""The monitor report on synthetic traffic (fixed seeds): a topic shift is flagged, the same
traffic is not, and too little traffic gets no drift verdict."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from {{ cookiecutter.package_name }}.errors import BadRequestError
from {{ cookiecutter.package_name }}.monitor.drift import auc, ks_two_sample
from {{ cookiecutter.package_name }}.monitor.report import (
    NOT_ENOUGH,
    MonitorReport,
    build_report,
    load_monitor_thresholds,
)
from {{ cookiecutter.package_name }}.traffic.capture import CaptureRecord

DIM = 32
T0 = 1_767_000_000.0  # a fixed "now"
THRESHOLDS_TOML = """
min_sample = 50
[metrics.drift_domain_auc]
max = 0.7
[metrics.drift_centroid_distance]
max = 0.1
[metrics.top_score_ks_p]
min = 0.001
[metrics.refusal_rate]
max = 0.3
"""


def topic(seed: int, dim: int = DIM) -> list[float]:
    rng = random.Random(seed)
    return [rng.gauss(0, 1) for _ in range(dim)]


def traffic(centre: list[float], n: int, seed: int, score: float = 0.8) -> list[CaptureRecord]:
    """`n` synthetic captured questions around `centre`, one an hour back from T0."""
    rng = random.Random(seed)
    records = []
    for i in range(n):
        vector = [c + rng.gauss(0, 1.5) for c in centre]
        top = rng.gauss(score, 0.05)
        records.append(
            CaptureRecord(
                time=T0 - i * 3600,
                tenant=rng.choice(["acme", "globex"]),
                key_id="k",
                trace_id=f"{i:032x}",
                question={"sha256": "x"},
                chunk_ids=["c1", "c2"],
                sources=["a.md", "a.md"],
                scores=[top, top - 0.1],
                dense_scores=[top, top - 0.1],
                refused=rng.random() < 0.1,
                grounded=True,
                citations_valid=True,
                latency_ms={"retrieve": rng.uniform(20, 40), "answer": rng.uniform(5, 10)},
                model=None,
                input_tokens=0,
                output_tokens=0,
                cost_usd=0.001,
                cache_hit=rng.random() < 0.2,
                fallback_used=False,
                vector=vector,
            )
        )
    return records


@pytest.fixture
def thresholds(tmp_path: Path) -> Path:
    path = tmp_path / "monitor.toml"
    path.write_text(THRESHOLDS_TOML, encoding="utf-8")
    return path


def _report(
    current: list[CaptureRecord], reference: list[CaptureRecord], path: Path
) -> MonitorReport:
    return build_report(
        current,
        [r.vector for r in reference],
        [r.scores[0] for r in reference],
        load_monitor_thresholds(path),
        (T0 - 7 * 86400, T0),
        "earlier window",
        out_of_corpus_dense=0.5,
    )


def test_a_shift_to_another_topic_is_flagged(thresholds: Path) -> None:
    reference = traffic(topic(1), 200, seed=10)
    shifted = traffic(topic(2), 200, seed=11, score=0.6)
    report = _report(shifted, reference, thresholds)
    assert not report.ok
    assert report.figures["drift_domain_auc"] > 0.9
    assert any("drift_domain_auc" in b for b in report.breaches)
    assert any("top_score_ks_p" in b for b in report.breaches)


def test_unchanged_traffic_is_not_flagged(thresholds: Path) -> None:
    reference = traffic(topic(1), 200, seed=10)
    same = traffic(topic(1), 200, seed=12)
    report = _report(same, reference, thresholds)
    assert report.ok, report.breaches
    assert 0.35 < report.figures["drift_domain_auc"] < 0.65
    assert report.figures["drift_centroid_distance"] < 0.1


def test_too_little_traffic_gets_no_drift_verdict(thresholds: Path) -> None:
    reference = traffic(topic(1), 200, seed=10)
    few = traffic(topic(2), 20, seed=13)  # another topic, but only 20 questions
    report = _report(few, reference, thresholds)
    assert math.isnan(report.figures["drift_domain_auc"])
    assert report.ok
    assert NOT_ENOUGH in report.verdict
    assert NOT_ENOUGH in report.to_markdown()


def test_the_report_renders_as_json_markdown_and_self_contained_html(thresholds: Path) -> None:
    report = _report(traffic(topic(1), 100, seed=14), traffic(topic(1), 100, seed=15), thresholds)
    data = json.loads(report.to_json())
    assert data["n_current"] == 100
    assert set(data["cost_per_tenant_usd"]) == {"acme", "globex"}
    assert "latency_retrieve_p95_ms" in data["figures"]
    html = report.to_html()
    assert "<svg" in html
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "| refusal_rate |" in report.to_markdown()


def test_statistics_on_known_inputs() -> None:
    assert auc([0.1, 0.2], [0.3, 0.4]) == 1.0
    assert auc([0.1, 0.3], [0.1, 0.3]) == 0.5
    d, p = ks_two_sample([0.1 * i for i in range(50)], [0.1 * i + 10 for i in range(50)])
    assert d == 1.0
    assert p < 1e-6


def test_a_bad_thresholds_file_names_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[metrics.refusal_rate]\nbelow = 3\n", encoding="utf-8")
    with pytest.raises(BadRequestError, match="needs `min` and/or `max`"):
        load_monitor_thresholds(path)
