"""Does the corpus answer this question? Decided from evidence with an absolute meaning.

A fused RRF score is a sum of reciprocal ranks: every query gets the same scores whether or
not the corpus answers it. What does carry meaning is the dense cosine (the embedding
model's own scale) and whether two unrelated retrievers, dense and BM25, agree on a chunk.
A third signal is lexical: a question about something the corpus never mentions
(a product, a library) has terms that no BM25 top result contains. The retriever puts all of
it on each hit (`Hit.dense_score`, `dense_rank`, `sparse_rank`, `sparse_score`,
`unmatched_share`, `term_chunk_counts`); the ask use case (ask.py) calls `decide(hits)` once,
before any answerer runs, and hands the decision to it. A refusal that `reads_sentences` also
gets each hit's best sentence cosine (`Hit.sentence_score`, from the scorer the extractive
answerer quotes with). Thresholds were chosen on the retrieval benchmark (docs/decisions,
retrieval defaults by measurement).

`RefusalModel` (`RAG_REFUSAL=model`) combines the same evidence instead of chaining hand
thresholds: a logistic regression over a few named features of the hits (`FEATURES`), read
from a JSON file of coefficients (the shipped one is fitted on the python-docs benchmark's
dev split; `eval calibrate` fits one on a client's golden set). At run time it is a dot
product and a sigmoid; scikit-learn is only needed to fit it (evals/calibrate.py). Because the
evidence is weighed together, one term the corpus never mentions lowers the score but no
longer refuses a question whose dense and BM25 evidence is strong.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

from .domain import TERM_COUNT_CAP, Hit
from .errors import ConfigurationError
from .settings import Settings


@dataclass(frozen=True)
class RefusalDecision:
    refuse: bool
    reason: str
    best_dense: float | None  # highest cosine among the hits, None if none is in the dense top
    agreeing: int  # hits in the top `agreement_rank` of both dense and BM25
    probability: float | None = None  # the refusal model's P(unanswerable), when it decided


class Refusal(Protocol):
    """Decides, once per question, whether the retrieved evidence answers it."""

    @property
    def reads_sentences(self) -> bool:
        """Whether `decide` reads `Hit.sentence_score` (the ask use case sets it first)."""
        ...

    def decide(self, hits: Sequence[Hit]) -> RefusalDecision: ...


@dataclass(frozen=True)
class RefusalPolicy:
    min_dense: float  # below this cosine no hit is close enough, whatever BM25 says
    strong_dense: float  # from this cosine on, the dense match alone is enough
    agreement_rank: int  # a hit ranked this high by both retrievers is corroborated
    max_unmatched_share: float | None = None  # this share of terms absent from BM25's top: refuse
    min_rerank: float | None = None  # with a reranker, its score decides

    @property
    def reads_sentences(self) -> bool:
        return False

    @classmethod
    def from_settings(cls, settings: Settings) -> RefusalPolicy:
        return cls(
            min_dense=settings.refusal_min_dense,
            strong_dense=settings.refusal_strong_dense,
            agreement_rank=settings.refusal_agreement_rank,
            max_unmatched_share=settings.refusal_unmatched_share,
            min_rerank=settings.refusal_min_rerank,
        )

    def decide(self, hits: Sequence[Hit]) -> RefusalDecision:
        reranked = [h.rerank_score for h in hits if h.rerank_score is not None]
        if self.min_rerank is not None and reranked:
            best_rerank = max(reranked)
            refuse = best_rerank < self.min_rerank
            verdict = "below" if refuse else "reaches"
            return RefusalDecision(
                refuse, f"rerank score {best_rerank:.2f} {verdict} {self.min_rerank}", None, 0
            )
        scores = [h.dense_score for h in hits if h.dense_score is not None]
        best = max(scores) if scores else None
        unmatched = max((h.unmatched_share or 0.0 for h in hits), default=0.0)
        if self.max_unmatched_share is not None and unmatched >= self.max_unmatched_share:
            return RefusalDecision(
                True, f"{unmatched:.0%} of the question's terms are in no BM25 top result", best, 0
            )
        agreeing = sum(
            1
            for h in hits
            if h.dense_rank is not None
            and h.sparse_rank is not None
            and h.dense_rank <= self.agreement_rank
            and h.sparse_rank <= self.agreement_rank
            and (h.dense_score or 0.0) >= self.min_dense
        )
        if best is None:
            return RefusalDecision(True, "no hit is among the dense top results", None, 0)
        if best >= self.strong_dense:
            return RefusalDecision(False, f"dense cosine {best:.2f} is strong", best, agreeing)
        if best < self.min_dense:
            return RefusalDecision(True, f"best dense cosine {best:.2f} is too low", best, agreeing)
        if agreeing:
            return RefusalDecision(False, "dense and BM25 agree on a hit", best, agreeing)
        return RefusalDecision(
            True, f"dense cosine {best:.2f} is weak and BM25 does not agree", best, agreeing
        )


# --- the calibrated model ---------------------------------------------------------------------
# Ranks at or below this count as "near the top" for the agreement features (the evidence
# lists are RAG_REFUSAL_EVIDENCE_LIMIT long, 10 by default).
_AGREEMENT_RANK = 3


def _reciprocal(rank: int | None) -> float:
    return 1.0 / rank if rank else 0.0


def _best_dense(hits: Sequence[Hit]) -> float:
    return max((h.dense_score for h in hits if h.dense_score is not None), default=0.0)


def _first_dense(hits: Sequence[Hit]) -> float:
    return (hits[0].dense_score or 0.0) if hits else 0.0


def _dense_spread(hits: Sequence[Hit]) -> float:
    """How far the best cosine stands above the hits' mean (a match, not a flat field)."""
    scores = [h.dense_score for h in hits if h.dense_score is not None]
    return max(scores) - sum(scores) / len(scores) if scores else 0.0


