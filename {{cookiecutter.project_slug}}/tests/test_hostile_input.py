"""Smaller hostile-input failures of issue 15: a corrupt keys file, keys in URLs, loose types,
a torn audit line, a data folder that cannot be written."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from {{ cookiecutter.package_name }}.api import create_app
from {{ cookiecutter.package_name }}.audit import AuditLog
from {{ cookiecutter.package_name }}.cli import main
from {{ cookiecutter.package_name }}.container import Services

from .conftest import api_key, assert_error, auth


@pytest.fixture
def client(services: Services) -> Iterator[TestClient]:
    with TestClient(create_app(services=services)) as test_client:
        yield test_client


def test_a_corrupt_keys_file_is_not_described_to_the_caller(
    services: Services, client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    key = api_key(services.settings)
    services.settings.keys_path.write_text('{"keys": [', "utf-8")
    with caplog.at_level(logging.ERROR):
        response = client.post("/v1/retrieve", json={"query": "leave"}, headers=auth(key))
    assert_error(response, 503, "API keys cannot be checked right now")
    assert str(services.settings.keys_path) not in response.text
    assert "keys.json" not in response.text
    assert "JSON" not in response.text
    # The operator still learns which file and what to do.
    assert str(services.settings.keys_path) in caplog.text


@pytest.mark.parametrize("parameter", ["api_key", "token", "key", "API_KEY"])
def test_a_key_in_the_query_string_is_refused_even_with_a_good_header(
    services: Services, client: TestClient, parameter: str
) -> None:
    key = api_key(services.settings)
    response = client.post(
        f"/v1/retrieve?{parameter}={key}", json={"query": "leave"}, headers=auth(key)
    )
    assert_error(response, 401, "A key in the URL", "Authorization: Bearer")
    assert key not in response.text


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"query": "leave", "top_k": "5"}, "top_k"),
        ({"query": "leave", "top_k": 5.5}, "top_k"),
        ({"query": "leave", "top_k": True}, "top_k"),
        ({"query": "leave", "filters": {"source": "AAA"}}, "filters.source"),
        ({"query": 5}, "query"),
    ],
)
def test_types_are_strict_where_the_schema_says_integer_or_array(
    services: Services, client: TestClient, body: dict[str, Any], field: str
) -> None:
    response = client.post("/v1/retrieve", json=body, headers=auth(api_key(services.settings)))
    assert_error(response, 422, field)


def test_the_schema_still_accepts_what_it_documents(services: Services, client: TestClient) -> None:
    response = client.post(
        "/v1/retrieve",
        json={"query": "leave", "top_k": 3, "filters": {"source": ["a.md"]}},
        headers=auth(api_key(services.settings)),
    )
    assert response.status_code == 200, response.text
    # JSON Schema's integer includes 3.0 (schemathesis sends it): same request, same hits.
    integral = client.post(
        "/v1/retrieve",
        json={"query": "leave", "top_k": 3.0, "filters": {"source": ["a.md"]}},
        headers=auth(api_key(services.settings)),
    )
    assert integral.status_code == 200, integral.text
    assert integral.json()["hits"] == response.json()["hits"]
    schema = client.get("/openapi.json").json()["components"]["schemas"]["RetrieveRequest"]
    integer = next(t for t in schema["properties"]["top_k"]["anyOf"] if t["type"] == "integer")
    assert integer["minimum"] == 1  # `ge` instead would be a keyword no client checks
    stream = client.post(
        "/v1/query",
        json={"question": "leave", "stream": False},
        headers=auth(api_key(services.settings)),
    )
    assert stream.status_code == 200, stream.text


def test_a_torn_audit_line_costs_only_itself(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    log.write("query", "k1", "alpha", "t1")
    with (tmp_path / "audit.jsonl").open("a", encoding="utf-8") as handle:
        handle.write('{"time":"2026-01-01T00:00:00","event":"upl')  # a crash mid-write
    log.write("delete", "k2", "beta", "t2")
    log.write("query", "k3", "beta", "t3")
    lines = (tmp_path / "audit.jsonl").read_text("utf-8").splitlines()
    assert len(lines) == 4
    assert json.loads(lines[2])["trace_id"] == "t2"  # on a fresh line, parseable
    assert [r["trace_id"] for r in log.records()] == ["t1", "t2", "t3"]


def test_an_unwritable_data_folder_gives_one_error_line(
    cli_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = cli_env / "not-a-folder"
    blocker.write_text("a file where the data folder should be", "utf-8")
    monkeypatch.setenv("RAG_DATA_DIR", str(blocker / ".data"))
    corpus = cli_env / "kb"
    corpus.mkdir()
    (corpus / "a.md").write_text("# A\n\nLeave is 25 days.\n", "utf-8")
    assert main(["ingest", str(corpus)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("error: cannot use ")
    assert "RAG_DATA_DIR" in err[0]
