"""The calibrated refusal model: its evidence, its file, its fit, and `eval calibrate`."""

from __future__ import annotations

import json
import math
import random
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from {{ cookiecutter.package_name }}.cli import main
from {{ cookiecutter.package_name }}.domain import TERM_COUNT_CAP, Hit
from {{ cookiecutter.package_name }}.errors import BadRequestError, ConfigurationError
from {{ cookiecutter.package_name }}.evals.calibrate import Row, auc, fit, threshold_for
from {{ cookiecutter.package_name }}.refusal import (
    FEATURES,
    RefusalModel,
    RefusalPolicy,
    build_refusal,
    evidence_features,
)
from {{ cookiecutter.package_name }}.settings import Settings

from .conftest import PROJECT_ROOT

# A question the corpus answers: dense and BM25 both put the same chunk first, close cosine,
# a sentence that matches, and every term in many chunks.
STRONG = [
    Hit("a", "a.md", "Passwords have 14 characters.", 0.9, {}, 0.66, 1, 1, 0.0),
    Hit("b", "a.md", "Passwords rotate yearly.", 0.8, {}, 0.55, 2, 2, 0.0),
    Hit("c", "b.md", "Keys are 32 bytes.", 0.7, {}, 0.41, 3, 5, 0.0),
]
STRONG = [
    replace(h, sentence_score=s, term_chunk_counts=(12, 30))
    for h, s in zip(STRONG, (0.72, 0.5, 0.3), strict=True)
]
# A question about something the corpus never mentions: weak cosines, no agreement, no
# sentence close to it, and one of its terms in no chunk at all.
WEAK = [
    Hit("x", "c.md", "The canteen opens at 8.", 0.5, {}, 0.18, 1, None, 0.75),
    Hit("y", "d.md", "Parking is free.", 0.4, {}, 0.15, 2, None, 0.75),
    Hit("z", "e.md", "Invoices are due in 30 days.", 0.3, None or {}, None, None, 1, 0.75),
]
WEAK = [
    replace(h, sentence_score=s, term_chunk_counts=(0, 14))
    for h, s in zip(WEAK, (0.2, 0.15, 0.1), strict=True)
]


# The features the synthetic rows below are made of (the first shipped model's).
NINE = (
    "best_dense",
    "first_dense",
    "dense_spread",
    "in_dense_top",
    "best_sparse_rank",
    "first_sparse_rank",
    "agreeing_share",
    "top_agreement",
    "matched_share",
)


def with_unmatched(hits: list[Hit], share: float) -> list[Hit]:
    return [replace(h, unmatched_share=share) for h in hits]


def test_features_are_read_from_the_hits_evidence() -> None:
    values = dict(zip(NINE, evidence_features(STRONG, NINE), strict=True))
    assert values["best_dense"] == pytest.approx(0.66)
    assert values["first_dense"] == pytest.approx(0.66)
    assert values["best_sparse_rank"] == 1.0
    assert values["agreeing_share"] == 1.0
    assert values["top_agreement"] == 1.0
    assert values["matched_share"] == 1.0
    weak = dict(zip(NINE, evidence_features(WEAK, NINE), strict=True))
    assert weak["top_agreement"] == 0.0
    assert weak["matched_share"] == pytest.approx(0.25)
    assert evidence_features([], NINE) == [0.0] * len(NINE)


def test_term_and_bm25_score_features_read_their_evidence() -> None:
    counted = [
        replace(h, term_chunk_counts=(0, 5, 40), sparse_score=s)
        for h, s in zip(STRONG, (3.0, 1.0, None), strict=True)
    ]
    values = dict(zip(FEATURES, evidence_features(counted, tuple(FEATURES)), strict=True))
    assert values["unknown_terms"] == 1.0
    assert values["rarest_term_chunks"] == pytest.approx(0.0)  # log1p(0): a term in no chunk
    assert values["best_sparse_score"] == pytest.approx(math.log1p(3.0))
    assert values["first_sparse_score"] == pytest.approx(math.log1p(3.0))
    assert values["best_dense_rank"] == 1.0
    common = [replace(h, term_chunk_counts=(7, 9)) for h in STRONG]
    assert FEATURES["rarest_term_chunks"](common) == pytest.approx(math.log1p(7))
    assert FEATURES["unknown_terms"](common) == 0.0
    # No counts (evidence off, or a question of stopwords only): no sign of absence.
    uncounted = [replace(h, term_chunk_counts=None) for h in STRONG]
    assert FEATURES["rarest_term_chunks"](uncounted) == pytest.approx(math.log1p(TERM_COUNT_CAP))
    assert FEATURES["unknown_terms"](uncounted) == 0.0


