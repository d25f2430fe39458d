"""One parser per file format: bytes or decoded text in, clean text and metadata out.

Every parser has the same shape, `(content, options) -> Parsed`: `content` is the file's raw
bytes for a binary format, its decoded text for a text format (formats.py says which), and
`options` what the settings say about reading (record fields, the size limit). A parser is
put to use by a row in formats.py.

Parsers raise SkippedFileError with a reason a person can act on. Formats whose parts must
never share a chunk (PDF pages, CSV rows, JSONL records) return them as segments, each with
its own metadata (page, row, line), so a citation can say where it came from.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import logging
import re
import time
import unicodedata
import zipfile
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..domain import Segment

# Each parser imports its library when it runs: together they take a second to import, which
# `--help`, `ask` and `serve` (they import this table, never parse a file) should not pay.
if TYPE_CHECKING:
    from bs4 import Tag

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
# Page furniture that is not in <nav>: by ARIA role, or by a class or id themes use for it.
_HTML_FURNITURE_ROLES = frozenset({"navigation", "banner", "contentinfo", "search"})
_HTML_FURNITURE_CLASSES = frozenset(
    {
        "sphinxsidebar",
        "related",
        "headerlink",
        "breadcrumb",
        "breadcrumbs",
        "navbar",
        "sidebar",
        "skip-link",
        "cookie-banner",
    }
)
# Extracted text in which fewer characters than this are letters, digits, spaces or common
# punctuation is damage (a corrupt PDF's content stream), not prose.
_MIN_PLAUSIBLE_SHARE = 0.85
_MAX_RECORD_PROBLEMS_LISTED = 5
# A .docx is a zip and a PDF holds compressed streams: what they expand to may fairly be a
# few times the file limit, a bomb far more. Counted in bytes actually decompressed, read in
# blocks, never taken from the sizes an archive declares (those can lie).
_MAX_EXPANSION = 20
_READ_BLOCK = 64 * 1024
# Word writes deflate or stored members; zipfile decompresses bzip2 and lzma members in
# unbounded steps, so those are refused rather than read.
_ZIP_METHODS = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED})
# pypdf's own per-stream limits, lowered to the file's expansion allowance when that is less.
_PDF_OUTPUT_LIMITS = (
    "zlib_maximum_output_length",
    "lzw_maximum_output_length",
    "run_length_maximum_output_length",
    "jbig2_maximum_output_length",
    "brotli_maximum_output_length",
    "array_based_stream_maximum_output_length",
    "stream_decoding_work_maximum_length",
    "image_maximum_buffer_size",
)


class SkippedFileError(Exception):
    """A file that cannot be ingested; the message is the reason shown in the report."""


@dataclass(frozen=True)
class RecordFields:
    """Which fields of a CSV row or JSONL record are text and which are metadata.

    No text fields: the whole record is the text, one `field: value` line each."""

    text: tuple[str, ...] = ()
    metadata: tuple[str, ...] = ()


@dataclass(frozen=True)
class FileBounds:
    """The work one file may take, so one file cannot hold the single ingestion worker (and
    every other tenant's uploads) for long: a file over a bound is skipped, with the setting
    to raise. Reading is bounded in time; chunking and embedding, linear in the text, by its
    length."""

    max_pages: int = 2000  # RAG_INGEST_MAX_PAGES
    max_chars: int = 2_000_000  # RAG_INGEST_MAX_CHARS
    timeout_s: float = 120.0  # RAG_INGEST_FILE_TIMEOUT_S

    def deadline(self, clock: Callable[[], float] = time.monotonic) -> Deadline:
        return Deadline(self.timeout_s, clock)


class Deadline:
    """The time left to read one file; parsers check it between pages, blocks and records
    (a thread cannot be interrupted, so the check is where the work is)."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self._end = clock() + seconds

    def check(self, doing: str) -> None:
        if self._clock() > self._end:
            raise SkippedFileError(
                f"took over {self.seconds:g} s to read (stopped at {doing}), the time limit "
                "per file (RAG_INGEST_FILE_TIMEOUT_S); split it, or raise the limit"
            )


@dataclass(frozen=True)
class ParseOptions:
    """What a parser may need besides the content; each takes what it uses."""

    max_bytes: int  # RAG_MAX_FILE_BYTES: a compressed format must not expand far beyond it
    record_fields: RecordFields = field(default_factory=RecordFields)
    max_pages: int = FileBounds.max_pages
    deadline: Deadline = field(default_factory=lambda: FileBounds().deadline())


@dataclass(frozen=True)
class Parsed:
    text: str
    title: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    segments: tuple[Segment, ...] = ()
    warnings: tuple[str, ...] = ()


def markdown_title(text: str) -> str | None:
    match = re.search(r"^#\s+(.+?)\s*#*\s*$", text, flags=re.MULTILINE)
    return match.group(1).strip() if match else None


def _json_safe(value: Any) -> Any:
    """Front matter and records may hold dates and nested values; payloads hold JSON."""
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def parse_text(text: str, options: ParseOptions) -> Parsed:
    return Parsed(text=text)


def parse_markdown(text: str, options: ParseOptions) -> Parsed:
    """Markdown; a YAML front matter block becomes metadata (its `title` the title)."""
    import frontmatter
    import yaml

    try:
        post = frontmatter.loads(text)
    except yaml.YAMLError as exc:
        problem = str(exc).splitlines()[0]
        return Parsed(
            text=text,
            title=markdown_title(text),
            warnings=(f"front matter is not valid YAML ({problem}); kept as text",),
        )
    metadata = {str(k): _json_safe(v) for k, v in post.metadata.items()}
    title = metadata.get("title")
    body = post.content
    return Parsed(
        text=body,
        title=str(title) if title else markdown_title(body),
        metadata=metadata,
    )


def _is_furniture(tag: Tag) -> bool:
    """Navigation by its ARIA role or a well-known class or id (Sphinx, Bootstrap, MkDocs
    and CMS themes put menus and sidebars in plain divs)."""
    if str(tag.get("role", "")).lower() in _HTML_FURNITURE_ROLES:
        return True
    classes: Any = tag.get("class") or []
    tokens = {str(c).lower() for c in (classes if isinstance(classes, list) else [classes])}
    tokens.add(str(tag.get("id", "")).lower())
    return bool(tokens & _HTML_FURNITURE_CLASSES)


def parse_html(html: str, options: ParseOptions) -> Parsed:
    """Visible text of an HTML page as Markdown-like text (headings kept, code blocks fenced
    with their line breaks), and its title."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    title_tag = soup.find("title")
    title = title_tag.get_text(" ", strip=True) if title_tag else None
    for tag in soup.find_all(_HTML_BOILERPLATE):
        tag.decompose()
    for tag in soup.find_all(_is_furniture):
        if not tag.decomposed:
            tag.decompose()
    body = soup.find("main") or soup.find("article") or soup.body or soup
    lines: list[str] = []
    for block in body.find_all(_HTML_BLOCKS):
        if block.find_parent(_HTML_BLOCKS):
            continue  # nested blocks are read with their parent
        name = block.name or ""
        if name == "pre":
            code = block.get_text().strip("\n")
            if code.strip():
                lines.append(f"```\n{code}\n```\n")
            continue
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
    return Parsed(text=markdown, title=title or markdown_title(markdown))


def _plausible_share(text: str) -> float:
    """Share of characters that prose is made of: letters, digits, spaces, punctuation."""
    if not text:
        return 0.0
    good = sum(
        1
        for ch in text
        if ch.isspace() or (unicodedata.category(ch)[0] in "LNPS" and ch != "\ufffd")
    )
    return good / len(text)


def _expansion_limit(max_bytes: int) -> int:
    return _MAX_EXPANSION * max_bytes


def _bomb(expanded: int, max_bytes: int) -> SkippedFileError:
    return SkippedFileError(
        f"expands to over {expanded:,} bytes, more than {_MAX_EXPANSION} times the "
        f"{max_bytes:,}-byte limit (RAG_MAX_FILE_BYTES): a zip bomb, or a document to split"
    )


def read_zip_bounded(raw: bytes, max_bytes: int) -> dict[str, bytes]:
    """Every member of a zip archive, decompressed in blocks and counted as it is read: the
    archive is refused as soon as the bytes actually produced pass the expansion limit,
    whatever sizes its directory declares."""
    limit = _expansion_limit(max_bytes)
    parts: dict[str, bytes] = {}
    total = 0
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            if info.compress_type not in _ZIP_METHODS:
                raise SkippedFileError(
                    f"uses zip compression method {info.compress_type} for {info.filename!r}, "
                    "which Word does not write; open and save it again in Word"
                )
            blocks: list[bytes] = []
            with archive.open(info) as member:
                while block := member.read(_READ_BLOCK):
                    total += len(block)
                    if total > limit:
                        raise _bomb(limit, max_bytes)
                    blocks.append(block)
            parts[info.filename] = b"".join(blocks)
    return parts


def _honest_zip(parts: dict[str, bytes]) -> bytes:
    """The members rewritten uncompressed: what python-docx then reads is exactly what was
    counted, so its own unbounded reads cannot expand anything."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, data in parts.items():
            archive.writestr(name, data)
    return buffer.getvalue()


# A PDF line that starts a list item: keep the break before it.
_LIST_ITEM = re.compile(r"^\s*(?:[-*\u2022\u25aa\u25e6\u2013]\s|\(?\d{1,3}[.)]\s|\(?[a-z][.)]\s)")
_ENDS_CLAUSE = re.compile(r"[.!?:;][\"')\]\u201d\u2019]*$")
# A line at least this share of the page's longest line is wrapped text (it ran to the margin).
_FULL_LINE = 0.6


def reflow_pdf_lines(text: str) -> str:
    """Join the lines a PDF page wrapped, so a sentence is one line again: a line that ran to
    the margin without ending its clause continues on the next one, and a line ending in
    `letter-` before a lowercase word is one hyphenated word. Kept as breaks: blank lines,
    list items, and short lines (headings, table rows, the end of a paragraph)."""
    lines = [line.rstrip() for line in text.split("\n")]
    longest = max((len(line) for line in lines), default=0)
    out: list[str] = []
    last = ""  # the previous physical line (out[-1] may hold several joined ones)
    for line in lines:
        previous = out[-1] if out else ""
        stripped = line.strip()
        continues = (
            last.strip()
            and stripped
            and not _LIST_ITEM.match(line)
            and not _ENDS_CLAUSE.search(last)
            and (len(last) >= _FULL_LINE * longest or stripped[0].islower())
        )
        last = line
        if not continues:
            out.append(line)
        elif re.search(r"[^\W\d_]-$", previous) and stripped[0].islower():
            out[-1] = previous[:-1] + stripped
        else:
            out[-1] = f"{previous} {stripped}"
    return "\n".join(out)


def parse_pdf(raw: bytes, options: ParseOptions) -> Parsed:
    """Text per page (page number in each segment's metadata), wrapped lines joined."""
    import pypdf
    from pypdf.errors import LimitReachedError, PyPdfError

    # pypdf logs every repair it attempts; the outcome is what the report needs.
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    defaults = pypdf.Configuration()
    limit = _expansion_limit(options.max_bytes)
    limits = {name: min(getattr(defaults, name), limit) for name in _PDF_OUTPUT_LIMITS}
    try:
        with pypdf.apply_configuration(**limits):
            reader = pypdf.PdfReader(io.BytesIO(raw))
            if reader.is_encrypted:
                raise SkippedFileError("is an encrypted PDF; save an unencrypted copy to ingest it")
            count = len(reader.pages)
            if count > options.max_pages:
                raise SkippedFileError(
                    f"has {count:,} pages, over the {options.max_pages:,}-page limit per file "
                    "(RAG_INGEST_MAX_PAGES); split it, or raise the limit"
                )
            pages = []
            for number, page in enumerate(reader.pages, start=1):
                options.deadline.check(f"page {number:,} of {count:,}")
                pages.append(reflow_pdf_lines(page.extract_text() or ""))
            info = reader.metadata
            title = info.title if info and info.title else None
    except LimitReachedError as exc:
        raise SkippedFileError(
            f"has a compressed stream or structure over the limits for a "
            f"{options.max_bytes:,}-byte file ({exc}); a PDF bomb, or a document to split"
        ) from exc
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise SkippedFileError(
            f"is not a readable PDF ({type(exc).__name__}: {exc}); the file is truncated or "
            "corrupt: export it again"
        ) from exc
    segments = tuple(
        Segment(text=text.strip(), metadata={"page": number})
        for number, text in enumerate(pages, start=1)
        if text.strip()
    )
    if not segments:
        raise SkippedFileError(
            f"has no extractable text in its {len(pages)} page(s) (a scan or a damaged PDF); "
            "run OCR on it or export it again with text"
        )
    joined = "\n\n".join(s.text for s in segments)
    share = _plausible_share(joined)
    if share < _MIN_PLAUSIBLE_SHARE:
        raise SkippedFileError(
            f"yields damaged text: only {share:.0%} of the extracted characters are letters, "
            "digits or punctuation (a corrupt PDF); export it again"
        )
    return Parsed(text=joined, title=title, segments=segments, metadata={"pages": len(pages)})


def parse_docx(raw: bytes, options: ParseOptions) -> Parsed:
    """Paragraphs (headings as Markdown headings) and tables (rows as `a | b`) in order."""
    import docx
    import docx.table

    try:
        parts = read_zip_bounded(raw, options.max_bytes)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as exc:
        # Not a zip, a member that fails its CRC (a directory that lies), encryption, ...
        raise SkippedFileError(
            f"is not a valid .docx ({exc}); open and save it again in Word"
        ) from exc
    try:
        document = docx.Document(io.BytesIO(_honest_zip(parts)))
    # Any exception: python-docx fails on hostile zips in many ways (e.g. AttributeError on a
    # bare [Content_Types].xml); the file is skipped with the reason, the job goes on.
    except Exception as exc:
        raise SkippedFileError(
            f"is not a valid .docx ({exc}); open and save it again in Word"
        ) from exc
    lines: list[str] = []
    for number, block in enumerate(document.iter_inner_content(), start=1):
        options.deadline.check(f"paragraph or table {number:,}")
        if isinstance(block, docx.table.Table):
            for row in block.rows:
                cells = [cell.text.strip() for cell in row.cells]
                lines.append(" | ".join(cell for cell in cells if cell))
            lines.append("")
            continue
        text = block.text.strip()
        if not text:
            continue
        style = block.style.name if block.style is not None else ""
        level = re.fullmatch(r"Heading (\d)", style or "")
        if level:
            lines.append(f"\n{'#' * int(level.group(1))} {text}\n")
        elif style == "Title":
            lines.append(f"# {text}\n")
        elif style and style.startswith("List"):
            lines.append(f"- {text}")
        else:
            lines.append(f"{text}\n")
    markdown = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    title = document.core_properties.title or markdown_title(markdown)
    return Parsed(text=markdown, title=title or None)


def _record_segment(
    record: Mapping[str, Any], fields: RecordFields, position: dict[str, int]
) -> Segment:
    """One CSV row or JSONL record; raises ValueError naming what is missing."""
    if fields.text:
        missing = [name for name in fields.text if name not in record]
        if len(missing) == len(fields.text):
            raise ValueError(
                f"has none of the text fields {list(fields.text)} "
                f"(it has {sorted(record)}); set RAG_RECORD_TEXT_FIELDS"
            )
        parts = [str(record[name]) for name in fields.text if record.get(name) not in (None, "")]
        text = "\n".join(parts)
    else:
        text = "\n".join(
            f"{key}: {value if isinstance(value, str) else json.dumps(_json_safe(value))}"
            for key, value in record.items()
            if value not in (None, "")
        )
    if not text.strip():
        raise ValueError("has no text")
    metadata: dict[str, Any] = dict(position)
    for name in fields.metadata:
        if name in record:
            metadata[name] = _json_safe(record[name])
    return Segment(text=text.strip(), metadata=metadata)


def _records_parsed(
    items: Iterable[tuple[dict[str, int], Mapping[str, Any] | str]],
    options: ParseOptions,
    unit: str,
) -> Parsed:
    """Segments from (position, record or problem) pairs; bad records become warnings."""
    fields = options.record_fields
    segments: list[Segment] = []
    problems: list[str] = []
    for position, item in items:
        where = f"{unit} {next(iter(position.values()))}"
        options.deadline.check(where)
        if isinstance(item, str):
            problems.append(f"{where} {item}")
            continue
        try:
            segments.append(_record_segment(item, fields, position))
        except ValueError as exc:
            problems.append(f"{where} {exc}")
    if not segments:
        detail = "; ".join(problems[:_MAX_RECORD_PROBLEMS_LISTED])
        raise SkippedFileError(f"has no usable {unit}s" + (f": {detail}" if detail else ""))
    warnings = [f"skipped {problem}" for problem in problems[:_MAX_RECORD_PROBLEMS_LISTED]]
    if len(problems) > _MAX_RECORD_PROBLEMS_LISTED:
        warnings.append(f"... and {len(problems) - _MAX_RECORD_PROBLEMS_LISTED} more bad {unit}s")
    return Parsed(
        text="\n\n".join(s.text for s in segments),
        segments=tuple(segments),
        metadata={f"{unit}s": len(segments)},
        warnings=tuple(warnings),
    )


def parse_jsonl(text: str, options: ParseOptions) -> Parsed:
    """One segment per JSON object line; a malformed line is reported with its number and
    the good lines still land."""

    def records() -> Iterable[tuple[dict[str, int], Mapping[str, Any] | str]]:
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                yield {"line": number}, f"is not valid JSON ({exc.msg} at column {exc.colno})"
                continue
            if not isinstance(value, dict):
                yield {"line": number}, f"is a JSON {type(value).__name__}, not an object"
                continue
            yield {"line": number}, value

    return _records_parsed(records(), options, "line")


def parse_csv(text: str, options: ParseOptions) -> Parsed:
    """One segment per row; the header row names the fields (delimiter sniffed)."""
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(
            text[:8192], delimiters=",;\t|"
        )
    except csv.Error:
        dialect = csv.excel
    reader = csv.DictReader(io.StringIO(text, newline=""), dialect=dialect)
    if not reader.fieldnames:
        raise SkippedFileError("has no header row; the first row must name the columns")

    def rows() -> Iterable[tuple[dict[str, int], Mapping[str, Any] | str]]:
        try:
            for number, row in enumerate(reader, start=1):
                extra = row.pop(None, None)
                if extra:
                    yield {"row": number}, f"has {len(extra)} more cells than the header"
                    continue
                yield {"row": number}, {k: v for k, v in row.items() if k is not None}
        except csv.Error as exc:
            yield {"row": reader.line_num}, f"cannot be parsed ({exc})"

    return _records_parsed(rows(), options, "row")
