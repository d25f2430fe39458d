"""The retrieval-augmented generation service: see README.md and docs/architecture.md."""

__version__ = "0.1.0"
