"""The whole service over the shipped sample corpus: ingest, sync, retrieve, answer, gate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from {{ cookiecutter.package_name }}.container import Services
from {{ cookiecutter.package_name }}.domain import Query
from {{ cookiecutter.package_name }}.evals.gate import run_gate

from .conftest import PROJECT_ROOT, copy_sample_corpus

pytestmark = pytest.mark.slow


def ask(services: Services, question: str) -> tuple[str, list[str], bool]:
    hits = services.retriever.retrieve(Query(text=question, top_k=5))
    answer = services.answerer.answer(question, hits)
    return answer.text, [c.source for c in answer.citations], answer.refused


def test_sample_corpus_lifecycle(services: Services, tmp_path: Path) -> None:
    corpus = copy_sample_corpus(tmp_path / "sample")
    files = sum(1 for p in corpus.rglob("*") if p.is_file())

    first = services.ingestor.ingest(corpus)
    assert first.counts["added"] == files
    assert first.counts["skipped"] == 0
    points = services.store.count()

    again = services.ingestor.ingest(corpus)
    assert again.counts["unchanged"] == files
    assert services.store.count() == points

    text, sources, refused = ask(services, "How long is the warranty on NR-7 batteries?")
    assert not refused
    assert "36 months" in text
    assert sources[0] == "warranty-terms.txt"

    text, sources, refused = ask(services, "When does the FleetOS REST API v1 reach end of life?")
    assert "2025-03-31" in text
    assert "fleetos-release-notes.html" in sources

    _, _, refused = ask(services, "What is the CEO's annual salary?")
    assert refused

    warranty = corpus / "warranty-terms.txt"
    warranty.write_text(
        warranty.read_text(encoding="utf-8").replace("36 months", "48 months"), encoding="utf-8"
    )
    edited = services.ingestor.ingest(corpus)
    assert edited.counts["updated"] == 1
    text, _, _ = ask(services, "How long is the warranty on NR-7 batteries?")
    assert "48 months" in text
    assert "36 months" not in text

    (corpus / "fleetos-release-notes.html").unlink()
    removed = services.ingestor.ingest(corpus)
    assert removed.counts["deleted"] == 1
    hits = services.retriever.retrieve(Query(text="FleetOS REST API v1 end of life", top_k=10))
    assert "fleetos-release-notes.html" not in {hit.source for hit in hits}


def test_eval_gate_passes_on_the_sample_corpus(
    services: Services,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    code = run_gate(
        services,
        PROJECT_ROOT / "evals" / "golden.jsonl",
        PROJECT_ROOT / "evals" / "thresholds.toml",
        PROJECT_ROOT / "data" / "sample",
        tmp_path / "eval",
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "GO (" in out
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert report["go"] is True
    assert report["summary"]["hit_at_5"] >= 0.9
    assert not home.exists()  # ragas wrote nothing outside the project


def test_eval_gate_fails_when_retrieval_is_broken(
    services: Services, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    code = run_gate(
        services,
        PROJECT_ROOT / "evals" / "golden.jsonl",
        PROJECT_ROOT / "evals" / "thresholds.toml",
        empty,  # nothing ingested: every question misses
        tmp_path / "eval",
    )
    assert code == 1
    assert "NO-GO" in capsys.readouterr().out
