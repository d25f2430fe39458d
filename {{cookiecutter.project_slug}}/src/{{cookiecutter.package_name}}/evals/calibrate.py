"""Fit the refusal model (refusal.py) on labelled questions: `eval calibrate` and the benchmark.

Each row is a question's retrieval evidence (the features `RefusalModel` reads from its hits)
and whether it is unanswerable. A logistic regression (scikit-learn, the eval group) is
fitted on standardised features with balanced class weights; its regularisation is chosen
by stratified cross-validation AUC. The threshold is the operating point: the lowest
P(unanswerable) that refuses at most `max_answerable_refused` of the answerable rows (cross-
validated probabilities, so the point is not fitted to the rows it is chosen on). What is
written is plain numbers: the service applies them without scikit-learn.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..ask import Question
from ..container import Services
from ..domain import Hit
from ..errors import BadRequestError
from ..refusal import RefusalModel, evidence_features, reads_sentences
from ..wording import plural
from .golden import GoldenItem, load_golden_set
from .metrics import require_eval_group

# Fewer rows than this, of either kind, cannot say where the line between them is.
MIN_ROWS_PER_CLASS = 5
MIN_ROWS = 20
C_GRID = (0.03, 0.1, 0.3, 1.0, 3.0)


@dataclass(frozen=True)
class Row:
    features: list[float]
    unanswerable: bool


def auc(scores: Sequence[float], positive: Sequence[bool]) -> float:
    """Probability that a random unanswerable row scores above a random answerable one
    (ties count half): the Mann-Whitney form of the ROC AUC."""
    pos = [s for s, p in zip(scores, positive, strict=True) if p]
    neg = [s for s, p in zip(scores, positive, strict=True) if not p]
    if not pos or not neg:
        return math.nan
    wins = sum((a > b) + 0.5 * (a == b) for a in pos for b in neg)
    return wins / (len(pos) * len(neg))


def threshold_for(
    scores: Sequence[float], positive: Sequence[bool], max_answerable_refused: float
) -> float:
    """The lowest threshold (refuse when score >= it) that refuses at most this share of the
    answerable rows: as many unanswerable refused as that allows."""
    negatives = sorted((s for s, p in zip(scores, positive, strict=True) if not p), reverse=True)
    allowed = math.floor(max_answerable_refused * len(negatives) + 1e-9)
    if allowed >= len(negatives):
        return min(scores)
    # Just above the (allowed+1)-th highest answerable score: it and the ones below answer.
    return math.nextafter(negatives[allowed], math.inf)


def tradeoff(
    scores: Sequence[float], positive: Sequence[bool], caps: Sequence[float] = (0.05, 0.10, 0.15)
) -> list[dict[str, float]]:
    """For each cap on answerable refused: the share of unanswerable refused, on these rows."""
    rows = []
    for cap in caps:
        t = threshold_for(scores, positive, cap)
        rows.append(_counts(scores, positive, t) | {"cap": cap, "threshold": t})
    return rows


def _counts(
    scores: Sequence[float], positive: Sequence[bool], threshold: float
) -> dict[str, float]:
    refused = [s >= threshold for s in scores]
    pos = sum(positive)
    neg = len(positive) - pos
    refused_pos = sum(r and p for r, p in zip(refused, positive, strict=True))
    refused_neg = sum(r and not p for r, p in zip(refused, positive, strict=True))
    return {
        "unanswerable_refused": refused_pos / pos if pos else math.nan,
        "answerable_refused": refused_neg / neg if neg else math.nan,
    }


def check_rows(rows: Sequence[Row]) -> None:
    unanswerable = sum(r.unanswerable for r in rows)
    answerable = len(rows) - unanswerable
    if len(rows) < MIN_ROWS or min(unanswerable, answerable) < MIN_ROWS_PER_CLASS:
        raise BadRequestError(
            f"Too few rows to calibrate refusal: {plural(answerable, 'answerable row')} and "
            f"{plural(unanswerable, 'unanswerable row')}; it needs at least {MIN_ROWS} rows "
            f"with at least {MIN_ROWS_PER_CLASS} of each (add questions to the golden set, "
            '"answerable": false for ones the documents do not answer).'
        )


def fit(
    rows: Sequence[Row],
    *,
    features: Sequence[str],
    max_answerable_refused: float = 0.10,
    source: str = "",
) -> RefusalModel:
    """A logistic regression over `rows`, its operating point and fit report."""
    require_eval_group("Calibrating refusal")
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    check_rows(rows)
    x = np.array([r.features for r in rows], dtype=float)
    y = np.array([r.unanswerable for r in rows], dtype=int)
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-9] = 1.0  # a constant feature: its coefficient stays ~0
    z = (x - mean) / scale
    folds = StratifiedKFold(n_splits=min(5, int(y.sum()), int(len(y) - y.sum())), shuffle=True)

    def model(c: float) -> Any:
        return LogisticRegression(C=c, class_weight="balanced", max_iter=2000)

    def cv_probabilities(c: float) -> list[float]:
        folds.random_state = 0  # the same folds for every C
        predicted = cross_val_predict(model(c), z, y, cv=folds, method="predict_proba")
        return [float(p) for p in predicted[:, 1]]

    cv = {c: cv_probabilities(c) for c in C_GRID}
    positive = [bool(v) for v in y]
    best_c = max(C_GRID, key=lambda c: (round(auc(cv[c], positive), 6), -c))
    fitted = model(best_c).fit(z, y)
    probabilities = [float(p) for p in fitted.predict_proba(z)[:, 1]]
    threshold = threshold_for(cv[best_c], positive, max_answerable_refused)
    report = {
        "fitted_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": source,
        "rows": len(rows),
        "answerable": len(rows) - sum(positive),
        "unanswerable": sum(positive),
        "regularisation_c": best_c,
        "auc_cross_validated": round(auc(cv[best_c], positive), 4),
        "auc_in_sample": round(auc(probabilities, positive), 4),
        "operating_point": {
            "max_answerable_refused": max_answerable_refused,
            "threshold": threshold,
            **{k: round(v, 4) for k, v in _counts(cv[best_c], positive, threshold).items()},
        },
        "tradeoff_cross_validated": [
            {k: round(v, 4) for k, v in row.items()} for row in tradeoff(cv[best_c], positive)
        ],
    }
    return RefusalModel(
        features=tuple(features),
        mean=tuple(float(v) for v in mean),
        scale=tuple(float(v) for v in scale),
        coef=tuple(float(v) for v in fitted.coef_[0]),
        intercept=float(fitted.intercept_[0]),
        threshold=threshold,
        source=source,
        report=report,
    )


def write_model(model: RefusalModel, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(model.to_json(), indent=2) + "\n", encoding="utf-8")


def golden_rows(
    services: Services, items: Sequence[GoldenItem], k: int, features: Sequence[str]
) -> list[Row]:
    """Each golden question's evidence as the ask use case hands it to refusal."""
    rows = []
    asker = services.asker
    for item in items:
        hits: list[Hit] = asker.retrieve(Question(item.question, services.settings.tenant, top_k=k))
        if reads_sentences(features):
            hits = services.sentences.annotate(item.question, hits)
        rows.append(Row(evidence_features(hits, features), not item.answerable))
    return rows


