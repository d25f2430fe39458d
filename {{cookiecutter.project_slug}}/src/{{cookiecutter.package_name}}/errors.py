"""Errors a person can act on: each says what is wrong and what to do about it."""

from __future__ import annotations


class ServiceError(Exception):
    """Base class. `status_code` is what the API answers with."""

    status_code = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigurationError(ServiceError):
    status_code = 500


class StoreInUseError(ServiceError):
    """The embedded store is held by another process (embedded Qdrant allows one)."""

    status_code = 503


class StoreUnavailableError(ServiceError):
    status_code = 503


class EmbeddingError(ServiceError):
    status_code = 502


class RerankError(ServiceError):
    """The hosted reranker failed; retrieval does not fall back silently."""

    status_code = 503


class ModelIntegrityError(ServiceError):
    status_code = 500


class BadRequestError(ServiceError):
    status_code = 400