def _in_dense_top(hits: Sequence[Hit]) -> float:
    return float(any(h.dense_score is not None for h in hits))


def _best_sparse_rank(hits: Sequence[Hit]) -> float:
    ranks = [h.sparse_rank for h in hits if h.sparse_rank is not None]
    return _reciprocal(min(ranks)) if ranks else 0.0


def _first_sparse_rank(hits: Sequence[Hit]) -> float:
    return _reciprocal(hits[0].sparse_rank) if hits else 0.0


def _best_sparse_score(hits: Sequence[Hit]) -> float:
    """The highest BM25 score among the hits, log-scaled (BM25 grows with the number and the
    rarity of matched terms: a question about what the corpus is about matches rare terms)."""
    scores = [h.sparse_score for h in hits if h.sparse_score is not None]
    return math.log1p(max(scores, default=0.0))


def _first_sparse_score(hits: Sequence[Hit]) -> float:
    return math.log1p(hits[0].sparse_score or 0.0) if hits else 0.0


def _best_dense_rank(hits: Sequence[Hit]) -> float:
    ranks = [h.dense_rank for h in hits if h.dense_rank is not None]
    return _reciprocal(min(ranks)) if ranks else 0.0


def _term_counts(hits: Sequence[Hit]) -> tuple[int, ...] | None:
    return next((h.term_chunk_counts for h in hits if h.term_chunk_counts is not None), None)


def _rarest_term_chunks(hits: Sequence[Hit]) -> float:
    """How many chunks hold the question's rarest term, log-scaled (0: a term the corpus
    never uses, as in a question about a library it does not document). A question with no
    counted terms (only stopwords), or none at all, gives no sign of absence: the cap."""
    counts = _term_counts(hits)
    return math.log1p(min(counts) if counts else TERM_COUNT_CAP)


def _unknown_terms(hits: Sequence[Hit]) -> float:
    """How many of the question's terms no chunk holds."""
    return float(sum(1 for count in _term_counts(hits) or () if count == 0))


