"""Ingestion: load -> parse/clean -> chunk -> embed -> upsert, synced against the store.

formats.py (which parser reads which file) -> load.py + parse.py (`Document`) -> chunk.py
(`Chunk`) -> pipeline.py (embed, upsert: `Point`), which carries out what plan.py decides per
file and reports in report.py's types. jobs.py runs uploads in the background.
"""

from .pipeline import Ingestor
from .report import FileOutcome, IngestReport

__all__ = ["FileOutcome", "IngestReport", "Ingestor"]
