"""Every supported format is read into clean text with its metadata; messy files get a reason."""

from __future__ import annotations

import io
import json
import tracemalloc
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from {{ cookiecutter.package_name }}.ingest.chunk import Chunker, chunk_document
from {{ cookiecutter.package_name }}.ingest.load import (
    RecordFields,
    SkippedFileError,
    load_document,
)

from .messy_files import (
    corrupt_pdf_bytes,
    flate_bomb_pdf_bytes,
    lying_zip_docx_bytes,
    write_docx,
    write_pdf,
    zip_bomb_docx_bytes,
)

LIMIT = 1_000_000


def test_pdf_text_is_read_per_page_with_page_numbers(tmp_path: Path) -> None:
    write_pdf(
        tmp_path / "arm.pdf",
        ["The gripper opens in 80 ms.", "", "The arm lifts at most 12 kg."],
        title="Arm datasheet",
    )
    document = load_document(tmp_path / "arm.pdf", tmp_path, LIMIT)
    assert document.format == "pdf"
    assert document.title == "Arm datasheet"
    assert [(s.metadata["page"], s.text) for s in document.segments] == [
        (1, "The gripper opens in 80 ms."),
        (3, "The arm lifts at most 12 kg."),
    ]
    assert document.metadata["pages"] == 3


def test_pdf_wrapped_lines_and_hyphenated_breaks_are_joined_before_sentences(
    tmp_path: Path,
) -> None:
    sentence = (
        "Any claim with three or more red flags must be referred to the Special "
        "Investigations Unit (SIU) before payment."
    )
    page = (
        "Fraud referrals\n"
        f"{sentence} Adjusters record each flag in the claim file and tell the team lead "
        "within one busi-\nness day.\n"
        "- Water damage: photos of every room.\n"
        "- Theft: the police report number.\n"
        "Role Settlement authority\n"
        "Adjuster 5,000 EUR"
    )
    write_pdf(tmp_path / "fraud.pdf", [page])
    text = load_document(tmp_path / "fraud.pdf", tmp_path, LIMIT).segments[0].text
    lines = text.splitlines()
    # The page wraps the long paragraph at the margin; the text has it as one line again.
    assert lines[1].startswith(sentence)
    assert lines[1].endswith("within one business day.")
    # Headings, list items and table rows keep their own lines.
    assert lines[0] == "Fraud referrals"
    assert lines[2:] == [
        "- Water damage: photos of every room.",
        "- Theft: the police report number.",
        "Role Settlement authority",
        "Adjuster 5,000 EUR",
    ]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog", "not a readable PDF"),
        (b"this is not a pdf at all", "not a readable PDF"),
    ],
)
def test_broken_pdf_is_skipped_with_a_reason(tmp_path: Path, content: bytes, reason: str) -> None:
    (tmp_path / "broken.pdf").write_bytes(content)
    with pytest.raises(SkippedFileError, match=reason):
        load_document(tmp_path / "broken.pdf", tmp_path, LIMIT)


def test_truncated_pdf_is_skipped(tmp_path: Path) -> None:
    whole = write_pdf(tmp_path / "whole.pdf", ["Page one text. " * 40, "Page two. " * 40])
    (tmp_path / "cut.pdf").write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(SkippedFileError, match="truncated or corrupt"):
        load_document(tmp_path / "cut.pdf", tmp_path, LIMIT)


def test_pdf_that_opens_but_yields_damaged_text_is_skipped(tmp_path: Path) -> None:
    (tmp_path / "damaged.pdf").write_bytes(corrupt_pdf_bytes())
    with pytest.raises(SkippedFileError, match=r"damaged text|no extractable text"):
        load_document(tmp_path / "damaged.pdf", tmp_path, LIMIT)


def test_docx_keeps_headings_paragraphs_and_tables(tmp_path: Path) -> None:
    write_docx(
        tmp_path / "policy.docx",
        "Travel policy",
        {"Flights": ["Book economy for flights under six hours."], "Hotels": ["Up to 150 EUR."]},
        [["City", "Limit"], ["Paris", "180 EUR"]],
    )
    document = load_document(tmp_path / "policy.docx", tmp_path, LIMIT)
    assert document.title == "Travel policy"
    assert "# Flights" in document.text
    assert "Book economy for flights under six hours." in document.text
    assert "Paris | 180 EUR" in document.text