def describe(model: RefusalModel, path: Path) -> str:
    r = model.report
    point = r["operating_point"]
    lines = [
        f"Refusal model written: {path}",
        f"  rows: {r['rows']} ({r['answerable']} answerable, {r['unanswerable']} unanswerable)",
        f"  AUC: {r['auc_cross_validated']:.3f} cross-validated, {r['auc_in_sample']:.3f} "
        "in sample",
        f"  operating point: refuse from P(unanswerable) {point['threshold']:.3f}: "
        f"{point['unanswerable_refused']:.0%} of unanswerable and "
        f"{point['answerable_refused']:.0%} of answerable refused (cross-validated; cap "
        f"{point['max_answerable_refused']:.0%})",
        "  coefficients (per standard deviation; + pushes towards refusing):",
        *(
            f"    {name:>18} {coef:+.3f}"
            for name, coef in sorted(
                zip(model.features, model.coef, strict=True), key=lambda t: -abs(t[1])
            )
        ),
    ]
    return "\n".join(lines)


def calibration_items(golden: Path, *, allow_unreviewed: bool = False) -> list[GoldenItem]:
    """The golden set's rows, refused before any work when they cannot be fitted on."""
    items = load_golden_set(golden)
    drafts = [item.id for item in items if not item.reviewed]
    if drafts and not allow_unreviewed:
        raise BadRequestError(
            f"Golden set {golden} has {plural(len(drafts), 'unreviewed draft row')}; review "
            'them (set "reviewed": true) or pass --allow-unreviewed.'
        )
    check_rows([Row([], not i.answerable) for i in items])
    return items


def calibrate(
    services: Services,
    items: Sequence[GoldenItem],
    golden: Path,
    out: Path,
    *,
    k: int,
    max_answerable_refused: float,
) -> RefusalModel:
    """Fit on the golden set's evidence as the service retrieves it, and write the model.
    The features are the shipped model's (chosen on the benchmark's dev split): a golden set
    of tens of rows can weigh a few features, not choose among all of them."""
    features = RefusalModel.load().features
    rows = golden_rows(services, items, k, features)
    model = fit(
        rows,
        features=features,
        max_answerable_refused=max_answerable_refused,
        source=f"golden set {golden}",
    )
    write_model(model, out)
    return model
