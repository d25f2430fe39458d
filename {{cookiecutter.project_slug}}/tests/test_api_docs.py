"""The API docs (/docs Swagger UI, /redoc) work on a network without a CDN: every script,
style and icon they load comes from the service itself."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from {{ cookiecutter.package_name }}.api.app import create_app
from {{ cookiecutter.package_name }}.container import Services

from .conftest import serve_on_loopback

DOC_PAGES = ("/docs", "/redoc")


class _Assets(HTMLParser):
    """The URLs a page loads by itself: script src, link href (styles, icons), img src."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = {"script": "src", "link": "href", "img": "src"}.get(tag)
        for name, value in attrs:
            if name == wanted and value:
                self.urls.append(value)


def page_assets(html: str) -> list[str]:
    parser = _Assets()
    parser.feed(html)
    return parser.urls


@pytest.fixture
def docs_client(services: Services) -> Iterator[TestClient]:
    with TestClient(create_app(services=services)) as client:
        yield client


@pytest.mark.parametrize("page", DOC_PAGES)
def test_doc_pages_load_only_assets_the_service_serves(docs_client: TestClient, page: str) -> None:
    response = docs_client.get(page)
    assert response.status_code == 200
    assets = page_assets(response.text)
    assert assets, f"{page} loads no script or style at all"
    for url in assets:
        parts = urlsplit(url)
        assert (parts.scheme, parts.netloc) == ("", ""), f"{page} loads {url} from elsewhere"
        served = docs_client.get(url)
        assert served.status_code == 200, url
        assert len(served.content) > 1000, url
    # Nothing in the inline script reaches out either (Swagger UI's validator badge would).
    assert not re.search(r"https?://", response.text), re.findall(r"https?://\S+", response.text)


# --- a real browser, with every request off this machine blocked ------------------------

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


def chromium_or_skip() -> str:
    """The browser; CI (CI=true) installs one, so there a missing browser fails the test."""
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    reason = "headless Chromium is not installed (Debian: apt-get install chromium)"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must install it")
    pytest.skip(reason)


@pytest.fixture
def live_server(services: Services) -> Iterator[str]:
    with serve_on_loopback(create_app(services=services)) as base:
        yield base


def rendered_dom(chromium: str, url: str, profile: Path) -> str:
    """The page's DOM after its scripts ran, in headless Chromium that can reach only
    127.0.0.1: every other host fails to resolve and any proxy use goes nowhere."""
    result = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            "--proxy-server=127.0.0.1:9",
            "--proxy-bypass-list=127.0.0.1",
            "--virtual-time-budget=15000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@pytest.mark.slow
def test_swagger_ui_renders_every_route_with_external_requests_blocked(
    live_server: str, tmp_path: Path
) -> None:
    dom = rendered_dom(chromium_or_skip(), f"{live_server}/docs", tmp_path / "profile")
    # Swagger UI drew the operations from /openapi.json: its scripts ran.
    paths = set(re.findall(r'class="opblock-summary-path" data-path="([^"]+)"', dom))
    assert {"/healthz", "/v1/query", "/v1/documents"} <= paths, dom[:2000]


@pytest.mark.slow
def test_redoc_renders_with_external_requests_blocked(live_server: str, tmp_path: Path) -> None:
    dom = rendered_dom(chromium_or_skip(), f"{live_server}/redoc", tmp_path / "profile")
    assert "/v1/query" in dom, dom[:2000]
    assert "/v1/documents/{document_id}" in dom
