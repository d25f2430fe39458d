"""Sync a folder into the store: add new files, replace changed ones, delete removed ones.

Order of writes keeps accepted data safe: a changed document's new chunks are written before
its old ones are deleted, so a crash in between leaves the old or both versions, never none.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from opentelemetry.trace import Tracer

from ..domain import Chunk, Point
from ..embeddings import DenseEncoder, SparseEncoder
from ..errors import BadRequestError
from ..store import IndexedDocument, QdrantStore
from ..telemetry import RagMetrics
from .chunk import Chunker
from .load import SkippedFileError, discover, load_document

Status = Literal["added", "updated", "unchanged", "deleted", "skipped"]
STATUSES: tuple[Status, ...] = ("added", "updated", "unchanged", "deleted", "skipped")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FileOutcome:
    source: str
    status: Status
    chunks: int = 0
    reason: str = ""


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
    def changed(self) -> bool:
        counts = self.counts
        return any(counts[s] for s in ("added", "updated", "deleted"))

    def summary(self) -> str:
        counts = ", ".join(f"{n} {status}" for status, n in self.counts.items())
        if self.dry_run:
            return f"Dry run of {self.root} as corpus {self.corpus!r}, nothing written: {counts}"
        verdict = "" if self.changed else " (nothing changed)"
        return f"Ingested {self.root} as corpus {self.corpus!r}: {counts}{verdict}"

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


class Ingestor:
    def __init__(
        self,
        store: QdrantStore,
        dense: DenseEncoder,
        sparse: SparseEncoder,
        chunker: Chunker,
        tracer: Tracer,
        max_file_bytes: int,
        batch_size: int,
        *,
        metrics: RagMetrics | None = None,
        legacy_encoding: str = "cp1252",
    ) -> None:
        self._store = store
        self._dense = dense
        self._sparse = sparse
        self.chunker = chunker
        self._tracer = tracer
        self._max_file_bytes = max_file_bytes
        self._batch_size = batch_size
        self._metrics = metrics or RagMetrics.noop()
        self._legacy_encoding = legacy_encoding

    def write_chunks(self, chunks: Iterable[Chunk], corpus: str) -> None:
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
                        Point(chunk=c, dense=d, sparse=s, corpus=corpus)
                        for c, d, s in zip(batch, dense, sparse, strict=True)
                    ]
                )
            self._metrics.ingest_chunks.add(len(batch))

    def ingest(self, root: Path, corpus: str | None = None, dry_run: bool = False) -> IngestReport:
        """Sync `root` into the store. With `dry_run`, report what would change and write
        nothing (files are still read and chunked, so unreadable ones are reported)."""
        if not root.exists():
            raise BadRequestError(f"Folder {root} does not exist; give the folder to ingest.")
        if not root.is_dir():
            raise BadRequestError(f"{root} is a file; give the folder that contains it.")
        corpus = corpus or root.resolve().name
        report = IngestReport(corpus=corpus, root=str(root), dry_run=dry_run)
        with self._tracer.start_as_current_span("ingest") as run_span:
            run_span.set_attribute("ingest.corpus", corpus)
            run_span.set_attribute("ingest.root", str(root))
            indexed = self._store.indexed_documents(corpus)
            seen: set[str] = set()
            for path in discover(root):
                source = path.relative_to(root).as_posix()
                seen.add(source)
                self._record(
                    report, self._ingest_file(path, root, corpus, indexed, dry_run=dry_run)
                )
            for source in sorted(set(indexed) - seen):
                with self._tracer.start_as_current_span("ingest.delete") as span:
                    span.set_attribute("ingest.source", source)
                    if not dry_run:
                        self._store.delete_document(corpus, source)
                self._record(report, FileOutcome(source, "deleted", indexed[source].chunks))
            for status, n in report.counts.items():
                run_span.set_attribute(f"ingest.files.{status}", n)
            # Inside the span, so the log line carries the run's trace id.
            log.info("%s", report.summary(), extra={"corpus": corpus, "counts": report.counts})
        return report

    def _record(self, report: IngestReport, outcome: FileOutcome) -> None:
        report.files.append(outcome)
        self._metrics.ingest_files.add(1, {"outcome": outcome.status})

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
                    document = load_document(
                        path, root, self._max_file_bytes, self._legacy_encoding
                    )
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
                return FileOutcome(source, "unchanged", previous.chunks)
            with self._tracer.start_as_current_span("chunk") as chunk_span:
                chunks = self.chunker.chunk(document, corpus)
                chunk_span.set_attribute("ingest.chunks", len(chunks))
            if not chunks:
                span.set_attribute("ingest.outcome", "skipped")
                return FileOutcome(source, "skipped", reason="produced no text chunks")
            encoding = document.metadata.get("encoding", "utf-8")
            notes = [] if encoding == "utf-8" else [f"read as {encoding}"]
            if previous is not None and version in previous.stored:
                notes.append("repaired an interrupted ingest")
            status: Status = "added" if previous is None else "updated"
            span.set_attribute("ingest.outcome", status)
            if dry_run:
                return FileOutcome(source, status, len(chunks), reason="; ".join(notes))
            # Upserts are idempotent (deterministic ids), so a partly written version is
            # simply written again.
            self.write_chunks(chunks, corpus)
            if previous is not None:
                # The new version is complete; only now drop the chunks of every other one.
                self._store.delete_document(corpus, source, keep_doc_hash=version)
            return FileOutcome(source, status, len(chunks), reason="; ".join(notes))
