"""What one file may take of the single ingestion worker (pages, characters, time), and how
the worker shares itself: tenants take turns file by file, and shutdown is bounded."""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import pytest

from {{ cookiecutter.package_name }}.domain import Document
from {{ cookiecutter.package_name }}.ingest.chunk import (
    Chunker,
    chunk_document,
)
from {{ cookiecutter.package_name }}.ingest.jobs import (
    IngestionJob,
    IngestionJobs,
)
from {{ cookiecutter.package_name }}.ingest.load import (
    FileBounds,
    SkippedFileError,
    load_document,
)
from {{ cookiecutter.package_name }}.ingest.pipeline import Ingestor
from {{ cookiecutter.package_name }}.ingest.report import (
    FileOutcome,
    IngestReport,
    ProgressListener,
)
from {{ cookiecutter.package_name }}.ingest.uploads import UploadInbox
from {{ cookiecutter.package_name }}.store.edge import EdgeShelf

from .messy_files import write_pdf

LIMIT = 10_000_000


def _run_without_whitespace(chars: int) -> str:
    """A minified or base64-like line: letters and digits, no space, no sentence end."""
    rng = random.Random(7)
    return "".join(rng.choices("abcdefghijklmnopqrstuvwxyz0123456789", k=chars))


def test_a_long_line_without_whitespace_is_cut_into_chunk_sized_windows() -> None:
    chunker = Chunker(chunk_size=200, chunk_overlap=24)
    text = f"Intro sentence. {_run_without_whitespace(100_000)} Closing words."
    document = Document(source="line.txt", text=text, title="Line", content_hash="h", format="text")
    chunks = chunk_document(chunker, document, tenant="t", corpus="c")
    sizes = [chunker._tokens(c.text) for c in chunks]
    assert max(sizes) <= 200
    # Chunks are full (the splitter's fallback made one "token" of each character, chunks of
    # 200 characters: several times as many chunks to embed), and nothing is lost.
    assert len(chunks) <= 1.25 * sum(sizes) / 200 + 2
    assert "".join(c.text for c in chunks).replace(" ", "") == text.replace(" ", "")


def test_text_without_spaces_in_a_script_that_uses_none_is_windowed_too() -> None:
    chunker = Chunker(chunk_size=64, chunk_overlap=8)
    text = "東京の会議室は九時に開きます" * 300  # no whitespace, no ASCII punctuation
    document = Document(source="jp.txt", text=text, title="Jp", content_hash="h", format="text")
    chunks = chunk_document(chunker, document, tenant="t", corpus="c")
    assert max(chunker._tokens(c.text) for c in chunks) <= 64
    assert "".join(c.text for c in chunks) == text


def test_a_pdf_over_the_page_limit_is_skipped_naming_the_setting(tmp_path: Path) -> None:
    write_pdf(tmp_path / "book.pdf", ["Page one.", "Page two.", "Page three."])
    with pytest.raises(SkippedFileError, match=r"3 pages, over the 2-page .*RAG_INGEST_MAX_PAGES"):
        load_document(tmp_path / "book.pdf", tmp_path, LIMIT, bounds=FileBounds(max_pages=2))
    assert len(load_document(tmp_path / "book.pdf", tmp_path, LIMIT).segments) == 3


def test_a_file_over_the_character_limit_is_skipped_naming_the_setting(tmp_path: Path) -> None:
    (tmp_path / "big.txt").write_text("All work and no play. " * 100)
    with pytest.raises(SkippedFileError, match=r"2,199 characters.*RAG_INGEST_MAX_CHARS"):
        load_document(tmp_path / "big.txt", tmp_path, LIMIT, bounds=FileBounds(max_chars=1000))


def test_a_file_that_takes_too_long_to_read_is_skipped_naming_the_setting(
    tmp_path: Path,
) -> None:
    rows = "\n".join(f"{i},question {i},answer {i}" for i in range(200))
    (tmp_path / "faq.csv").write_text(f"id,question,answer\n{rows}\n")
    with pytest.raises(SkippedFileError, match=r"stopped at row 1\).*RAG_INGEST_FILE_TIMEOUT_S"):
        load_document(tmp_path / "faq.csv", tmp_path, LIMIT, bounds=FileBounds(timeout_s=1e-9))


class _ScriptedIngestor:
    """Stands in for the Ingestor: each file takes as long as `hold` says, and the order in
    which files of all tenants are ingested is recorded."""

    def __init__(self, hold: dict[str, threading.Event] | None = None) -> None:
        self.tenant = "default"
        self.order: list[str] = []
        self.hold = hold or {}
        self.started: dict[str, threading.Event] = {}
        self.niceness: list[int] = []  # the CPU priority each add_files ran at
        self.dense: list[object] = []  # the encoders each job ingested with

    def for_tenant(self, tenant: str) -> _ScriptedIngestor:
        other = _ScriptedIngestor(self.hold)
        other.tenant, other.order, other.started = tenant, self.order, self.started
        other.niceness, other.dense = self.niceness, self.dense
        return other

    def with_dense(self, dense: object) -> _ScriptedIngestor:
        self.dense.append(dense)
        return self

    def add_files(
        self,
        root: Path,
        paths: Sequence[Path],
        corpus: str,
        progress: ProgressListener | None = None,
    ) -> IngestReport:
        assert progress is not None
        self.niceness.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        progress.start(len(paths))
        for path in paths:
            progress.begin(path.name)
            self.started.setdefault(path.name, threading.Event()).set()
            if path.name in self.hold:
                self.hold[path.name].wait()
            self.order.append(path.name)
            progress.advance(FileOutcome(path.name, "added", 1))
        return IngestReport(corpus=corpus, root=str(root))