def _agreeing_share(hits: Sequence[Hit]) -> float:
    """Share of the hits that both the dense and the BM25 top lists hold."""
    both = sum(1 for h in hits if h.dense_rank is not None and h.sparse_rank is not None)
    return both / len(hits) if hits else 0.0


def _top_agreement(hits: Sequence[Hit]) -> float:
    """1 when one hit is near the top of both lists: two unrelated retrievers chose it."""
    return float(
        any(
            h.dense_rank is not None
            and h.sparse_rank is not None
            and h.dense_rank <= _AGREEMENT_RANK
            and h.sparse_rank <= _AGREEMENT_RANK
            for h in hits
        )
    )


def _matched_share(hits: Sequence[Hit]) -> float:
    """Share of the question's BM25 terms that some BM25 top result contains."""
    shares = [h.unmatched_share for h in hits if h.unmatched_share is not None]
    return 1.0 - max(shares) if shares else 0.0


def _best_sentence(hits: Sequence[Hit]) -> float:
    """The cosine of the hits' best quotable sentence to the question (-1 without any): the
    number the extractive answerer's own floor reads, known before it runs."""
    return max((h.sentence_score for h in hits if h.sentence_score is not None), default=-1.0)


def _best_rerank(hits: Sequence[Hit]) -> float:
    return max((h.rerank_score for h in hits if h.rerank_score is not None), default=0.0)


# Every feature a model may name, computed from the hits the ask use case hands to refusal.
# A model file lists the ones it was fitted with; `best_rerank` only helps where a reranker
# ran both when the model was fitted and when it is applied.
FEATURES: dict[str, Callable[[Sequence[Hit]], float]] = {
    "best_dense": _best_dense,
    "first_dense": _first_dense,
    "dense_spread": _dense_spread,
    "in_dense_top": _in_dense_top,
    "best_sparse_rank": _best_sparse_rank,
    "first_sparse_rank": _first_sparse_rank,
    "agreeing_share": _agreeing_share,
    "top_agreement": _top_agreement,
    "matched_share": _matched_share,
    "best_rerank": _best_rerank,
    "best_sparse_score": _best_sparse_score,
    "first_sparse_score": _first_sparse_score,
    "best_dense_rank": _best_dense_rank,
    "rarest_term_chunks": _rarest_term_chunks,
    "unknown_terms": _unknown_terms,
    "best_sentence": _best_sentence,
}
# What a model may be fitted on without a reranker (the benchmark selects among these on its
# dev split; `eval calibrate` refits the shipped model's own selection).
CANDIDATE_FEATURES = tuple(name for name in FEATURES if name != "best_rerank")


def reads_sentences(names: Sequence[str]) -> bool:
    """Whether these features need `Hit.sentence_score` set on the hits."""
    return "best_sentence" in names


def evidence_features(hits: Sequence[Hit], names: Sequence[str]) -> list[float]:
    return [FEATURES[name](hits) for name in names]


def shipped_model_path() -> Path:
    return Path(str(resources.files(__package__).joinpath("refusal_model.json")))


