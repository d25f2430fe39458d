"""The folder uploaded files are kept in: names made safe, writes atomic and durable.

Files are written here before an upload is acknowledged, so an accepted upload survives a
crash; the next start ingests whatever the folder holds (ingestion is idempotent).
"""

from __future__ import annotations

import os
import re
import tempfile
import unicodedata
from collections.abc import Iterable
from pathlib import Path

from ..errors import BadRequestError, PayloadTooLargeError, UnsupportedMediaTypeError
from .load import SUPPORTED_SUFFIXES

_UNSAFE = re.compile(r"[^\w.\- ()+,]")
_MAX_NAME = 200


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
    if len(base) > _MAX_NAME:
        raise BadRequestError(f"File name {name[:40]!r}... is over {_MAX_NAME} characters.")
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
