"""The CLI starts fast because heavy libraries are imported where they are used; these checks
keep a top-level import from pulling them back in (each took seconds: see bench_startup.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from {{ cookiecutter.package_name }}.settings import PACKAGE_NAME

# Frameworks no command needs before it runs: chunking (llama-index), evals (ragas,
# langchain), the API (fastapi, uvicorn), the file parsers, and anything torch-sized.
NEVER_ON_START = (
    "llama_index",
    "ragas",
    "langchain",
    "langchain_core",
    "torch",
    "transformers",
    "sqlalchemy",
    "fastapi",
    "uvicorn",
    "pypdf",
    "docx",
    "bs4",
)
# What `--help` must not need either: the store, the models, the HTTP clients.
NOT_FOR_HELP = ("qdrant_client", "fastembed", "onnxruntime", "httpx", "tqdm", "opentelemetry")


def imported_after(statement: str) -> set[str]:
    """Top-level packages in sys.modules after `statement`, in a fresh interpreter."""
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    return {name.split(".")[0] for name in json.loads(result.stdout)}


def test_importing_the_cli_pulls_in_no_heavy_library() -> None:
    loaded = imported_after(f"import {PACKAGE_NAME}.cli")
    assert loaded.isdisjoint(NEVER_ON_START + NOT_FOR_HELP), loaded & {
        *NEVER_ON_START,
        *NOT_FOR_HELP,
    }


@pytest.mark.parametrize("module", ["container", "api.schemas", "ask", "ingest.formats"])
def test_what_ask_imports_pulls_in_no_framework_it_does_not_run(module: str) -> None:
    loaded = imported_after(f"import {PACKAGE_NAME}.{module}")
    assert loaded.isdisjoint(NEVER_ON_START), loaded & set(NEVER_ON_START)


def test_the_edge_engine_never_imports_qdrant_client() -> None:
    """qdrant-client's import alone takes seconds: a command on the embedded default (edge)
    must not pay it (store.open_store imports an engine only when it is chosen)."""
    loaded = imported_after(f"import {PACKAGE_NAME}.container, {PACKAGE_NAME}.store.edge")
    assert "qdrant_client" not in loaded
