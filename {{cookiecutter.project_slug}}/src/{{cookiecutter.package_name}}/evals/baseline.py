"""Baselines: a committed summary of a good run, and the deltas of a new run against it.

Only quality metrics can regress; latency and cost are machine-dependent and reported for
information.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ..errors import BadRequestError
from .golden import GoldenItem
from .paired import PairedChange, is_paired_metric, paired_change

RECORD_ONE = "record one with `make eval-baseline` (`eval --save-baseline`)"

INFORMATIONAL_PREFIXES = ("latency_", "cost_")


def is_quality_metric(name: str) -> bool:
    return not name.startswith(INFORMATIONAL_PREFIXES)


def golden_fingerprint(items: Sequence[GoldenItem]) -> str:
    """Identifies a golden set by what its scores are measured against (each question and
    its reference answer, gold sources and answerability), not by its bytes: reformatting
    the file or editing tags keeps a baseline comparable; another question set does not."""
    scored = [
        [item.id, item.question, item.reference_answer, item.gold_sources, item.answerable]
        for item in items
    ]
    return hashlib.sha256(json.dumps(scored).encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class Baseline:
    path: Path
    summary: dict[str, float]
    golden: str
    created_at: str
    # question id -> metric -> score; empty in baselines written before per-question results
    # were kept (those compare means only: regenerate them for the paired comparison).
    per_question: dict[str, dict[str, float]] = field(default_factory=dict)

    def not_comparable(self, golden: str) -> str | None:
        """Why this run cannot be compared with the baseline, or None when it can."""
        if self.golden == golden:
            return None
        made_from = f"golden set {self.golden}" if self.golden else "an unrecorded golden set"
        return (
            f"no comparable baseline: {self.path} was made from {made_from}, this run's "
            f"golden set is {golden}; {RECORD_ONE}. Only the thresholds apply to this run."
        )


@dataclass(frozen=True)
class Delta:
    baseline: float
    delta: float
    regressed: bool
    paired: PairedChange | None = None  # the per-question comparison, when the baseline has one


def save_baseline(
    path: Path,
    summary: dict[str, float],
    golden: str,
    per_question: dict[str, dict[str, float]] | None = None,
) -> None:
    """`golden` is the run's golden_fingerprint; `per_question` the paired metrics' scores."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "golden": golden,
        "summary": {name: round(value, 6) for name, value in summary.items()},
        "per_question": {
            qid: {name: round(value, 6) for name, value in scores.items()}
            for qid, scores in (per_question or {}).items()
        },
    }
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


def load_baseline(path: Path) -> Baseline:
    if not path.is_file():
        raise BadRequestError(
            f"Baseline {path} does not exist. Write one from a good run with "
            "`eval --save-baseline`, or run without --baseline."
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        summary = {str(k): float(v) for k, v in data["summary"].items()}
        per_question = {
            str(qid): {str(k): float(v) for k, v in scores.items()}
            for qid, scores in data.get("per_question", {}).items()
        }
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise BadRequestError(
            f"Baseline {path} is not a baseline file ({exc}); write a new one with "
            "`eval --save-baseline`."
        ) from exc
    return Baseline(
        path, summary, str(data.get("golden", "")), str(data.get("created_at", "")), per_question
    )


def compare(
    summary: dict[str, float],
    baseline: Baseline,
    tolerance: float,
    per_question: dict[str, dict[str, float]] | None = None,
) -> dict[str, Delta]:
    """Deltas for every metric both runs have. Hit@k, MRR and refusal accuracy, when both
    runs have per-question scores, regress only when the bootstrap interval of the paired
    mean change lies wholly below -tolerance; other quality metrics when the drop of the
    mean passes the tolerance."""
    deltas = {}
    for name, value in summary.items():
        before = baseline.summary.get(name)
        if before is None or math.isnan(value) or math.isnan(before):
            continue
        delta = value - before
        paired = None
        if per_question and baseline.per_question and is_paired_metric(name):
            paired = paired_change(
                _column(baseline.per_question, name), _column(per_question, name), tolerance
            )
        if paired is not None:
            deltas[name] = Delta(before, delta, paired.regressed, paired)
        else:
            deltas[name] = Delta(before, delta, is_quality_metric(name) and delta < -tolerance)
    return deltas


def _column(per_question: dict[str, dict[str, float]], name: str) -> dict[str, float]:
    return {qid: scores[name] for qid, scores in per_question.items() if name in scores}
