"""Vector stores: the interface (base.py), one module per engine, and the choice between them.

Engines are imported only when chosen: qdrant-client alone takes seconds to import, which a
command on the edge engine never needs to pay."""

from __future__ import annotations

from pathlib import Path

from ..settings import Settings
from .base import DENSE, SPARSE, RecordShelf, SearchOptions, VectorStore
from .records import SCHEMA_VERSION

__all__ = [
    "DENSE",
    "SCHEMA_VERSION",
    "SPARSE",
    "RecordShelf",
    "SearchOptions",
    "VectorStore",
    "holder_file",
    "open_store",
]


def open_store(settings: Settings) -> VectorStore:
    """The store the settings name: a Qdrant server when RAG_QDRANT_URL is set, else the
    embedded engine (RAG_EMBEDDED_ENGINE)."""
    if settings.qdrant_url is None and settings.embedded_engine == "edge":
        from .edge import EdgeStore
        from .migrate import refuse_unmigrated

        refuse_unmigrated(settings)
        return EdgeStore(settings)
    from .qdrant import QdrantStore

    return QdrantStore(settings)


def holder_file(settings: Settings) -> Path:
    """Where the embedded store names the process holding it (written on opening)."""
    if settings.embedded_engine == "edge":
        return settings.edge_path / settings.collection / "holder.json"
    return settings.qdrant_path / "holder.json"
