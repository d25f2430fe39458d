from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from {{ cookiecutter.package_name }}.container import Services
from {{ cookiecutter.package_name }}.errors import BadRequestError
from {{ cookiecutter.package_name }}.evals.baseline import (
    compare,
    golden_fingerprint,
    load_baseline,
    save_baseline,
)
from {{ cookiecutter.package_name }}.evals.gate import (
    GateOptions,
    _check_reviewed,
    load_thresholds,
    run_gate,
    summarise,
)
from {{ cookiecutter.package_name }}.evals.golden import load_golden_set
from {{ cookiecutter.package_name }}.evals.metrics import (
    hit_at_k,
    ndcg_at_k,
    percentile,
    recall_at_k,
    reciprocal_rank,
)
from {{ cookiecutter.package_name }}.evals.records import QuestionResult, Threshold

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


def test_cost_per_query_is_the_mean_of_the_answers_costs() -> None:
    def result(cost: float) -> QuestionResult:
        return QuestionResult("q", "q", True, False, "", [], [], cost_usd=cost)

    assert summarise([result(0.002), result(0.004)], 5)["cost_per_query_usd"] == pytest.approx(
        0.003
    )
    # One answer from an unpriced model makes the mean unknown, not an undercount.
    assert math.isnan(summarise([result(0.002), result(math.nan)], 5)["cost_per_query_usd"])


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


def test_recall_and_ndcg_reward_gold_sources_ranked_high() -> None:
    assert recall_at_k(["a", "b", "c"], ["a", "z"], 3) == 0.5
    assert ndcg_at_k(["a", "b"], ["a"], 5) == 1.0
    assert ndcg_at_k(["b", "a"], ["a"], 5) == pytest.approx(1 / math.log2(3))
    assert ndcg_at_k(["b", "c"], ["a"], 5) == 0.0


def test_golden_rows_may_carry_passages_and_review_state(tmp_path: Path) -> None:
    path = tmp_path / "golden.jsonl"
    row = {
        "id": "d1",
        "question": "q?",
        "reference_answer": "r",
        "gold_sources": ["x.md"],
        "gold_passages": ["r is stated here."],
        "reviewed": False,
    }
    path.write_text(json.dumps(row) + "\n" + json.dumps({**row, "id": "d2", "colour": 1}), "utf-8")
    with pytest.raises(BadRequestError, match=r"line 2: unknown fields \['colour'\]"):
        load_golden_set(path)
    path.write_text(json.dumps(row), "utf-8")
    (item,) = load_golden_set(path)
    assert item.reviewed is False
    assert item.gold_passages == ["r is stated here."]


def test_gate_refuses_unreviewed_drafts_unless_told(tmp_path: Path) -> None:
    draft = {"id": "d1", "question": "q?", "reference_answer": "r", "gold_sources": ["x.md"]}
    path = tmp_path / "golden.jsonl"
    path.write_text(json.dumps({**draft, "reviewed": False}), "utf-8")
    items = load_golden_set(path)
    with pytest.raises(BadRequestError, match=r"1 unreviewed draft row \(d1\).*--allow-unreviewed"):
        _check_reviewed(items, path, allowed=False)
    _check_reviewed(items, path, allowed=True)


def test_baseline_comparison_flags_quality_drops_not_latency(tmp_path: Path) -> None:
    path = tmp_path / "baseline.json"
    save_baseline(path, {"mrr": 0.9, "rouge_l": 0.5, "latency_total_p95_ms": 100.0}, "abc")
    baseline = load_baseline(path)
    deltas = compare(
        {"mrr": 0.85, "rouge_l": 0.49, "latency_total_p95_ms": 900.0}, baseline, tolerance=0.02
    )
    assert deltas["mrr"].regressed
    assert deltas["mrr"].delta == pytest.approx(-0.05)
    assert not deltas["rouge_l"].regressed  # within tolerance
    assert not deltas["latency_total_p95_ms"].regressed  # machine-dependent: informational
    (tmp_path / "bad.json").write_text("[1, 2]", "utf-8")
    with pytest.raises(BadRequestError, match="--save-baseline"):
        load_baseline(tmp_path / "bad.json")
    with pytest.raises(BadRequestError, match="does not exist"):
        load_baseline(tmp_path / "missing.json")


def test_shipped_baseline_matches_the_shipped_golden_set() -> None:
    baseline = load_baseline(PROJECT_ROOT / "evals" / "baseline.json")
    golden = load_golden_set(PROJECT_ROOT / "evals" / "golden.jsonl")
    assert baseline.golden == golden_fingerprint(golden)
    assert baseline.summary["hit_at_5"] >= 0.9