@dataclass(frozen=True)
class RefusalModel:
    """P(unanswerable) = sigmoid(intercept + sum(coef * (feature - mean) / scale)); refuse
    from `threshold` on. Everything in it is in its JSON file, readable by hand."""

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float
    threshold: float
    source: str = ""  # where the file came from, for error messages and reasons
    report: dict[str, Any] = field(default_factory=dict)  # the fit report, as written

    @property
    def reads_sentences(self) -> bool:
        return reads_sentences(self.features)

    def probability(self, hits: Sequence[Hit]) -> float:
        return self._probability(evidence_features(hits, self.features))

    def _probability(self, values: Sequence[float]) -> float:
        z = self.intercept + sum(
            c * (v - m) / s
            for c, v, m, s in zip(self.coef, values, self.mean, self.scale, strict=True)
        )
        return 1.0 / (1.0 + math.exp(-max(min(z, 60.0), -60.0)))

    def decide(self, hits: Sequence[Hit]) -> RefusalDecision:
        best = max((h.dense_score for h in hits if h.dense_score is not None), default=None)
        agreeing = sum(1 for h in hits if h.dense_rank is not None and h.sparse_rank is not None)
        if not hits:
            return RefusalDecision(True, "nothing was retrieved", None, 0, 1.0)
        values = evidence_features(hits, self.features)
        p = self._probability(values)
        refuse = p >= self.threshold
        # The feature that pushed hardest towards the verdict, so a reason says why.
        pushes = [
            (c * (v - m) / s, name, v)
            for name, c, v, m, s in zip(
                self.features, self.coef, values, self.mean, self.scale, strict=True
            )
        ]
        push, name, value = max(pushes) if refuse else min(pushes)
        verdict = ">=" if refuse else "<"
        reason = (
            f"refusal model: P(unanswerable) {p:.2f} {verdict} {self.threshold:.2f} "
            f"(most: {name} {value:.2f}, {push:+.2f})"
        )
        return RefusalDecision(refuse, reason, best, agreeing, p)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "logistic_regression",
            "version": 1,
            "features": list(self.features),
            "mean": list(self.mean),
            "scale": list(self.scale),
            "coef": list(self.coef),
            "intercept": self.intercept,
            "threshold": self.threshold,
            "report": self.report,
        }

    @classmethod
    def from_json(cls, data: Any, source: str) -> RefusalModel:
        try:
            features = tuple(str(n) for n in data["features"])
            model = cls(
                features=features,
                mean=tuple(float(v) for v in data["mean"]),
                scale=tuple(float(v) for v in data["scale"]),
                coef=tuple(float(v) for v in data["coef"]),
                intercept=float(data["intercept"]),
                threshold=float(data["threshold"]),
                source=source,
                report=dict(data.get("report") or {}),
            )
        except (TypeError, KeyError, ValueError) as exc:
            raise ConfigurationError(
                f"The refusal model {source} is not a model file ({exc!r} is missing or "
                "wrong); refit it with `eval calibrate` or unset RAG_REFUSAL_MODEL_PATH."
            ) from exc
        unknown = [n for n in features if n not in FEATURES]
        sizes = {len(features), len(model.mean), len(model.scale), len(model.coef)}
        if unknown or len(sizes) != 1 or any(s <= 0 for s in model.scale):
            raise ConfigurationError(
                f"The refusal model {source} is inconsistent (unknown features {unknown}, or "
                "lists of different lengths, or a scale <= 0); refit it with `eval calibrate`."
            )
        return model

    @classmethod
    def load(cls, path: Path | None = None) -> RefusalModel:
        """The model at `path`, or the one shipped in the package."""
        where = path or shipped_model_path()
        try:
            data = json.loads(where.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigurationError(
                f"RAG_REFUSAL_MODEL_PATH={where} does not exist; write it with `eval "
                "calibrate`, or unset it to use the shipped model."
            ) from exc
        except (OSError, ValueError) as exc:
            raise ConfigurationError(
                f"The refusal model {where} cannot be read as JSON ({exc}); refit it with "
                "`eval calibrate`."
            ) from exc
        return cls.from_json(data, str(where))


def build_refusal(settings: Settings) -> Refusal:
    """The refusal the service runs: the calibrated model, or the hand thresholds
    (RAG_REFUSAL=rules). With a reranker and RAG_REFUSAL_MIN_RERANK, its score decides."""
    reranked = settings.rerank_url is not None or settings.rerank_model_path is not None
    if settings.refusal == "rules" or (settings.refusal_min_rerank is not None and reranked):
        return RefusalPolicy.from_settings(settings)
    return RefusalModel.load(settings.refusal_model_path)
