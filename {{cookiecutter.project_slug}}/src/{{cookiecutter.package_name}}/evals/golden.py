"""The golden set: one JSON object per line, validated row by row.

{"id": "q01", "question": "...", "reference_answer": "...", "gold_sources": ["a.md"],
 "gold_passages": ["optional: the sentences that answer it"], "tags": ["lexical"],
 "answerable": true, "reviewed": true}

`answerable: false` marks a question the corpus cannot answer (it should be refused).
`reviewed: false` marks a machine-drafted row (`eval generate`); the gate refuses those until a
person has checked them, unless told otherwise.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import BadRequestError


@dataclass(frozen=True)
class GoldenItem:
    id: str
    question: str
    reference_answer: str
    gold_sources: list[str]
    tags: list[str]
    answerable: bool
    gold_passages: list[str] = field(default_factory=list)
    reviewed: bool = True


_FIELDS = {
    "id",
    "question",
    "reference_answer",
    "gold_sources",
    "gold_passages",
    "tags",
    "answerable",
    "reviewed",
}


def _problems(row: object) -> list[str]:
    if not isinstance(row, dict):
        return ["is not a JSON object"]
    problems = []
    for name in ("id", "question", "reference_answer"):
        if not isinstance(row.get(name), str) or not row[name].strip():
            problems.append(f"{name!r} must be a non-empty string")
    unknown = set(row) - _FIELDS
    if unknown:
        problems.append(f"unknown fields {sorted(unknown)}; known: {sorted(_FIELDS)}")
    for name in ("gold_sources", "tags", "gold_passages"):
        value = row.get(name, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            problems.append(f"{name!r} must be a list of strings")
    if not isinstance(row.get("reviewed", True), bool):
        problems.append("'reviewed' must be true or false")
    answerable = row.get("answerable", True)
    if not isinstance(answerable, bool):
        problems.append("'answerable' must be true or false")
    elif answerable and not row.get("gold_sources"):
        problems.append("an answerable question needs at least one gold source")
    return problems


def load_golden_set(path: Path) -> list[GoldenItem]:
    """Every row, or an error listing every bad row with its line number."""
    if not path.is_file():
        raise BadRequestError(f"Golden set {path} does not exist (RAG_EVAL_GOLDEN_SET).")
    items: list[GoldenItem] = []
    errors: list[str] = []
    ids: set[str] = set()
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            errors.append(f"line {number}: not valid JSON ({exc.msg})")
            continue
        problems = _problems(row)
        if not problems and row["id"] in ids:
            problems.append(f"duplicate id {row['id']!r}")
        if problems:
            errors.append(f"line {number}: " + "; ".join(problems))
            continue
        ids.add(row["id"])
        items.append(
            GoldenItem(
                id=row["id"],
                question=row["question"],
                reference_answer=row["reference_answer"],
                gold_sources=list(row.get("gold_sources", [])),
                tags=list(row.get("tags", [])),
                answerable=row.get("answerable", True),
                gold_passages=list(row.get("gold_passages", [])),
                reviewed=row.get("reviewed", True),
            )
        )
    if errors:
        raise BadRequestError(f"Golden set {path} has bad rows:\n  " + "\n  ".join(errors))
    if not items:
        raise BadRequestError(f"Golden set {path} has no questions.")
    return items
