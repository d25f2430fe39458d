"""The whole service over the shipped sample corpus: ingest, sync, retrieve, answer, gate."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider

from {{ cookiecutter.package_name }}.answer import ExtractiveAnswerer
from {{ cookiecutter.package_name }}.ask import Question
from {{ cookiecutter.package_name }}.container import Services, build_services
from {{ cookiecutter.package_name }}.domain import Query
from {{ cookiecutter.package_name }}.embeddings import SparseEncoder
from {{ cookiecutter.package_name }}.evals.gate import GateOptions, run_gate

from .conftest import PROJECT_ROOT, SAMPLE_CORPUS, copy_sample_corpus, make_settings


class MeaninglessEncoder:
    """A wrong embedding model: same size as the real one, vectors unrelated to meaning."""

    model_id = "wrong/model"
    dimensions = 384

    def _vector(self, text: str) -> list[float]:
        seed = sum(map(ord, text))
        return [((seed * (i + 7)) % 97) / 97.0 - 0.5 for i in range(self.dimensions)]

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        return [self._vector(text) for text in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._vector(text)


pytestmark = pytest.mark.slow


def ask(services: Services, question: str) -> tuple[str, list[str], bool]:
    answer = services.asker.ask(Question(question, services.settings.tenant, top_k=5)).answer
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
    hits = services.retriever.retrieve(
        Query(text="FleetOS REST API v1 end of life", top_k=10, tenant="default")
    )
    assert "fleetos-release-notes.html" not in {hit.source for hit in hits}


def gate_options(tmp_path: Path, corpus: Path, **overrides: object) -> GateOptions:
    values: dict[str, object] = {
        "golden": PROJECT_ROOT / "evals" / "golden.jsonl",
        "thresholds": PROJECT_ROOT / "evals" / "thresholds.toml",
        "corpus": corpus,
        "report_dir": tmp_path / "eval",
    }
    values.update(overrides)
    return GateOptions(**values)  # type: ignore[arg-type]


def test_eval_gate_passes_on_the_sample_corpus_and_writes_reports(
    services: Services,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    baseline = tmp_path / "baseline.json"
    options = gate_options(tmp_path, SAMPLE_CORPUS, save_baseline=baseline)
    code = run_gate(services, options)
    out = capsys.readouterr().out
    assert code == 0, out
    assert "GO (" in out
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert report["go"] is True
    assert report["summary"]["hit_at_5"] >= 0.9
    for metric in ("recall_at_5", "ndcg_at_5", "mrr", "rouge_l", "latency_retrieve_p95_ms"):
        assert metric in report["summary"]
    html = (tmp_path / "eval" / "report.html").read_text()
    assert "<svg" in html
    assert ">GO</span></h1>" in html
    assert "<script" not in html
    assert html.count("<tr class=") == len(report["results"])
    assert "| hit_at_5 |" in (tmp_path / "eval" / "report.md").read_text()
    assert not home.exists()  # ragas wrote nothing outside the project

    # The same run against its own baseline: no regression, deltas of zero for quality.
    assert run_gate(services, gate_options(tmp_path, SAMPLE_CORPUS, baseline=baseline)) == 0
    assert "REGRESSED" not in capsys.readouterr().out


def test_eval_gate_fails_when_retrieval_is_broken(
    services: Services, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    # Nothing ingested: every question misses.
    assert run_gate(services, gate_options(tmp_path, empty)) == 1
    out = capsys.readouterr().out
    assert "NO-GO" in out
    assert "hit_at_5" in out.split("NO-GO")[1]


def test_eval_gate_fails_with_a_wrong_embedding_model(
    tmp_path: Path, model_dir: Path, sparse: SparseEncoder, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings(tmp_path, model_dir)
    broken = build_services(
        settings, tracer_provider=TracerProvider(), dense=MeaninglessEncoder(), sparse=sparse
    )
    try:
        code = run_gate(broken, gate_options(tmp_path, SAMPLE_CORPUS))
    finally:
        broken.close()
    assert code == 1
    assert "NO-GO" in capsys.readouterr().out


def test_regression_against_the_baseline_fails_the_gate(
    services: Services, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    baseline = tmp_path / "baseline.json"
    assert run_gate(services, gate_options(tmp_path, SAMPLE_CORPUS, save_baseline=baseline)) == 0
    # A stricter answerer refuses more: answer metrics drop while retrieval stays.
    services.answerer = ExtractiveAnswerer(services.dense, TracerProvider().get_tracer("t"), 0.7, 3)
    relaxed = tmp_path / "relaxed.toml"
    relaxed.write_text("k = 5\n[metrics.hit_at_5]\nmin = 0.5\n", encoding="utf-8")
    capsys.readouterr()
    code = run_gate(
        services, gate_options(tmp_path, SAMPLE_CORPUS, thresholds=relaxed, baseline=baseline)
    )
    out = capsys.readouterr().out
    assert code == 1
    assert "REGRESSED" in out
    assert "answered_answerable" in out.split("NO-GO")[1]
