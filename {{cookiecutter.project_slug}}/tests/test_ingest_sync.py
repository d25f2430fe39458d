"""Sync semantics of ingestion against a real embedded store."""

from __future__ import annotations

from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from {{ cookiecutter.package_name }}.container import Services
from {{ cookiecutter.package_name }}.domain import Query
from {{ cookiecutter.package_name }}.errors import BadRequestError
from {{ cookiecutter.package_name }}.ingest.chunk import Chunker
from {{ cookiecutter.package_name }}.ingest.load import load_document

from .conftest import indexed


def sources_for(services: Services, question: str, k: int = 5) -> list[str]:
    return [
        hit.source
        for hit in services.retriever.retrieve(Query(text=question, top_k=k, tenant="default"))
    ]


def texts_for(services: Services, question: str, k: int = 10) -> str:
    return " ".join(
        hit.text
        for hit in services.retriever.retrieve(Query(text=question, top_k=k, tenant="default"))
    )


def test_ingested_documents_are_retrievable(services: Services, corpus: Path) -> None:
    report = services.ingestor.ingest(corpus)
    assert report.counts == {"added": 3, "updated": 0, "unchanged": 0, "deleted": 0, "skipped": 0}
    assert sources_for(services, "How long must a password be?")[0] == "policies/passwords.md"
    assert sources_for(services, "When is the office closed in April?")[0] == "holidays.html"


def test_reingesting_unchanged_files_changes_nothing(services: Services, corpus: Path) -> None:
    services.ingestor.ingest(corpus)
    points = services.store.count()
    report = services.ingestor.ingest(corpus)
    assert report.counts["unchanged"] == 3
    assert not report.changed
    assert "nothing changed" in report.summary()
    assert services.store.count() == points


def test_changed_file_replaces_its_chunks(services: Services, corpus: Path) -> None:
    services.ingestor.ingest(corpus)
    (corpus / "coffee.txt").write_text(
        "The espresso machine is now descaled every Wednesday evening.\n", encoding="utf-8"
    )
    report = services.ingestor.ingest(corpus)
    assert report.counts["updated"] == 1
    assert report.counts["unchanged"] == 2
    text = texts_for(services, "When is the espresso machine descaled?")
    assert "Wednesday evening" in text
    assert "Friday morning" not in text
    assert "Oat milk" not in text


def test_deleted_document_is_no_longer_retrievable(services: Services, corpus: Path) -> None:
    services.ingestor.ingest(corpus)
    (corpus / "holidays.html").unlink()
    report = services.ingestor.ingest(corpus)
    assert report.counts["deleted"] == 1
    assert "holidays.html" not in sources_for(services, "When is the office closed?", k=10)
    assert "holidays.html" not in indexed(services)


def test_bad_file_is_reported_and_the_good_ones_still_land(
    services: Services, corpus: Path
) -> None:
    (corpus / "broken.txt").write_bytes(b"\x00\x01\x02 not text")
    (corpus / "notes.pdf").write_bytes(b"%PDF-1.4")
    report = services.ingestor.ingest(corpus)
    skipped = {f.source: f.reason for f in report.files if f.status == "skipped"}
    assert set(skipped) == {"broken.txt", "notes.pdf"}
    assert "NUL bytes" in skipped["broken.txt"]
    assert report.counts["added"] == 3
    assert sources_for(services, "How long must a password be?")[0] == "policies/passwords.md"


def test_file_that_becomes_unreadable_keeps_its_previous_version(
    services: Services, corpus: Path
) -> None:
    services.ingestor.ingest(corpus)
    (corpus / "coffee.txt").write_bytes(b"\x00\x01\x02\xff binary now")
    report = services.ingestor.ingest(corpus)
    outcome = next(f for f in report.files if f.source == "coffee.txt")
    assert outcome.status == "skipped"
    assert "previously ingested version is kept" in outcome.reason
    assert "Friday morning" in texts_for(services, "When is the espresso machine descaled?")


def test_another_corpus_does_not_delete_this_one(
    services: Services, corpus: Path, tmp_path: Path
) -> None:
    services.ingestor.ingest(corpus)
    other = tmp_path / "other"
    other.mkdir()
    (other / "parking.md").write_text("# Parking\n\nBikes park in the basement.", encoding="utf-8")
    report = services.ingestor.ingest(other)
    assert report.counts["deleted"] == 0
    assert {"coffee.txt", "parking.md"} <= set(indexed(services))


def test_missing_folder_is_a_clear_error(services: Services, tmp_path: Path) -> None:
    with pytest.raises(BadRequestError, match="does not exist"):
        services.ingestor.ingest(tmp_path / "nope")


