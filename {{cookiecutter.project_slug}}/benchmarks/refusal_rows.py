"""The refusal model's rows of bench_retrieval.py: features chosen and fitted on dev, reported
on test.

Input: each question's top-5 hits as the ask use case hands them to refusal (their dense and
BM25 evidence and their best sentence cosine, kept per hit in the cache). Output, per split:
ROC AUC, and the trade-off (unanswerable refused when at most 5%, 10% and 15% of answerable
questions are refused, read off that split's own scores), for
- the refusal model as shipped (the package's file, applied as is): the baseline;
- the model on features selected on dev only (greedy forward selection by cross-validated dev
  AUC over every feature the service computes): the one `--write-refusal-model` writes;
- the same selection without the best sentence's cosine (what a model costs that embeds no
  sentences before refusal: with an LLM answerer nothing else embeds them);
- every single signal (oriented on dev), and the best of them by dev AUC;
- the hand thresholds as shipped (one point: what they refuse), alone and followed by the
  extractive answerer's sentence floor (what the service did before the model);
- each model at its dev-chosen operating point, alone and with the sentence floor.
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
    CANDIDATE_FEATURES,
    RefusalModel,
    RefusalPolicy,
    evidence_features,
)

CAPS = (0.05, 0.10, 0.15)
SPLITS = ("dev", "test")


# The numbers refusal reads off each hit, kept per question in the cache: a feature added
# later is computed from a past run's evidence without indexing again.
EVIDENCE_FIELDS = (
    "dense_score",
    "dense_rank",
    "sparse_rank",
    "sparse_score",
    "unmatched_share",
    "rerank_score",
    "term_chunk_counts",
    "sentence_score",
)
# What the dev-only selection may choose from: every feature the service computes without a
# reranker (none ran here), and the same without the sentence cosine.
SERVICE_CANDIDATES = CANDIDATE_FEATURES
NO_SENTENCE_CANDIDATES = tuple(name for name in CANDIDATE_FEATURES if name != "best_sentence")


@dataclass(frozen=True)
class Observed:
    """One question's refusal evidence, as plain numbers (cached between runs)."""

    id: str
    split: str
    unanswerable: bool
    hits: list[dict[str, Any]]
    best_sentence: float  # the hits' best sentence cosine: what the answerer's floor reads
    rules_refused: bool

    def values(self, names: Sequence[str]) -> list[float]:
        hits = [
            Hit(
                chunk_id=str(n),
                source="",
                text="",
                score=0.0,
                metadata={},
                **{**fields, "term_chunk_counts": _counts(fields.get("term_chunk_counts"))},
            )
            for n, fields in enumerate(self.hits)
        ]
        return evidence_features(hits, names)


def _counts(value: Any) -> tuple[int, ...] | None:
    return None if value is None else tuple(int(v) for v in value)


def observe(
    qid: str,
    split: str,
    unanswerable: bool,
    hits: Sequence[Hit],
    best_sentence: float,
    rules: RefusalPolicy,
) -> Observed:
    return Observed(
        qid,
        split,
        unanswerable,
        [{name: getattr(h, name) for name in EVIDENCE_FIELDS} for h in hits],
        best_sentence,
        rules.decide(hits).refuse,
    )


def save(observed: Sequence[Observed], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([vars(o) for o in observed], indent=1), encoding="utf-8")


def load(path: Path) -> list[Observed]:
    rows = json.loads(path.read_text(encoding="utf-8"))
    fields = {name for row in rows for hit in row.get("hits", [{}]) for name in hit}
    if rows and "sentence_score" not in fields:
        raise SystemExit(f"{path} is from an older benchmark (no per-hit evidence): rerun it.")
    return [Observed(**row) for row in rows]


def _rows(observed: Sequence[Observed], names: Sequence[str]) -> list[calibration.Row]:
    return [calibration.Row(o.values(names), o.unanswerable) for o in observed]


