"""The file formats ingestion reads: one row per format, in one table.

A row names the format (it becomes `Document.format`), the file suffixes it claims, its
parser from parse.py, whether the parser reads the raw bytes (binary) or the decoded text
(text: load.py decodes it first, byte-order mark, UTF-8 or the legacy encoding), and one line
a person reads in `ingest --help`. The loader dispatches on this table, uploads are accepted by
it and the CLI help prints it, so adding a format is a parser in parse.py and a row here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from .parse import (
    Parsed,
    ParseOptions,
    parse_csv,
    parse_docx,
    parse_html,
    parse_jsonl,
    parse_markdown,
    parse_pdf,
    parse_text,
)


@dataclass(frozen=True)
class TextFormat:
    """A format read as text: its parser gets the decoded, newline-normalised text."""

    name: str
    suffixes: tuple[str, ...]
    parse: Callable[[str, ParseOptions], Parsed]
    description: str
    binary: ClassVar[bool] = False


@dataclass(frozen=True)
class BinaryFormat:
    """A format read as bytes: its parser gets the file's raw content."""

    name: str
    suffixes: tuple[str, ...]
    parse: Callable[[bytes, ParseOptions], Parsed]
    description: str
    binary: ClassVar[bool] = True


Format = TextFormat | BinaryFormat

FORMATS: tuple[Format, ...] = (
    TextFormat(
        "markdown", (".md", ".markdown"), parse_markdown, "Markdown; YAML front matter is metadata"
    ),
    TextFormat("text", (".txt",), parse_text, "plain text"),
    TextFormat(
        "html", (".html", ".htm"), parse_html, "HTML; visible text, navigation and scripts dropped"
    ),
    BinaryFormat("pdf", (".pdf",), parse_pdf, "PDF with a text layer; each page cited by number"),
    BinaryFormat("docx", (".docx",), parse_docx, "Word; paragraphs, headings and tables"),
    TextFormat("csv", (".csv",), parse_csv, "CSV with a header row; each row a record"),
    TextFormat("jsonl", (".jsonl",), parse_jsonl, "JSON Lines; each object a record"),
)

BY_SUFFIX: dict[str, Format] = {suffix: f for f in FORMATS for suffix in f.suffixes}


def format_for(suffix: str) -> Format | None:
    """The format that reads files ending in `suffix` (any case), if one does."""
    return BY_SUFFIX.get(suffix.lower())


def supported() -> str:
    """The supported suffixes, for messages: `.csv, .docx, ...`."""
    return ", ".join(sorted(BY_SUFFIX))


def formats_help() -> str:
    """The table as `ingest --help` prints it, one format a line."""
    rows = [(" ".join(f.suffixes), f.description) for f in FORMATS]
    width = max(len(suffixes) for suffixes, _ in rows)
    lines = [f"  {suffixes:<{width}}  {description}" for suffixes, description in rows]
    return "supported formats:\n" + "\n".join(lines)
