"""Builders for real files of every supported format, and the messy ones clients have."""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import docx
from fpdf import FPDF


def pdf_bytes(pages: list[str], *, title: str = "", compress: bool = True) -> bytes:
    pdf = FPDF()
    pdf.set_compression(compress)
    if title:
        pdf.set_title(title)
    for text in pages:
        pdf.add_page()
        pdf.set_font("helvetica", size=11)
        pdf.multi_cell(0, 8, text)
    return bytes(pdf.output())


def write_pdf(path: Path, pages: list[str], title: str = "") -> Path:
    path.write_bytes(pdf_bytes(pages, title=title))
    return path


def corrupt_pdf_bytes() -> bytes:
    """A PDF every reader opens, whose page content is damaged: its text-showing operators
    draw bytes that map to no printable character."""
    raw = pdf_bytes(["PLACEHOLDERTEXT " * 20], compress=False)

    def garble(match: re.Match[bytes]) -> bytes:
        return b"(" + bytes(1 + (i * 7) % 30 for i in range(len(match.group(1)))) + b") Tj"

    # Control bytes only (1-30), none of them a PDF string delimiter; the xref offsets
    # stay right because every string keeps its length.
    return re.sub(rb"\(([^()]*)\) Tj", garble, raw)


def write_docx(
    path: Path, title: str, sections: dict[str, list[str]], table: list[list[str]]
) -> Path:
    document = docx.Document()
    document.core_properties.title = title
    document.add_heading(title, level=0)
    for heading, paragraphs in sections.items():
        document.add_heading(heading, level=1)
        for paragraph in paragraphs:
            document.add_paragraph(paragraph)
    grid = document.add_table(rows=len(table), cols=len(table[0]))
    for r, row in enumerate(table):
        for c, value in enumerate(row):
            grid.cell(r, c).text = value
    document.save(str(path))
    return path


def zip_bomb_docx_bytes(expanded: int) -> bytes:
    """A valid zip whose members expand to `expanded` bytes of zeros."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", b"\0" * expanded)
    return buffer.getvalue()
