"""The app as a whole: errors for unknown routes, the OpenAPI document."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from {{ cookiecutter.package_name }}.api import create_app
from {{ cookiecutter.package_name }}.container import Services

from ..conftest import assert_error, keyed_client


@pytest.fixture
def client(services: Services) -> Iterator[TestClient]:
    with keyed_client(create_app(services=services), services.settings) as test_client:
        yield test_client


def test_unknown_route_is_a_json_404(client: TestClient) -> None:
    assert_error(client.get("/v1/nothing"), 404, "Not Found")


def test_openapi_documents_the_endpoints(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/retrieve", "/v1/query", "/healthz", "/readyz"} <= set(paths)
    assert client.get("/docs").status_code == 200
