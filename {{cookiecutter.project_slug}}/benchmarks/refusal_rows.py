"""The refusal model's rows of bench_retrieval.py: fitted on dev, reported on test.

Input: each question's top-5 hits as the ask use case hands them to refusal (with the dense
and BM25 evidence), and the cosine of the best sentence the extractive answerer would quote.
Output, per split: ROC AUC, and the trade-off (unanswerable refused when at most 5%, 10% and
15% of answerable questions are refused, read off that split's own scores), for
- the refusal model (evals/calibrate.py's fit on the dev rows, applied as the service applies
  it), and the same with the best sentence's cosine added as a feature (the extractive
  answerer computes it after refusal is decided, so the service cannot use it: a reference);
- every single signal (oriented on dev), and the best of them by dev AUC;
- the hand thresholds as shipped (one point: what they refuse), alone and followed by the
  extractive answerer's sentence floor (what the service did before the model);
- the model at its dev-chosen operating point, alone and with the sentence floor: the counts
  the service gets.
The decision's own latency (features + dot product, or the rules) is timed per question.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from {{ cookiecutter.package_name }}.domain import Hit
from {{ cookiecutter.package_name }}.evals import calibrate as calibration
from {{ cookiecutter.package_name }}.refusal import (
    DEFAULT_FEATURES,
    RefusalModel,
    RefusalPolicy,
    evidence_features,
)

CAPS = (0.05, 0.10, 0.15)
SPLITS = ("dev", "test")


@dataclass(frozen=True)
class Observed:
    """One question's refusal evidence, as plain numbers (cached between runs)."""

    id: str
    split: str
    unanswerable: bool
    features: dict[str, float]
    best_sentence: float
    rules_refused: bool


def observe(
    qid: str,
    split: str,
    unanswerable: bool,
    hits: Sequence[Hit],
    best_sentence: float,
    rules: RefusalPolicy,
) -> Observed:
    values = evidence_features(hits, DEFAULT_FEATURES)
    return Observed(
        qid,
        split,
        unanswerable,
        dict(zip(DEFAULT_FEATURES, values, strict=True)),
        best_sentence,
        rules.decide(hits).refuse,
    )


def save(observed: Sequence[Observed], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([vars(o) for o in observed], indent=1), encoding="utf-8")


def load(path: Path) -> list[Observed]:
    return [Observed(**row) for row in json.loads(path.read_text(encoding="utf-8"))]


def _rows(observed: Sequence[Observed], with_sentence: bool) -> list[calibration.Row]:
    return [
        calibration.Row(
            [o.features[n] for n in DEFAULT_FEATURES]
            + ([o.best_sentence] if with_sentence else []),
            o.unanswerable,
        )
        for o in observed
    ]


def _curve(scores: Sequence[float], positive: Sequence[bool]) -> list[float]:
    """Share of unanswerable refused at each cap, thresholds read off these scores."""
    out = []
    for cap in CAPS:
        t = calibration.threshold_for(scores, positive, cap)
        refused = [s >= t for s in scores]
        pos = sum(positive)
        out.append(sum(r and p for r, p in zip(refused, positive, strict=True)) / pos)
    return out


@dataclass
class Line:
    label: str
    auc: dict[str, float]
    curve: dict[str, list[float]]


def _line(label: str, scores: dict[str, list[float]], positive: dict[str, list[bool]]) -> Line:
    return Line(
        label,
        {s: calibration.auc(scores[s], positive[s]) for s in SPLITS},
        {s: _curve(scores[s], positive[s]) for s in SPLITS},
    )


@dataclass
class Point:
    label: str
    counts: dict[str, tuple[int, int, int, int]]  # unanswerable refused/all, answerable ...


def _point(label: str, observed: Sequence[Observed], refused: Sequence[bool]) -> Point:
    counts = {}
    for split in SPLITS:
        pairs = [(o, r) for o, r in zip(observed, refused, strict=True) if o.split == split]
        un = [r for o, r in pairs if o.unanswerable]
        an = [r for o, r in pairs if not o.unanswerable]
        counts[split] = (sum(un), len(un), sum(an), len(an))
    return Point(label, counts)


