"""The API as benchmarks run it: the sample corpus ingested, then `serve` in its own process on
a free loopback port, with keys required and no rate limit (the load is the point)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from {{ cookiecutter.package_name }}.settings import PACKAGE_NAME

PROJECT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(data_dir: Path) -> dict[str, str]:
    """The environment benchmarks run the CLI in: its own data folder, keys required, no rate
    limit, warnings only on stderr."""
    return {
        **os.environ,
        "RAG_DATA_DIR": str(data_dir),
        "RAG_AUTH_MODE": "keys",
        "RAG_RATE_LIMIT_PER_MINUTE": "0",
        "RAG_LOG_LEVEL": "WARNING",
    }


def ingest_sample(data_dir: Path, env: dict[str, str] | None = None) -> None:
    """Ingest data/sample into `data_dir`'s store."""
    subprocess.run(
        [sys.executable, "-m", PACKAGE_NAME, "ingest", str(PROJECT / "data" / "sample")],
        env=env or server_env(data_dir),
        check=True,
        stdout=subprocess.DEVNULL,
    )


def spawn_server(
    data_dir: Path, port: int, *, quiet: bool = False, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """`serve` on `port` over what `data_dir` holds; `quiet` drops stderr too."""
    return subprocess.Popen(
        [sys.executable, "-m", PACKAGE_NAME, "serve", "--port", str(port)],
        env=env or server_env(data_dir),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL if quiet else None,
    )


def start_server(data_dir: Path, port: int, *, quiet: bool = False) -> subprocess.Popen[bytes]:
    """Ingest data/sample into `data_dir`, then start serving it; `quiet` drops stderr too."""
    ingest_sample(data_dir)
    return spawn_server(data_dir, port, quiet=quiet)
