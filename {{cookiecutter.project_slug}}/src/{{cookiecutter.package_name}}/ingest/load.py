"""Find files under a root and read each into a clean `Document` (or say why not)."""

from __future__ import annotations

import codecs
import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import charset_normalizer
from bs4 import BeautifulSoup

from ..domain import Document

SUPPORTED_SUFFIXES = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".txt": "text",
    ".html": "html",
    ".htm": "html",
}
# Page furniture that is never content.
_HTML_BOILERPLATE = (
    "script",
    "style",
    "noscript",
    "nav",
    "header",
    "footer",
    "aside",
    "form",
    "template",
    "svg",
)
_HTML_BLOCKS = (
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "p",
    "li",
    "tr",
    "pre",
    "blockquote",
    "dt",
    "dd",
)


class SkippedFileError(Exception):
    """A file that cannot be ingested; the message is the reason shown in the report."""


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


def _decode(raw: bytes, legacy_encoding: str) -> tuple[str, str]:
    """Text and the encoding it was read in: a byte-order mark, else UTF-8, else the
    legacy 8-bit encoding that decodes it cleanly."""
    for mark, encoding in _BYTE_ORDER_MARKS:
        if raw.startswith(mark):
            try:
                return raw.decode(encoding), encoding
            except UnicodeDecodeError as exc:
                raise SkippedFileError(
                    f"starts with a {encoding} byte-order mark but is not valid {encoding} "
                    f"(offset {exc.start}); convert it to UTF-8"
                ) from exc
    if b"\x00" in raw:
        raise SkippedFileError("contains NUL bytes: binary content behind a text file extension")
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as exc:
        return _decode_legacy(raw, legacy_encoding, exc.start)


def _markdown_title(text: str) -> str | None:
    match = re.search(r"^#\s+(.+?)\s*#*\s*$", text, flags=re.MULTILINE)
    return match.group(1).strip() if match else None


def html_to_markdown(html: str) -> tuple[str, str | None]:
    """Visible text of an HTML page as Markdown-like text (headings kept), and its title."""
    soup = BeautifulSoup(html, "html.parser")
    title_tag = soup.find("title")
    title = title_tag.get_text(" ", strip=True) if title_tag else None
    for tag in soup.find_all(_HTML_BOILERPLATE):
        tag.decompose()
    body = soup.find("main") or soup.find("article") or soup.body or soup
    lines: list[str] = []
    for block in body.find_all(_HTML_BLOCKS):
        if block.find_parent(_HTML_BLOCKS):
            continue  # nested blocks are read with their parent
        name = block.name or ""
        if name == "tr":
            cells = [cell.get_text(" ", strip=True) for cell in block.find_all(["th", "td"])]
            text = " | ".join(cell for cell in cells if cell)
        else:
            text = block.get_text(" ", strip=True)
        if not text:
            continue
        if name.startswith("h") and name[1:].isdigit():
            lines.append(f"\n{'#' * int(name[1:])} {text}\n")
        elif name == "li":
            lines.append(f"- {text}")
        else:
            lines.append(f"{text}\n")
    markdown = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    if title is None:
        title = _markdown_title(markdown)
    return markdown, title


def load_document(
    path: Path, root: Path, max_bytes: int, legacy_encoding: str = "cp1252"
) -> Document:
    """Read one file; raise SkippedFileError with a reason a person can act on."""
    source = path.relative_to(root).as_posix()
    suffix = path.suffix.lower()
    kind = SUPPORTED_SUFFIXES.get(suffix)
    if kind is None:
        supported = ", ".join(sorted(SUPPORTED_SUFFIXES))
        raise SkippedFileError(
            f"unsupported file type {suffix or '(none)'!r}; supported: {supported}"
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
    text, encoding = _decode(raw, legacy_encoding)
    title: str | None
    if kind == "html":
        text, title = html_to_markdown(text)
    elif kind == "markdown":
        title = _markdown_title(text)
    else:
        title = None
    text = text.replace("\r\n", "\n").strip()
    if not text:
        raise SkippedFileError("has no text (empty or whitespace only)")
    return Document(
        source=source,
        text=text,
        title=title or _title_from_name(path),
        content_hash=hashlib.sha256(raw).hexdigest(),
        format=kind,
        metadata={"encoding": encoding},
    )
