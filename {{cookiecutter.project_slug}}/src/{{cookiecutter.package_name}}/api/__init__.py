"""HTTP API: a thin layer over the services built by the composition root."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    # The app (FastAPI and every route) is imported on first use of `create_app`, not by
    # `import .api.schemas`: the CLI's `ask` prints the API's response body without serving.
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
