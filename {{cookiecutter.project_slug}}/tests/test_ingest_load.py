from __future__ import annotations

import codecs
from pathlib import Path

import pytest

from {{ cookiecutter.package_name }}.domain import chunk_id
from {{ cookiecutter.package_name }}.ingest.chunk import Chunker
from {{ cookiecutter.package_name }}.ingest.load import (
    SkippedFileError,
    discover,
    load_document,
)

LIMIT = 1_000_000


def test_markdown_title_comes_from_its_first_heading(corpus: Path) -> None:
    document = load_document(corpus / "policies" / "passwords.md", corpus, LIMIT)
    assert document.title == "Password policy"
    assert document.source == "policies/passwords.md"
    assert document.format == "markdown"


def test_html_keeps_visible_text_and_title_and_drops_page_furniture(corpus: Path) -> None:
    document = load_document(corpus / "holidays.html", corpus, LIMIT)
    assert document.title == "Public holidays"
    assert "King's Day, 27 April" in document.text
    assert "# Public holidays" in document.text  # headings survive as Markdown
    for furniture in ("trackVisitor", "color:red", "Intranet", "Copyright"):
        assert furniture not in document.text


def test_text_file_title_comes_from_its_name(corpus: Path) -> None:
    assert load_document(corpus / "coffee.txt", corpus, LIMIT).title == "Coffee"


def test_utf8_with_bom_is_read_without_the_bom(tmp_path: Path) -> None:
    (tmp_path / "bom.txt").write_bytes("\ufeffCafé opens at eight.".encode())
    assert load_document(tmp_path / "bom.txt", tmp_path, LIMIT).text == "Café opens at eight."


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("empty.md", b"", "no text"),
        ("blank.txt", b"  \n\t\n", "no text"),
        ("binary.txt", b"PK\x03\x04\x00\x00binary", "NUL bytes"),
        (
            "noise.txt",
            bytes([0x81, 0x8D, 0x8F, 0x90, 0x9D, 0xFF, 0xFE, 0x80, 0x99] * 5),
            "undecodable bytes",
        ),
        ("bad-bom.txt", b"\xff\xfe" + b"\x00\xd8", "utf-16 byte-order mark but is not valid"),
        ("slides.pptx", b"whatever", "unsupported file type '.pptx'"),
    ],
)
def test_unreadable_files_are_skipped_with_a_reason(
    tmp_path: Path, name: str, content: bytes, reason: str
) -> None:
    (tmp_path / name).write_bytes(content)
    with pytest.raises(SkippedFileError, match=reason):
        load_document(tmp_path / name, tmp_path, LIMIT)


def test_file_over_the_size_limit_is_skipped(tmp_path: Path) -> None:
    (tmp_path / "big.txt").write_text("word " * 100, encoding="utf-8")
    with pytest.raises(SkippedFileError, match="over the 100-byte limit"):
        load_document(tmp_path / "big.txt", tmp_path, 100)


def test_symlink_out_of_the_ingested_folder_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("Secrets outside the corpus.", encoding="utf-8")
    root = tmp_path / "root"
    root.mkdir()
    (root / "link.txt").symlink_to(outside)
    with pytest.raises(SkippedFileError, match="outside the ingested folder"):
        load_document(root / "link.txt", root, LIMIT)


def test_hidden_files_and_folders_are_not_documents(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "config").write_text("x", encoding="utf-8")
    (tmp_path / ".DS_Store").write_bytes(b"\x00")
    (tmp_path / "a.md").write_text("# A", encoding="utf-8")
    assert [p.name for p in discover(tmp_path)] == ["a.md"]


def test_chunks_carry_section_and_deterministic_ids(corpus: Path) -> None:
    document = load_document(corpus / "policies" / "passwords.md", corpus, LIMIT)
    chunker = Chunker(chunk_size=200, chunk_overlap=20)
    first = chunker.chunk(document, tenant="default", corpus="kb")
    again = chunker.chunk(document, tenant="default", corpus="kb")
    assert [c.id for c in first] == [c.id for c in again]
    assert [c.section for c in first] == ["Length", "Rotation"]
    assert first[0].id == chunk_id(
        tenant="default",
        corpus="kb",
        source="policies/passwords.md",
        index=0,
        content_hash=first[0].content_hash,
    )
    assert "14 characters" in first[0].text
    assert first[0].embedding_text().startswith("Password policy > Length\n")
    # The same document in another corpus gets other ids: corpora never overwrite each other.
    assert chunker.chunk(document, tenant="default", corpus="other")[0].id != first[0].id


def test_long_sections_are_split_to_the_chunk_size(tmp_path: Path) -> None:
    sentences = " ".join(f"Rule number {i} says the door must stay shut." for i in range(200))
    (tmp_path / "rules.md").write_text(f"# Rules\n\n## Doors\n\n{sentences}\n", encoding="utf-8")
    document = load_document(tmp_path / "rules.md", tmp_path, LIMIT)
    chunks = Chunker(chunk_size=64, chunk_overlap=8).chunk(document, tenant="default", corpus="kb")
    assert len(chunks) > 10
    assert all(len(c.text.split()) < 80 for c in chunks)
    assert [c.index for c in chunks] == list(range(len(chunks)))


@pytest.mark.parametrize(
    ("raw", "text", "encoding"),
    [
        (
            "Prix: 10 € et café, très bien.".encode("cp1252"),
            "Prix: 10 € et café, très bien.",
            "cp1252",
        ),
        ("Zażółć gęślą jaźń w Łodzi.".encode("cp1250"), "Zażółć gęślą jaźń w Łodzi.", "cp1250"),
        ("Überstunden werden bezahlt.".encode("utf-16"), "Überstunden werden bezahlt.", "utf-16"),
        (codecs.BOM_UTF16_BE + "Überstunden.".encode("utf-16-be"), "Überstunden.", "utf-16"),
        ("Café opens at eight.".encode(), "Café opens at eight.", "utf-8"),
    ],
    ids=["cp1252", "cp1250", "utf-16-le-bom", "utf-16-be-bom", "utf-8"],
)
def test_text_in_common_encodings_is_read_correctly(
    tmp_path: Path, raw: bytes, text: str, encoding: str
) -> None:
    (tmp_path / "note.txt").write_bytes(raw)
    document = load_document(tmp_path / "note.txt", tmp_path, LIMIT)
    assert document.text == text
    assert document.metadata["encoding"] == encoding
