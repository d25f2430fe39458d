"""The app as a whole: errors for unknown routes, the OpenAPI document."""

from __future__ import annotations

import dataclasses
import json
from importlib import resources
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from {{ cookiecutter.package_name }}.api import create_app
from {{ cookiecutter.package_name }}.container import Services
from {{ cookiecutter.package_name }}.errors import ConfigurationError
from {{ cookiecutter.package_name }}.settings import PACKAGE_NAME, Settings

from ..conftest import PROJECT_ROOT, assert_error, make_settings

UI_CHOSEN = (
    json.loads(resources.files(PACKAGE_NAME).joinpath("project.json").read_text("utf-8"))[
        "choices"
    ]["ui"]
    == "yes"
)


def test_unknown_route_is_a_json_404(client: TestClient) -> None:
    assert_error(client.get("/v1/nothing"), 404, "Not Found")


def test_openapi_documents_the_endpoints(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/retrieve", "/v1/query", "/healthz", "/readyz"} <= set(paths)
    assert client.get("/docs").status_code == 200


def test_every_route_lists_only_the_responses_it_can_give(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    body_errors, keyed_errors = {"413", "422"}, {"401", "403", "429"}
    checked = 0
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            where = f"{method.upper()} {path}"
            listed = set(operation["responses"])
            body = operation.get("requestBody", {}).get("content", {})
            if body:  # BodyLimit answers 413 for any body, validation 422
                assert body_errors <= listed, where
            else:
                assert not listed & (body_errors | {"415"}), where
            # 415 is a file type the loader cannot read: only where files are sent.
            assert ("415" in listed) == ("multipart/form-data" in body), where
            if operation.get("security"):
                assert keyed_errors <= listed, where
            else:  # no key is asked for, so none can be refused
                assert not listed & keyed_errors, where
            errors = {s for s in listed if s >= "400"} - ({"503"} if path == "/readyz" else set())
            for status in errors:  # /readyz's 503 is its Readiness body; every other error:
                content = operation["responses"][status]["content"]
                assert set(content) == {"application/problem+json"}, (where, status)
            checked += 1
    assert checked >= 8  # without MCP (mcp_server=no), its well-known metadata route is gone
    listing = document["paths"]["/v1/documents"]["get"]["responses"]
    assert not {"413", "415"} & set(listing)  # the case that was reported
    assert "HTTPValidationError" not in document["components"]["schemas"]


def test_web_app_follows_the_ui_choice(
    client: TestClient, tmp_path: Path, model_dir: Path, services: Services
) -> None:
    assert Settings.model_fields["ui_enabled"].get_default() is UI_CHOSEN
    assert (PROJECT_ROOT / "src" / PACKAGE_NAME / "ui").is_dir() is UI_CHOSEN
    assert client.get("/ui/").status_code == (200 if UI_CHOSEN else 404)
    if UI_CHOSEN:
        return
    # Generated with ui=no: turning the app on names the choice instead of an import error.
    on = dataclasses.replace(services, settings=make_settings(tmp_path, model_dir, ui_enabled=True))
    with pytest.raises(ConfigurationError, match=r"generated without the web app \(ui=no\)"):
        create_app(services=on)