def test_golden_fingerprint_follows_what_is_scored_not_the_bytes(tmp_path: Path) -> None:
    rows: list[dict[str, object]] = [
        {"id": "a", "question": "q?", "reference_answer": "r", "gold_sources": ["x.md"]},
        {"id": "b", "question": "p?", "reference_answer": "s", "answerable": False},
    ]

    def fingerprint(lines: list[str]) -> str:
        path = tmp_path / "golden.jsonl"
        path.write_text("\n".join(lines), "utf-8")
        return golden_fingerprint(load_golden_set(path))

    shipped = fingerprint([json.dumps(row) for row in rows])
    reformatted = [json.dumps(row, indent=None, separators=(",", ":")) for row in rows]
    assert fingerprint([*reformatted, "", ""]) == shipped
    assert fingerprint([json.dumps({**rows[0], "tags": ["new"]}), json.dumps(rows[1])]) == shipped
    for change in ({"question": "other?"}, {"reference_answer": "t"}, {"gold_sources": ["y"]}):
        assert fingerprint([json.dumps({**rows[0], **change}), json.dumps(rows[1])]) != shipped
    assert fingerprint([json.dumps(rows[0])]) != shipped


CLIENT_FILES = {
    "claims-referral.md": "# Claims referral\n\nAny claim with three or more red flags must be "
    "referred to the Special Investigations Unit before payment.\n",
    "settlement-authority.md": "# Settlement authority\n\nA senior adjuster may settle claims "
    "up to 25,000 EUR without approval from the claims manager.\n",
}
CLIENT_GOLDEN = [
    {
        "id": "c1",
        "question": "Which claims must be referred to the Special Investigations Unit?",
        "reference_answer": "Claims with three or more red flags, before payment.",
        "gold_sources": ["claims-referral.md"],
    },
    {
        "id": "c2",
        "question": "Up to what amount may a senior adjuster settle a claim?",
        "reference_answer": "Up to 25,000 EUR without the claims manager's approval.",
        "gold_sources": ["settlement-authority.md"],
    },
]


def client_gate(tmp_path: Path, **overrides: object) -> GateOptions:
    """A client's own corpus and golden set, as an engineer would point the gate at them."""
    corpus = tmp_path / "client-docs"
    corpus.mkdir(exist_ok=True)
    for name, text in CLIENT_FILES.items():
        (corpus / name).write_text(text, "utf-8")
    golden = tmp_path / "client-golden.jsonl"
    golden.write_text("\n".join(json.dumps(row) for row in CLIENT_GOLDEN), "utf-8")
    thresholds = tmp_path / "thresholds.toml"
    thresholds.write_text("k = 5\n[metrics.hit_at_5]\nmin = 0.5\n", "utf-8")
    values: dict[str, object] = {
        "golden": golden,
        "thresholds": thresholds,
        "corpus": corpus,
        "report_dir": tmp_path / "eval",
    }
    return GateOptions(**{**values, **overrides})  # type: ignore[arg-type]


def test_eval_after_the_sample_retrieves_only_the_clients_corpus(
    services: Services, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sample_golden = tmp_path / "sample-golden.jsonl"
    first = PROJECT_ROOT / "evals" / "golden.jsonl"
    sample_golden.write_text(first.read_text("utf-8").splitlines()[0], "utf-8")
    run_gate(services, client_gate(tmp_path, golden=sample_golden, corpus=SAMPLE_CORPUS))
    assert any(doc.corpus == "sample" for doc in services.store.documents(tenant="default"))
    capsys.readouterr()

    assert run_gate(services, client_gate(tmp_path)) == 0
    report = json.loads((tmp_path / "eval" / "report.json").read_text("utf-8"))
    retrieved = {source for row in report["results"] for source in row["retrieved_sources"]}
    assert retrieved == set(CLIENT_FILES)  # no hit from a sample file
    out = capsys.readouterr().out
    assert "corpus client-docs; removed" in out
    assert "of sample" in out
    assert {doc.corpus for doc in services.store.documents(tenant="default")} == {"client-docs"}


def test_a_baseline_of_another_golden_set_is_not_a_regression(
    services: Services, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The shipped baseline is about the sample's golden set; its numbers would all "regress".
    shipped = PROJECT_ROOT / "evals" / "baseline.json"
    assert run_gate(services, client_gate(tmp_path, baseline=shipped)) == 0
    out = capsys.readouterr().out
    assert "REGRESSED" not in out
    assert "no comparable baseline" in out
    assert "record one with `make eval-baseline`" in out
    assert "\nGO (" in out
    report = json.loads((tmp_path / "eval" / "report.json").read_text("utf-8"))
    assert "no comparable baseline" in report["context"]["baseline_warning"]

    # The thresholds still apply: a missed bar is NO-GO, for that reason alone.
    strict = tmp_path / "strict.toml"
    strict.write_text("k = 5\n[metrics.refusal_accuracy]\nmin = 1.01\n", "utf-8")
    assert run_gate(services, client_gate(tmp_path, baseline=shipped, thresholds=strict)) == 1
    verdict = capsys.readouterr().out.split("NO-GO: ")[1].split(" (")[0]
    assert verdict == "refusal_accuracy missed the bar"
