"""Errors a person can act on: each says what is wrong and what to do about it."""

from __future__ import annotations


class ServiceError(Exception):
    """Base class. `status_code` is what the API answers with."""

    status_code = 500
    headers: dict[str, str] = {}  # noqa: RUF012 - read-only: extra response headers

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


class StorageUnavailableError(ServiceError):
    """The data folder cannot be written (disk full, read-only): nothing was changed."""

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


class NotFoundError(ServiceError):
    status_code = 404


class ConflictError(ServiceError):
    status_code = 409


class PayloadTooLargeError(ServiceError):
    status_code = 413


class UnsupportedMediaTypeError(ServiceError):
    status_code = 415


class LLMUnavailableError(ServiceError):
    """The answer model (and its fallback) failed; the message names the last error."""

    status_code = 502

    def __init__(self, message: str, kind: str = "error") -> None:
        super().__init__(message)
        self.kind = kind  # error.type of the last failure: timeout, malformed, 429, ...


class AuthUnavailableError(ServiceError):
    """Keys cannot be checked (the keys file is unreadable); details go to the log only."""

    status_code = 503


class UnauthorizedError(ServiceError):
    status_code = 401
    headers = {"WWW-Authenticate": "Bearer"}  # noqa: RUF012 - read-only


class ForbiddenError(ServiceError):
    status_code = 403


class TooManyRequestsError(ServiceError):
    status_code = 429

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.headers = {"Retry-After": str(retry_after_s)}
