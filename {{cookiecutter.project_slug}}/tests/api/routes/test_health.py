"""GET /healthz, /readyz: liveness and readiness, with a real store and real models."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from {{ cookiecutter.package_name }}.container import Services

from ...conftest import drop_collection


@pytest.fixture
def client(services: Services, corpus: Path, client: TestClient) -> TestClient:
    """The API client (tests/api/conftest.py) over a store holding the sample corpus."""
    services.ingestor.ingest(corpus)
    return client


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["ready"] is True
    assert set(ready.json()["checks"]) == {"store", "collection", "embedding_model"}


def test_readiness_fails_when_the_collection_is_gone(
    client: TestClient, services: Services
) -> None:
    drop_collection(services)
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["collection"] == "missing: test"
