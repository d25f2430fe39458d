"""The app as a whole: errors for unknown routes, the OpenAPI document."""

from __future__ import annotations

from fastapi.testclient import TestClient

from ..conftest import assert_error


def test_unknown_route_is_a_json_404(client: TestClient) -> None:
    assert_error(client.get("/v1/nothing"), 404, "Not Found")


def test_openapi_documents_the_endpoints(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/retrieve", "/v1/query", "/healthz", "/readyz"} <= set(paths)
    assert client.get("/docs").status_code == 200