def select_features(
    dev: Sequence[Observed], candidates: Sequence[str], *, seeds: int = 5, min_gain: float = 0.003
) -> list[tuple[str, float]]:
    """Greedy forward selection on dev only: add the feature that raises the cross-validated
    AUC most (stratified 5-fold, averaged over `seeds` shuffles, best C of the grid) until no
    feature adds `min_gain`. Returns the path: (feature added, dev CV AUC after adding it)."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y = np.array([o.unanswerable for o in dev], dtype=int)
    positive = [bool(v) for v in y]
    table = {name: np.array([o.values([name])[0] for o in dev]) for name in candidates}

    def score(names: Sequence[str]) -> float:
        x = np.column_stack([table[n] for n in names])
        best = 0.0
        for c in calibration.C_GRID:
            aucs = []
            for seed in range(seeds):
                folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
                model = make_pipeline(
                    StandardScaler(),
                    LogisticRegression(C=c, class_weight="balanced", max_iter=2000),
                )
                p = cross_val_predict(model, x, y, cv=folds, method="predict_proba")[:, 1]
                aucs.append(calibration.auc([float(v) for v in p], positive))
            best = max(best, statistics.fmean(aucs))
        return best

    chosen: list[str] = []
    path: list[tuple[str, float]] = []
    current = 0.5
    while len(chosen) < len(candidates):
        scored = [(score([*chosen, n]), n) for n in candidates if n not in chosen]
        best_score, best_name = max(scored)
        if best_score < current + min_gain:
            break
        chosen.append(best_name)
        current = best_score
        path.append((best_name, best_score))
    return path


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
    """Select features and fit on dev, print the tables, return them as JSON; write the
    model selected on dev (service features only) to `model_out`."""
    dev = [o for o in observed if o.split == "dev"]
    by_split = {s: [o for o in observed if o.split == s] for s in SPLITS}
    positive = {s: [o.unanswerable for o in by_split[s]] for s in SPLITS}
    source = "python3.11-doc benchmark, dev split (benchmarks/bench_retrieval.py)"
    paths = {
        "service": select_features(dev, SERVICE_CANDIDATES),
        "no sentence": select_features(dev, NO_SENTENCE_CANDIDATES),
    }
    for what, path in paths.items():
        print(f"\nFeature selection on dev ({what} candidates): dev CV AUC as each is added")
        for name, dev_auc in path:
            print(f"  + {name:>18}  {dev_auc:.3f}")
    selected = tuple(name for name, _ in paths["service"])
    selected_plain = tuple(name for name, _ in paths["no sentence"])
    models = {
        "shipped": RefusalModel.load(),
        "selected on dev": calibration.fit(_rows(dev, selected), features=selected, source=source),
        "selected on dev, no sentence": calibration.fit(
            _rows(dev, selected_plain), features=selected_plain, source=source
        ),
    }
    model = models["selected on dev"]
    if model_out is not None:
        calibration.write_model(model, model_out)

    def probabilities(m: RefusalModel) -> dict[str, list[float]]:
        return {
            s: [m._probability(r.features) for r in _rows(by_split[s], m.features)] for s in SPLITS
        }

    lines = [
        _line(
            f"refusal model as shipped: {', '.join(models['shipped'].features)}",
            probabilities(models["shipped"]),
            positive,
        ),
        _line(
            f"refusal model, selected on dev: {', '.join(selected)}", probabilities(model), positive
        ),
        _line(
            f"refusal model, selected on dev without the sentence cosine: "
            f"{', '.join(selected_plain)}",
            probabilities(models["selected on dev, no sentence"]),
            positive,
        ),
    ]
    singles = []
    for name in SERVICE_CANDIDATES:
        dev_values = [o.values([name])[0] for o in dev]
        # Oriented on dev: the direction in which it separates unanswerable questions.
        sign = 1.0 if calibration.auc(dev_values, [o.unanswerable for o in dev]) >= 0.5 else -1.0
        scores = {s: [sign * o.values([name])[0] for o in by_split[s]] for s in SPLITS}
        singles.append(_line(f"single signal {'-' if sign < 0 else ''}{name}", scores, positive))
    best_single = max(singles, key=lambda line: line.auc["dev"])
    best_single.label += " (best single signal on dev)"
    lines += singles

    rules = [o.rules_refused for o in observed]
    floor = [o.best_sentence < min_similarity for o in observed]
    points = [
        _point("hand rules as shipped (RAG_REFUSAL=rules)", observed, rules),
        _point(
            f"hand rules + extractive sentence floor {min_similarity:g} (service before)",
            observed,
            [a or b for a, b in zip(rules, floor, strict=True)],
        ),
    ]
    for label, m in models.items():
        refused = [m._probability(r.features) >= m.threshold for r in _rows(observed, m.features)]
        points += [
            _point(
                f"model ({label}) at its dev operating point (t={m.threshold:.3f})",
                observed,
                refused,
            ),
            _point(
                f"model ({label}) + extractive sentence floor {min_similarity:g}",
                observed,
                [a or b for a, b in zip(refused, floor, strict=True)],
            ),
        ]
    _print(lines, points, model, decide_ms)
    return {
        "selection": {what: path for what, path in paths.items()},
        "models": {label: m.to_json() for label, m in models.items()},
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
