"""`eval harvest`: production questions worth a person's look (down-voted, refused, or far
from what the golden set asks) as golden-set draft rows, `reviewed: false`, with the sources
they retrieved attached as candidate gold sources. The gate refuses such rows until a person
has checked each one and set `reviewed: true`."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from pathlib import Path

from ..container import Services
from ..errors import BadRequestError
from ..evals.golden import load_golden_set
from ..traffic.capture import CaptureRecord
from .drift import Vector

DRAFT_ANSWER = "TO REVIEW: write the answer the documents give (or mark answerable false)."


def _cosine(a: Vector, b: Vector) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norms = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norms if norms else 0.0


def harvest_rows(
    records: Sequence[CaptureRecord],
    downvoted: set[str],
    reference_vectors: Sequence[Vector],
    drifted: int = 10,
) -> tuple[list[dict[str, object]], int]:
    """Draft rows, and how many candidates had no question text (captured as a hash)."""
    reasons: dict[str, list[str]] = {}
    by_trace = {r.trace_id: r for r in records}
    for r in records:
        if r.trace_id in downvoted:
            reasons.setdefault(r.trace_id, []).append("down-voted")
        if r.refused:
            reasons.setdefault(r.trace_id, []).append("refused")
    if reference_vectors and drifted:
        dim = len(reference_vectors[0])
        centre = [sum(v[i] for v in reference_vectors) / len(reference_vectors) for i in range(dim)]
        far = sorted((r for r in records if r.vector), key=lambda r: _cosine(r.vector, centre))
        for r in far[:drifted]:
            reasons.setdefault(r.trace_id, []).append("drifted")
    rows: list[dict[str, object]] = []
    hashed = 0
    seen: set[str] = set()
    for trace_id, why in reasons.items():
        record = by_trace[trace_id]
        text = record.question.get("text")
        if not text:
            hashed += 1
            continue
        if text in seen:
            continue
        seen.add(text)
        sources = list(dict.fromkeys(record.sources))
        rows.append(
            {
                "id": f"harvest-{trace_id[:12]}",
                "question": text,
                "reference_answer": DRAFT_ANSWER,
                "gold_sources": sources,
                "tags": ["harvested", *why],
                "answerable": bool(sources),
                "reviewed": False,
            }
        )
    return rows, hashed


def write_rows(rows: list[dict[str, object]], out: Path, overwrite: bool) -> None:
    if out.exists() and not overwrite:
        raise BadRequestError(f"{out} exists; pass --overwrite to replace it, or another --out.")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")


def run_harvest(services: Services, days: float, out: Path, overwrite: bool) -> int:
    """Draft rows from the last `days` of captured traffic of the settings' tenant."""
    until = time.time()
    records = [
        r
        for r in services.capture.sink.read(until - days * 86400, until)
        if r.tenant == services.settings.tenant
    ]
    downvoted = {
        f.trace_id
        for f in services.feedback.of_tenant(services.settings.tenant)
        if f.rating == "down"
    }
    golden = services.settings.eval_golden_set
    reference = (
        [services.dense.embed_query(item.question) for item in load_golden_set(golden)]
        if golden.is_file()
        else []
    )
    rows, hashed = harvest_rows(records, downvoted, reference)
    write_rows(rows, out, overwrite)
    print(f'Wrote {len(rows)} draft rows to {out}, marked "reviewed": false.')
    if hashed:
        print(
            f"{hashed} more were captured as a hash only: set RAG_AUDIT_CONTENT=text to keep "
            "question text for harvesting."
        )
    return 0