def _jobs(tmp_path: Path, ingestor: _ScriptedIngestor, grace_s: float = 10.0) -> IngestionJobs:
    return IngestionJobs(
        cast(Ingestor, ingestor),
        UploadInbox(tmp_path / "uploads", LIMIT),
        "uploads",
        shelf=EdgeShelf(tmp_path / "jobs", 1),
        grace_s=grace_s,
    )


def _files(tmp_path: Path, tenant: str, names: list[str]) -> list[Path]:
    folder = tmp_path / "uploads" / tenant
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_text(name)
    return [folder / name for name in names]


def _finished(job: IngestionJob, timeout_s: float = 10) -> IngestionJob:
    deadline = time.monotonic() + timeout_s
    while not job.finished_at:
        assert time.monotonic() < deadline, f"job still {job.status}"
        time.sleep(0.01)
    return job


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()  # never leave a worker waiting


def test_tenants_take_turns_so_a_small_upload_waits_one_file_not_ten(
    tmp_path: Path, gate: threading.Event
) -> None:
    ingestor = _ScriptedIngestor(hold={"a1.md": gate})
    jobs = _jobs(tmp_path, ingestor)
    alpha = [["a1.md"], ["a2.md"], [f"a{i}.md" for i in range(3, 9)]]
    big = [jobs.submit(_files(tmp_path, "alpha", names), tenant="alpha") for names in alpha]
    assert ingestor.started.setdefault("a1.md", threading.Event()).wait(10)
    small = jobs.submit(_files(tmp_path, "beta", ["b1.md"]), tenant="beta")
    time.sleep(0.05)  # beta's worker is in line behind a1
    gate.set()
    for job in (*big, small):
        assert _finished(job).status == "succeeded"
    assert ingestor.order[:2] == ["a1.md", "b1.md"]
    assert ingestor.order[2:] == [f"a{i}.md" for i in range(2, 9)]  # alpha's own order kept
    assert jobs.close()


def test_jobs_run_below_the_queries_priority_with_their_own_encoder_built_in_a_job_thread(
    tmp_path: Path,
) -> None:
    ingestor = _ScriptedIngestor()
    built_in: list[int] = []

    def build() -> object:  # its threads (a model session's) inherit the builder's priority
        built_in.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        return object()

    jobs = IngestionJobs(
        cast(Ingestor, ingestor),
        UploadInbox(tmp_path / "uploads", LIMIT),
        "uploads",
        shelf=EdgeShelf(tmp_path / "jobs", 1),
        nice=5,
        background_dense=cast(Any, build),
    )
    mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    first = jobs.submit(_files(tmp_path, "alpha", ["a1.md"]), tenant="alpha")
    assert _finished(first).status == "succeeded"
    second = jobs.submit(_files(tmp_path, "beta", ["b1.md"]), tenant="beta")
    assert _finished(second).status == "succeeded"
    assert ingestor.niceness == [min(mine + 5, 19)] * 2
    assert built_in == [min(mine + 5, 19)]  # built once, in a job thread
    assert len(ingestor.dense) == 2
    assert ingestor.dense[0] is ingestor.dense[1]
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == mine  # not the caller
    assert jobs.close()


def test_close_lets_the_current_file_finish_and_starts_no_other(
    tmp_path: Path, gate: threading.Event
) -> None:
    ingestor = _ScriptedIngestor(hold={"a1.md": gate})
    jobs = _jobs(tmp_path, ingestor, grace_s=10)
    job = jobs.submit(_files(tmp_path, "alpha", ["a1.md", "a2.md", "a3.md"]), tenant="alpha")
    assert ingestor.started.setdefault("a1.md", threading.Event()).wait(10)
    # Submitted once a1 holds the writer: before that, beta's thread could take the first turn.
    later = jobs.submit(_files(tmp_path, "beta", ["b1.md"]), tenant="beta")
    threading.Timer(0.3, gate.set).start()  # the current file ends within the grace
    started = time.monotonic()
    assert jobs.close()
    assert time.monotonic() - started < 5
    assert ingestor.order == ["a1.md"]
    assert (job.done, job.total, job.status) == (1, 3, "failed")
    assert "upload inbox" in job.error
    assert later.status == "queued"  # never started; its file waits in the inbox
    assert (tmp_path / "uploads" / "beta" / "b1.md").exists()


def test_close_abandons_a_file_that_outlasts_the_grace(
    tmp_path: Path, gate: threading.Event
) -> None:
    ingestor = _ScriptedIngestor(hold={"a1.md": gate})
    jobs = _jobs(tmp_path, ingestor, grace_s=0.5)
    job = jobs.submit(_files(tmp_path, "alpha", ["a1.md"]), tenant="alpha")
    assert ingestor.started.setdefault("a1.md", threading.Event()).wait(10)
    started = time.monotonic()
    assert not jobs.close()  # abandoned: the caller leaves the store as a crash would
    assert 0.4 < time.monotonic() - started < 3
    assert job.status == "running"