def test_ingestion_is_traced_per_file_and_batch(
    services: Services, corpus: Path, spans: InMemorySpanExporter
) -> None:
    services.ingestor.ingest(corpus)
    names = [span.name for span in spans.get_finished_spans()]
    assert names.count("ingest.file") == 3
    assert "ingest" in names
    assert "upsert" in names
    assert any(name.startswith("embeddings ") for name in names)


def test_update_interrupted_before_old_chunks_were_deleted_is_repaired(
    services: Services, corpus: Path, tmp_path: Path
) -> None:
    services.ingestor.ingest(corpus)
    (corpus / "coffee.txt").write_text("The machine is descaled on Wednesdays.\n", "utf-8")
    # Crash simulation: the new version's chunks are written, the old ones never deleted.
    document = load_document(corpus / "coffee.txt", corpus, 10_000)
    services.ingestor.write_chunks(services.ingestor.chunk(document, "kb"), "kb")
    assert len(indexed(services)["coffee.txt"].stored) == 2

    report = services.ingestor.ingest(corpus)
    outcome = next(f for f in report.files if f.source == "coffee.txt")
    assert (outcome.status, outcome.reason) == ("updated", "repaired an interrupted ingest")
    assert "Friday morning" not in texts_for(services, "When is the machine descaled?")
    assert services.ingestor.ingest(corpus).counts["unchanged"] == 3


def test_document_interrupted_halfway_through_its_chunks_is_written_again(
    services: Services, corpus: Path, tmp_path: Path
) -> None:
    long_text = "\n\n".join(
        f"## Part {i}\n\n" + " ".join(f"Step {i}.{j} turns valve {j}." for j in range(40))
        for i in range(6)
    )
    (corpus / "manual.md").write_text(f"# Manual\n\n{long_text}\n", "utf-8")
    document = load_document(corpus / "manual.md", corpus, 1_000_000)
    chunks = services.ingestor.chunk(document, "kb")
    assert len(chunks) > 4
    services.ingestor.write_chunks(chunks[:2], "kb")  # crash after two chunks

    report = services.ingestor.ingest(corpus)
    outcome = next(f for f in report.files if f.source == "manual.md")
    assert outcome.status == "updated"
    assert indexed(services)["manual.md"].chunks == len(chunks)


def test_changed_chunk_settings_rechunk_every_document(services: Services, corpus: Path) -> None:
    services.ingestor.ingest(corpus)
    services.ingestor.chunker = Chunker(chunk_size=64, chunk_overlap=8)
    report = services.ingestor.ingest(corpus)
    assert report.counts["updated"] == 3
    assert services.ingestor.ingest(corpus).counts["unchanged"] == 3


def test_dry_run_reports_the_changes_and_writes_nothing(services: Services, corpus: Path) -> None:
    services.ingestor.ingest(corpus)
    points = services.store.count()
    (corpus / "coffee.txt").write_text("Descaled on Wednesdays now.\n", "utf-8")
    (corpus / "holidays.html").unlink()
    (corpus / "new.md").write_text("# New\n\nA brand new page about bikes.", "utf-8")
    report = services.ingestor.ingest(corpus, dry_run=True)
    assert report.counts == {"added": 1, "updated": 1, "unchanged": 1, "deleted": 1, "skipped": 0}
    assert report.summary().startswith("Dry run of ")
    assert services.store.count() == points
    assert "holidays.html" in indexed(services)
    assert services.ingestor.ingest(corpus).counts["added"] == 1  # the real run still has work


def test_legacy_encoded_file_lands_and_says_how_it_was_read(
    services: Services, corpus: Path
) -> None:
    (corpus / "menu.txt").write_bytes("Le café coûte 2 € au comptoir.".encode("cp1252"))
    report = services.ingestor.ingest(corpus)
    outcome = next(f for f in report.files if f.source == "menu.txt")
    assert (outcome.status, outcome.reason) == ("added", "read as cp1252")
    assert "café coûte 2 €" in texts_for(services, "How much is a coffee?")


def test_the_same_source_in_two_corpora_is_listed_as_two_documents(
    services: Services, corpus: Path
) -> None:
    first = services.ingestor.ingest(corpus, "handbook")
    services.ingestor.ingest(corpus, "archive")
    listed = [(d.corpus, d.source, d.chunks) for d in services.store.documents(tenant="default")]
    chunks = {f.source: f.chunks for f in first.files}
    assert sorted(listed) == sorted(
        (name, source, n) for name in ("handbook", "archive") for source, n in chunks.items()
    )
    assert len({d.id for d in services.store.documents(tenant="default")}) == len(listed)
