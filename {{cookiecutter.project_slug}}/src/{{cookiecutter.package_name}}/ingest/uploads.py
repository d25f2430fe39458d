"""The folder uploaded files are kept in: names made safe, writes atomic and durable.

Files are written here before an upload is acknowledged, so an accepted upload survives a
crash; the next start ingests whatever the folder holds (ingestion is idempotent).

Besides the files, dot-named folders (never ingested) hold the inbox's own state:
- `.staging-<id>/`: one upload being written; its files join the inbox together once all
  are written and audited (`.accepted` marks that point, so a crash rolls back or forward,
  never half);
- `.deleting/`: the file of a document being deleted, kept until its chunks are gone;
- `.attempts/`: how many times ingesting a file began, so one that keeps killing the process
  is noticed;
- `.quarantine/`: files that could not be ingested, each beside a `.reason.txt`.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import unicodedata
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import (
    BadRequestError,
    PayloadTooLargeError,
    StorageUnavailableError,
    UnsupportedMediaTypeError,
)
from .load import SUPPORTED_SUFFIXES

_UNSAFE = re.compile(r"[^\w.\- ()+,]")
# File systems allow 255 bytes per name, not characters; the rest leaves room for the
# `.reason.txt` written beside a quarantined file.
_MAX_NAME_BYTES = 200
_ACCEPTED = ".accepted"
_STAGING = ".staging-"


@contextmanager
def storage_errors(doing: str, folder: Path) -> Iterator[None]:
    """A disk that is full or read-only is a 503 that says so, not a 500 and a traceback."""
    try:
        yield
    except OSError as exc:
        raise StorageUnavailableError(
            f"Could not {doing}: {exc.strerror or exc} in {folder}. Nothing was changed; free "
            "disk space or make the data folder (RAG_DATA_DIR) writable, then retry."
        ) from exc


def safe_filename(name: str) -> str:
    """The file's own name, without any folder part, in characters that are safe on every
    file system; refuses what cannot be made safe."""
    name = unicodedata.normalize("NFC", name or "")
    base = re.split(r"[\\/]", name)[-1].strip()  # `../../x.md`, `C:\\x.md` -> `x.md`
    base = _UNSAFE.sub("_", base)
    if not base or base.startswith(".") or set(base) <= {".", "_", " "}:
        raise BadRequestError(
            f"File name {name!r} has no usable name once folders and unsafe characters are "
            "removed; rename the file (e.g. report.pdf) and upload it again."
        )
    if len(base.encode("utf-8")) > _MAX_NAME_BYTES:
        raise BadRequestError(
            f"File name {base[:40]!r}... is {len(base.encode('utf-8'))} bytes in UTF-8, over "
            f"the {_MAX_NAME_BYTES}-byte limit; rename the file to something shorter."
        )
    suffix = Path(base).suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        supported = ", ".join(sorted(SUPPORTED_SUFFIXES))
        raise UnsupportedMediaTypeError(
            f"{base}: file type {suffix or '(none)'!r} is not supported; supported: {supported}."
        )
    return base


class UploadInbox:
    def __init__(self, folder: Path, max_bytes: int) -> None:
        self.folder = folder
        self.max_bytes = max_bytes

    def files(self) -> list[Path]:
        if not self.folder.is_dir():
            return []
        return sorted(p for p in self.folder.iterdir() if p.is_file() and p.name[0] != ".")

    def save(self, name: str, blocks: Iterable[bytes]) -> Path:
        """Write an upload under its safe name (replacing an older upload of that name)
        atomically: a reader never sees half a file, a crash leaves no partial one."""
        self.folder.mkdir(parents=True, exist_ok=True)
        target = self.folder / name
        handle, temporary = tempfile.mkstemp(dir=self.folder, prefix=".upload-")
        try:
            size = 0
            with os.fdopen(handle, "wb") as out:
                for block in blocks:
                    size += len(block)
                    if size > self.max_bytes:
                        raise PayloadTooLargeError(
                            f"{name} is over the {self.max_bytes:,}-byte limit per file "
                            "(RAG_MAX_FILE_BYTES); split it or raise the limit."
                        )
                    out.write(block)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return target

    def remove(self, name: str) -> None:
        (self.folder / name).unlink(missing_ok=True)

    # One upload, all of its files or none.
    def staging(self, upload_id: str) -> UploadInbox:
        """A private folder for one upload's files, until `accept` moves them in."""
        return UploadInbox(self.folder / f"{_STAGING}{upload_id}", self.max_bytes)

    def accept(self, staged: UploadInbox) -> list[Path]:
        """Mark a staged upload accepted, then move its files into the inbox."""
        (staged.folder / _ACCEPTED).touch()
        _fsync_dir(staged.folder)
        return self._promote(staged)

    def discard(self, staged: UploadInbox) -> None:
        shutil.rmtree(staged.folder, ignore_errors=True)

    def recover(self) -> None:
        """After a crash: finish the uploads that were accepted, drop the others."""
        for folder in self.folder.glob(f"{_STAGING}*") if self.folder.is_dir() else []:
            staged = UploadInbox(folder, self.max_bytes)
            if (folder / _ACCEPTED).exists():
                self._promote(staged)
            else:
                self.discard(staged)

    def _promote(self, staged: UploadInbox) -> list[Path]:
        moved = []
        for path in staged.files():
            target = self.folder / path.name
            os.replace(path, target)
            moved.append(target)
        _fsync_dir(self.folder)
        self.discard(staged)
        return moved

    # A document's file while its chunks are deleted.
    def set_aside(self, name: str) -> Path | None:
        source = self.folder / name
        if not source.is_file():
            return None
        aside = self.folder / ".deleting" / name
        aside.parent.mkdir(exist_ok=True)
        os.replace(source, aside)
        return aside

    def put_back(self, aside: Path) -> None:
        os.replace(aside, self.folder / aside.name)

    def set_aside_files(self) -> list[Path]:
        folder = self.folder / ".deleting"
        return sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []

    # Files that keep failing.
    def count_attempt(self, name: str) -> int:
        """One more start of ingesting `name`; returns how many there have been."""
        counter = self.folder / ".attempts" / name
        counter.parent.mkdir(exist_ok=True)
        try:
            attempts = int(counter.read_text("utf-8")) + 1
        except (OSError, ValueError):
            attempts = 1
        counter.write_text(str(attempts), "utf-8")
        return attempts

    def attempts(self, name: str) -> int:
        try:
            return int((self.folder / ".attempts" / name).read_text("utf-8"))
        except (OSError, ValueError):
            return 0

    def forget_attempts(self, name: str) -> None:
        (self.folder / ".attempts" / name).unlink(missing_ok=True)

    def quarantine(self, name: str, reason: str) -> Path | None:
        """Move a file that cannot be ingested out of the inbox, with why beside it."""
        source = self.folder / name
        self.forget_attempts(name)
        if not source.is_file():
            return None
        folder = self.folder / ".quarantine"
        folder.mkdir(exist_ok=True)
        (folder / f"{name}.reason.txt").write_text(reason + "\n", "utf-8")
        os.replace(source, folder / name)
        return folder / name


def _fsync_dir(folder: Path) -> None:
    """Make renames in `folder` durable (the entries, not only the files' bytes)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
