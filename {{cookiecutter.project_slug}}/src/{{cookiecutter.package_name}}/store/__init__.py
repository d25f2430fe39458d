"""Vector stores: the interface (base.py) and one module per engine."""

from .base import DENSE, SCHEMA_VERSION, SPARSE, SearchOptions, VectorStore

__all__ = ["DENSE", "SCHEMA_VERSION", "SPARSE", "SearchOptions", "VectorStore"]
