"""Fuzz the OpenAPI schema with schemathesis against a real server on 127.0.0.1: no request,
however odd, gets a 5xx, and every response matches the schema (status, media type, body).

Bounded (a fixed number of examples per operation, derandomized) so it runs in CI.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from opentelemetry.sdk.trace import TracerProvider
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import positive_data_acceptance

from {{ cookiecutter.package_name }}.api import create_app
from {{ cookiecutter.package_name }}.container import build_services
from {{ cookiecutter.package_name }}.embeddings import DenseEncoder, SparseEncoder

from .conftest import SAMPLE_CORPUS, api_key, auth, make_settings, serve_on_loopback

EXAMPLES_PER_OPERATION = 30


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory,
    model_dir: Path,
    dense: DenseEncoder,
    sparse: SparseEncoder,
) -> Iterator[tuple[str, str]]:
    """A uvicorn server on a free port with the sample corpus and an all-scopes key."""
    settings = make_settings(tmp_path_factory.mktemp("fuzz"), model_dir)
    services = build_services(
        settings, tracer_provider=TracerProvider(), dense=dense, sparse=sparse
    )
    services.ingestor.ingest(SAMPLE_CORPUS)
    key = api_key(settings, scopes=("query", "ingest", "admin"))
    with serve_on_loopback(create_app(services=services)) as base:
        yield base, key
    services.close()


@pytest.mark.slow
def test_no_5xx_and_every_response_matches_the_schema(server: tuple[str, str]) -> None:
    base, key = server
    # Operations are driven one by one through their hypothesis strategies: schemathesis's
    # lazy pytest loader does not work with pytest 9 (it sets a private node attribute).
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result  # an operation the schema fails to describe
        operations.append(result.ok())
    assert len(operations) >= 7, [op.label for op in operations]
    for operation in operations:
        fuzz(operation, base, key)


def fuzz(operation: Any, base: str, key: str) -> None:
    # An upload's acceptance depends on its file names and bytes (type, size), which a
    # schema cannot state: there, only "no 5xx" and "response matches schema" apply.
    upload = (operation.method, operation.path) == ("post", "/v1/documents")
    excluded: list[Any] = [positive_data_acceptance] if upload else []

    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def check(case: schemathesis.Case[Any]) -> None:
        case.call_and_validate(base_url=base, headers=auth(key), excluded_checks=excluded)

    check()


@pytest.mark.slow
def test_fuzzing_reaches_the_server_with_a_key(server: tuple[str, str]) -> None:
    """The fuzz test's key works (else every case would only ever see 401)."""
    base, key = server
    response = httpx.post(f"{base}/v1/query", json={"question": "leave"}, headers=auth(key))
    assert response.status_code == 200
