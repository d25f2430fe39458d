"""Sync a folder into the store: add new files, replace changed ones, delete removed ones.

Order of writes keeps accepted data safe: a changed document's new chunks are written before
its old ones are deleted, so a crash in between leaves the old or both versions, never none.
"""

from __future__ import annotations

import copy
import json
import logging
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal, Protocol

from opentelemetry.trace import Tracer

from ..domain import Chunk, Document, IndexedDocument, Point, by_source, chunk_id
from ..embeddings import DenseEncoder, SparseEncoder
from ..errors import BadRequestError
from ..settings import TENANT_PATTERN
from ..store import VectorStore
from ..telemetry import RagMetrics
from .chunk import Chunker
from .load import RecordFields, SkippedFileError, discover, load_document

Status = Literal["added", "updated", "unchanged", "deleted", "skipped"]
STATUSES: tuple[Status, ...] = ("added", "updated", "unchanged", "deleted", "skipped")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FileOutcome:
    source: str
    status: Status
    chunks: int = 0
    reason: str = ""
    warnings: tuple[str, ...] = ()  # parts dropped from a file that still landed


class ProgressListener(Protocol):
    """Told how many files a run has, then each file's outcome as it happens."""

    def start(self, total: int) -> None: ...

    def advance(self, outcome: FileOutcome) -> None: ...


@dataclass
class IngestReport:
    corpus: str
    root: str
    files: list[FileOutcome] = field(default_factory=list)
    dry_run: bool = False

    @property
    def counts(self) -> dict[str, int]:
        counted = Counter(outcome.status for outcome in self.files)
        return {status: counted.get(status, 0) for status in STATUSES}

    @property
    def warnings(self) -> int:
        return sum(len(outcome.warnings) for outcome in self.files)

    @property
    def changed(self) -> bool:
        counts = self.counts
        return any(counts[s] for s in ("added", "updated", "deleted"))

    def summary(self) -> str:
        counts = ", ".join(f"{n} {status}" for status, n in self.counts.items())
        if self.dry_run:
            return f"Dry run of {self.root} as corpus {self.corpus!r}, nothing written: {counts}"
        verdict = "" if self.changed else " (nothing changed)"
        warned = f"; {self.warnings} warning(s)" if self.warnings else ""
        return f"Ingested {self.root} as corpus {self.corpus!r}: {counts}{warned}{verdict}"

    def to_json(self) -> str:
        return json.dumps(
            {
                "corpus": self.corpus,
                "root": self.root,
                "counts": self.counts,
                "files": [asdict(f) for f in self.files],
            },
            indent=2,
        )


