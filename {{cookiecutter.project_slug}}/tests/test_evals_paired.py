"""The gate's error bars: a paired bootstrap of the per-question change against the baseline."""

from __future__ import annotations

import json
import random
from pathlib import Path

from {{ cookiecutter.package_name }}.evals import baseline as baselines
from {{ cookiecutter.package_name }}.evals.gate import error_bars
from {{ cookiecutter.package_name }}.evals.paired import paired_change

TOLERANCE = 0.02


def _scores(n: int, seed: int) -> dict[str, float]:
    rng = random.Random(seed)
    return {f"q{i}": rng.choice([1.0, 0.5, 1 / 3, 0.0]) for i in range(n)}


def test_a_planted_regression_is_caught() -> None:
    before = _scores(200, seed=1)
    # A quarter of the questions that found their source at rank 1 now find it nowhere.
    after = {q: (0.0 if v == 1.0 and i % 4 == 0 else v) for i, (q, v) in enumerate(before.items())}
    change = paired_change(before, after, TOLERANCE)
    assert change is not None
    assert change.regressed
    assert change.high < -TOLERANCE
    assert change.n == 200


def test_planted_noise_is_not_a_regression() -> None:
    before = _scores(25, seed=2)
    # One question loses its source (1 -> 0), as a tie broken the other way can make it:
    # MRR's mean drops 0.04, which a comparison of two means calls a regression.
    before["q3"] = 1.0
    after = {**before, "q3": 0.0}
    change = paired_change(before, after, TOLERANCE)
    assert change is not None
    assert change.mean < -TOLERANCE  # the unpaired gate would have said NO-GO
    assert not change.regressed
    assert change.too_small  # and 25 questions cannot see a 0.02 change at all
    assert change.detectable > TOLERANCE


def test_noise_both_ways_over_many_questions_is_not_a_regression() -> None:
    before = _scores(400, seed=5)
    rng = random.Random(6)
    after = {
        q: min(1.0, max(0.0, v + rng.choice([-0.5, 0.0, 0.0, 0.5]))) for q, v in before.items()
    }
    change = paired_change(before, after, TOLERANCE)
    assert change is not None
    assert not change.regressed
    assert change.low < 0 < change.high


def test_the_bootstrap_repeats_with_its_seed() -> None:
    before, after = _scores(50, seed=3), _scores(50, seed=4)
    assert paired_change(before, after, TOLERANCE) == paired_change(before, after, TOLERANCE)


def test_baseline_keeps_per_question_results_and_gates_on_the_interval(tmp_path: Path) -> None:
    before = {f"q{i}": {"mrr": 1.0, "refusal_accuracy": 1.0} for i in range(25)}
    after = {q: dict(s) for q, s in before.items()}
    after["q0"]["mrr"] = 0.0  # one question: the mean drops 0.04
    path = tmp_path / "baseline.json"
    baselines.save_baseline(path, {"mrr": 1.0, "refusal_accuracy": 1.0}, "g", before)
    baseline = baselines.load_baseline(path)
    assert baseline.per_question == before
    deltas = baselines.compare({"mrr": 0.96, "refusal_accuracy": 1.0}, baseline, TOLERANCE, after)
    assert deltas["mrr"].delta < -TOLERANCE
    assert not deltas["mrr"].regressed  # one question is within the noise
    assert deltas["mrr"].paired is not None
    lines = error_bars(deltas, TOLERANCE, baseline)
    assert any("N=25" in line and "smallest detectable change" in line for line in lines)
    assert any("WARNING" in line and "cannot detect a 0.02 change in mrr" in line for line in lines)


def test_an_old_baseline_without_per_question_results_still_gates_on_means(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"golden": "g", "created_at": "x", "summary": {"mrr": 0.9}}))
    baseline = baselines.load_baseline(path)
    assert baseline.per_question == {}
    deltas = baselines.compare({"mrr": 0.85}, baseline, TOLERANCE, {"q0": {"mrr": 0.85}})
    assert deltas["mrr"].regressed
    assert deltas["mrr"].paired is None
    (line,) = error_bars(deltas, TOLERANCE, baseline)
    assert "no per-question results" in line