def report(
    observed: Sequence[Observed],
    min_similarity: float,
    decide_ms: dict[str, list[float]],
    model_out: Path | None = None,
) -> dict[str, Any]:
    """Fit on dev, print the tables, return them as JSON; write the model to `model_out`."""
    dev = [o for o in observed if o.split == "dev"]
    by_split = {s: [o for o in observed if o.split == s] for s in SPLITS}
    positive = {s: [o.unanswerable for o in by_split[s]] for s in SPLITS}
    source = "python3.11-doc benchmark, dev split (benchmarks/bench_retrieval.py)"
    model = calibration.fit(_rows(dev, False), source=source)
    model_s = calibration.fit(
        _rows(dev, True), features=(*DEFAULT_FEATURES, "best_sentence"), source=source
    )
    if model_out is not None:
        calibration.write_model(model, model_out)

    def probabilities(m: RefusalModel, with_sentence: bool) -> dict[str, list[float]]:
        return {
            s: [m._probability(r.features) for r in _rows(by_split[s], with_sentence)]
            for s in SPLITS
        }

    p_model = probabilities(model, False)
    lines = [
        _line("refusal model (shipped features)", p_model, positive),
        _line(
            "refusal model + best sentence cosine (reference: not available to refusal)",
            probabilities(model_s, True),
            positive,
        ),
    ]
    singles = []
    for name in [*DEFAULT_FEATURES, "best_sentence"]:

        def value(o: Observed, name: str = name) -> float:
            return o.best_sentence if name == "best_sentence" else o.features[name]

        # Oriented on dev: the direction in which it separates unanswerable questions.
        sign = (
            1.0
            if calibration.auc([value(o) for o in dev], [o.unanswerable for o in dev]) >= 0.5
            else -1.0
        )
        scores = {s: [sign * value(o) for o in by_split[s]] for s in SPLITS}
        singles.append(_line(f"single signal {'-' if sign < 0 else ''}{name}", scores, positive))
    best_single = max(singles, key=lambda line: line.auc["dev"])
    best_single.label += " (best single signal on dev)"
    lines += singles

    rules = [o.rules_refused for o in observed]
    floor = [o.best_sentence < min_similarity for o in observed]
    by_model = [model._probability(r.features) >= model.threshold for r in _rows(observed, False)]
    points = [
        _point("hand rules as shipped (RAG_REFUSAL=rules)", observed, rules),
        _point(
            f"hand rules + extractive sentence floor {min_similarity:g} (service before)",
            observed,
            [a or b for a, b in zip(rules, floor, strict=True)],
        ),
        _point(
            f"refusal model at its dev operating point (t={model.threshold:.3f})",
            observed,
            by_model,
        ),
        _point(
            f"refusal model + extractive sentence floor {min_similarity:g} (service now)",
            observed,
            [a or b for a, b in zip(by_model, floor, strict=True)],
        ),
    ]
    _print(lines, points, model, decide_ms)
    return {
        "model": model.to_json(),
        "lines": [vars(line) for line in lines],
        "points": [vars(point) for point in points],
        "decide_ms": {k: _latency(v) for k, v in decide_ms.items()},
    }


def _latency(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    return {
        "p50": statistics.median(ordered),
        "p95": ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)],
    }


def _print(
    lines: list[Line], points: list[Point], model: RefusalModel, decide_ms: dict[str, list[float]]
) -> None:
    caps = " | ".join(f"{s} @{c:.0%}" for s in SPLITS for c in CAPS)
    print(
        "\nRefusal: AUC and unanswerable refused at a cap on answerable refused (each split's "
        "own scores)"
    )
    print(f"| signal | dev AUC | test AUC | {caps} |")
    print("|---|---|---|" + "---|" * (2 * len(CAPS)))
    for line in lines:
        cells = [f"{line.auc[s]:.3f}" for s in SPLITS] + [
            f"{v:.0%}" for s in SPLITS for v in line.curve[s]
        ]
        print(f"| {line.label} | " + " | ".join(cells) + " |")
    print("\nRefusal decisions as run (unanswerable refused / answerable refused)")
    print("| decision | dev unanswerable | dev answerable | test unanswerable | test answerable |")
    print("|---|---|---|---|---|")
    for point in points:
        cells = []
        for s in SPLITS:
            ur, un, ar, an = point.counts[s]
            cells += [f"{ur}/{un} ({ur / un:.0%})", f"{ar}/{an} ({ar / an:.0%})"]
        print(f"| {point.label} | " + " | ".join(cells) + " |")
    report = model.report
    print(
        f"\nModel fitted on dev: {report['rows']} rows, C={report['regularisation_c']}, "
        f"cross-validated AUC {report['auc_cross_validated']:.3f}; threshold "
        f"{model.threshold:.3f} (<= 10% of dev answerable refused, cross-validated)"
    )
    for name, coef in sorted(
        zip(model.features, model.coef, strict=True), key=lambda t: -abs(t[1])
    ):
        print(f"  {name:>18} {coef:+.3f}")
    for what, values in decide_ms.items():
        lat = _latency(values)
        if lat:
            print(f"decide latency {what}: p50 {lat['p50']:.3f} ms, p95 {lat['p95']:.3f} ms")


def timed(decide: Any, hits: Sequence[Hit]) -> float:
    started = time.perf_counter()
    decide(hits)
    return 1000 * (time.perf_counter() - started)
