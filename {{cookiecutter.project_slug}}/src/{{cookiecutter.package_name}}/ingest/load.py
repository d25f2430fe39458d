"""Find files under a root, check and decode each, and parse it into a `Document` (or say
why not). Which parser reads a file is formats.py's table; the parsers live in parse.py."""

from __future__ import annotations

import codecs
import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import charset_normalizer

from ..domain import Document
from .formats import BY_SUFFIX, BinaryFormat, format_for, supported
from .parse import FileBounds, ParseOptions, RecordFields, SkippedFileError

# Suffix -> format name, for callers that only check a name (uploads).
SUPPORTED_SUFFIXES = {suffix: f.name for suffix, f in BY_SUFFIX.items()}


def discover(root: Path) -> Iterator[Path]:
    """Every non-hidden file under root, in a stable order. Hidden files and folders
    (`.git`, `.DS_Store`, ...) are not documents and are not listed."""
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if path.is_file() or path.is_symlink():
            yield path


def _title_from_name(path: Path) -> str:
    return re.sub(r"[-_]+", " ", path.stem).strip().title()


# UTF-32 first: its little-endian mark begins with UTF-16's.
_BYTE_ORDER_MARKS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# Control bytes (C0 but tab, newline, carriage return, form feed, vertical tab; and DEL): text
# holds a stray few (a NUL from a bad export, an ANSI escape from a log); binary content holds
# many (random-looking bytes about 12%, executables more). Above this share a file is binary.
_CONTROL_BYTES = re.compile(rb"[\x00-\x08\x0e-\x1f\x7f]")
# In decoded text: those, C1 controls, and a terminal escape sequence (colour codes) whole.
_CONTROL_CHARACTERS = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|[\x00-\x08\x0e-\x1f\x7f-\x9f]")
_MAX_CONTROL_SHARE = 0.05
# charset-normalizer's "chaos" (share of implausible characters) above which a legacy decoding
# would only produce garbage chunks.
_MAX_CHAOS = 0.2


def _decode_legacy(raw: bytes, preferred: str, first_bad: int) -> tuple[str, str]:
    """An 8-bit file: the encoding charset-normalizer finds cleanest, `preferred` on a tie
    (short Western text decodes equally well as cp1250 and cp1252, but not equally right)."""
    matches = list(charset_normalizer.from_bytes(raw))
    cleanest = min((m.chaos for m in matches), default=1.0)
    if cleanest > _MAX_CHAOS:
        raise SkippedFileError(
            f"is neither UTF-8 (byte 0x{raw[first_bad]:02x} at offset {first_bad}) nor text "
            "in any single-byte encoding: undecodable bytes; convert it to UTF-8"
        )
    tied = [m for m in matches if m.chaos <= cleanest]
    wanted = codecs.lookup(preferred).name
    choice = next((m for m in tied if codecs.lookup(m.encoding).name == wanted), tied[0])
    return str(choice), choice.encoding


def _without_control_characters(text: str) -> tuple[str, tuple[str, ...]]:
    """The text with stray control characters removed, and a warning saying so."""
    found = [match.start() for match in _CONTROL_CHARACTERS.finditer(text)]
    if not found:
        return text, ()
    first = found[0]
    warning = (
        f"removed {len(found)} control character(s) (NUL and the like; the first, "
        f"U+{ord(text[first]):04X}, at offset {first:,})"
    )
    return _CONTROL_CHARACTERS.sub("", text), (warning,)


def _decode(raw: bytes, legacy_encoding: str) -> tuple[str, str]:
    """Text and the encoding it was read in: a byte-order mark, else UTF-8, else the
    legacy 8-bit encoding that decodes it cleanly. Binary content (a high share of control
    bytes) is refused; a few stray ones are left for load_document to remove."""
    for mark, encoding in _BYTE_ORDER_MARKS:
        if raw.startswith(mark):
            try:
                return raw.decode(encoding), encoding
            except UnicodeDecodeError as exc:
                raise SkippedFileError(
                    f"starts with a {encoding} byte-order mark but is not valid {encoding} "
                    f"(offset {exc.start}); convert it to UTF-8"
                ) from exc
    control = len(_CONTROL_BYTES.findall(raw))
    if control > _MAX_CONTROL_SHARE * len(raw):
        raise SkippedFileError(
            f"is binary: {control / len(raw):.0%} of its bytes are control bytes (NUL bytes "
            f"and the like; text holds at most {_MAX_CONTROL_SHARE:.0%}) behind a text file "
            "extension"
        )
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as exc:
        return _decode_legacy(raw, legacy_encoding, exc.start)


def load_document(
    path: Path,
    root: Path,
    max_bytes: int,
    legacy_encoding: str = "cp1252",
    record_fields: RecordFields | None = None,
    bounds: FileBounds | None = None,
) -> Document:
    """Read one file; raise SkippedFileError with a reason a person can act on."""
    bounds = bounds or FileBounds()
    deadline = bounds.deadline()  # from the first byte read
    source = path.relative_to(root).as_posix()
    suffix = path.suffix.lower()
    file_format = format_for(suffix)
    if file_format is None:
        raise SkippedFileError(
            f"unsupported file type {suffix or '(none)'!r}; supported: {supported()}"
        )
    if path.is_symlink():
        target = path.resolve()
        if not target.is_relative_to(root.resolve()):
            raise SkippedFileError(f"is a symlink to {target}, outside the ingested folder")
    size = path.stat().st_size
    if size > max_bytes:
        raise SkippedFileError(
            f"is {size:,} bytes, over the {max_bytes:,}-byte limit (RAG_MAX_FILE_BYTES)"
        )
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SkippedFileError(f"cannot be read: {exc.strerror or exc}") from exc
    if not raw.strip():
        raise SkippedFileError("has no text (empty or whitespace only)")
    metadata: dict[str, Any] = {}
    decode_warnings: tuple[str, ...] = ()
    options = ParseOptions(
        max_bytes=max_bytes,
        record_fields=record_fields or RecordFields(),
        max_pages=bounds.max_pages,
        deadline=deadline,
    )
    if isinstance(file_format, BinaryFormat):
        parsed = file_format.parse(raw, options)
    else:
        text, encoding = _decode(raw, legacy_encoding)
        text, decode_warnings = _without_control_characters(text)
        metadata["encoding"] = encoding
        parsed = file_format.parse(text.replace("\r\n", "\n").replace("\r", "\n"), options)
    text = parsed.text.strip()
    if not text:
        raise SkippedFileError("has no text (empty or whitespace only)")
    if len(text) > bounds.max_chars:
        # Chunks, and so embedding time, grow with the text: bound it before either starts.
        raise SkippedFileError(
            f"has {len(text):,} characters of text, over the {bounds.max_chars:,}-character "
            "limit per file (RAG_INGEST_MAX_CHARS); split it, or raise the limit"
        )
    sha256 = hashlib.sha256(raw).hexdigest()
    return Document(
        source=source,
        text=text,
        title=parsed.title or _title_from_name(path),
        content_hash=sha256,
        format=file_format.name,
        metadata={**parsed.metadata, **metadata, "sha256": sha256},
        segments=parsed.segments,
        warnings=(*decode_warnings, *parsed.warnings),
    )


__all__ = [
    "SUPPORTED_SUFFIXES",
    "FileBounds",
    "RecordFields",
    "SkippedFileError",
    "discover",
    "load_document",
]
