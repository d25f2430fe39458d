"""The API's routes, one module per resource; `create_app` includes `ROUTERS` in order."""

from .documents import router as documents
from .feedback import router as feedback
from .health import router as health
from .search import router as search

ROUTERS = (health, search, documents, feedback)

__all__ = ["ROUTERS", "documents", "feedback", "health", "search"]
