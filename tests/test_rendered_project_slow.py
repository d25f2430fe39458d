"""Slow tier: install rendered projects and run their own commands (the Makefile contract).

Needs PyPI (or a warm uv cache) and several minutes for the first install. All renders share
one uv cache (UV_CACHE_DIR if set, else uv's default), so later installs are hard links.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path

import pytest
import relock
from conftest import (
    CHOICES,
    LONG_ANSWERS,
    OTHER_ANSWERS,
    Rendered,
    command_env,
    load_hook,
    render,
)

pytestmark = pytest.mark.slow

MINUTE = 60
PYTEST_FAST = ["uv", "run", "--locked", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow"]
# The generated tests in which the project's names are observable.
NAME_TESTS = [
    "tests/test_cli.py",
    "tests/test_readme.py",
    "tests/test_settings.py",
    "tests/api/test_app.py",
    "tests/test_project_choices.py",
]


def run(
    project: Path, command: list[str], *, timeout: float, env: Mapping[str, str] | None = None
) -> str:
    """Run a command in the rendered project; fail with the tail of its output."""
    __tracebackhide__ = True  # the failure message is the command's output, not this code
    try:
        result = subprocess.run(
            command,
            cwd=project,
            env=dict(env or command_env()),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        output = error.stdout if isinstance(error.stdout, str) else ""
        pytest.fail(f"`{' '.join(command)}` timed out after {timeout:.0f}s\n{output[-4000:]}")
    if result.returncode != 0:
        pytest.fail(
            f"`{' '.join(command)}` exited {result.returncode} in {project.name}/:\n"
            f"{result.stdout[-6000:]}"
        )
    return result.stdout


def python_or_skip(version: str) -> str:
    python = relock.find_python(version)
    if python is None:
        pytest.skip(
            f"no Python {version} interpreter: looked for a working python{version} on PATH "
            f"and ~/.pyenv/versions/{version}*/bin/python{version}"
        )
    return python


@pytest.fixture(scope="module")
def default_project(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    """The default rendering, installed with `make setup` once for this module."""
    project = render({}, tmp_path_factory.mktemp("slow-default"))
    run(project.path, ["make", "setup"], timeout=20 * MINUTE)
    return project


def test_make_lint_passes(default_project: Rendered) -> None:
    run(default_project.path, ["make", "lint"], timeout=10 * MINUTE)


# The trace-backend test of the rendered project needs Phoenix, a tool kept out of the
# project's own dependencies; the same pin as in the generated CI workflow.
PHOENIX_VERSION = "20.26.1"
TOOLS = Path(__file__).resolve().parents[1] / ".cache" / "tools"


@pytest.fixture(scope="module")
def phoenix_bin() -> str:
    """Arize Phoenix in its own environment under .cache/ (installed once, then reused)."""
    venv = TOOLS / f"phoenix-{PHOENIX_VERSION}"
    binary = venv / "bin" / "phoenix"
    if not binary.exists():
        venv.parent.mkdir(parents=True, exist_ok=True)
        env = command_env()
        run(venv.parent, ["uv", "venv", "--quiet", str(venv)], timeout=5 * MINUTE, env=env)
        run(
            venv.parent,
            [
                "uv",
                "pip",
                "install",
                "--quiet",
                "--python",
                str(venv / "bin" / "python"),
                f"arize-phoenix=={PHOENIX_VERSION}",
            ],
            timeout=20 * MINUTE,
            env=env,
        )
    return str(binary)


def test_make_test_passes(default_project: Rendered, phoenix_bin: str) -> None:
    output = run(
        default_project.path,
        ["make", "test"],
        timeout=20 * MINUTE,
        env=command_env(PHOENIX_BIN=phoenix_bin),
    )
    # Every tier ran: only the Qdrant-server tests may skip (no server can be installed here).
    assert "Arize Phoenix is not installed" not in output
    skipped = "".join(line for line in output.splitlines() if line.startswith("SKIPPED"))
    assert "test_trace_backend.py" not in skipped
    assert "test_api_docs.py" not in skipped, "headless Chromium is missing (.ci/run installs it)"


def test_make_demo_prints_cited_answers_with_trace_ids(default_project: Rendered) -> None:
    output = run(default_project.path, ["make", "demo"], timeout=10 * MINUTE)
    assert re.search(r"\[\d+\]", output), f"no citation like [1] in the demo output:\n{output}"
    trace_ids = re.findall(r"(?i)trace[ _-]?id\W+([0-9a-f]{32})\b", output)
    assert trace_ids, f"no 'trace id: <32 hex>' line in the demo output:\n{output}"
    assert all(set(t) != {"0"} for t in trace_ids), "trace ids are all zero: no span recorded"


def test_make_eval_passes_its_gate(default_project: Rendered) -> None:
    run(default_project.path, ["make", "eval"], timeout=15 * MINUTE)


# Prints {import name: distribution} for the project's direct dependencies, as installed.
DIRECT_IMPORT_NAMES = """
import importlib.metadata as md, json, re, tomllib
def norm(name): return re.sub(r"[-_.]+", "-", name).lower()
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
direct = {norm(re.split(r"[<>=!~;\\[ ]", d, maxsplit=1)[0]) for d in deps}
print(json.dumps({top: dist for top, dists in md.packages_distributions().items()
                  for dist in dists if norm(dist) in direct}))
