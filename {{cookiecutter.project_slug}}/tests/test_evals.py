from __future__ import annotations

import json
from pathlib import Path

import pytest

from {{ cookiecutter.package_name }}.errors import BadRequestError
from {{ cookiecutter.package_name }}.evals.gate import QuestionResult, Threshold, load_thresholds, summarise
from {{ cookiecutter.package_name }}.evals.golden import load_golden_set
from {{ cookiecutter.package_name }}.evals.metrics import hit_at_k, percentile, reciprocal_rank

from .conftest import PROJECT_ROOT, SAMPLE_CORPUS


def test_shipped_golden_set_is_valid_and_points_at_real_files() -> None:
    items = load_golden_set(PROJECT_ROOT / "evals" / "golden.jsonl")
    assert len([i for i in items if i.answerable]) >= 15
    assert any(not i.answerable for i in items)
    for item in items:
        for source in item.gold_sources:
            assert (SAMPLE_CORPUS / source).is_file(), f"{item.id}: {source} does not exist"


def test_bad_golden_rows_are_reported_with_line_numbers(tmp_path: Path) -> None:
    good = {"id": "a", "question": "q?", "reference_answer": "r", "gold_sources": ["x.md"]}
    lines = [
        json.dumps(good),
        "{not json",
        json.dumps({**good, "id": "b", "gold_sources": []}),
        json.dumps({**good, "question": ""}),
        json.dumps(good),
    ]
    path = tmp_path / "golden.jsonl"
    path.write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(BadRequestError) as error:
        load_golden_set(path)
    message = str(error.value)
    assert "line 2: not valid JSON" in message
    assert "line 3: an answerable question needs at least one gold source" in message
    assert "line 4: 'question' must be a non-empty string" in message
    assert "line 5: duplicate id 'a'" in message
    assert "line 1" not in message


def test_retrieval_metrics() -> None:
    assert hit_at_k(["a", "b", "c"], ["c"], 3) == 1.0
    assert hit_at_k(["a", "b", "c"], ["c"], 2) == 0.0
    assert reciprocal_rank(["a", "b", "c"], ["b", "c"]) == 0.5
    assert reciprocal_rank(["a"], ["z"]) == 0.0
    assert percentile([5.0, 1.0, 3.0, 2.0, 4.0], 50) == 3.0
    assert percentile([float(i) for i in range(1, 101)], 95) == 95.0


def test_refusal_accuracy_counts_both_directions() -> None:
    def result(answerable: bool, refused: bool) -> QuestionResult:
        return QuestionResult("q", "q", answerable, refused, "", [], [], scores={"mrr": 1.0})

    summary = summarise(
        [result(True, False), result(True, True), result(False, True), result(False, False)], 5
    )
    assert summary["refusal_accuracy"] == 0.5
    assert summary["refused_unanswerable"] == 0.5
    assert summary["answered_answerable"] == 0.5


def test_thresholds_file_is_read_and_checked(tmp_path: Path) -> None:
    k, bars = load_thresholds(PROJECT_ROOT / "evals" / "thresholds.toml")
    assert k == 5
    assert bars["hit_at_5"].minimum is not None
    assert Threshold(minimum=0.5).passes(0.5)
    assert not Threshold(maximum=100).passes(101)
    bad = tmp_path / "t.toml"
    bad.write_text("[metrics.mrr]\nminimum = 0.5\n", encoding="utf-8")
    with pytest.raises(BadRequestError, match=r"\[metrics.mrr\] needs `min` and/or `max`"):
        load_thresholds(bad)
