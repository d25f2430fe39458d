"""Does the corpus answer this question? Decided from evidence with an absolute meaning.

A fused RRF score is a sum of reciprocal ranks: every query gets the same scores whether or
not the corpus answers it. What does carry meaning is the dense cosine (the embedding
model's own scale) and whether two unrelated retrievers, dense and BM25, agree on a chunk.
A third signal is lexical: a question about something the corpus never mentions
(a product, a library) has terms that no BM25 top result contains. The retriever puts all of
it on each hit (`Hit.dense_score`, `dense_rank`, `sparse_rank`, `unmatched_share`); the ask
use case (ask.py) calls `RefusalPolicy.decide(hits)` once, before any answerer runs, and hands
the decision to it. Thresholds
were chosen on the retrieval benchmark (docs/decisions, retrieval defaults by measurement).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .domain import Hit
from .settings import Settings


@dataclass(frozen=True)
class RefusalDecision:
    refuse: bool
    reason: str
    best_dense: float | None  # highest cosine among the hits, None if none is in the dense top
    agreeing: int  # hits in the top `agreement_rank` of both dense and BM25


@dataclass(frozen=True)
class RefusalPolicy:
    min_dense: float  # below this cosine no hit is close enough, whatever BM25 says
    strong_dense: float  # from this cosine on, the dense match alone is enough
    agreement_rank: int  # a hit ranked this high by both retrievers is corroborated
    max_unmatched_share: float | None = None  # this share of terms absent from BM25's top: refuse
    min_rerank: float | None = None  # with a reranker, its score decides

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
