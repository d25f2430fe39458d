"""The runtime install (and the Docker image) carries only [project.dependencies]: serve,
ingest and ask must run without the eval and dev groups, and eval must say what is missing."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from {{ cookiecutter.package_name }}.evals.metrics import EVAL_GROUP_MODULES
from {{ cookiecutter.package_name }}.settings import PACKAGE_NAME

from .conftest import PROJECT_ROOT

# Runs the CLI with the eval and dev groups' modules made unimportable, as in the image.
WITHOUT_GROUPS = """
import importlib.abc, sys
BLOCKED = set(sys.argv[1].split(","))
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError("No module named %r" % name, name=name)
        return None
sys.meta_path.insert(0, Block())
import {package}.api.app  # the API modules import without the groups too
from {package}.cli import main
sys.exit(main(sys.argv[2:]))
"""
DEV_MODULES = ("pytest", "instructor", "fpdf", "schemathesis", "mypy", "hypothesis")


def groups() -> dict[str, list[object]]:
    config = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    result: dict[str, list[object]] = config["dependency-groups"]
    result["runtime"] = config["project"]["dependencies"]
    return result


def names(requirements: list[object]) -> set[str]:
    return {
        str(r).split(";")[0].split("[")[0].split("<")[0].split(">")[0].split("=")[0].strip()
        for r in requirements
        if isinstance(r, str)
    }


def test_eval_packages_are_a_group_not_runtime_dependencies() -> None:
    declared = groups()
    assert {"ragas", "langchain-community", "rouge-score", "rapidfuzz", "openai"} <= names(
        declared["eval"]
    )
    assert names(declared["eval"]).isdisjoint(names(declared["runtime"]))
    assert {"include-group": "eval"} in declared["dev"], "the tests need the eval group"


def run_without_groups(
    blocked: tuple[str, ...], *args: str, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-c",
            WITHOUT_GROUPS.format(package=PACKAGE_NAME),
            ",".join(blocked),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )


@pytest.mark.slow
def test_ingest_and_ask_run_without_the_eval_and_dev_groups(cli_env: Path, corpus: Path) -> None:
    env = dict(os.environ)
    blocked = (*EVAL_GROUP_MODULES, *DEV_MODULES)
    ingest = run_without_groups(blocked, "ingest", str(corpus), env=env)
    assert ingest.returncode == 0, ingest.stderr
    ask = run_without_groups(blocked, "ask", "How long must a password be?", env=env)
    assert ask.returncode == 0, ask.stderr
    assert "14 characters" in ask.stdout

    evaluate = run_without_groups(blocked, "eval", env=env)
    assert evaluate.returncode == 2, evaluate.stderr
    [line] = evaluate.stderr.strip().splitlines()[-1:]
    assert line.startswith("error: The eval gate needs the `eval` dependency group (ragas")
    assert "uv sync --group eval" in line
    assert "Traceback" not in evaluate.stderr
