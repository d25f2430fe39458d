"""Builders for real files of every supported format, and the messy ones clients have."""

from __future__ import annotations

import io
import re
import zipfile
import zlib
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


def lying_zip_docx_bytes(text: str, expanded: int) -> bytes:
    """A real .docx holding `text`, whose `word/document.xml` is followed by whitespace (legal
    after the root element) up to `expanded` bytes, while the zip directory declares only the
    real XML's size and CRC: a directory that lies, and survives a CRC check."""
    buffer = io.BytesIO()
    document = docx.Document()
    document.add_paragraph(text)
    document.save(buffer)
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as original:
        members = {info.filename: original.read(info) for info in original.infolist()}
    name = "word/document.xml"
    xml = members[name]
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for member, data in members.items():
            padded = data + b" " * (expanded - len(data)) if member == name else data
            archive.writestr(member, padded)
    data = bytearray(out.getvalue())
    crc = zlib.crc32(xml).to_bytes(4, "little")
    size = len(xml).to_bytes(4, "little")
    encoded = name.encode()
    # Local file header: CRC at 14, uncompressed size at 22; central directory: 16 and 24.
    local = data.index(b"PK\x03\x04")
    while data[local + 30 : local + 30 + len(encoded)] != encoded:
        local = data.index(b"PK\x03\x04", local + 4)
    data[local + 14 : local + 18] = crc
    data[local + 22 : local + 26] = size
    central = data.index(b"PK\x01\x02")
    while data[central + 46 : central + 46 + len(encoded)] != encoded:
        central = data.index(b"PK\x01\x02", central + 4)
    data[central + 16 : central + 20] = crc
    data[central + 24 : central + 28] = size
    return bytes(data)


def flate_bomb_pdf_bytes(expanded: int) -> bytes:
    """A one-page PDF whose content stream is a small deflate stream that expands to
    `expanded` bytes (one line of text, then spaces)."""
    content = b"BT /F1 12 Tf 72 720 Td (Bomb page) Tj ET" + b" " * expanded
    stream = zlib.compress(content, 9)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)
