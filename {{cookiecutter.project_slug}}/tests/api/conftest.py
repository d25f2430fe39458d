"""The API tests' client: the app over the test services, with a key of tenant `default`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from {{ cookiecutter.package_name }}.api import create_app
from {{ cookiecutter.package_name }}.container import Services

from ..conftest import keyed_client


@pytest.fixture
def client(services: Services) -> Iterator[TestClient]:
    with keyed_client(create_app(services=services), services.settings) as test_client:
        yield test_client
