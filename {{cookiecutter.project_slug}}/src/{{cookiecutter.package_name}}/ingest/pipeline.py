"""The executor of ingestion: load -> chunk -> embed -> upsert, carrying out the planner's
decisions (plan.py) for each file and reporting the outcome (report.py).

The module keeps its name, `pipeline`: it is the stage loop, what llama-index calls its
IngestionPipeline, and the docstore strategy (what to do with a file) lives apart from it, in
the planner. Each file is loaded, decided and written before the next is read, so memory
follows one file.

Order of writes keeps accepted data safe: a changed document's new chunks are written before
its old ones are deleted, and a duplicate that takes over a deleted holder's content gets its
own chunks before the holder's are deleted, so a crash in between leaves the old or both
versions, never none.
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from opentelemetry.trace import Span, Tracer

from ..domain import Chunk, Document, IndexedDocument, Point, by_source
from ..embeddings import DenseEncoder, SparseEncoder
from ..errors import BadRequestError, ServiceError
from ..settings import TENANT_PATTERN
from ..store import VectorStore
from ..telemetry import RagMetrics
from .chunk import Chunker, chunk_document
from .load import FileBounds, RecordFields, SkippedFileError, discover, load_document
from .plan import (
    Alias,
    Delete,
    ForgetAlias,
    Promote,
    Removal,
    Skip,
    SyncPlanner,
    ToChunk,
    Unchanged,
)
from .report import FileOutcome, IngestReport, ProgressListener

# FileOutcome is re-exported for callers that still import it from here (api/schemas.py);
# its home is report.py.
__all__ = ["FileOutcome", "Ingestor"]

log = logging.getLogger(__name__)


def _batched(items: list[Chunk], size: int) -> Iterator[list[Chunk]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class Ingestor:
    def __init__(
        self,
        store: VectorStore,
        dense: DenseEncoder,
        sparse: SparseEncoder,
        chunker: Chunker,
        tracer: Tracer,
        max_file_bytes: int,
        batch_size: int,
        *,
        metrics: RagMetrics | None = None,
        legacy_encoding: str = "cp1252",
        record_fields: RecordFields | None = None,
        bounds: FileBounds | None = None,
        tenant: str,
    ) -> None:
        self.tenant = tenant  # every document this ingestor reads, writes or deletes
        self._store = store
        self._dense = dense
        self._sparse = sparse
        self.chunker = chunker
        self._tracer = tracer
        self._max_file_bytes = max_file_bytes
        self._batch_size = batch_size
        self._metrics = metrics or RagMetrics.noop()
        self._legacy_encoding = legacy_encoding
        self._record_fields = record_fields or RecordFields()
        self._bounds = bounds or FileBounds()

    def for_tenant(self, tenant: str) -> Ingestor:
        """The same ingestor, working on another tenant's documents."""
        if not re.match(TENANT_PATTERN, tenant):
            raise BadRequestError(
                f"Tenant {tenant!r} is not a plain name: use lower-case letters, digits, '-' "
                "and '_' (at most 63), e.g. legal-team."
            )
        other = copy.copy(self)
        other.tenant = tenant
        return other

    def with_dense(self, dense: DenseEncoder) -> Ingestor:
        """The same ingestor, embedding with another instance of the same dense model."""
        if dense.model_id != self._dense.model_id:
            raise ValueError(f"{dense.model_id} is not {self._dense.model_id}")
        other = copy.copy(self)
        other._dense = dense
        return other

    def load(self, path: Path, root: Path) -> Document:
        return load_document(
            path,
            root,
            self._max_file_bytes,
            self._legacy_encoding,
            self._record_fields,
            self._bounds,
        )

    def chunk(self, document: Document, corpus: str) -> list[Chunk]:
        return chunk_document(self.chunker, document, tenant=self.tenant, corpus=corpus)

    def write_chunks(
        self, chunks: Iterable[Chunk], corpus: str, aliases: Sequence[str] = ()
    ) -> None:
        """Embed and upsert in batches, so memory follows the batch size, not the corpus."""
        for batch in _batched(list(chunks), self._batch_size):
            texts = [chunk.embedding_text() for chunk in batch]
            with self._tracer.start_as_current_span(f"embeddings {self._dense.model_id}") as span:
                span.set_attribute("gen_ai.operation.name", "embeddings")
                span.set_attribute("gen_ai.request.model", self._dense.model_id)
                span.set_attribute("gen_ai.embeddings.dimension.count", self._dense.dimensions)
                span.set_attribute("embedding.batch_size", len(batch))
                dense = self._dense.embed_documents(texts)
                sparse = self._sparse.embed_documents(texts)
            with self._tracer.start_as_current_span("upsert") as span:
                span.set_attribute("db.system.name", "qdrant")
                span.set_attribute("db.collection.name", self._store.collection)
                span.set_attribute("upsert.points", len(batch))
                self._store.upsert(
                    [
                        Point(
                            chunk=c,
                            dense=d,
                            sparse=s,
                            corpus=corpus,
                            tenant=self.tenant,
                            aliases=tuple(aliases),
                        )
                        for c, d, s in zip(batch, dense, sparse, strict=True)
                    ]
                )
            self._metrics.ingest_chunks.add(len(batch))

    def ingest(
        self,
        root: Path,
        corpus: str | None = None,
        dry_run: bool = False,
        progress: ProgressListener | None = None,
    ) -> IngestReport:
        """Sync `root` into the store: files no longer there are deleted. With `dry_run`,
        report what would change and write nothing (files are still read and chunked, so
        unreadable ones are reported)."""
        return self._run(root, None, corpus, dry_run=dry_run, progress=progress)

    def add_files(
        self,
        root: Path,
        paths: Sequence[Path],
        corpus: str,
        progress: ProgressListener | None = None,
    ) -> IngestReport:
        """Ingest these files under `root` (an upload) and delete nothing."""
        return self._run(root, list(paths), corpus, dry_run=False, progress=progress)

    def documents(self) -> list[IndexedDocument]:
        """Every stored document of this ingestor's tenant, in every corpus."""
        return self._store.documents(tenant=self.tenant)

    def delete(
        self,
        corpus: str,
        source: str,
        root: Path | None = None,
        indexed: dict[str, IndexedDocument] | None = None,
    ) -> FileOutcome | None:
        """Delete one document by source; None when the corpus has no such document.
        `root` is where its duplicates' files are, should one have to take over; `indexed`
        is the corpus's documents by source, when the caller has just read them."""
        if indexed is None:
            indexed = by_source(self._store.documents(tenant=self.tenant, corpus=corpus))
        if source not in indexed:
            return None
        with self._tracer.start_as_current_span("ingest") as span:
            span.set_attribute("ingest.corpus", corpus)
            plan = SyncPlanner(indexed, tenant=self.tenant, corpus=corpus)
            return self._remove(corpus, source, plan, root=root, dry_run=False)

    def _run(
        self,
        root: Path,
        paths: list[Path] | None,
        corpus: str | None,
        *,
        dry_run: bool,
        progress: ProgressListener | None,
    ) -> IngestReport:
        if not root.exists():
            raise BadRequestError(f"Folder {root} does not exist; give the folder to ingest.")
        if not root.is_dir():
            raise BadRequestError(f"{root} is a file; give the folder that contains it.")
        corpus = corpus or root.resolve().name
        report = IngestReport(corpus=corpus, root=str(root), dry_run=dry_run)
        files = list(discover(root)) if paths is None else paths
        with self._tracer.start_as_current_span("ingest") as run_span:
            run_span.set_attribute("ingest.corpus", corpus)
            run_span.set_attribute("ingest.root", str(root))
            plan = SyncPlanner(
                by_source(self._store.documents(tenant=self.tenant, corpus=corpus)),
                tenant=self.tenant,
                corpus=corpus,
                # A sync removes what is no longer in the folder; an upload only adds.
                on_disk=[p.relative_to(root).as_posix() for p in files] if paths is None else None,
            )
            gone = plan.removals()
            if progress is not None:
                progress.start(len(files) + len(gone))
            for path in files:
                if progress is not None:
                    progress.begin(path.relative_to(root).as_posix())
                outcome = self._ingest_file(path, root, corpus, plan, dry_run=dry_run)
                self._record(report, outcome, progress)
            for source in gone:
                outcome = self._remove(corpus, source, plan, root=root, dry_run=dry_run)
                self._record(report, outcome, progress)
            for status, n in report.counts.items():
                run_span.set_attribute(f"ingest.files.{status}", n)
            if not dry_run and (report.counts["updated"] or report.counts["deleted"]):
                # Replaced and deleted chunks linger (and count in BM25's IDF) until vacuumed.
                with self._tracer.start_as_current_span("store.maintain") as span:
                    span.set_attribute("store.maintained", self._store.maintain())
            # Inside the span, so the log line carries the run's trace id.
            log.info("%s", report.summary(), extra={"corpus": corpus, "counts": report.counts})
        return report

    def _record(
        self, report: IngestReport, outcome: FileOutcome, progress: ProgressListener | None
    ) -> None:
        report.files.append(outcome)
        self._metrics.ingest_files.add(1, {"outcome": outcome.status})
        if progress is not None:
            progress.advance(outcome)

    def _ingest_file(
        self, path: Path, root: Path, corpus: str, plan: SyncPlanner, *, dry_run: bool
    ) -> FileOutcome:
        """Load one file, ask the plan what to do with it, do it."""
        source = path.relative_to(root).as_posix()
        with self._tracer.start_as_current_span("ingest.file") as span:
            span.set_attribute("ingest.source", source)
            chunks: list[Chunk] = []
            try:
                with self._tracer.start_as_current_span("parse"):
                    document = self.load(path, root)
                # plan.file changes the plan only for an Alias, which needs no chunking; so a
                # failure in the chunker leaves the plan as it was.
                decided = plan.file(source, self.chunker.version(document))
                if isinstance(decided, ToChunk):
                    with self._tracer.start_as_current_span("chunk") as chunk_span:
                        chunks = self.chunk(document, corpus)
                        chunk_span.set_attribute("ingest.chunks", len(chunks))
            except SkippedFileError as exc:
                return self._skipped(span, plan.unreadable(source, str(exc)))
            except ServiceError:
                raise  # the embedder or the store, not this file: the run stops, the file stays
            except Exception as exc:
                # Reading a file interprets its content (parsers, regexes, recursion): whatever
                # goes wrong there is this file's outcome, never the run's. Nothing is written
                # before this point, so the previous version (if any) is untouched.
                log.warning("could not read %s", source, exc_info=True)
                detail = str(exc)[:200] or "no detail"
                reason = (
                    f"could not be read ({type(exc).__name__}: {detail}); the file may be "
                    "malformed or too complex: fix or re-save it, then ingest it again"
                )
                return self._skipped(span, plan.unreadable(source, reason))
            if isinstance(decided, Unchanged):
                span.set_attribute("ingest.outcome", decided.status)
                return FileOutcome(
                    source, decided.status, decided.chunks, decided.reason, document.warnings
                )
            if isinstance(decided, Alias):
                self._alias(corpus, decided, span, dry_run=dry_run)
                return FileOutcome(
                    source, decided.status, reason=decided.reason, warnings=document.warnings
                )
            write = plan.chunked(decided, len(chunks))
            if isinstance(write, Skip):
                return self._skipped(span, write)
            encoding = document.metadata.get("encoding", "utf-8")
            notes = [] if encoding == "utf-8" else [f"read as {encoding}"]
            notes += [write.reason] if write.reason else []
            span.set_attribute("ingest.outcome", write.status)
            outcome = FileOutcome(
                source, write.status, len(chunks), "; ".join(notes), document.warnings
            )
            if write.forget is not None:
                self._forget(corpus, write.forget, dry_run=dry_run)
            if dry_run:
                return outcome
            if write.promote is not None:
                self._promote(corpus, write.promote, root)
            # Upserts are idempotent (deterministic ids), so a partly written version is
            # simply written again.
            self.write_chunks(chunks, corpus)
            if write.replaces:
                # The new version is complete; only now drop the chunks of every other one.
                self._store.delete_document(
                    tenant=self.tenant, corpus=corpus, source=source, keep_doc_hash=write.version
                )
            return outcome

    @staticmethod
    def _skipped(span: Span, skip: Skip) -> FileOutcome:
        span.set_attribute("ingest.outcome", skip.status)
        span.set_attribute("ingest.reason", skip.reason)
        return FileOutcome(skip.source, skip.status, reason=skip.reason)

    def _alias(self, corpus: str, alias: Alias, span: Span, *, dry_run: bool) -> None:
        """Record a new name for stored content: the holder's points get it as an alias."""
        if alias.forget is not None:
            self._forget(corpus, alias.forget, dry_run=dry_run)
        span.set_attribute("ingest.outcome", alias.status)
        if not dry_run:
            self._set_aliases(corpus, alias.holder, alias.aliases)

    def _remove(
        self, corpus: str, source: str, plan: SyncPlanner, *, root: Path | None, dry_run: bool
    ) -> FileOutcome:
        """Carry out the removal of a document that is gone: forget a duplicate's name, or
        promote its heir and delete it."""
        with self._tracer.start_as_current_span("ingest.delete") as span:
            span.set_attribute("ingest.source", source)
            removal: Removal = plan.remove(source)
            if isinstance(removal, ForgetAlias):
                if not dry_run:
                    self._set_aliases(corpus, removal.holder, removal.remaining)
                return FileOutcome(source, removal.status, reason=removal.reason)
            self._delete(corpus, removal, root, dry_run=dry_run)
            return FileOutcome(source, removal.status, removal.chunks, reason=removal.reason)

    def _forget(self, corpus: str, forget: ForgetAlias, *, dry_run: bool) -> None:
        """A name leaves its holder's aliases (before the name is stored anew)."""
        with self._tracer.start_as_current_span("ingest.delete") as span:
            span.set_attribute("ingest.source", forget.source)
            if not dry_run:
                self._set_aliases(corpus, forget.holder, forget.remaining)

    def _delete(self, corpus: str, delete: Delete, root: Path | None, *, dry_run: bool) -> None:
        if delete.promote is not None and not dry_run:
            self._promote(corpus, delete.promote, root)
        if not dry_run:
            self._store.delete_document(tenant=self.tenant, corpus=corpus, source=delete.source)

    def _promote(self, corpus: str, promote: Promote, root: Path | None) -> None:
        """Write a duplicate's own chunks (from its file) before the holder's are deleted."""
        heir = promote.heir
        if root is None or not (root / heir).is_file():
            raise BadRequestError(
                f"Cannot delete this document alone: {heir} has the same content and is "
                "stored through it, and its file is not at hand. Delete both, or re-ingest "
                "the folder that holds them."
            )
        document = self.load(root / heir, root)
        self.write_chunks(self.chunk(document, corpus), corpus, aliases=promote.aliases)

    def _set_aliases(self, corpus: str, holder: str, aliases: Sequence[str]) -> None:
        self._store.set_aliases(
            tenant=self.tenant, corpus=corpus, source=holder, aliases=list(aliases)
        )