def test_the_best_sentence_feature_reads_the_hits_sentence_scores() -> None:
    scored = [replace(h, sentence_score=s) for h, s in zip(STRONG, (0.2, 0.71, -1.0), strict=True)]
    assert FEATURES["best_sentence"](scored) == pytest.approx(0.71)
    unmeasured = [replace(h, sentence_score=None) for h in STRONG]
    assert FEATURES["best_sentence"](unmeasured) == -1.0  # not measured, or no sentences
    reading = RefusalModel(("best_sentence", "best_dense"), (0, 0), (1, 1), (-1, -1), 0.0, 0.5)
    assert reading.reads_sentences
    assert not RefusalModel(("best_dense",), (0,), (1,), (-1,), 0.0, 0.5).reads_sentences
    assert not RefusalPolicy(0.35, 0.48, 10).reads_sentences


def test_the_shipped_model_refuses_weak_evidence_and_answers_strong() -> None:
    model = RefusalModel.load()
    assert model.decide(WEAK).refuse
    decision = model.decide(STRONG)
    assert not decision.refuse
    assert decision.probability is not None
    assert decision.probability < model.threshold
    assert "refusal model" in decision.reason
    assert model.decide([]).refuse


def test_one_unknown_word_does_not_refuse_a_question_with_strong_evidence() -> None:
    """One of the question's terms in no chunk (so half its terms in no BM25 result) is
    enough for the hand rules to refuse; weighed with a close dense match and a matching
    sentence, it is not."""
    one_unknown = [replace(h, term_chunk_counts=(0, 30)) for h in with_unmatched(STRONG, 0.5)]
    assert RefusalPolicy(0.35, 0.48, 10, max_unmatched_share=0.4).decide(one_unknown).refuse
    model = RefusalModel.load()
    assert not model.decide(one_unknown).refuse
    # ...but it does count: the same hits score closer to refusal.
    assert model.probability(one_unknown) > model.probability(STRONG)