"""


def test_pre_gen_hook_reserves_every_direct_dependency_import_name(
    default_project: Rendered,
) -> None:
    # The hook's list is hand-kept; this catches a new dependency it does not know about.
    output = run(
        default_project.path,
        [".venv/bin/python", "-c", DIRECT_IMPORT_NAMES],
        timeout=MINUTE,
    )
    installed: dict[str, str] = json.loads(output)
    assert "qdrant_client" in installed  # the probe itself works
    reserved = load_hook("pre_gen_project").DEPENDENCY_IMPORT_NAMES
    unknown = {top: dist for top, dist in installed.items() if top not in reserved}
    assert unknown == {}, "add these to DEPENDENCY_IMPORT_NAMES in hooks/pre_gen_project.py"


@pytest.mark.parametrize("version", CHOICES["python_version"])
def test_shipped_lock_is_fresh_for_another_slug(
    version: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # A non-default slug proves the templated lock stays valid after the slug is filled in.
    python = python_or_skip(version)
    project = render({**OTHER_ANSWERS, "python_version": version}, tmp_path_factory.mktemp("lock"))
    run(
        project.path,
        ["uv", "lock", "--locked"],
        timeout=5 * MINUTE,
        env=command_env(UV_PYTHON=python),
    )


def test_long_named_python_312_rendering_passes_setup_lint_and_tests(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # A client's name at the length limits, on the non-default Python: its own `make setup`,
    # `make lint` (ruff, format, mypy strict) and the fast tests where the names show (console
    # script, README commands, settings, API title, choices); the rest of the suite does not
    # see a name and runs in full on the default project (CI's 45 minutes). Without the
    # interpreter only the render-level checks of the fast tier apply to 3.12.
    python = python_or_skip("3.12")
    env = command_env(UV_PYTHON=python)
    project = render({**LONG_ANSWERS, "python_version": "3.12"}, tmp_path_factory.mktemp("py312"))
    run(project.path, ["make", "setup"], timeout=20 * MINUTE, env=env)
    venv_version = run(
        project.path,
        [".venv/bin/python", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        timeout=MINUTE,
        env=env,
    )
    assert venv_version.strip() == "3.12"
    run(project.path, ["make", "lint"], timeout=15 * MINUTE, env=env)
    run(
        project.path,
        [*PYTEST_FAST, *NAME_TESTS],
        timeout=20 * MINUTE,
        env=env,
    )
