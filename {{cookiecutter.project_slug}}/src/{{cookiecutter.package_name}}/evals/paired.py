"""A gate that knows its error bars: the change of a metric, question by question against the
baseline's own results, with a bootstrap confidence interval of the mean change.

Why: with 25 questions one question moves MRR by 0.04, twice a 0.02 tolerance, so comparing
two means fails on noise and can pass a real regression. Pairing removes the questions'
own difficulty from the comparison; the interval says what the set can and cannot tell.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass

RESAMPLES = 2000
SEED = 0
CONFIDENCE = 0.95
# Normal quantiles: two-sided 95% and 80% power, for the minimum detectable change.
_Z_ALPHA, _Z_POWER = 1.959964, 0.841621


def is_paired_metric(name: str) -> bool:
    return name == "mrr" or name == "refusal_accuracy" or name.startswith("hit_at_")


@dataclass(frozen=True)
class PairedChange:
    n: int
    mean: float
    low: float
    high: float
    detectable: float  # the smallest mean change this many questions can tell from noise
    regressed: bool  # the whole interval lies below -tolerance
    too_small: bool  # the set cannot detect a change as small as the tolerance


def paired_change(
    before: Mapping[str, float],
    after: Mapping[str, float],
    tolerance: float,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> PairedChange | None:
    """Bootstrap (fixed seed, so a run repeats) of the mean per-question change over the
    questions both runs scored; None when they share none."""
    shared = sorted(set(before) & set(after))
    diffs = [after[q] - before[q] for q in shared]
    diffs = [d for d in diffs if not math.isnan(d)]
    n = len(diffs)
    if n == 0:
        return None
    observed = sum(diffs) / n
    rng = random.Random(seed)  # noqa: S311 - a resample, not a secret: fixed so runs repeat
    means = sorted(sum(rng.choices(diffs, k=n)) / n for _ in range(resamples))
    tail = (1 - CONFIDENCE) / 2
    low = means[int(tail * (resamples - 1))]
    high = means[int((1 - tail) * (resamples - 1))]
    detectable = detectable_change(diffs)
    return PairedChange(
        n, observed, low, high, detectable, high < -tolerance, detectable > tolerance
    )


def detectable_change(diffs: list[float]) -> float:
    """The minimum detectable mean change (95% confidence, 80% power) for these paired
    differences; at least one question's worth (1/n), since a 0-1 score moves in those
    steps. Infinite below 2 questions."""
    n = len(diffs)
    if n < 2:
        return math.inf
    centre = sum(diffs) / n
    sd = math.sqrt(sum((d - centre) ** 2 for d in diffs) / (n - 1))
    # With no variation in this run, a one-question change is still what noise could make.
    spread = sd if sd > 0 else 1 / math.sqrt(n)
    return max((_Z_ALPHA + _Z_POWER) * spread / math.sqrt(n), 1 / n)
