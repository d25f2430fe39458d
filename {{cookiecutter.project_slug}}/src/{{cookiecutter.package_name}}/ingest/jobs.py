"""Ingestion jobs for the API: uploads are ingested in the background, one job at a time,
while queries keep being answered; a job reports its progress and per-file outcomes.

Jobs live in memory (a restart forgets them); the files they ingest do not: they are in the
upload inbox before a job is created, and a start-up job ingests whatever the inbox holds.
Each tenant has its own inbox folder, jobs and documents; a job id of another tenant is 404.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from ..domain import IndexedDocument, by_source
from ..errors import ConflictError, NotFoundError, ServiceError
from .pipeline import Ingestor
from .report import FileOutcome
from .uploads import UploadInbox

JobStatus = Literal["queued", "running", "succeeded", "failed"]
# Finished jobs kept for GET /v1/ingestions/{id}; older ones are forgotten first.
_KEEP_FINISHED = 200

log = logging.getLogger(__name__)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class IngestionJob:
    id: str
    corpus: str
    files: list[str]
    tenant: str
    status: JobStatus = "queued"
    total: int = 0
    done: int = 0
    outcomes: list[FileOutcome] = field(default_factory=list)
    error: str = ""
    created_at: str = field(default_factory=_now)
    finished_at: str = ""

    # The ProgressListener protocol: the ingestor reports into the job as it goes.
    def start(self, total: int) -> None:
        self.total = total

    def advance(self, outcome: FileOutcome) -> None:
        self.outcomes.append(outcome)
        self.done += 1


class IngestionJobs:
    """One worker thread: the store takes one writer at a time anyway, and jobs run in the
    order they were accepted. Deletes share the writer lock with jobs."""

    def __init__(self, ingestor: Ingestor, inbox: UploadInbox, corpus: str) -> None:
        self._ingestor = ingestor
        self._inbox = inbox  # its folder holds one inbox folder per tenant
        self.corpus = corpus
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-job")
        self._jobs: dict[str, IngestionJob] = {}
        self._jobs_lock = threading.Lock()
        self.writer = threading.Lock()

    def inbox(self, tenant: str) -> UploadInbox:
        return UploadInbox(self._inbox.folder / tenant, self._inbox.max_bytes)

    def submit(self, paths: list[Path], *, tenant: str) -> IngestionJob:
        job = IngestionJob(
            id=uuid.uuid4().hex, tenant=tenant, corpus=self.corpus, files=[p.name for p in paths]
        )
        with self._jobs_lock:
            self._jobs[job.id] = job
            self._forget_old()
        self._executor.submit(self._run, job, lambda: paths)
        return job

    def submit_inbox(self) -> list[IngestionJob]:
        """Ingest everything in the inboxes (at start-up: uploads accepted before a crash)."""
        root = self._inbox.folder
        tenants = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        jobs = []
        for tenant in tenants:
            inbox = self.inbox(tenant)
            if not inbox.files():
                continue
            job = IngestionJob(id=uuid.uuid4().hex, tenant=tenant, corpus=self.corpus, files=["*"])
            with self._jobs_lock:
                self._jobs[job.id] = job
            self._executor.submit(self._run, job, inbox.files)
            jobs.append(job)
        return jobs

    def get(self, job_id: str, *, tenant: str) -> IngestionJob:
        with self._jobs_lock:
            job = self._jobs.get(job_id)
        if job is None or job.tenant != tenant:  # another tenant's job does not exist for you
            raise NotFoundError(
                f"No ingestion job {job_id!r}: job ids come from POST /v1/documents, and "
                "jobs are forgotten when the service restarts."
            )
        return job

    def delete_document(
        self, document_id: str, *, tenant: str
    ) -> tuple[IndexedDocument, FileOutcome]:
        """Delete a document by its id (and its uploaded file); refuses while a job is
        writing. The lookup happens under the writer lock, so it is what gets deleted."""
        if not self.writer.acquire(timeout=5):
            raise ConflictError(
                "An ingestion job is writing to the store; retry the delete when it has "
                "finished (GET /v1/ingestions/{id} shows its progress)."
            )
        try:
            ingestor = self._ingestor.for_tenant(tenant)
            documents = ingestor.documents()
            found = next((d for d in documents if d.id == document_id), None)
            missing = NotFoundError(
                f"No document with id {document_id!r}; GET /v1/documents lists the ids."
            )
            if found is None:
                raise missing
            uploaded = found.corpus == self.corpus
            inbox = self.inbox(tenant)
            outcome = ingestor.delete(
                found.corpus,
                found.source,
                root=inbox.folder if uploaded else None,
                indexed=by_source(d for d in documents if d.corpus == found.corpus),
            )
            if outcome is None:  # cannot happen: found in the same read, under the lock
                raise missing
            if uploaded:
                inbox.remove(found.source)
            return found, outcome
        finally:
            self.writer.release()

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

    def _run(self, job: IngestionJob, paths: Callable[[], list[Path]]) -> None:
        job.status = "running"
        try:
            with self.writer:
                files = [p for p in paths() if p.exists()]
                job.files = [p.name for p in files]
                self._ingestor.for_tenant(job.tenant).add_files(
                    self.inbox(job.tenant).folder, files, job.corpus, progress=job
                )
            job.status = "succeeded"
        except ServiceError as exc:
            job.status, job.error = "failed", exc.message
        except Exception as exc:  # a job thread has no caller to raise to: record and log
            log.exception("ingestion job %s failed", job.id)
            job.status, job.error = "failed", f"{type(exc).__name__}: {exc}"
        finally:
            job.finished_at = _now()

    def _forget_old(self) -> None:
        finished = [j for j in self._jobs.values() if j.finished_at]
        for job in sorted(finished, key=lambda j: j.finished_at)[:-_KEEP_FINISHED]:
            del self._jobs[job.id]
