"""HTTP API: a thin layer over the services built by the composition root."""

from .app import create_app

__all__ = ["create_app"]
