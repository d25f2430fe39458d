"""Metric arithmetic: retrieval from gold sources, refusal, and ragas' no-LLM answer metrics."""

from __future__ import annotations

import importlib
import math
import os
import statistics
import warnings
from collections.abc import Sequence
from pathlib import Path

from ..errors import ConfigurationError

# Import names of the `eval` dependency group (pyproject.toml), which the runtime install and
# the Docker image leave out.
EVAL_GROUP_MODULES = ("ragas", "langchain_community", "rapidfuzz", "rouge_score", "openai")


def require_eval_group(purpose: str) -> None:
    """One clear error, instead of an ImportError, where the eval group is not installed."""
    missing = []
    for name in EVAL_GROUP_MODULES:
        try:
            importlib.import_module(name)  # the caller imports them next anyway
        except ModuleNotFoundError as error:
            if (error.name or "").split(".")[0] != name:
                raise  # installed but broken: that traceback is the useful message
            missing.append(name)
    if missing:
        raise ConfigurationError(
            f"{purpose} needs the `eval` dependency group ({', '.join(missing)} not installed): "
            "run `uv sync --group eval` (`make setup` installs it; the runtime image does not)"
        )


def hit_at_k(retrieved: Sequence[str], gold: Sequence[str], k: int) -> float:
    return 1.0 if set(retrieved[:k]) & set(gold) else 0.0


def recall_at_k(retrieved: Sequence[str], gold: Sequence[str], k: int) -> float:
    """Share of the gold sources found in the top k."""
    return len(set(retrieved[:k]) & set(gold)) / len(set(gold)) if gold else 0.0


def ndcg_at_k(retrieved: Sequence[str], gold: Sequence[str], k: int) -> float:
    """Normalised discounted cumulative gain with binary relevance (a gold source or not)."""
    relevant = set(gold)
    gain = sum(
        1.0 / math.log2(rank + 1)
        for rank, source in enumerate(retrieved[:k], start=1)
        if source in relevant
    )
    ideal = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(k, len(relevant)) + 1))
    return gain / ideal if ideal else 0.0


def reciprocal_rank(retrieved: Sequence[str], gold: Sequence[str]) -> float:
    for rank, source in enumerate(retrieved, start=1):
        if source in gold:
            return 1.0 / rank
    return 0.0


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[index]


def mean(values: Sequence[float]) -> float:
    return statistics.fmean(values) if values else 0.0


class RagasScorer:
    """ragas' metrics that need no LLM, run offline.

    ragas phones home unless RAGAS_DO_NOT_TRACK is set, and writes a user id under the user
    data folder even then; both are kept inside the project's data folder.
    """

    def __init__(self, state_dir: Path) -> None:
        require_eval_group("The eval gate")
        os.environ["RAGAS_DO_NOT_TRACK"] = "true"
        state_dir.mkdir(parents=True, exist_ok=True)
        os.environ["XDG_DATA_HOME"] = str(state_dir.resolve())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from ragas.dataset_schema import SingleTurnSample
            from ragas.metrics import (
                IDBasedContextPrecision,
                IDBasedContextRecall,
                NonLLMStringSimilarity,
                RougeScore,
            )
        self._sample = SingleTurnSample
        self._metrics = {
            "context_recall": IDBasedContextRecall(),
            "context_precision": IDBasedContextPrecision(),
            "string_similarity": NonLLMStringSimilarity(),
            "rouge_l": RougeScore(),
        }

    def score(
        self, question: str, answer: str, reference: str, retrieved: list[str], gold: list[str]
    ) -> dict[str, float]:
        sample = self._sample(
            user_input=question,
            response=answer,
            reference=reference,
            retrieved_context_ids=retrieved,
            reference_context_ids=gold,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return {name: float(m.single_turn_score(sample)) for name, m in self._metrics.items()}
