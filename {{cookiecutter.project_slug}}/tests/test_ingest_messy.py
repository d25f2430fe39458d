"""A messy client folder: every file gets an outcome, the good ones always land, and exact
duplicates are stored once with every name known."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from {{ cookiecutter.package_name }}.container import Services
from {{ cookiecutter.package_name }}.domain import Query

from .conftest import indexed
from .messy_files import corrupt_pdf_bytes, write_docx, write_pdf


def hits_for(services: Services, question: str, k: int = 5) -> list[tuple[str, dict[str, Any]]]:
    """(source, the chunk's document metadata) of each hit."""
    return [
        (hit.source, dict(hit.metadata.get("metadata") or {}))
        for hit in services.retriever.retrieve(Query(text=question, top_k=k, tenant="default"))
    ]


def build_messy_folder(root: Path) -> Path:
    root.mkdir()
    write_pdf(
        root / "arm.pdf",
        ["The gripper closes in 80 milliseconds.", "The arm lifts at most 12 kilograms."],
    )
    write_docx(
        root / "travel.docx",
        "Travel policy",
        {"Trains": ["Second class is booked for trips under four hours."]},
        [["City", "Hotel limit"], ["Paris", "180 EUR"]],
    )
    records = [
        {"id": "q1", "text": "The badge office is on the ground floor next to reception."},
        "not json at all",
        {"id": "q2", "text": "Visitors sign in at the front desk before 9 am."},
    ]
    (root / "faq.jsonl").write_text(
        "\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n"
    )
    (root / "offices.csv").write_text("city,phone\nLyon,+33 4 00 00 00\nOslo,+47 22 00 00 00\n")
    (root / "notes.md").write_text(
        "---\nowner: facilities\n---\n# Bikes\n\nBike racks are behind building C.\n"
    )
    (root / "long.txt").write_text(" ".join(f"token{i % 50}" for i in range(9_000))[:50_000])
    (root / "empty.md").write_text("")
    (root / "blank.txt").write_text("   \n\n ")
    (root / "nul.txt").write_bytes(b"abc\x00def")
    (root / "binary.html").write_bytes(bytes(range(256)) * 4)
    (root / "fake.docx").write_text("not a zip")
    (root / "cut.pdf").write_bytes((root / "arm.pdf").read_bytes()[:300])
    (root / "damaged.pdf").write_bytes(corrupt_pdf_bytes())
    (root / "big.txt").write_text("x " * 60_000)
    outside = root.parent / "outside.txt"
    outside.write_text("Secret salary table.")
    (root / "escape.txt").symlink_to(outside)
    (root / "copy-of-notes.md").write_bytes((root / "notes.md").read_bytes())
    return root


def test_every_messy_file_gets_an_outcome_and_the_good_ones_land(
    services: Services, tmp_path: Path
) -> None:
    services.ingestor._max_file_bytes = 100_000
    root = build_messy_folder(tmp_path / "messy")
    report = services.ingestor.ingest(root)

    outcomes = {f.source: f for f in report.files}
    assert set(outcomes) == {p.name for p in root.iterdir()}
    skipped = {source: f.reason for source, f in outcomes.items() if f.status == "skipped"}
    assert set(skipped) == {
        "empty.md",
        "blank.txt",
        "nul.txt",
        "binary.html",
        "fake.docx",
        "cut.pdf",
        "damaged.pdf",
        "big.txt",
        "escape.txt",
    }
    assert all(reason for reason in skipped.values())
    assert "outside the ingested folder" in skipped["escape.txt"]
    assert "over the 100,000-byte limit" in skipped["big.txt"]
    landed = {s for s, f in outcomes.items() if f.status == "added"}
    assert landed == {
        "arm.pdf",
        "travel.docx",
        "faq.jsonl",
        "offices.csv",
        "notes.md",
        "long.txt",
        "copy-of-notes.md",
    }
    assert outcomes["faq.jsonl"].warnings == (
        "skipped line 2 is not valid JSON (Expecting value at column 1)",
    )
    assert outcomes["long.txt"].chunks > 1
    # The report, as JSON, lists every file with its outcome.
    written = json.loads(report.to_json())
    assert {f["source"] for f in written["files"]} == set(outcomes)
    assert written["counts"]["skipped"] == 9

    # What landed is retrievable, with where it came from.
    source, metadata = hits_for(services, "How much weight can the arm lift?")[0]
    assert (source, metadata["page"]) == ("arm.pdf", 2)
    source, metadata = hits_for(services, "Where do visitors sign in?")[0]
    assert (source, metadata["line"]) == ("faq.jsonl", 3)
    assert hits_for(services, "Which train class for short trips?")[0][0] == "travel.docx"
    source, metadata = hits_for(services, "Where can I park my bike?")[0]
    assert metadata["owner"] == "facilities"
    assert "Secret salary" not in " ".join(
        h.text
        for h in services.retriever.retrieve(Query(text="salary table", top_k=10, tenant="default"))
    )


def test_exact_duplicates_are_stored_once_and_both_names_are_known(
    services: Services, corpus: Path
) -> None:
    (corpus / "copy-of-coffee.txt").write_bytes((corpus / "coffee.txt").read_bytes())
    report = services.ingestor.ingest(corpus)
    outcomes = {f.source: f for f in report.files}
    assert outcomes["copy-of-coffee.txt"].reason == "same content as coffee.txt: stored once"
    points_before = services.store.count()
    hits = services.retriever.retrieve(
        Query(text="When is the espresso machine descaled?", top_k=10, tenant="default")
    )
    coffee = [h for h in hits if h.source in ("coffee.txt", "copy-of-coffee.txt")]
    assert len({h.text for h in coffee}) == len(coffee)  # no chunk twice
    assert coffee[0].source == "coffee.txt"
    assert coffee[0].metadata["aliases"] == ["copy-of-coffee.txt"]

    # Unchanged on a re-run; the copy is known by name.
    again = services.ingestor.ingest(corpus)
    assert not again.changed
    assert {"coffee.txt", "copy-of-coffee.txt"} <= set(indexed(services))

    # Deleting the original hands its content to the copy; nothing is lost.
    (corpus / "coffee.txt").unlink()
    report = services.ingestor.ingest(corpus)
    assert {f.source: f.status for f in report.files if f.status != "unchanged"} == {
        "coffee.txt": "deleted"
    }
    hits = services.retriever.retrieve(
        Query(text="When is the espresso machine descaled?", top_k=3, tenant="default")
    )
    assert hits[0].source == "copy-of-coffee.txt"
    assert services.store.count() == points_before
    assert not services.ingestor.ingest(corpus).changed


def test_deleting_a_duplicate_only_forgets_its_name(services: Services, corpus: Path) -> None:
    (corpus / "copy-of-coffee.txt").write_bytes((corpus / "coffee.txt").read_bytes())
    services.ingestor.ingest(corpus)
    points = services.store.count()
    (corpus / "copy-of-coffee.txt").unlink()
    report = services.ingestor.ingest(corpus)
    assert [(f.source, f.status) for f in report.files if f.status != "unchanged"] == [
        ("copy-of-coffee.txt", "deleted")
    ]
    assert services.store.count() == points
    hit = services.retriever.retrieve(
        Query(text="When is the espresso machine descaled?", top_k=1, tenant="default")
    )[0]
    assert (hit.source, hit.metadata["aliases"]) == ("coffee.txt", [])


def test_a_duplicate_that_changes_gets_its_own_chunks(services: Services, corpus: Path) -> None:
    (corpus / "copy-of-coffee.txt").write_bytes((corpus / "coffee.txt").read_bytes())
    services.ingestor.ingest(corpus)
    (corpus / "copy-of-coffee.txt").write_text("The tea kettle is on the fourth floor.\n")
    report = services.ingestor.ingest(corpus)
    assert {f.source: f.status for f in report.files}["copy-of-coffee.txt"] == "updated"
    assert hits_for(services, "Where is the tea kettle?")[0][0] == "copy-of-coffee.txt"
    hit = services.retriever.retrieve(
        Query(text="When is the espresso machine descaled?", top_k=1, tenant="default")
    )[0]
    assert (hit.source, hit.metadata["aliases"]) == ("coffee.txt", [])
    assert not services.ingestor.ingest(corpus).changed


def test_a_holder_that_changes_leaves_its_unchanged_duplicate_stored(
    services: Services, corpus: Path
) -> None:
    (corpus / "copy-of-coffee.txt").write_bytes((corpus / "coffee.txt").read_bytes())
    services.ingestor.ingest(corpus)
    (corpus / "coffee.txt").write_text("The tea kettle is on the fourth floor.\n")
    report = services.ingestor.ingest(corpus)
    outcomes = {f.source: f for f in report.files}
    assert outcomes["copy-of-coffee.txt"].status == "unchanged"
    assert outcomes["coffee.txt"].status == "updated"
    assert "copy-of-coffee.txt now holds the old content" in outcomes["coffee.txt"].reason
    hit = services.retriever.retrieve(
        Query(text="When is the espresso machine descaled?", top_k=1, tenant="default")
    )[0]
    assert hit.source == "copy-of-coffee.txt"
    new = services.retriever.retrieve(
        Query(text="Where is the tea kettle?", top_k=1, tenant="default")
    )[0]
    assert new.source == "coffee.txt"
    # A third run changes nothing: the plan's view after the hand-over is what was stored.
    again = services.ingestor.ingest(corpus)
    assert not again.changed, again.files


# --- every good file is kept ------------------------------------------------------------

CLAIMS_NOTE = (
    "Claims handling notes for the Northwind pilot.\n\n"
    "Storm damage claims are settled within ten working days once the adjuster has "
    "inspected the roof and photographed every damaged tile.\n\n"
    "Flood claims need the river authority's water level report for the day of the loss; "
    "claims without it are parked, not refused.\n"
)
LONG_HEADING = "# " + " ".join(
    f"Rule {n}: a claim that names a contractor not on the approved list goes to the "
    "procurement desk for a second quote before any payment is promised"
    for n in range(1, 30)
)


def test_text_with_stray_control_bytes_and_a_markdown_heading_document_are_ingested(
    services: Services, tmp_path: Path
) -> None:
    root = tmp_path / "client"
    root.mkdir()
    # A stray NUL from a bad export, a bell and an ANSI colour code from a pasted log line.
    note = CLAIMS_NOTE.replace("ten working", "ten\x00 working").replace("refused", "refused\x07")
    (root / "claims-notes.txt").write_bytes(note.encode() + b"\x1b[0m\n")
    (root / "contractor-rules.md").write_text(LONG_HEADING + "\n", encoding="utf-8")

    report = services.ingestor.ingest(root)

    outcomes = {f.source: f for f in report.files}
    assert {source: f.status for source, f in outcomes.items()} == {
        "claims-notes.txt": "added",
        "contractor-rules.md": "added",
    }
    [warning] = outcomes["claims-notes.txt"].warnings
    assert warning.startswith("removed 3 control character(s) (NUL and the like; the first, U+0000")
    [hit] = services.retriever.retrieve(
        Query(text="How fast are storm damage claims settled?", top_k=1, tenant="default")
    )
    assert hit.source == "claims-notes.txt"
    assert "settled within ten working days" in hit.text
    top = hits_for(services, "When does the procurement desk ask for a second quote?")
    assert top[0][0] == "contractor-rules.md"
