"""The formats table is the one list of what ingestion reads: the loader dispatches on it,
uploads are checked against it and the CLI help prints it."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from {{ cookiecutter.package_name }}.cli import main
from {{ cookiecutter.package_name }}.ingest import formats
from {{ cookiecutter.package_name }}.ingest.formats import BY_SUFFIX, FORMATS, TextFormat
from {{ cookiecutter.package_name }}.ingest.load import SkippedFileError, load_document
from {{ cookiecutter.package_name }}.ingest.parse import Parsed, ParseOptions
from {{ cookiecutter.package_name }}.ingest.uploads import safe_filename

from .messy_files import pdf_bytes, write_docx

LIMIT = 1_000_000
PHRASE = "The loading dock opens at seven."


def _docx(path: Path) -> None:
    write_docx(path, "Dock", {"Hours": [PHRASE]}, [["Day", "Open"], ["Monday", "7:00"]])


# One real file per format, each saying PHRASE. A format added to the table needs one here.
SAMPLES: dict[str, Callable[[Path], object]] = {
    "markdown": lambda p: p.write_text(f"---\nowner: ops\n---\n# Dock\n\n{PHRASE}\n"),
    "text": lambda p: p.write_text(f"{PHRASE}\n"),
    "html": lambda p: p.write_text(f"<html><body><nav>Menu</nav><p>{PHRASE}</p></body></html>"),
    "pdf": lambda p: p.write_bytes(pdf_bytes([PHRASE])),
    "docx": _docx,
    "csv": lambda p: p.write_text(f"topic,note\ndock,{PHRASE}\n"),
    "jsonl": lambda p: p.write_text(json.dumps({"note": PHRASE}) + "\n"),
}


@pytest.mark.parametrize("suffix", sorted(BY_SUFFIX))
def test_every_suffix_in_the_table_is_loaded_by_its_format(tmp_path: Path, suffix: str) -> None:
    expected = BY_SUFFIX[suffix]
    assert expected.name in SAMPLES, f"add a sample file for the {expected.name!r} format"
    path = tmp_path / f"dock{suffix.upper()}"  # suffixes match in any case
    SAMPLES[expected.name](path)
    document = load_document(path, tmp_path, LIMIT)
    assert document.format == expected.name
    assert PHRASE in document.text
    # Text formats are decoded by the loader (and say how); binary ones parse the bytes.
    assert ("encoding" in document.metadata) is not expected.binary
    assert safe_filename(path.name) == path.name  # uploads accept what the loader reads


def test_no_suffix_is_claimed_by_two_formats() -> None:
    claimed = [suffix for f in FORMATS for suffix in f.suffixes]
    assert len(claimed) == len(set(claimed)) == len(BY_SUFFIX)
    assert all(s.startswith(".") and s == s.lower() for s in claimed)


def test_a_row_added_to_the_table_is_all_the_loader_needs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def parse_note(text: str, options: ParseOptions) -> Parsed:
        title, _, body = text.partition("\n")
        return Parsed(text=body, title=title.removeprefix("NOTE: "))

    (tmp_path / "dock.note").write_text(f"NOTE: Dock\n{PHRASE}\n")
    with pytest.raises(SkippedFileError, match=r"unsupported file type '\.note'"):
        load_document(tmp_path / "dock.note", tmp_path, LIMIT)
    row = TextFormat("note", (".note",), parse_note, "notes")
    monkeypatch.setitem(formats.BY_SUFFIX, ".note", row)
    document = load_document(tmp_path / "dock.note", tmp_path, LIMIT)
    assert (document.format, document.title, document.text) == ("note", "Dock", PHRASE)


def test_an_unsupported_file_names_every_supported_suffix(tmp_path: Path) -> None:
    (tmp_path / "slides.pptx").write_bytes(b"PK\x03\x04")
    with pytest.raises(SkippedFileError) as caught:
        load_document(tmp_path / "slides.pptx", tmp_path, LIMIT)
    listed = re.findall(r"\.[a-z]+", str(caught.value).split("supported:")[1])
    assert listed == sorted(BY_SUFFIX)


def test_ingest_help_lists_exactly_the_tables_formats(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["ingest", "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert sorted(set(re.findall(r"(?<![\w.])\.[a-z]+\b", out))) == sorted(BY_SUFFIX)
    for f in FORMATS:
        assert f.description in out
