"""Slow tier: install each project of the pairwise covering set and run its own checks.

Every pair of values of two choice options is in at least one of these projects (PAIRWISE,
computed from cookiecutter.json). The whole `make test` of all of them does not fit CI's
budget (about 8 minutes each on 2 cores), so each runs `make lint` (ruff, format, mypy strict:
a pruned module or a dangling import fails here) and the tests that depend on the choices:
the generated defaults end to end against the chosen provider's fake server, and settings and
.env.example. The default
project's full `make test` runs in test_rendered_project_slow.py.

Projects of one Python version share one virtual environment (UV_PROJECT_ENVIRONMENT) and
one mypy cache: their locks are identical, so after the first install `make setup` only
re-links the project itself.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from conftest import PAIRWISE, combination_id, command_env, render
from test_rendered_project_slow import MINUTE, python_or_skip, run

pytestmark = pytest.mark.slow

# Kept to what the choices change, so 15 projects fit CI's 45 minutes beside the rest: the
# defaults end to end against the chosen provider's fake server, and settings/.env.example.
CHOICE_TESTS = [
    "tests/test_project_choices.py",
    "tests/test_settings.py",
]


@pytest.mark.parametrize("combination", PAIRWISE, ids=combination_id)
def test_pairwise_project_installs_lints_and_passes_its_choice_tests(
    combination: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    version = combination["python_version"]
    python = python_or_skip(version)
    shared = tmp_path_factory.getbasetemp() / f"pairwise-py{version}"
    env = command_env(
        UV_PYTHON=python,
        UV_PROJECT_ENVIRONMENT=str(shared / "venv"),
        MYPY_CACHE_DIR=str(shared / "mypy-cache"),
    )
    project = render(combination, tmp_path_factory.mktemp("pairwise")).path
    times = {}
    for name, command, limit in (
        ("setup", ["make", "setup"], 20),
        ("lint", ["make", "lint"], 15),
        (
            "tests",
            ["uv", "run", "--locked", "pytest", "-q", "-p", "no:cacheprovider", *CHOICE_TESTS],
            15,
        ),
    ):
        started = time.perf_counter()
        run(project, command, timeout=limit * MINUTE, env=env)
        times[name] = time.perf_counter() - started
    print(
        f"\n{combination_id(combination)}: "
        + ", ".join(f"{name} {seconds:.0f}s" for name, seconds in times.items()),
        file=sys.stderr,
    )
    assert Path(shared / "venv").is_dir()
