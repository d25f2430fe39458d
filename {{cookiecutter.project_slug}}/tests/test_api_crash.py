"""Fault tier for the API: `serve` killed with SIGKILL while an upload job writes and right
after a delete, then started again. Every upload answered 202 lands and is retrievable, a
delete answered 200 stays done, and the store ends equal to a clean run's."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from {{ cookiecutter.package_name }}.keys import KeyStore
from {{ cookiecutter.package_name }}.settings import Settings

from .conftest import SAMPLE_CORPUS, auth, cli_server
from .test_ingest_crash import stored_state

pytestmark = pytest.mark.slow

# Three uploads of the sample's files under new names: enough work that a kill soon after
# the last 202 lands while the job is writing.
UPLOADS = [
    [(f"u{n}-{path.name}", path.read_bytes()) for path in sorted(SAMPLE_CORPUS.rglob("*.*"))[n::3]]
    for n in range(3)
]


@dataclass
class Served:
    process: subprocess.Popen[str]
    base: str
    key: str

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.request(
            method, f"{self.base}{path}", headers=auth(self.key), timeout=60, **kwargs
        )

    def listed(self) -> dict[str, dict[str, Any]]:
        documents = self.call("GET", "/v1/documents").json()["documents"]
        return {d["source"]: d for d in documents}


def _environment(data_dir: Path, model_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "RAG_DATA_DIR": str(data_dir),
        "RAG_MODEL_DIR": str(model_dir),
        "RAG_UPSERT_BATCH_SIZE": "4",  # many small writes: more places to die in between
        "RAG_RATE_LIMIT_PER_MINUTE": "0",
        "RAG_LOG_LEVEL": "WARNING",
    }


@contextmanager
def serving(data_dir: Path, model_dir: Path, key: str) -> Iterator[Served]:
    with cli_server(_environment(data_dir, model_dir)) as (base, process):
        yield Served(process, base, key)


def kill(served: Served) -> None:
    served.process.send_signal(signal.SIGKILL)
    served.process.wait()


def upload(served: Served, files: list[tuple[str, bytes]]) -> None:
    response = served.call("POST", "/v1/documents", files=[("files", f) for f in files])
    assert response.status_code == 202, response.text


def delete_when_no_job_writes(served: Served, document_id: str) -> None:
    """DELETE, retried while it is a 409: a delete while a job writes is refused by design,
    and after a restart the start-up job may still be writing the inbox."""
    deadline = time.monotonic() + 300
    while (response := served.call("DELETE", f"/v1/documents/{document_id}")).status_code == 409:
        assert time.monotonic() < deadline, "a job was writing for 5 minutes"
        time.sleep(0.2)
    assert response.status_code == 200, response.text


def wait_for_sources(served: Served, sources: set[str]) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + 300
    while not sources <= set(listed := served.listed()):
        assert time.monotonic() < deadline, f"never landed: {sources - set(listed)}"
        time.sleep(0.2)
    return listed


def retrievable(served: Served, source: str) -> bool:
    body = {"query": "what does this document say", "filters": {"source": [source]}}
    hits = served.call("POST", "/v1/retrieve", json=body).json()["hits"]
    return bool(hits) and all(hit["source"] == source for hit in hits)


def new_service(tmp_path: Path, name: str, model_dir: Path) -> tuple[Path, str]:
    data_dir = tmp_path / name
    settings = Settings(_env_file=None, data_dir=data_dir, model_dir=model_dir)
    return data_dir, KeyStore(settings.keys_path).create("default", ("query", "ingest"))[1]


def test_uploads_and_deletes_survive_kill_9_and_end_as_a_clean_run(
    tmp_path: Path, model_dir: Path
) -> None:
    names = {name for files in UPLOADS for name, _ in files}
    deleted = UPLOADS[0][0][0]

    # The reference: the same uploads and delete, nothing killed.
    reference, key = new_service(tmp_path, "reference", model_dir)
    with serving(reference, model_dir, key) as served:
        for files in UPLOADS:
            upload(served, files)
        listed = wait_for_sources(served, names)
        delete_when_no_job_writes(served, listed[deleted]["id"])
    expected = stored_state(reference, model_dir)

    data_dir, key = new_service(tmp_path, "killed", model_dir)
    with serving(data_dir, model_dir, key) as served:
        for files in UPLOADS:
            upload(served, files)
        time.sleep(0.5)  # the job is writing the first upload's chunks
        landed_before_kill = set(served.listed())
        kill(served)
    assert landed_before_kill != names, "the job had finished: the kill tested nothing"

    with serving(data_dir, model_dir, key) as served:
        listed = wait_for_sources(served, names)  # every 202 lands after the restart
        assert all(retrievable(served, name) for name in names)
        delete_when_no_job_writes(served, listed[deleted]["id"])
        kill(served)  # right after the 200: the delete must stay done

    with serving(data_dir, model_dir, key) as served:
        time.sleep(1)  # let the start-up pass over the inbox run
        assert set(served.listed()) == names - {deleted}
        assert not retrievable(served, deleted)
    assert stored_state(data_dir, model_dir) == expected
