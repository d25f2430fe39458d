"""Ingestion jobs for the API: uploads are ingested in the background, one job at a time,
while queries keep being answered; a job reports its progress and per-file outcomes.

Jobs live in memory (a restart forgets them); the files they ingest do not: they are in the
upload inbox before a job is created, and a start-up job ingests whatever the inbox holds.
Each tenant has its own inbox folder, jobs and documents; a job id of another tenant is 404.

What is accepted is never lost and never half applied: an upload's files join the inbox
together, after they are all written and audited; a delete is audited, then its file is set
aside, then its chunks go (the file comes back if that fails). A file that cannot be read is
quarantined with its reason; one that stopped the process `MAX_ATTEMPTS` times is too, so
restarts make progress.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from ..domain import IndexedDocument, by_source
from ..errors import ConflictError, NotFoundError, ServiceError
from .pipeline import Ingestor
from .report import FileOutcome
from .uploads import UploadInbox, storage_errors

JobStatus = Literal["queued", "running", "succeeded", "failed"]
# Finished jobs kept for GET /v1/ingestions/{id}; older ones are forgotten first.
_KEEP_FINISHED = 200
# Starts of a file's ingestion that never ended (the process died in it) before it is
# quarantined: one crash may be the machine's, three are the file's.
MAX_ATTEMPTS = 3

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

    def record(self, outcome: FileOutcome) -> None:
        self.outcomes.append(outcome)
        self.done += 1


@dataclass
class _InboxProgress:
    """The ingestor's ProgressListener for a job: fills the job in, counts each file's
    attempts on disk and quarantines what could not be read."""

    job: IngestionJob
    inbox: UploadInbox
    current: str | None = None

    def start(self, total: int) -> None:
        self.job.total += total

    def begin(self, source: str) -> None:
        self.current = source
        self.inbox.count_attempt(source)

    def advance(self, outcome: FileOutcome) -> None:
        self.current = None
        self.job.record(outcome)
        if outcome.status == "skipped":
            self.inbox.quarantine(outcome.source, outcome.reason)
        else:
            self.inbox.forget_attempts(outcome.source)


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

    def accept_upload(
        self,
        files: Sequence[tuple[str, Iterable[bytes]]],
        *,
        tenant: str,
        audit: Callable[[str, list[Path]], None],
    ) -> IngestionJob:
        """Store one upload's files (safe names, already checked), audit them with the job id,
        and queue the job: the whole upload or nothing of it. `audit(job_id, files)`."""
        job_id = uuid.uuid4().hex
        inbox = self.inbox(tenant)
        staged = inbox.staging(job_id)
        try:
            with storage_errors("store the upload", inbox.folder):
                written = [staged.save(name, blocks) for name, blocks in files]
                audit(job_id, written)
        except BaseException:
            inbox.discard(staged)
            raise
        with storage_errors("store the upload", inbox.folder):
            paths = inbox.accept(staged)  # audited: from here on it survives a crash
        return self.submit(paths, tenant=tenant, job_id=job_id)

    def submit(self, paths: list[Path], *, tenant: str, job_id: str | None = None) -> IngestionJob:
        job = IngestionJob(
            id=job_id or uuid.uuid4().hex,
            tenant=tenant,
            corpus=self.corpus,
            files=[p.name for p in paths],
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
            inbox.recover()
            self._finish_deletes(tenant, inbox)
            job = IngestionJob(id=uuid.uuid4().hex, tenant=tenant, corpus=self.corpus, files=["*"])
            for path in inbox.files():
                if inbox.attempts(path.name) >= MAX_ATTEMPTS:
                    reason = (
                        f"ingesting it stopped the service {MAX_ATTEMPTS} times (a crash or a kill "
                        "while reading it); check the file, then upload it again"
                    )
                    inbox.quarantine(path.name, reason)
                    job.total += 1
                    job.record(FileOutcome(path.name, "skipped", reason=reason))
                    log.warning("quarantined %s: %s", path.name, reason)
            if not inbox.files() and not job.outcomes:
                continue
            with self._jobs_lock:
                self._jobs[job.id] = job
            self._executor.submit(self._run, job, inbox.files)
            jobs.append(job)
        return jobs

    def _finish_deletes(self, tenant: str, inbox: UploadInbox) -> None:
        """A delete interrupted by a crash: its file comes back if its document is still
        stored (the delete did not happen), and goes if the document is gone."""
        aside = inbox.set_aside_files()
        if not aside:
            return
        stored = {
            d.source
            for d in self._ingestor.for_tenant(tenant).documents()
            if d.corpus == self.corpus
        }
        for path in aside:
            if path.name in stored:
                inbox.put_back(path)
            else:
                path.unlink()

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
        self, document_id: str, *, tenant: str, audit: Callable[[IndexedDocument], None]
    ) -> tuple[IndexedDocument, FileOutcome]:
        """Delete a document by its id (and its uploaded file); refuses while a job is
        writing. The lookup happens under the writer lock, so it is what gets deleted.
        `audit(document)` records the attempt first: a delete that cannot be audited is not
        done. Then the file is set aside, then the chunks are deleted; if that fails, the
        file is put back, so a failure leaves the document as it was."""
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
            with storage_errors("delete the document", inbox.folder):
                audit(found)
                aside = inbox.set_aside(found.source) if uploaded else None
            try:
                outcome = ingestor.delete(
                    found.corpus,
                    found.source,
                    root=inbox.folder if uploaded else None,
                    indexed=by_source(d for d in documents if d.corpus == found.corpus),
                )
                if outcome is None:  # cannot happen: found in the same read, under the lock
                    raise missing
            except BaseException:
                if aside is not None:
                    inbox.put_back(aside)
                raise
            if aside is not None:
                aside.unlink(missing_ok=True)  # if this fails, the next start removes it
            return found, outcome
        finally:
            self.writer.release()

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

    def _run(self, job: IngestionJob, paths: Callable[[], list[Path]]) -> None:
        job.status = "running"
        inbox = self.inbox(job.tenant)
        progress = _InboxProgress(job, inbox)
        try:
            with self.writer:
                files = [p for p in paths() if p.exists()]
                job.files = [p.name for p in files]
                self._ingestor.for_tenant(job.tenant).add_files(
                    inbox.folder, files, job.corpus, progress=progress
                )
            job.status = "succeeded"
        except ServiceError as exc:
            job.status, job.error = "failed", exc.message
        except Exception as exc:  # a job thread has no caller to raise to: record and log
            log.exception("ingestion job %s failed", job.id)
            job.status, job.error = "failed", f"{type(exc).__name__}: {exc}"
        finally:
            if job.status == "failed" and progress.current is not None:
                # The process lived on, so the file it was on did not kill it: not an attempt.
                # It stays in the inbox for the next start.
                inbox.forget_attempts(progress.current)
            job.finished_at = _now()

    def _forget_old(self) -> None:
        finished = [j for j in self._jobs.values() if j.finished_at]
        for job in sorted(finished, key=lambda j: j.finished_at)[:-_KEEP_FINISHED]:
            del self._jobs[job.id]
