"""Ingestion: load -> parse/clean -> chunk -> embed -> upsert, synced against the store.

formats.py (which parser reads which file) -> load.py + parse.py (`Document`) -> chunk.py
(`Chunk`) -> pipeline.py (embed, upsert: `Point`), which carries out what plan.py decides per
file and reports in report.py's types. jobs.py runs uploads in the background.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .report import FileOutcome, IngestReport

if TYPE_CHECKING:
    from .pipeline import Ingestor

__all__ = ["FileOutcome", "IngestReport", "Ingestor"]


def __getattr__(name: str) -> Any:
    # The pipeline (encoders, store, telemetry) is imported on first use of `Ingestor`, so
    # `ingest.formats` and the report types stay cheap for the CLI's `--help`.
    if name == "Ingestor":
        from .pipeline import Ingestor

        return Ingestor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
