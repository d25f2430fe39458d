"""Ingestion jobs for the API: uploads are ingested in the background, one file at a time,
while queries keep being answered; a job reports its progress and per-file outcomes.

Tenants take turns: one file of each tenant that has work, in the order they asked, so one
tenant's big uploads delay another's by at most one file (its size and time bounded by the
RAG_INGEST_* settings), not by all of them. On shutdown no new turn starts; the file being
ingested may finish within RAG_SHUTDOWN_GRACE_S, else it is abandoned (it stays in the inbox).

A job runs in the process that accepted it (its files are in that process's upload inbox);
its record (status, progress, each file's outcome) is written to the `<collection>_jobs` shelf
beside the corpus at every step, so any replica of a server deployment answers
GET /v1/ingestions/{id}, and a restart does not forget it. Records are kept `KEEP_DAYS` after
their last change. The files a job ingests are in the upload inbox before the job is created,
and a start-up job ingests whatever the inbox holds.
Each tenant has its own inbox folder, jobs and documents; a job id of another tenant is 404.

What is accepted is never lost and never half applied: an upload's files join the inbox
together, after they are all written and audited; a delete is audited, then its file is set
aside, then its chunks go (the file comes back if that fails). A file that cannot be read is
quarantined with its reason; one that stopped the process `MAX_ATTEMPTS` times is too, so
restarts make progress.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from ..domain import IndexedDocument, by_source
from ..embeddings import DenseEncoder
from ..errors import ConflictError, NotFoundError, ServiceError, StoreUnavailableError
from ..store import RecordShelf
from ..store.records import ShelfRecord
from .pipeline import Ingestor
from .report import FileOutcome
from .uploads import UploadInbox, storage_errors

JobStatus = Literal["queued", "running", "succeeded", "failed"]
JOBS_SHELF = "jobs"
# Days a job's record is kept for GET /v1/ingestions/{id} after its last change.
KEEP_DAYS = 7
# Starts of a file's ingestion that never ended (the process died in it) before it is
# quarantined: one crash may be the machine's, three are the file's.
MAX_ATTEMPTS = 3

log = logging.getLogger(__name__)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class _Stopped(BaseException):
    """The service is stopping: a job leaves the ingestor between two files. A BaseException,
    so no file-level `except Exception` in the pipeline takes it for that file's failure."""


