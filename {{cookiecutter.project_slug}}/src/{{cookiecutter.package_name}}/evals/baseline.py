"""Baselines: a committed summary of a good run, and the deltas of a new run against it.

Only quality metrics can regress; latency and cost are machine-dependent and reported for
information.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ..errors import BadRequestError

INFORMATIONAL_PREFIXES = ("latency_", "cost_")


def is_quality_metric(name: str) -> bool:
    return not name.startswith(INFORMATIONAL_PREFIXES)


def golden_fingerprint(golden_path: Path) -> str:
    return hashlib.sha256(golden_path.read_bytes()).hexdigest()[:16]


@dataclass(frozen=True)
class Baseline:
    path: Path
    summary: dict[str, float]
    golden: str
    created_at: str


@dataclass(frozen=True)
class Delta:
    baseline: float
    delta: float
    regressed: bool


def save_baseline(path: Path, summary: dict[str, float], golden_path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "golden": golden_fingerprint(golden_path),
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
