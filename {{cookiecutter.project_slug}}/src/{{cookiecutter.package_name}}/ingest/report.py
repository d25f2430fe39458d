"""What an ingest run reports: one outcome per file, counted and summarised.

These are plain types that the executor fills, the planner names statuses with, and the CLI,
the API's jobs and the logs read; this module imports nothing else of the service.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Literal, Protocol

from ..wording import plural

Status = Literal["added", "updated", "unchanged", "deleted", "skipped"]
STATUSES: tuple[Status, ...] = ("added", "updated", "unchanged", "deleted", "skipped")


@dataclass(frozen=True)
class FileOutcome:
    source: str
    status: Status
    chunks: int = 0
    reason: str = ""
    warnings: tuple[str, ...] = ()  # parts dropped from a file that still landed


class ProgressListener(Protocol):
    """Told how many files a run has, then of each file when its work begins and its
    outcome when it ends."""

    def start(self, total: int) -> None: ...

    def begin(self, source: str) -> None: ...

    def advance(self, outcome: FileOutcome) -> None: ...


@dataclass
class IngestReport:
    corpus: str
    root: str
    files: list[FileOutcome] = field(default_factory=list)
    dry_run: bool = False

    @property
    def counts(self) -> dict[str, int]:
        counted = Counter(outcome.status for outcome in self.files)
        return {status: counted.get(status, 0) for status in STATUSES}

    @property
    def warnings(self) -> int:
        return sum(len(outcome.warnings) for outcome in self.files)

    @property
    def changed(self) -> bool:
        counts = self.counts
        return any(counts[s] for s in ("added", "updated", "deleted"))

    def summary(self) -> str:
        counts = ", ".join(f"{n} {status}" for status, n in self.counts.items())
        if self.dry_run:
            return f"Dry run of {self.root} as corpus {self.corpus!r}, nothing written: {counts}"
        verdict = "" if self.changed else " (nothing changed)"
        warned = f"; {plural(self.warnings, 'warning')}" if self.warnings else ""
        return f"Ingested {self.root} as corpus {self.corpus!r}: {counts}{warned}{verdict}"

    def to_json(self) -> str:
        return json.dumps(
            {
                "corpus": self.corpus,
                "root": self.root,
                "counts": self.counts,
                "files": [asdict(f) for f in self.files],
            },
            indent=2,
        )