class Turns:
    """Who writes to the store next. Each writer (a job's next file, a delete) joins the end
    of the line and waits until it is first and no one writes, so writers take turns in the
    order they asked. Shaped like a lock (acquire with a timeout, release), as the store
    takes one writer at a time anyway."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._line: deque[object] = deque()
        self._holder: object | None = None
        # Set from a signal handler too: a plain flag (no lock), read by waiters when woken.
        self.stopping = False

    def acquire(self, timeout: float | None = None) -> bool:
        """Wait for a turn; False on timeout or once stopping (no new turn starts)."""
        me = object()
        with self._changed:
            self._line.append(me)
            granted = self._changed.wait_for(
                lambda: self.stopping or (self._holder is None and self._line[0] is me),
                timeout,
            )
            self._line.remove(me)
            if not granted or self.stopping:
                self._changed.notify_all()  # the next in line may be first now
                return False
            self._holder = me
            return True

    def release(self) -> None:
        with self._changed:
            self._holder = None
            self._changed.notify_all()

    def stop(self) -> None:
        self.stopping = True
        with self._changed:
            self._changed.notify_all()


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

    def payload(self) -> dict[str, object]:
        return {**asdict(self), "time": time.time()}  # `time`: the last change, for retention

    @classmethod
    def of(cls, payload: dict[str, object]) -> IngestionJob:
        fields = dict(payload)
        fields.pop("time", None)
        outcomes = fields.pop("outcomes", [])
        assert isinstance(outcomes, list)
        return cls(
            **fields,  # type: ignore[arg-type]
            outcomes=[
                FileOutcome(**{**o, "warnings": tuple(o.get("warnings", ()))}) for o in outcomes
            ],
        )


class JobRecords:
    """Job records on a shelf beside the corpus, one per job, rewritten at each change."""

    def __init__(self, shelf: RecordShelf) -> None:
        self.shelf = shelf
        self._last_prune = 0.0

    def save(self, job: IngestionJob) -> None:
        record = ShelfRecord(id=str(uuid.UUID(job.id)), payload=job.payload())
        now = time.time()
        try:
            self.shelf.put([record])
            if now - self._last_prune > 3600:  # at most hourly
                self._last_prune = now
                self.shelf.drop_before(now - KEEP_DAYS * 86400)
        except (OSError, RuntimeError) as exc:  # the engines' own errors, in one sentence
            raise StoreUnavailableError(
                f"The ingestion job {job.id} could not be recorded: {exc}"
            ) from exc

    def load(self, job_id: str, tenant: str) -> IngestionJob | None:
        try:
            found = next(iter(self.shelf.find(equals={"id": job_id, "tenant": tenant})), None)
        except (OSError, RuntimeError) as exc:
            raise StoreUnavailableError(f"The ingestion job could not be read: {exc}") from exc
        return IngestionJob.of(found.payload) if found is not None else None


@dataclass
class _JobProgress:
    """A job's progress listener: fills the job in, counts each file's attempts on disk,
    quarantines what could not be read, then gives up the writer and waits for the next
    turn (the ingestor keeps one plan, one read of the tenant's documents, per job, while
    the files of different tenants' jobs interleave)."""

    job: IngestionJob
    inbox: UploadInbox
    turns: Turns
    save: Callable[[IngestionJob], None]
    current: str | None = None  # the file being ingested

    def start(self, total: int) -> None:
        self.job.total = len(self.job.outcomes) + total  # after any quarantined at start-up
        self.save(self.job)

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
        self.save(self.job)
        self.turns.release()
        if not self.turns.acquire():
            raise _Stopped

    def not_an_attempt(self) -> None:
        """The process lives on (the job failed, or the service stops on purpose), so the
        file it was on did not kill it; it stays in the inbox for the next start."""
        if self.current is not None:
            self.inbox.forget_attempts(self.current)


class IngestionJobs:
    """One writer at a time (the store takes one anyway), in turns: a thread per tenant with
    work runs that tenant's jobs in the order they were accepted, one file a turn. Deletes
    take turns with the files."""

    def __init__(
        self,
        ingestor: Ingestor,
        inbox: UploadInbox,
        corpus: str,
        *,
        shelf: RecordShelf,
        grace_s: float = 10.0,
        nice: int = 0,
        background_dense: Callable[[], DenseEncoder] | None = None,
    ) -> None:
        self._ingestor = ingestor
        # Job threads run `nice` steps below the queries. The dense model does most of a
        # job's work in its own threads, which a session creates when it loads: so jobs embed
        # with their own instance, built in a job thread (its threads inherit the priority).
        self.nice = nice
        self._background_dense = background_dense
        self._dense: DenseEncoder | None = None
        self._dense_lock = threading.Lock()
        self._inbox = inbox  # its folder holds one inbox folder per tenant
        self.corpus = corpus
        self.grace_s = grace_s
        self.records = JobRecords(shelf)
        self._jobs_lock = threading.Lock()
        self.writer = Turns()
        # Each tenant's accepted jobs, oldest (the running one) first, and its worker thread.
        self._queues: dict[str, deque[tuple[IngestionJob, Callable[[], list[Path]]]]] = {}
        self._workers: dict[str, threading.Thread] = {}
        self._progress: dict[str, _JobProgress] = {}  # each tenant's running job
        self._stop_requested: float | None = None

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
        self._enqueue(job, lambda: paths)
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
            self._enqueue(job, inbox.files)
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

    def _enqueue(self, job: IngestionJob, paths: Callable[[], list[Path]]) -> None:
        """Record the job and queue it behind its tenant's; a stopping service queues it
        all the same (its files are in the inbox for the next start). A job that cannot be
        recorded is not queued (its files are in the inbox for the next start)."""
        self.records.save(job)
        with self._jobs_lock:
            self._queues.setdefault(job.tenant, deque()).append((job, paths))
            if job.tenant not in self._workers and not self.writer.stopping:
                # A daemon thread: one abandoned on shutdown must not keep the process alive.
                worker = threading.Thread(
                    target=self._work, args=(job.tenant,), name=f"ingest-{job.tenant}", daemon=True
                )
                self._workers[job.tenant] = worker
                worker.start()

    def _work(self, tenant: str) -> None:
        """Run the tenant's jobs in order until its queue is empty (or the service stops)."""
        self._lower_priority()
        while True:
            with self._jobs_lock:
                queue = self._queues[tenant]
                if not queue or self.writer.stopping:
                    del self._workers[tenant]
                    return
                job, paths = queue[0]
            self._run(job, paths)
            with self._jobs_lock:
                queue.popleft()
                if not queue:
                    del self._queues[tenant]
                    del self._workers[tenant]
                    return

    def get(self, job_id: str, *, tenant: str) -> IngestionJob:
        """The job as last recorded, whichever process runs it."""
        job = self.records.load(job_id, tenant)  # another tenant's job does not exist for you
        if job is None:
            raise NotFoundError(
                f"No ingestion job {job_id!r}: job ids come from POST /v1/documents, and "
                f"jobs are forgotten {KEEP_DAYS} days after they last changed."
            )
        return job

    def _save_progress(self, job: IngestionJob) -> None:
        """Record a running job's progress; a failure is logged, never the file's: the
        ingestion goes on, and the next step records it again."""
        try:
            self.records.save(job)
        except Exception:
            log.exception("ingestion job %s: its progress could not be recorded", job.id)

    def delete_document(
        self, document_id: str, *, tenant: str, audit: Callable[[IndexedDocument], None]
    ) -> tuple[IndexedDocument, FileOutcome]:
        """Delete a document by its id (and its uploaded file); refuses while a job is
        writing. The lookup happens under the writer lock, so it is what gets deleted.
        `audit(document)` records the attempt first: a delete that cannot be audited is not
        done. Then the file is set aside, then the chunks are deleted; if that fails, the
        file is put back, so a failure leaves the document as it was."""
        if self._running(tenant) or not self.writer.acquire(timeout=5):
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

    def _lower_priority(self) -> None:
        """This thread (a job's) yields the cores to queries. Measured with make bench-hostile
        (2 cores, loaded), another tenant's query p95 during a heavy job: 7.7x idle at the same
        priority, 3.1x at nice 10, 2.8x at 19 (the default; the job then took 1.4x as long,
        as it gave way to 1,945 questions in a row)."""
        if self.nice and hasattr(os, "setpriority"):
            try:
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self.nice)
            except OSError as exc:  # not Linux, or not allowed: same priority as queries
                log.warning("ingestion jobs run at the queries' CPU priority: %s", exc)

    def _job_ingestor(self, tenant: str) -> Ingestor:
        ingestor = self._ingestor.for_tenant(tenant)
        if self._background_dense is None:
            return ingestor
        with self._dense_lock:
            if self._dense is None:
                self._dense = self._background_dense()  # in this (job) thread: see __init__
            return ingestor.with_dense(self._dense)

    def _running(self, tenant: str) -> bool:
        """Whether a job of this tenant is part way through: its plan was made from the
        documents as they were, so a delete waits for it to finish."""
        with self._jobs_lock:
            queue = self._queues.get(tenant)
            return queue is not None and bool(queue) and queue[0][0].status == "running"

    def stop(self) -> None:
        """Start no new turn: each job stops after its current file. Safe to call from a
        signal handler (it only sets flags), so the grace is counted from the signal."""
        if self._stop_requested is None:
            self._stop_requested = time.monotonic()
        self.writer.stopping = True

    def close(self) -> bool:
        """Stop, and wait up to the grace (from the first stop) for the current file; True
        when every job thread has ended, False when one was abandoned mid-file (its files
        stay in the inbox, and the store must be left as a crash would leave it)."""
        self.stop()
        self.writer.stop()  # wakes the waiting jobs, so they end now
        started = self._stop_requested or time.monotonic()
        with self._jobs_lock:
            workers = list(self._workers.values())
        for worker in workers:
            worker.join(timeout=max(0.0, started + self.grace_s - time.monotonic()))
        busy = [w.name for w in workers if w.is_alive()]
        with self._jobs_lock:
            abandoned = list(self._progress.values())  # jobs still running after the grace
        for progress in abandoned:
            progress.not_an_attempt()  # stopped on purpose: the file did not kill the process
        if busy:
            log.warning(
                "stopped without waiting for %s after %.1f s (RAG_SHUTDOWN_GRACE_S): the files "
                "being ingested stay in the upload inbox and are ingested at the next start",
                ", ".join(busy),
                self.grace_s,
            )
        return not busy

    def _run(self, job: IngestionJob, paths: Callable[[], list[Path]]) -> None:
        if not self.writer.acquire():
            return  # stopping before the job started: it stays queued, its files in the inbox
        job.status = "running"
        inbox = self.inbox(job.tenant)
        progress = _JobProgress(job, inbox, self.writer, self._save_progress)
        with self._jobs_lock:
            self._progress[job.tenant] = progress
        try:
            files = [p for p in paths() if p.exists()]
            job.files = [p.name for p in files]
            job.total = len(job.outcomes) + len(files)  # known now, before a model loads
            self._save_progress(job)
            self._job_ingestor(job.tenant).add_files(
                inbox.folder, files, job.corpus, progress=progress
            )
            job.status = "succeeded"
        except _Stopped:
            if job.done < job.total:  # else only the turn after its last file was refused
                job.status = "failed"
                job.error = (
                    "The service stopped before this job finished; its files are in the upload "
                    "inbox and are ingested when the service starts again."
                )
            else:
                job.status = "succeeded"
            return  # the turn was not granted: nothing to release
        except ServiceError as exc:
            job.status, job.error = "failed", exc.message
        except Exception as exc:  # a job thread has no caller to raise to: record and log
            log.exception("ingestion job %s failed", job.id)
            job.status, job.error = "failed", f"{type(exc).__name__}: {exc}"
        finally:
            if job.status == "failed":
                progress.not_an_attempt()
            with self._jobs_lock:
                self._progress.pop(job.tenant, None)
            job.finished_at = _now()
            self._save_progress(job)
        self.writer.release()
