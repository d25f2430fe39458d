"""Fast tier: every scenario renders into a complete project whose files all parse."""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import (
    CHOICES,
    CONFIG,
    TEMPLATE_PROJECT,
    Rendered,
    command_env,
    cookiecutter_cli,
    load_hook,
    parse_python,
    render,
    text_files,
    uv_only_bin,
)

# Jinja left in the output: any `{{`, `{%` or `{#` (except GitHub Actions' `${{ ... }}`), or
# a bare `cookiecutter.<answer>` reference.
JINJA_LEFTOVER = re.compile(
    r"(?<!\$)\{\{|\{%|\{#|cookiecutter\.("
    + "|".join(k for k in CONFIG if k.isidentifier())
    + r")\b"
)
COPIED_UNRENDERED = "data/sample"  # _copy_without_render: checked byte for byte instead
# The generated project's Makefile contract (docs and CI call these).
MAKE_TARGETS = ["setup", "demo", "ingest", "serve", "ask", "eval", "test", "test-fast", "lint"]
# Never part of a template: they appear when someone runs the service inside the template.
LOCAL_ARTIFACTS = {".venv", "__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".data"}


def expected_paths(package: str) -> list[str]:
    return [
        "pyproject.toml",
        "uv.lock",
        "Makefile",
        "README.md",
        ".env.example",
        "Dockerfile",
        f"src/{package}/__init__.py",
        f"src/{package}/cli.py",
        "tests/",
        "data/sample/",
        "evals/",
    ]


def choice_paths(rendered: Rendered) -> list[str]:
    """The files the project's choices keep (test_combinations checks the pruned ones)."""
    deploy = {
        "compose": ["compose.yaml", "deploy/otel-collector.yaml"],
        "kubernetes": ["deploy/kubernetes/base/kustomization.yaml"],
        "none": [],
    }
    ci = {"github": [".github/workflows/ci.yml"], "gitlab": [".gitlab-ci.yml"], "none": []}
    mcp = (
        [f"src/{rendered.package}/mcp/__init__.py"]
        if rendered.answers["mcp_server"] == "yes"
        else []
    )
    ui = (
        [f"src/{rendered.package}/ui/static/index.html", "tests/test_ui_browser.py", "docs/ui.md"]
        if rendered.answers["ui"] == "yes"
        else []
    )
    return deploy[rendered.answers["deploy"]] + ci[rendered.answers["ci"]] + mcp + ui


def pyproject(rendered: Rendered) -> dict[str, Any]:
    return tomllib.loads((rendered.path / "pyproject.toml").read_text(encoding="utf-8"))


def relative(rendered: Rendered, path: Path) -> str:
    return path.relative_to(rendered.path).as_posix()


def test_expected_files_exist(rendered: Rendered) -> None:
    missing = [
        name
        for name in expected_paths(rendered.package) + choice_paths(rendered)
        if not (rendered.path / name).exists()
        or name.endswith("/") != (rendered.path / name).is_dir()
    ]
    assert missing == [], f"missing from the rendered project: {missing}"


def test_no_template_scaffolding_or_local_artifacts_left(rendered: Rendered) -> None:
    leftovers = [
        relative(rendered, p)
        for p in rendered.path.rglob("*")
        if p.name in LOCAL_ARTIFACTS or p.name == ".locks" or "{{" in p.name or "{%" in p.name
    ]
    assert leftovers == []


def test_no_unrendered_jinja(rendered: Rendered) -> None:
    leftovers = [
        f"{relative(rendered, path)}:{line_no}: {line.strip()[:120]}"
        for path, text in text_files(rendered.path)
        if not relative(rendered, path).startswith(COPIED_UNRENDERED + "/")
        for line_no, line in enumerate(text.splitlines(), 1)
        if JINJA_LEFTOVER.search(line)
    ]
    assert leftovers == [], "unrendered template syntax:\n" + "\n".join(leftovers)


def test_sample_corpus_is_copied_byte_for_byte(rendered: Rendered) -> None:
    source = TEMPLATE_PROJECT / COPIED_UNRENDERED
    copied = rendered.path / COPIED_UNRENDERED
    source_files = sorted(p.relative_to(source) for p in source.rglob("*") if p.is_file())
    assert source_files, "the template ships no sample corpus"
    assert sorted(p.relative_to(copied) for p in copied.rglob("*") if p.is_file()) == source_files
    changed = [
        str(f) for f in source_files if (source / f).read_bytes() != (copied / f).read_bytes()
    ]
    assert changed == []


def files_with_suffix(rendered: Rendered, *suffixes: str) -> list[tuple[Path, str]]:
    return [(p, text) for p, text in text_files(rendered.path) if p.suffix in suffixes]


def test_python_files_parse(rendered: Rendered) -> None:
    sources = files_with_suffix(rendered, ".py")
    assert sources
    for path, text in sources:
        parse_python(text, relative(rendered, path))


def test_toml_files_parse(rendered: Rendered) -> None:
    files = files_with_suffix(rendered, ".toml", ".lock")
    assert files, "none in the rendered project"
    for path, text in files:
        try:
            tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            pytest.fail(f"{relative(rendered, path)}: {error}")


def test_yaml_files_parse(rendered: Rendered) -> None:
    files = files_with_suffix(rendered, ".yaml", ".yml")
    # The YAML files are the deployment's and the CI's; with neither there are none.
    without_yaml = rendered.answers["deploy"] == rendered.answers["ci"] == "none"
    assert bool(files) != without_yaml, "YAML files expected exactly when deploy or ci ships"
    for path, text in files:
        try:
            list(yaml.safe_load_all(text))
        except yaml.YAMLError as error:
            pytest.fail(f"{relative(rendered, path)}: {error}")


def test_json_and_jsonl_files_parse(rendered: Rendered) -> None:
    files = files_with_suffix(rendered, ".json", ".jsonl")
    assert files, "none in the rendered project"
    for path, text in files:
        documents = text.splitlines() if path.suffix == ".jsonl" else [text]
        for number, document in enumerate(documents, 1):
            if not document.strip():
                continue
            try:
                json.loads(document)
            except json.JSONDecodeError as error:
                pytest.fail(f"{relative(rendered, path)}:{number}: {error}")


def test_answers_reach_the_project_metadata_unchanged(rendered: Rendered) -> None:
    project = pyproject(rendered)["project"]
    answers = rendered.answers
    assert project["name"] == rendered.slug
    assert project["description"] == answers["description"]
    assert project["authors"] == [
        {"name": answers["author_name"], "email": answers["author_email"]}
    ]


def test_python_version_follows_the_answer(rendered: Rendered) -> None:
    config = pyproject(rendered)
    version = rendered.python_version
    assert config["project"]["requires-python"] == f">={version}"
    assert config["tool"]["mypy"]["python_version"] == version
    assert config["tool"]["ruff"]["target-version"] == "py" + version.replace(".", "")
    # uv (and pyenv) pick the interpreter from this file; without it uv reaches for the
    # newest CPython it can download.
    assert (rendered.path / ".python-version").read_text(encoding="utf-8") == f"{version}\n"


def test_lock_is_the_one_for_the_chosen_python_and_names_the_project(rendered: Rendered) -> None:
    lock = tomllib.loads((rendered.path / "uv.lock").read_text(encoding="utf-8"))
    assert lock["requires-python"] == f">={rendered.python_version}"
    editable = [p["name"] for p in lock["package"] if p.get("source") == {"editable": "."}]
    assert editable == [rendered.slug]


def test_console_script_is_the_slug_and_points_into_the_package(rendered: Rendered) -> None:
    scripts = pyproject(rendered)["project"]["scripts"]
    assert scripts.get(rendered.slug) == f"{rendered.package}.cli:main"
    cli = ast.parse((rendered.path / "src" / rendered.package / "cli.py").read_text("utf-8"))
    assert "main" in {node.name for node in cli.body if isinstance(node, ast.FunctionDef)}


def test_wheel_packages_the_source_package(rendered: Rendered) -> None:
    wheel = pyproject(rendered)["tool"]["hatch"]["build"]["targets"]["wheel"]
    assert wheel["packages"] == [f"src/{rendered.package}"]
    assert (rendered.path / "src" / rendered.package / "__init__.py").is_file()


@pytest.mark.skipif(shutil.which("make") is None, reason="GNU make is not on PATH")
@pytest.mark.parametrize("target", MAKE_TARGETS)
def test_makefile_has_contract_target(rendered: Rendered, target: str) -> None:
    # --dry-run prints the recipe without running it; an unknown target or a syntax error fails.
    result = subprocess.run(
        ["make", "--dry-run", target],
        cwd=rendered.path,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def assert_ruff_clean(project: Path) -> None:
    for command in (["check", "--no-cache", "."], ["format", "--check", "--no-cache", "."]):
        result = subprocess.run(
            [sys.executable, "-m", "ruff", *command],
            cwd=project,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, f"ruff {command[0]}:\n{result.stdout}{result.stderr}"


def test_rendered_python_passes_the_projects_own_ruff_config(rendered: Rendered) -> None:
    # Same ruff version as the generated lock pins; catches answers that break lint
    # (long or quote-laden names in docstrings, imports that outgrow 100 columns with a
    # long package name) without installing the project.
    assert_ruff_clean(rendered.path)


MAX_PACKAGE = load_hook("pre_gen_project").MAX_PACKAGE_LENGTH


@pytest.mark.parametrize("length", [20, 26, 33, MAX_PACKAGE - 1])
def test_package_names_of_any_valid_length_stay_lint_clean(length: int, tmp_path: Path) -> None:
    # The scenarios cover short names and the longest one; a name in between could still
    # flip one wrapped import (ruff would join or split it differently).
    package = ("claims_" * 10)[:length].rstrip("_")
    package += "x" * (length - len(package))
    project = render({"project_slug": "claims", "package_name": package}, tmp_path)
    assert_ruff_clean(project.path)


def missing_python_version() -> str:
    """A supported version this machine's system folders lack (the test hides every other)."""
    for version in CHOICES["python_version"]:
        if not any(Path(folder, f"python{version}").exists() for folder in ("/usr/bin", "/bin")):
            return version
    pytest.skip("every supported Python is installed in /usr/bin; none can be missing")


def test_setup_names_the_missing_python_and_how_to_get_it(tmp_path: Path) -> None:
    version = missing_python_version()
    project = render({"python_version": version}, tmp_path / "out").path
    pyenv_python = tmp_path / "pyenv" / "versions" / f"{version}.9" / "bin" / f"python{version}"
    env = command_env(
        PATH=f"{uv_only_bin()}:/usr/bin:/bin",
        HOME=str(tmp_path / "home"),
        UV_PYTHON_INSTALL_DIR=str(tmp_path / "uv-pythons"),
        PYENV_ROOT=str(tmp_path / "no-pyenv"),
    )
    env.pop("UV_PYTHON", None)

    def setup() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["make", "--no-print-directory", "setup"],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    result = setup()
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"error: this project needs Python {version} (.python-version)" in result.stderr
    assert f"uv python install {version}" in result.stderr
    assert f"UV_PYTHON=/path/to/python{version} make setup" in result.stderr
    assert "download" not in result.stdout
    assert not (project / ".venv").exists(), "nothing is installed before the check passes"

    # A pyenv build of that version (not on PATH) is named with the command that uses it.
    pyenv_python.parent.mkdir(parents=True)
    pyenv_python.write_text("#!/bin/sh\nexit 1\n", encoding="utf-8")
    env["PYENV_ROOT"] = str(tmp_path / "pyenv")
    assert f"UV_PYTHON={pyenv_python} make setup" in setup().stderr


def test_make_ingest_without_a_corpus_refuses_instead_of_ingesting_the_sample(
    tmp_path: Path,
) -> None:
    project = render({}, tmp_path).path
    env = command_env()
    env.pop("CORPUS", None)
    result = subprocess.run(
        ["make", "--no-print-directory", "ingest"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: make ingest needs CORPUS=<folder or file>")
    assert "uv run" not in result.stdout, "the CLI must not start"


def test_command_line_render_prints_next_steps(tmp_path: Path) -> None:
    result = cookiecutter_cli(tmp_path, {"project_name": "Umbrella Search"})
    assert result.returncode == 0, result.stderr
    for step in ("cd umbrella-search", "make setup", "make demo", "make test"):
        assert step in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["umbrella-search"]


def test_sample_corpus_is_declared_copy_without_render() -> None:
    # Byte equality alone passes while the corpus happens to hold no Jinja syntax; this asks
    # cookiecutter's own matcher whether each file is exempt from rendering.
    from cookiecutter.generate import is_copy_only_path

    source = TEMPLATE_PROJECT / COPIED_UNRENDERED
    rendered_anyway = [
        rel
        for rel in (p.relative_to(TEMPLATE_PROJECT).as_posix() for p in source.rglob("*"))
        if not is_copy_only_path(rel, {"cookiecutter": CONFIG})
    ]
    assert rendered_anyway == []
