"""Production answers scored by the LLM judge: a sample of the window's captured answers, with
ragas' reference-free metrics (faithfulness to the retrieved passages, relevancy to the
question), through the eval's own judge (evals/judge.py: RAG_JUDGE_BASE_URL and the rest).

Only answers captured with their text can be judged (RAG_AUDIT_CONTENT=text); refusals are
not judged. The passages are read back from the store by the captured chunk ids: an answer
whose passages have since been replaced by a re-ingest is skipped and counted, never judged
against other text. Without a judge, or with a sample of 0, the report says why it did not
run; a metric the judge could not score is NaN with its error, as in the eval.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from statistics import mean
from typing import Protocol

from ..container import Services
from ..evals.judge import REFERENCE_FREE_METRICS
from ..traffic.capture import CaptureRecord

LOWEST_SHOWN = 5  # trace ids of the lowest-scoring answers, for a person to read
NO_TEXT = (
    "no captured answer in the window has its text (capture keeps it with "
    "RAG_AUDIT_CONTENT=text; refusals are not judged)"
)


class ReferenceFreeJudge(Protocol):
    errors: list[str]

    def score_without_reference(
        self, question: str, answer: str, contexts: list[str]
    ) -> dict[str, float]: ...

    def describe(self, metrics: tuple[str, ...]) -> dict[str, str]: ...


@dataclass
class JudgeSummary:
    ran: bool
    note: str  # why it did not run, or what was judged
    judged: int = 0
    candidates: int = 0
    skipped: int = 0  # passages no longer stored
    scores: dict[str, float] = field(default_factory=dict)  # metric -> mean over the sample
    described: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    lowest: list[tuple[str, float]] = field(default_factory=list)  # (trace id, faithfulness)

    def to_dict(self) -> dict[str, object]:
        return {
            "ran": self.ran,
            "note": self.note,
            "judged": self.judged,
            "candidates": self.candidates,
            "skipped_passages_gone": self.skipped,
            "scores": {k: None if math.isnan(v) else round(v, 6) for k, v in self.scores.items()},
            "judge": self.described,
            "errors": self.errors,
            "lowest_faithfulness": [{"trace_id": t, "score": s} for t, s in self.lowest],
        }


def not_run(reason: str) -> JudgeSummary:
    return JudgeSummary(ran=False, note=f"judge metrics not run: {reason}")


def judgeable(records: Sequence[CaptureRecord]) -> list[CaptureRecord]:
    """Answered (not refused) questions captured with the question's and the answer's text."""
    return [r for r in records if r.refused is False and r.question.get("text") and r.answer_text]


def judge_sample(
    records: Sequence[CaptureRecord],
    size: int,
    judge: ReferenceFreeJudge,
    passages: Callable[[CaptureRecord], list[str] | None],
    seed: int = 0,
) -> JudgeSummary:
    """Score up to `size` of the judgeable records (a seeded sample); `passages` gives a
    record's retrieved texts, or None when they are no longer stored."""
    candidates = judgeable(records)
    if not candidates:
        return not_run(NO_TEXT)
    chosen = random.Random(seed).sample(candidates, min(size, len(candidates)))  # noqa: S311
    per_metric: dict[str, list[float]] = {name: [] for name in REFERENCE_FREE_METRICS}
    lowest: list[tuple[str, float]] = []
    skipped = 0
    for record in chosen:
        texts = passages(record)
        if texts is None:
            skipped += 1
            continue
        question, answer = record.question["text"], record.answer_text or ""
        scores = judge.score_without_reference(question, answer, texts)
        for name in REFERENCE_FREE_METRICS:
            per_metric[name].append(scores[name])
        if not math.isnan(scores["judge_faithfulness"]):
            lowest.append((record.trace_id, scores["judge_faithfulness"]))
    judged = len(chosen) - skipped
    return JudgeSummary(
        ran=judged > 0,
        note=(
            f"{judged} of {len(candidates)} captured answers judged"
            if judged
            else f"judge metrics not run: the passages of all {skipped} sampled answers "
            "are no longer stored (re-ingested)"
        ),
        judged=judged,
        candidates=len(candidates),
        skipped=skipped,
        scores={name: _nan_mean(values) for name, values in per_metric.items()},
        described=judge.describe(REFERENCE_FREE_METRICS),
        errors=list(judge.errors),
        lowest=sorted(lowest, key=lambda pair: pair[1])[:LOWEST_SHOWN],
    )


def _nan_mean(values: list[float]) -> float:
    present = [v for v in values if not math.isnan(v)]
    return mean(present) if present else math.nan


def stored_passages(services: Services) -> Callable[[CaptureRecord], list[str] | None]:
    """A record's retrieved chunk texts from the store, in retrieval order; None when one
    of them is gone."""

    def read(record: CaptureRecord) -> list[str] | None:
        ids = list(dict.fromkeys(record.chunk_ids))
        found = {
            h.chunk_id: h.text
            for h in services.store.chunks(tenant=record.tenant, ids=ids, limit=len(ids))
        }
        if len(found) < len(ids):
            return None
        return [found[i] for i in ids]

    return read


def run_judge(services: Services, records: Sequence[CaptureRecord], size: int) -> JudgeSummary:
    """The judge over the window's records, per the settings; why not, when it cannot run."""
    if not services.settings.judge_base_url:
        return not_run("no judge is configured (set RAG_JUDGE_BASE_URL and RAG_JUDGE_*)")
    if size <= 0:
        return not_run("the judge sample is 0 (--judge-sample, RAG_MONITOR_JUDGE_SAMPLE)")
    if not judgeable(records):
        return not_run(NO_TEXT)  # before the scorer: it needs the eval group installed
    from ..evals.judge import JudgeScorer

    # instructor logs every retried judge call at ERROR; failures land in the report.
    logging.getLogger("instructor").setLevel(logging.CRITICAL)
    return judge_sample(records, size, JudgeScorer(services.settings), stored_passages(services))
