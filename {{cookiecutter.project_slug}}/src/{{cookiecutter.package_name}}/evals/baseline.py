"""Baselines: a committed summary of a good run, and the deltas of a new run against it.

Only quality metrics can regress; latency and cost are machine-dependent and reported for
information.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ..errors import BadRequestError
from .golden import GoldenItem

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


def save_baseline(path: Path, summary: dict[str, float], golden: str) -> None:
    """`golden` is the run's golden_fingerprint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "golden": golden,
        "summary": {name: round(value, 6) for name, value in summary.items()},
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
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise BadRequestError(
            f"Baseline {path} is not a baseline file ({exc}); write a new one with "
            "`eval --save-baseline`."
        ) from exc
    return Baseline(path, summary, str(data.get("golden", "")), str(data.get("created_at", "")))


def compare(summary: dict[str, float], baseline: Baseline, tolerance: float) -> dict[str, Delta]:
    """Deltas for every metric both runs have; a quality drop beyond tolerance regresses."""
    deltas = {}
    for name, value in summary.items():
        before = baseline.summary.get(name)
        if before is None or math.isnan(value) or math.isnan(before):
            continue
        delta = value - before
        deltas[name] = Delta(before, delta, is_quality_metric(name) and delta < -tolerance)
    return deltas