def _batched(items: list[Chunk], size: int) -> Iterator[list[Chunk]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# Document metadata that describes how the file was read, not what it says.
_READ_DETAILS = frozenset({"encoding"})


def chunk_document(
    chunker: Chunker, document: Document, *, tenant: str, corpus: str
) -> list[Chunk]:
    """Chunk each part (a page, a row) on its own, so no chunk crosses a page or a record,
    then number the chunks across the whole document and give each its part's metadata.
    Ids include the tenant: two tenants' identical files must never share a point."""
    pieces = [
        (chunk, {k: v for k, v in part.metadata.items() if k not in _READ_DETAILS})
        for part in document.parts()
        for chunk in chunker.chunk(part, tenant=tenant, corpus=corpus)
    ]
    return [
        replace(
            chunk,
            index=index,
            id=chunk_id(
                tenant=tenant,
                corpus=corpus,
                source=document.source,
                index=index,
                content_hash=chunk.content_hash,
            ),
            doc_chunks=len(pieces),
            metadata=metadata,
        )
        for index, (chunk, metadata) in enumerate(pieces)
    ]


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

    def load(self, path: Path, root: Path) -> Document:
        return load_document(
            path, root, self._max_file_bytes, self._legacy_encoding, self._record_fields
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
            return self._delete(corpus, source, indexed, root=root, dry_run=False)

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
        sync = paths is None
        files = list(discover(root)) if paths is None else paths
        with self._tracer.start_as_current_span("ingest") as run_span:
            run_span.set_attribute("ingest.corpus", corpus)
            run_span.set_attribute("ingest.root", str(root))
            indexed = by_source(self._store.documents(tenant=self.tenant, corpus=corpus))
            seen = {path.relative_to(root).as_posix() for path in files}
            # Duplicates' names first, so a holder that goes hands over to a name that stays.
            gone = sorted(set(indexed) - seen, key=lambda s: (indexed[s].alias_of is None, s))
            gone = gone if sync else []
            if progress is not None:
                progress.start(len(files) + len(gone))
            for path in files:
                outcome = self._ingest_file(path, root, corpus, indexed, dry_run=dry_run)
                self._record(report, outcome, progress)
            for source in gone:
                outcome = self._delete(corpus, source, indexed, root=root, dry_run=dry_run)
                self._record(report, outcome, progress)
            for status, n in report.counts.items():
                run_span.set_attribute(f"ingest.files.{status}", n)
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

    def _delete(
        self,
        corpus: str,
        source: str,
        indexed: dict[str, IndexedDocument],
        *,
        root: Path | None,
        dry_run: bool,
    ) -> FileOutcome:
        """Delete a document, or just forget a duplicate's name. When the name holding a
        duplicated content goes, a remaining duplicate takes over its chunks."""
        document = indexed.pop(source)
        with self._tracer.start_as_current_span("ingest.delete") as span:
            span.set_attribute("ingest.source", source)
            if document.alias_of is not None:
                holder = indexed.get(document.alias_of)
                remaining = [a for a in (holder.aliases if holder else []) if a != source]
                if holder is not None:
                    holder.aliases = remaining
                if not dry_run:
                    self._store.set_aliases(
                        tenant=self.tenant,
                        corpus=corpus,
                        source=document.alias_of,
                        aliases=remaining,
                    )
                return FileOutcome(
                    source, "deleted", reason=f"was a duplicate of {document.alias_of}"
                )
            reason = ""
            heir = next((a for a in document.aliases if a in indexed), None)
            if heir is not None:
                others = [a for a in document.aliases if a != heir and a in indexed]
                reason = f"its duplicate {heir} now holds the content"
                if not dry_run:
                    self._promote(corpus, heir, others, root)
                indexed[heir] = replace(document, source=heir, aliases=others, alias_of=None)
            if not dry_run:
                self._store.delete_document(tenant=self.tenant, corpus=corpus, source=source)
            return FileOutcome(source, "deleted", document.chunks, reason=reason)

    def _promote(self, corpus: str, heir: str, others: list[str], root: Path | None) -> None:
        """Write a duplicate's own chunks (from its file) before the holder's are deleted."""
        if root is None or not (root / heir).is_file():
            raise BadRequestError(
                f"Cannot delete this document alone: {heir} has the same content and is "
                "stored through it, and its file is not at hand. Delete both, or re-ingest "
                "the folder that holds them."
            )
        document = self.load(root / heir, root)
        self.write_chunks(self.chunk(document, corpus), corpus, aliases=others)

    def _ingest_file(
        self,
        path: Path,
        root: Path,
        corpus: str,
        indexed: dict[str, IndexedDocument],
        *,
        dry_run: bool,
    ) -> FileOutcome:
        source = path.relative_to(root).as_posix()
        with self._tracer.start_as_current_span("ingest.file") as span:
            span.set_attribute("ingest.source", source)
            previous = indexed.get(source)
            try:
                with self._tracer.start_as_current_span("parse"):
                    document = self.load(path, root)
            except SkippedFileError as exc:
                reason = str(exc) + (
                    "; the previously ingested version is kept" if previous else ""
                )
                span.set_attribute("ingest.outcome", "skipped")
                span.set_attribute("ingest.reason", reason)
                return FileOutcome(source, "skipped", reason=reason)
            version = self.chunker.version(document)
            if previous is not None and previous.holds_only(version):
                span.set_attribute("ingest.outcome", "unchanged")
                note = f"same content as {previous.alias_of}" if previous.alias_of else ""
                return FileOutcome(source, "unchanged", previous.chunks, note, document.warnings)
            status: Status = "added" if previous is None else "updated"
            holder = self._holder_of(version, indexed, exclude=source)
            if holder is not None and (previous is None or previous.alias_of is not None):
                # A new name (or a duplicate that changed) for content already stored.
                if previous is not None:
                    self._delete(corpus, source, indexed, root=root, dry_run=dry_run)
                span.set_attribute("ingest.outcome", status)
                self._alias(corpus, holder, source, indexed, dry_run=dry_run)
                return FileOutcome(
                    source,
                    status,
                    reason=f"same content as {holder.source}: stored once",
                    warnings=document.warnings,
                )
            with self._tracer.start_as_current_span("chunk") as chunk_span:
                chunks = self.chunk(document, corpus)
                chunk_span.set_attribute("ingest.chunks", len(chunks))
            if not chunks:
                span.set_attribute("ingest.outcome", "skipped")
                return FileOutcome(source, "skipped", reason="produced no text chunks")
            encoding = document.metadata.get("encoding", "utf-8")
            notes = [] if encoding == "utf-8" else [f"read as {encoding}"]
            if previous is not None and version in previous.stored and not previous.alias_of:
                notes.append("repaired an interrupted ingest")
            span.set_attribute("ingest.outcome", status)
            outcome = FileOutcome(source, status, len(chunks), "; ".join(notes), document.warnings)
            if previous is not None and previous.alias_of is not None:
                # A duplicate whose file changed: it stops being an alias, gets its own chunks.
                self._delete(corpus, source, indexed, root=root, dry_run=dry_run)
                previous = None
            indexed[source] = IndexedDocument(
                tenant=self.tenant,
                corpus=corpus,
                source=source,
                chunks=len(chunks),
                stored={version: len(chunks)},
                declared={version: len(chunks)},
            )
            if dry_run:
                return outcome
            # Upserts are idempotent (deterministic ids), so a partly written version is
            # simply written again.
            self.write_chunks(chunks, corpus)
            if previous is not None:
                # The new version is complete; only now drop the chunks of every other one.
                self._store.delete_document(
                    tenant=self.tenant, corpus=corpus, source=source, keep_doc_hash=version
                )
            return outcome

    @staticmethod
    def _holder_of(
        version: str, indexed: dict[str, IndexedDocument], exclude: str
    ) -> IndexedDocument | None:
        """The document already holding exactly this content (same bytes, same chunking)."""
        return next(
            (
                doc
                for doc in indexed.values()
                if doc.source != exclude and doc.alias_of is None and doc.holds_only(version)
            ),
            None,
        )

    def _alias(
        self,
        corpus: str,
        holder: IndexedDocument,
        source: str,
        indexed: dict[str, IndexedDocument],
        *,
        dry_run: bool,
    ) -> None:
        holder.aliases = sorted({*holder.aliases, source})
        indexed[source] = replace(holder, source=source, aliases=[], alias_of=holder.source)
        if not dry_run:
            self._store.set_aliases(
                tenant=self.tenant, corpus=corpus, source=holder.source, aliases=holder.aliases
            )
