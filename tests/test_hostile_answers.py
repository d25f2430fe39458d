"""Hostile answers through the real command line: rejected cleanly, or rendered safely."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import yaml
from conftest import Rendered, cookiecutter_cli, parse_python, render, text_files

REJECTED = [
    # (answers, the answer the error must name)
    ({"project_name": "json"}, "package_name"),
    ({"package_name": "qdrant_client"}, "package_name"),
    ({"package_name": "class"}, "package_name"),
    ({"package_name": "My Package"}, "package_name"),
    ({"author_email": "dana.example.com"}, "author_email"),
    ({"project_slug": "my app"}, "project_slug"),
    ({"project_slug": "my/app"}, "project_slug"),
    ({"project_slug": "../escape"}, "project_slug"),
    ({"description": "line one\nline two"}, "description"),
    ({"author_name": "Dana\nSmith"}, "author_name"),
]


@pytest.mark.parametrize(("answers", "named"), REJECTED, ids=[repr(a) for a, _ in REJECTED])
def test_bad_answer_stops_generation_before_anything_is_written(
    tmp_path: Path, answers: dict[str, str], named: str
) -> None:
    output = tmp_path / "out"
    output.mkdir()
    result = cookiecutter_cli(output, answers)
    assert result.returncode == 1, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR: ")]
    assert any(line.startswith(f"ERROR: {named}=") for line in errors), result.stderr
    assert "Example of a valid value" in result.stderr
    # Cookiecutter creates the project folder before the pre-gen hook and deletes it on
    # failure. It creates parents too, so for a slug with "/" an empty parent folder
    # ("my/") stays behind; nothing else may.
    everything = list(tmp_path.rglob("*"))
    assert [p for p in everything if p.is_file()] == []
    leftover_dirs = sorted(p.relative_to(tmp_path).as_posix() for p in everything if p.is_dir())
    allowed = {"out", "out/my"} if answers.get("project_slug") == "my/app" else {"out"}
    assert set(leftover_dirs) <= allowed, leftover_dirs


def test_python_version_outside_the_choices_is_refused(tmp_path: Path) -> None:
    # Cookiecutter itself refuses a value outside a choice list (before our hook runs).
    result = cookiecutter_cli(tmp_path, {"python_version": "3.10"})
    assert result.returncode == 1
    assert "python_version" in result.stdout + result.stderr
    assert list(tmp_path.iterdir()) == []


# Accepted: printable one-line text with every quoting hazard we know of. Each must survive
# into pyproject.toml and every Python, YAML and TOML file of the project.
ACCEPTED = {
    "quotes-and-backslashes": {
        "project_name": "Initech \"Ask\" 'Bot' \\ v2",
        "description": 'Ends with a quote and backslash: "\\',
        "author_name": "Bobby \"Tables'); DROP --",
        "author_email": "o'brien+rag@example.com",
    },
    "markup-and-unicode": {
        "project_name": "</script><script>alert(1)</script> Zoë",
        "description": "${HOME} $(id) `id` {} %s {0} <b>&amp;</b> Ærøskøbing",
        "author_name": "José Müller-Łukasiewicz",
    },
    "triple-quotes": {
        "project_name": 'Docstring """ Breaker',
        "description": '"""',
        "author_name": "'''",
    },
}


@pytest.fixture(scope="module", params=sorted(ACCEPTED))
def hostile(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    return render(ACCEPTED[request.param], tmp_path_factory.mktemp(request.param))


def test_hostile_text_round_trips_through_pyproject(hostile: Rendered) -> None:
    project = tomllib.loads((hostile.path / "pyproject.toml").read_text("utf-8"))["project"]
    assert project["description"] == hostile.answers["description"]
    assert project["authors"][0]["name"] == hostile.answers["author_name"]
    assert project["authors"][0]["email"] == hostile.answers["author_email"]


def test_hostile_text_leaves_every_file_parseable(hostile: Rendered) -> None:
    broken = []
    for path, text in text_files(hostile.path):
        try:
            if path.suffix == ".py":
                parse_python(text, path.name)
            elif path.suffix in {".toml", ".lock"}:
                tomllib.loads(text)
            elif path.suffix in {".yaml", ".yml"}:
                list(yaml.safe_load_all(text))
        except (
            SyntaxError,
            SyntaxWarning,
            DeprecationWarning,
            tomllib.TOMLDecodeError,
            yaml.YAMLError,
        ) as error:
            broken.append(f"{path.relative_to(hostile.path)}: {error}")
    assert broken == [], "files that no longer parse:\n" + "\n".join(broken)
