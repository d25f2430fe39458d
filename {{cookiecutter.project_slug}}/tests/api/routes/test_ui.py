"""The web app's files at /ui: served by the service itself, nothing loaded from elsewhere,
readable colours, the eval report behind a key, and off with RAG_UI_ENABLED=false.
(The app itself runs in a real browser in tests/test_ui_browser.py.)"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from {{ cookiecutter.package_name }}.api import create_app
from {{ cookiecutter.package_name }}.container import Services
from {{ cookiecutter.package_name }}.settings import PROJECT_NAME
from {{ cookiecutter.package_name }}.ui import STATIC_DIR

from ...conftest import api_key, assert_error, auth, make_settings
from ...test_api_docs import page_assets

# Every module the app imports, found from index.html: a file that is not served fails here.
IMPORT = re.compile(r"""^import .*? from "\./([\w.]+)";$""", re.MULTILINE)


@pytest.fixture
def anonymous(services: Services) -> Iterator[TestClient]:
    """A client without a key, as a browser opening /ui is."""
    with TestClient(create_app(services=services)) as test_client:
        yield test_client


def test_ui_redirects_to_its_page_which_loads_only_the_services_own_files(
    anonymous: TestClient,
) -> None:
    response = anonymous.get("/ui", follow_redirects=False)
    assert response.status_code == 308
    assert response.headers["location"] == "/ui/"
    page = anonymous.get("/ui/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assets = [url for url in page_assets(page.text) if not url.startswith("data:")]
    assert {"app.css", "app.js"} <= set(assets)
    modules = {"app.js"}
    pending = ["app.js"]
    while pending:
        source = anonymous.get(f"/ui/{pending.pop()}")
        assert source.status_code == 200
        for name in IMPORT.findall(source.text):
            if name not in modules:
                modules.add(name)
                pending.append(name)
    assert len(modules) >= 6, modules
    for url in assets + sorted(modules):
        parts = urlsplit(url)
        assert (parts.scheme, parts.netloc) == ("", ""), url
        assert anonymous.get(f"/ui/{url}").status_code == 200, url
    # No file in the app names another host (fonts, CDNs, analytics); the SVG namespace is
    # an identifier, not a request.
    for path in STATIC_DIR.iterdir():
        text = path.read_text("utf-8").replace("http://www.w3.org/2000/svg", "")
        assert not re.search(r"https?://", text), (path.name, re.findall(r"https?://\S+", text))
        assert "@import" not in text, path.name
        assert "@font-face" not in text, path.name


def test_ui_files_forbid_loading_from_other_hosts(anonymous: TestClient) -> None:
    for path in ("/ui/", "/ui/app.js", "/ui/app.css"):
        headers = anonymous.get(path).headers
        assert "default-src 'self'" in headers["content-security-policy"], path
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff"
    assert (
        anonymous.get("/ui/app.js")
        .headers["content-type"]
        .startswith(("text/javascript", "application/javascript"))
    )


def test_ui_config_says_whether_keys_are_needed_and_the_upload_limits(
    anonymous: TestClient, services: Services
) -> None:
    config = anonymous.get("/ui/config.json").json()
    assert config["project"] == PROJECT_NAME
    assert config["keys_required"] is True
    assert config["max_upload_files"] == services.settings.max_upload_files
    assert {".md", ".pdf", ".csv"} <= set(config["suffixes"])


def test_ui_config_says_no_key_is_needed_in_development_mode(
    tmp_path: Path, model_dir: Path, services: Services
) -> None:
    settings = make_settings(tmp_path, model_dir, auth_mode="development")
    development = dataclasses.replace(services, settings=settings)
    with TestClient(create_app(services=development)) as client:
        assert client.get("/ui/config.json").json()["keys_required"] is False


def test_ui_routes_stay_out_of_the_api_schema(anonymous: TestClient) -> None:
    paths = anonymous.get("/openapi.json").json()["paths"]
    assert not [path for path in paths if path.startswith("/ui")]


def test_eval_report_needs_a_key_and_says_how_to_make_one_when_missing(
    anonymous: TestClient, services: Services
) -> None:
    assert_error(anonymous.get("/ui/eval-report"), 401, "API key")
    key = api_key(services.settings, scopes=("query",))
    assert_error(anonymous.get("/ui/eval-report", headers=auth(key)), 404, "make eval")


def test_eval_report_is_served_read_only_when_the_gate_wrote_one(
    anonymous: TestClient, services: Services
) -> None:
    report = services.settings.eval_report_dir / "report.html"
    report.parent.mkdir(parents=True)
    report.write_text("<!doctype html><h1>Go/no-go: GO</h1>", "utf-8")
    key = api_key(services.settings, scopes=("query",))
    response = anonymous.get("/ui/eval-report", headers=auth(key))
    assert response.status_code == 200
    assert "Go/no-go: GO" in response.text
    assert response.headers["content-security-policy"].endswith("; sandbox")
    assert anonymous.post("/ui/eval-report", headers=auth(key)).status_code == 405


def test_ui_is_off_when_disabled(tmp_path: Path, model_dir: Path, services: Services) -> None:
    settings = make_settings(tmp_path, model_dir, ui_enabled=False)
    off = dataclasses.replace(services, settings=settings)
    with TestClient(create_app(services=off)) as client:
        for path in ("/ui", "/ui/", "/ui/app.js", "/ui/config.json"):
            assert client.get(path).status_code == 404, path


# --- contrast (WCAG 2.1 AA: 4.5:1 for text) of the colour pairs app.css uses -----------------

PAIRS = [
    ("text", "bg"),
    ("muted", "bg"),
    ("text", "panel"),
    ("muted", "panel"),
    ("accent", "bg"),
    ("accent", "panel"),
    ("accent-text", "accent"),
    ("ok-text", "ok-bg"),
    ("refusal-text", "refusal-bg"),
    ("error-text", "error-bg"),
    ("error-text", "panel"),
    ("info-text", "info-bg"),
]


def _luminance(hex_colour: str) -> float:
    channels = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    light, dark = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def test_contrast_helper_matches_known_ratios() -> None:
    assert contrast("#000000", "#ffffff") == pytest.approx(21.0)
    assert contrast("#767676", "#ffffff") == pytest.approx(4.54, abs=0.01)


@pytest.mark.parametrize(("foreground", "background"), PAIRS)
def test_text_colours_meet_aa_contrast(foreground: str, background: str) -> None:
    css = (STATIC_DIR / "app.css").read_text("utf-8")
    colours = dict(re.findall(r"--([\w-]+):\s*(#[0-9a-fA-F]{6});", css))
    ratio = contrast(colours[foreground], colours[background])
    assert ratio >= 4.5, f"{foreground} on {background}: {ratio:.2f}"
