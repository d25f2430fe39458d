"""GET /healthz, /readyz: liveness and readiness, with a real store and real models."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from {{ cookiecutter.package_name }}.api import create_app
from {{ cookiecutter.package_name }}.container import Services

from ...conftest import keyed_client, qdrant_client


@pytest.fixture
def client(services: Services, corpus: Path) -> Iterator[TestClient]:
    services.ingestor.ingest(corpus)
    with keyed_client(create_app(services=services), services.settings) as test_client:
        yield test_client


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["ready"] is True
    assert set(ready.json()["checks"]) == {"store", "collection", "embedding_model"}


def test_readiness_fails_when_the_collection_is_gone(
    client: TestClient, services: Services
) -> None:
    qdrant_client(services).delete_collection("test")
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["collection"] == "missing: test"
