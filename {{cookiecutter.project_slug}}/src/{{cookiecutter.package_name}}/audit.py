"""The audit log: one JSON line per query, retrieval, upload and delete, appended and synced
before the response goes out, so what was asked and by whom survives a crash.

Questions are kept as their SHA-256 unless RAG_AUDIT_CONTENT=text; uploads by name, size and
SHA-256 of the bytes (never the content).

RAG_AUDIT_SINK says where the lines go: the file (default; per process, so per replica), or
stdout (where a cluster's log collector reads; each line carries `"log": "audit"` to tell it
from other output, and is flushed before the response goes out).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from .domain import Answer, Hit
from .errors import ConfigurationError
from .guard import flag_suspicious, redact
from .settings import AuditContent, AuditSink


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


class AuditLog:
    def __init__(
        self,
        path: Path,
        content: AuditContent = "hash",
        redact_pii: bool = False,
        sink: AuditSink = "file",
        stream: IO[str] | None = None,
    ) -> None:
        self.path = path
        self.content = content
        self.redact_pii = redact_pii
        self.sink = sink
        self._stream = stream  # stdout unless given (tests); looked up late, as pytest swaps it
        self._lock = threading.Lock()

    def _text(self, text: str) -> dict[str, str]:
        if self.content == "text":
            return {"text": redact(text) if self.redact_pii else text}
        return {"sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()}

    def write(self, event: str, key_id: str, tenant: str, trace_id: str, **fields: Any) -> None:
        record = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "event": event,
            "key_id": key_id,
            "tenant": tenant,
            "trace_id": trace_id,
            **fields,
        }
        if self.sink == "stdout":
            self._print({"log": "audit", **record})
            return
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # O_APPEND: each line lands whole at the end, even with other writers.
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                # A crash mid-write leaves a torn last line: start this record on a fresh one,
                # so only the torn record is lost, never the next.
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    line = "\n" + line
                os.write(fd, line.encode("utf-8"))
                os.fsync(fd)
            finally:
                os.close(fd)

    def _print(self, record: dict[str, Any]) -> None:
        # One write of one whole line, then a flush: lines of concurrent requests never mix.
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
        stream = self._stream or sys.stdout
        with self._lock:
            stream.write(line)
            stream.flush()

    def records(self) -> Iterator[dict[str, Any]]:
        """Every whole record, oldest first; a torn line (a crash mid-write) is skipped."""
        if self.sink == "stdout":
            raise ConfigurationError(
                "The audit log goes to stdout (RAG_AUDIT_SINK=stdout): read it where your log "
                "collector keeps it; set RAG_AUDIT_SINK=file to keep it in a file here."
            )
        if not self.path.exists():
            return
        with self.path.open("rb") as handle:
            for raw in handle:
                try:
                    record = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(record, dict):
                    yield record

    def query(
        self,
        key_id: str,
        tenant: str,
        trace_id: str,
        question: str,
        hits: Sequence[Hit],
        answer: Answer | None = None,
        tool: str | None = None,
    ) -> None:
        """A question (or, with no answer, a retrieval): what was asked, what came back,
        and which retrieved chunks read like instructions to a model (also on the span)."""
        fields: dict[str, Any] = {
            "question": self._text(question),
            "sources": [{"chunk_id": h.chunk_id, "source": h.source} for h in hits],
        }
        suspicious = flag_suspicious(hits)
        if suspicious:
            fields["suspicious"] = suspicious
        if answer is not None:
            fields["grounded"] = not answer.refused and bool(answer.citations)
            fields["refused"] = answer.refused
            fields["cited"] = [c.chunk_id for c in answer.citations]
        if tool is not None:  # asked through this MCP tool
            fields["tool"] = tool
        event = "query" if answer is not None else "retrieve"
        self.write(event, key_id, tenant, trace_id, **fields)

    def upload(
        self,
        key_id: str,
        tenant: str,
        trace_id: str,
        job_id: str,
        files: Sequence[Path],
        tool: str | None = None,
    ) -> None:
        described = [
            {"name": p.name, "bytes": p.stat().st_size, "sha256": sha256_of(p)} for p in files
        ]
        via = {"tool": tool} if tool else {}
        self.write("upload", key_id, tenant, trace_id, job_id=job_id, files=described, **via)

    def delete(
        self,
        key_id: str,
        tenant: str,
        trace_id: str,
        document_id: str,
        source: str,
        tool: str | None = None,
    ) -> None:
        via = {"tool": tool} if tool else {}
        self.write(
            "delete", key_id, tenant, trace_id, document_id=document_id, source=source, **via
        )
