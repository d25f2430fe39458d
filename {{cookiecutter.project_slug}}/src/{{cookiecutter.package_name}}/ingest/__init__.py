"""Ingestion: load -> parse/clean -> chunk -> embed -> upsert, synced against the store."""

from .pipeline import FileOutcome, Ingestor, IngestReport

__all__ = ["FileOutcome", "IngestReport", "Ingestor"]
