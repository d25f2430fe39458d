"""The API's routes, one module per resource; `create_app` includes `ROUTERS` in order."""

from .documents import router as documents
from .health import router as health
from .search import router as search

ROUTERS = (health, search, documents)

__all__ = ["ROUTERS", "documents", "health", "search"]
