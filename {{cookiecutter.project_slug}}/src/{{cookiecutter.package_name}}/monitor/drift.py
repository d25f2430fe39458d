"""Drift statistics over captured questions, in plain Python (no numeric library at runtime).

- centroid cosine distance between two sets of query embeddings;
- a domain classifier's AUC, as Evidently measures drift: how well a model told which window
  a question came from (0.5 = indistinguishable). Ours projects onto the difference of the
  two training-fold centroids, scored out of fold (k-fold), AUC by the rank-sum statistic;
- the two-sample Kolmogorov-Smirnov test, for the retrieval-score distributions.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

Vector = Sequence[float]


def _centroid(vectors: Sequence[Vector]) -> list[float]:
    n = len(vectors)
    return [sum(column) / n for column in zip(*vectors, strict=True)]


def _dot(a: Vector, b: Vector) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def centroid_distance(reference: Sequence[Vector], current: Sequence[Vector]) -> float:
    """1 - cosine similarity of the two centroids (0 = same direction)."""
    a, b = _centroid(reference), _centroid(current)
    norms = math.sqrt(_dot(a, a)) * math.sqrt(_dot(b, b))
    return 1.0 - _dot(a, b) / norms if norms else 0.0


def auc(negatives: Sequence[float], positives: Sequence[float]) -> float:
    """P(a positive scores above a negative), ties counted half (Mann-Whitney U / n m)."""
    ranked = sorted([(s, 0) for s in negatives] + [(s, 1) for s in positives])
    rank_sum, i = 0.0, 0
    while i < len(ranked):
        j = i
        while j < len(ranked) and ranked[j][0] == ranked[i][0]:
            j += 1
        average = (i + j + 1) / 2  # 1-based mean rank of the tie group
        rank_sum += average * sum(label for _, label in ranked[i:j])
        i = j
    n, m = len(positives), len(negatives)
    return (rank_sum - n * (n + 1) / 2) / (n * m)


def domain_classifier_auc(
    reference: Sequence[Vector], current: Sequence[Vector], folds: int = 5, seed: int = 0
) -> float:
    """Out-of-fold AUC of telling `current` from `reference` by their embeddings."""
    rng = random.Random(seed)  # noqa: S311 - a fold split, not a secret
    labelled = [(v, 0) for v in reference] + [(v, 1) for v in current]
    rng.shuffle(labelled)
    scores: list[tuple[float, int]] = []
    for fold in range(folds):
        train = [x for i, x in enumerate(labelled) if i % folds != fold]
        test = [x for i, x in enumerate(labelled) if i % folds == fold]
        zeros = [v for v, y in train if y == 0]
        ones = [v for v, y in train if y == 1]
        if not zeros or not ones:
            continue
        c0, c1 = _centroid(zeros), _centroid(ones)
        direction = [b - a for a, b in zip(c0, c1, strict=True)]
        scores.extend((_dot(v, direction), y) for v, y in test)
    return auc([s for s, y in scores if y == 0], [s for s, y in scores if y == 1])


def ks_two_sample(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """The KS statistic D and its asymptotic p-value (Kolmogorov distribution)."""
    xs, ys = sorted(a), sorted(b)
    n, m = len(xs), len(ys)
    i = j = 0
    d = 0.0
    while i < n and j < m:
        value = min(xs[i], ys[j])
        while i < n and xs[i] == value:
            i += 1
        while j < m and ys[j] == value:
            j += 1
        d = max(d, abs(i / n - j / m))
    effective = math.sqrt(n * m / (n + m))
    lam = (effective + 0.12 + 0.11 / effective) * d
    p = 2 * sum((-1) ** (k - 1) * math.exp(-2 * k * k * lam * lam) for k in range(1, 101))
    return d, min(1.0, max(0.0, p))