def test_the_runtime_applies_the_model_without_scikit_learn() -> None:
    code = (
        "import sys\n"
        "from {{ cookiecutter.package_name }}.refusal import RefusalModel\n"
        "from {{ cookiecutter.package_name }}.domain import Hit\n"
        "hit = Hit('a', 'a', 't', 1.0, {}, 0.7, 1, 1, 0.0, sentence_score=0.7)\n"
        "d = RefusalModel.load().decide([hit])\n"
        "assert not d.refuse, d\n"
        "assert 'sklearn' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_model_file_round_trips_and_a_bad_one_is_one_clear_error(tmp_path: Path) -> None:
    model = RefusalModel.load()
    path = tmp_path / "m.json"
    path.write_text(json.dumps(model.to_json()), encoding="utf-8")
    again = RefusalModel.load(path)
    assert again.probability(STRONG) == pytest.approx(model.probability(STRONG))
    broken = model.to_json() | {"features": ["best_dense", "shoe_size"]}
    path.write_text(json.dumps(broken), encoding="utf-8")
    with pytest.raises(ConfigurationError, match="eval calibrate"):
        RefusalModel.load(path)
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(ConfigurationError, match="cannot be read as JSON"):
        RefusalModel.load(path)
    with pytest.raises(ConfigurationError, match="does not exist"):
        RefusalModel.load(tmp_path / "missing.json")


def test_settings_choose_the_model_or_the_rules(tmp_path: Path) -> None:
    assert isinstance(build_refusal(Settings(_env_file=None)), RefusalPolicy)  # the default
    model = build_refusal(Settings(_env_file=None, refusal="model"))
    assert isinstance(model, RefusalModel)
    path = tmp_path / "m.json"
    path.write_text(json.dumps(RefusalModel.load().to_json()), encoding="utf-8")
    chosen = build_refusal(Settings(_env_file=None, refusal="model", refusal_model_path=path))
    assert isinstance(chosen, RefusalModel)
    assert chosen.source == str(path)


def test_auc_and_threshold_arithmetic() -> None:
    assert auc([0.9, 0.8, 0.1], [True, False, False]) == 1.0
    assert auc([0.5, 0.5], [True, False]) == 0.5
    scores = [0.9, 0.7, 0.6, 0.4, 0.3, 0.2, 0.1, 0.05, 0.01, 0.0, 0.8]
    positive = [True, True, False, False, False, False, False, False, False, False, True]
    t = threshold_for(scores, positive, 0.10)  # 8 answerable: 0 may be refused
    assert 0.6 < t <= 0.7
    t = threshold_for(scores, positive, 0.25)  # 2 of 8 may be refused
    assert 0.3 < t <= 0.4


def _synthetic_rows(n: int, seed: int = 0) -> list[Row]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        unanswerable = i % 3 == 0
        best = rng.gauss(0.32 if unanswerable else 0.55, 0.07)
        agree = float(rng.random() < (0.2 if unanswerable else 0.8))
        matched = min(1.0, max(0.0, rng.gauss(0.6 if unanswerable else 0.95, 0.15)))
        features = [best, best - 0.02, 0.05, 1.0, agree, agree, agree / 2, agree, matched]
        rows.append(Row(features, unanswerable))
    return rows


def test_a_fit_separates_the_classes_and_reports_itself() -> None:
    model = fit(_synthetic_rows(90), features=NINE, source="synthetic")
    report = model.report
    assert report["rows"] == 90
    assert report["unanswerable"] == 30
    assert report["auc_cross_validated"] > 0.85
    assert report["operating_point"]["answerable_refused"] <= 0.10
    coefficients = dict(zip(model.features, model.coef, strict=True))
    assert coefficients["best_dense"] < 0  # a closer match means less refusal
    assert model.decide(WEAK).refuse
    assert not model.decide(STRONG).refuse


def test_too_few_rows_are_refused_with_one_clear_error() -> None:
    rows = _synthetic_rows(40)
    few_unanswerable = [r for r in rows if not r.unanswerable] + [
        r for r in rows if r.unanswerable
    ][:4]
    with pytest.raises(BadRequestError, match="at least 5 of each"):
        fit(few_unanswerable, features=NINE)
    with pytest.raises(BadRequestError, match="at least 20 rows"):
        fit(rows[:12], features=NINE)


def test_eval_calibrate_refuses_a_golden_set_that_is_too_small(
    cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    golden = cli_env / "golden.jsonl"
    rows = [
        json.loads(line)
        for line in (PROJECT_ROOT / "evals" / "golden.jsonl").read_text().splitlines()
        if line.strip()
    ]
    golden.write_text("\n".join(json.dumps(r) for r in rows[:8]) + "\n", encoding="utf-8")
    code = main(
        [
            "eval",
            "calibrate",
            "--golden",
            str(golden),
            "--thresholds",
            str(PROJECT_ROOT / "evals" / "thresholds.toml"),
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1
    assert err[0].startswith("error: Too few rows to calibrate refusal")


@pytest.mark.slow
def test_eval_calibrate_fits_the_sample_golden_set_and_the_service_uses_it(
    cli_env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(PROJECT_ROOT / "evals", cli_env / "evals")
    shutil.copytree(PROJECT_ROOT / "data" / "sample", cli_env / "data" / "sample")
    assert main(["eval", "calibrate"]) == 0
    out = capsys.readouterr().out
    written = cli_env / "evals" / "refusal_model.json"
    assert f"Refusal model written: {written.relative_to(cli_env)}" in out
    assert "rows: 25 (20 answerable, 5 unanswerable)" in out
    assert "RAG_REFUSAL_MODEL_PATH=evals/refusal_model.json" in out
    assert "RAG_REFUSAL=model" in out
    model = RefusalModel.load(written)
    assert model.report["rows"] == 25
    assert 0.0 <= model.report["auc_cross_validated"] <= 1.0
    assert "threshold" in model.report["operating_point"]
    monkeypatch.setenv("RAG_REFUSAL", "model")
    monkeypatch.setenv("RAG_REFUSAL_MODEL_PATH", str(written))
    assert main(["eval"]) in (0, 1)  # the gate runs with it and says which refusal decided
    report = capsys.readouterr().out
    assert "refusal_precision" in report
    assert "refusal_recall" in report