def test_docx_that_is_not_a_zip_is_skipped(tmp_path: Path) -> None:
    (tmp_path / "fake.docx").write_text("I am plain text pretending to be Word.")
    with pytest.raises(SkippedFileError, match=r"not a valid \.docx"):
        load_document(tmp_path / "fake.docx", tmp_path, LIMIT)


def test_docx_that_expands_past_the_size_limit_is_refused(tmp_path: Path) -> None:
    bomb = zip_bomb_docx_bytes(expanded=25_000_000)
    assert len(bomb) < 100_000
    (tmp_path / "bomb.docx").write_bytes(bomb)
    with pytest.raises(SkippedFileError, match=r"expands to over 20,000,000 bytes.*zip bomb"):
        load_document(tmp_path / "bomb.docx", tmp_path, 1_000_000)


def _peak_bytes_while(call: Callable[[], object]) -> int:
    """Peak Python heap allocated while `call` runs (zlib's output buffers are counted)."""
    tracemalloc.start()
    try:
        call()
    except SkippedFileError:
        pass
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak


def test_docx_whose_zip_directory_lies_about_sizes_is_never_expanded(tmp_path: Path) -> None:
    """The directory declares the real XML's size and CRC; the deflate stream goes on for
    64 MB. Only the bytes actually read count, so memory stays near the file's own size
    (python-docx alone would inflate the whole stream before truncating it)."""
    bomb = lying_zip_docx_bytes("The pump runs at 40 bar.", expanded=64_000_000)
    assert len(bomb) < 200_000
    (tmp_path / "liar.docx").write_bytes(bomb)
    document = load_document(tmp_path / "liar.docx", tmp_path, 200_000)
    assert document.text == "The pump runs at 40 bar."
    peak = _peak_bytes_while(lambda: load_document(tmp_path / "liar.docx", tmp_path, 200_000))
    assert peak < 8_000_000, f"{peak:,} bytes allocated for a {len(bomb):,}-byte file"


def test_docx_expanding_past_the_limit_is_refused_by_bytes_read_not_declared(
    tmp_path: Path,
) -> None:
    """Declared sizes are honest here but the cap is counted while reading: refused at the
    limit, without ever holding the whole expansion."""
    (tmp_path / "bomb.docx").write_bytes(zip_bomb_docx_bytes(expanded=40_000_000))
    peak = _peak_bytes_while(lambda: load_document(tmp_path / "bomb.docx", tmp_path, 50_000))
    with pytest.raises(SkippedFileError, match=r"over 1,000,000 bytes.*RAG_MAX_FILE_BYTES"):
        load_document(tmp_path / "bomb.docx", tmp_path, 50_000)
    assert peak < 8_000_000, f"{peak:,} bytes allocated"


def test_docx_with_a_compression_method_word_never_writes_is_refused(tmp_path: Path) -> None:
    """zipfile expands bzip2 and lzma members in unbounded steps: not read at all."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_BZIP2) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", b"\0" * 1_000)
    (tmp_path / "bz.docx").write_bytes(buffer.getvalue())
    with pytest.raises(SkippedFileError, match=r"compression method 12.*Word does not write"):
        load_document(tmp_path / "bz.docx", tmp_path, LIMIT)


def test_pdf_whose_compressed_stream_expands_past_the_limit_is_refused(tmp_path: Path) -> None:
    """A 10 KB PDF whose content stream inflates to 8 MB, with a 50 KB file limit (so 1 MB
    of expansion allowed): refused by bytes actually decompressed."""
    bomb = flate_bomb_pdf_bytes(expanded=8_000_000)
    assert len(bomb) < 20_000
    (tmp_path / "bomb.pdf").write_bytes(bomb)
    with pytest.raises(SkippedFileError, match=r"PDF bomb"):
        load_document(tmp_path / "bomb.pdf", tmp_path, 50_000)
    peak = _peak_bytes_while(lambda: load_document(tmp_path / "bomb.pdf", tmp_path, 50_000))
    assert peak < 4_000_000, f"{peak:,} bytes allocated"


def test_pdf_with_a_small_compressed_stream_still_reads(tmp_path: Path) -> None:
    (tmp_path / "ok.pdf").write_bytes(flate_bomb_pdf_bytes(expanded=1_000))
    document = load_document(tmp_path / "ok.pdf", tmp_path, 50_000)
    assert "Bomb page" in document.text


def test_markdown_front_matter_becomes_metadata(tmp_path: Path) -> None:
    (tmp_path / "faq.md").write_text(
        "---\ntitle: Expenses FAQ\nowner: finance\nreviewed: 2026-01-15\ntags: [money, travel]\n"
        "---\n# Expenses\n\n| Item | Limit |\n|---|---|\n| Taxi | 40 EUR |\n",
        encoding="utf-8",
    )
    document = load_document(tmp_path / "faq.md", tmp_path, LIMIT)
    assert document.title == "Expenses FAQ"
    assert document.metadata["owner"] == "finance"
    assert document.metadata["reviewed"] == "2026-01-15"
    assert document.metadata["tags"] == ["money", "travel"]
    assert "owner: finance" not in document.text
    assert "| Taxi | 40 EUR |" in document.text  # tables stay readable


def test_invalid_front_matter_is_kept_as_text_with_a_warning(tmp_path: Path) -> None:
    (tmp_path / "odd.md").write_text("---\ntitle: [unclosed\n---\nBody text here.\n")
    document = load_document(tmp_path / "odd.md", tmp_path, LIMIT)
    assert "Body text here." in document.text
    assert any("front matter is not valid YAML" in w for w in document.warnings)


def test_jsonl_malformed_line_is_reported_and_good_lines_land(tmp_path: Path) -> None:
    lines = [
        json.dumps({"id": "a1", "question": "Who approves leave?", "answer": "Your manager."}),
        '{"id": "a2", "question": "broken',
        json.dumps({"id": "a3", "question": "Where is parking?", "answer": "Level -2."}),
        "[1, 2]",
    ]
    (tmp_path / "faq.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    fields = RecordFields(text=("question", "answer"), metadata=("id",))
    document = load_document(tmp_path / "faq.jsonl", tmp_path, LIMIT, record_fields=fields)
    assert [(s.metadata["line"], s.metadata["id"]) for s in document.segments] == [
        (1, "a1"),
        (3, "a3"),
    ]
    assert document.segments[1].text == "Where is parking?\nLevel -2."
    assert any(w.startswith("skipped line 2 is not valid JSON") for w in document.warnings)
    assert any(w.startswith("skipped line 4 is a JSON list") for w in document.warnings)


def test_jsonl_without_the_configured_text_field_names_the_setting(tmp_path: Path) -> None:
    (tmp_path / "x.jsonl").write_text(json.dumps({"body": "text"}) + "\n")
    with pytest.raises(SkippedFileError, match="RAG_RECORD_TEXT_FIELDS"):
        load_document(
            tmp_path / "x.jsonl", tmp_path, LIMIT, record_fields=RecordFields(text=("content",))
        )


def test_csv_rows_are_records_and_the_whole_row_is_text_by_default(tmp_path: Path) -> None:
    (tmp_path / "offices.csv").write_text(
        "city;address;opening hours\nLyon;3 rue Garibaldi;8-18\nOslo;Karl Johans gate 1;9-17\n",
        encoding="utf-8",
    )
    document = load_document(tmp_path / "offices.csv", tmp_path, LIMIT)
    assert [s.metadata["row"] for s in document.segments] == [1, 2]
    assert (
        document.segments[1].text == "city: Oslo\naddress: Karl Johans gate 1\nopening hours: 9-17"
    )


def test_csv_row_with_too_many_cells_is_reported(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("name,role\nAda,engineer\nBob,admin,extra,cells\n")
    document = load_document(tmp_path / "t.csv", tmp_path, LIMIT)
    assert len(document.segments) == 1
    assert document.warnings == ("skipped row 2 has 2 more cells than the header",)


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("empty.md", b"", "empty or whitespace only"),
        ("blank.txt", b" \n\t\n  ", "empty or whitespace only"),
        ("nul.txt", b"hello\x00world\x00", "NUL bytes"),
        ("image.md", bytes(range(256)) * 8, "NUL bytes"),
        ("empty.jsonl", b"\n\n", "empty or whitespace only"),
        ("bad.jsonl", b"{nope}\n", "no usable lines: line 1 is not valid JSON"),
    ],
)
def test_messy_text_files_are_skipped_with_a_reason(
    tmp_path: Path, name: str, content: bytes, reason: str
) -> None:
    (tmp_path / name).write_bytes(content)
    with pytest.raises(SkippedFileError, match=reason):
        load_document(tmp_path / name, tmp_path, LIMIT)


def test_a_text_file_with_stray_control_bytes_is_read_without_them(tmp_path: Path) -> None:
    text = "The claims desk opens at eight. " * 40
    raw = text.encode().replace(b"desk", b"de\x00sk", 1) + b"\x1b[0m\x0c\n"
    (tmp_path / "desk.txt").write_bytes(raw)
    document = load_document(tmp_path / "desk.txt", tmp_path, LIMIT)
    assert document.text == text.strip()  # the form feed is whitespace, not a control byte
    assert document.warnings == (
        "removed 2 control character(s) (NUL and the like; the first, U+0000, at offset 13)",
    )


def test_binary_is_decided_by_the_share_of_control_bytes(tmp_path: Path) -> None:
    # An executable's header and zeros behind a .txt name: far over the share text holds.
    (tmp_path / "tool.txt").write_bytes(b"\x7fELF\x02\x01\x01" + bytes(200) + b"GLIBC_2.2.5")
    with pytest.raises(SkippedFileError, match=r"is binary: 9\d% of its bytes are control bytes"):
        load_document(tmp_path / "tool.txt", tmp_path, LIMIT)


def test_a_markdown_file_that_is_one_long_heading_is_chunked(tmp_path: Path) -> None:
    heading = " ".join(f"Clause {n} says the insurer pays the reasonable cost" for n in range(60))
    (tmp_path / "clauses.md").write_text(f"# {heading}\n", encoding="utf-8")
    document = load_document(tmp_path / "clauses.md", tmp_path, LIMIT)
    chunks = Chunker(chunk_size=200, chunk_overlap=20).chunk(document, tenant="t", corpus="c")
    assert len(chunks) > 1
    assert " ".join(c.text for c in chunks).count("Clause 59 says") >= 1


def test_a_lone_heading_is_text_but_a_parent_heading_is_only_its_sections_path(
    tmp_path: Path,
) -> None:
    (tmp_path / "guide.md").write_text(
        "# Guide\n\n## Escalation\n\n### Severity 1\n\nPage the on-call lead.\n\n"
        "## Every unresolved ticket is reviewed on Friday by the support manager\n",
        encoding="utf-8",
    )
    document = load_document(tmp_path / "guide.md", tmp_path, LIMIT)
    chunks = Chunker(chunk_size=200, chunk_overlap=20).chunk(document, tenant="t", corpus="c")
    assert [(c.section, c.text) for c in chunks] == [
        ("Escalation > Severity 1", "### Severity 1\n\nPage the on-call lead."),
        ("", "Every unresolved ticket is reviewed on Friday by the support manager"),
    ]


def test_a_50000_character_line_is_read_whole(tmp_path: Path) -> None:
    line = " ".join(f"word{i % 97}" for i in range(8_000))[:50_000]
    (tmp_path / "long.txt").write_text(line)
    assert load_document(tmp_path / "long.txt", tmp_path, LIMIT).text == line.strip()


def test_html_theme_navigation_is_dropped_and_code_keeps_its_lines(tmp_path: Path) -> None:
    (tmp_path / "page.html").write_text(
        "<html><head><title>Loops</title></head><body>"
        '<div class="related" role="navigation"><h3>Navigation</h3><a>index</a></div>'
        '<div class="body"><h1>Loops<a class="headerlink" href="#l">¶</a></h1>'
        "<p>Use a for statement to iterate.</p>"
        "<pre># count to three\nfor i in range(3):\n    print(i)\n</pre></div>"
        '<div class="sphinxsidebar"><h3>Previous topic</h3><p>Strings</p></div>'
        "</body></html>",
        encoding="utf-8",
    )
    document = load_document(tmp_path / "page.html", tmp_path, LIMIT)
    assert document.text == (
        "# Loops\n\nUse a for statement to iterate.\n\n"
        "```\n# count to three\nfor i in range(3):\n    print(i)\n```"
    )
    chunks = chunk_document(Chunker(200, 24), document, tenant="default", corpus="kb")
    assert [c.section for c in chunks] == [""]  # the code comment is not a heading
    assert "print(i)" in chunks[0].text
