"""Capture: sampled production questions in a Qdrant collection beside the corpus."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from {{ cookiecutter.package_name }}.api import create_app
from {{ cookiecutter.package_name }}.ask import Question
from {{ cookiecutter.package_name }}.container import Services, build_services
from {{ cookiecutter.package_name }}.embeddings import DenseEncoder, SparseEncoder
from {{ cookiecutter.package_name }}.errors import BadRequestError
from {{ cookiecutter.package_name }}.evals.gate import _check_reviewed
from {{ cookiecutter.package_name }}.evals.golden import load_golden_set
from {{ cookiecutter.package_name }}.monitor.command import run_monitor
from {{ cookiecutter.package_name }}.monitor.harvest import run_harvest
from {{ cookiecutter.package_name }}.traffic.capture import Capture, CaptureRecord

from ..conftest import keyed_client, make_settings, sse_events

QUESTION = "How long must passwords be?"


@pytest.fixture
def captured(
    tmp_path: Path, model_dir: Path, dense: DenseEncoder, sparse: SparseEncoder, corpus: Path
) -> Iterator[Services]:
    built = build_services(
        make_settings(tmp_path, model_dir, capture_rate=1.0), dense=dense, sparse=sparse
    )
    built.ingestor.ingest(corpus)
    yield built
    built.close()


def _ask(services: Services) -> str:
    with keyed_client(create_app(services=services), services.settings) as client:
        response = client.post("/v1/query", json={"question": QUESTION})
    assert response.status_code == 200, response.text
    return str(response.json()["trace_id"])


def _records(services: Services) -> list[CaptureRecord]:
    services.capture.flush()
    return list(services.capture.sink.read(0.0, time.time() + 60))


def test_an_answered_question_is_captured_with_its_vector_and_hash(captured: Services) -> None:
    trace_id = _ask(captured)
    (record,) = _records(captured)
    assert record.trace_id == trace_id
    assert record.tenant == "default"
    assert record.question == {"sha256": hashlib.sha256(QUESTION.encode()).hexdigest()}
    assert len(record.vector) == captured.dense.dimensions
    assert record.chunk_ids
    assert len(record.scores) == len(record.chunk_ids)
    assert record.refused is False
    assert set(record.latency_ms) == {"retrieve", "answer"}
    assert captured.capture.errors == 0


def test_a_streamed_answer_is_captured_when_its_final_event_is_sent(captured: Services) -> None:
    with keyed_client(create_app(services=captured), captured.settings) as client:
        response = client.post("/v1/query", json={"question": QUESTION, "stream": True})
    assert response.status_code == 200, response.text
    kind, final = sse_events(response.text)[-1]
    assert kind == "final"
    (record,) = _records(captured)
    assert record.trace_id == final["trace_id"]
    assert record.refused is False
    assert record.citations_valid is True
    assert {c["chunk_id"] for c in final["citations"]} <= set(record.chunk_ids)
    assert set(record.latency_ms) == {"retrieve", "answer"}
    assert len(record.vector) == captured.dense.dimensions


def test_a_retrieval_is_captured_as_one_with_no_answer(captured: Services) -> None:
    with keyed_client(create_app(services=captured), captured.settings) as client:
        response = client.post("/v1/retrieve", json={"query": QUESTION})
    assert response.status_code == 200, response.text
    body = response.json()
    (record,) = _records(captured)
    assert record.trace_id == body["trace_id"]
    assert record.chunk_ids == [h["chunk_id"] for h in body["hits"]]
    assert record.refused is None  # nothing was answered: not counted in the refusal rate
    assert set(record.latency_ms) == {"retrieve"}
    assert len(record.vector) == captured.dense.dimensions


def test_questions_without_a_key_are_not_captured(captured: Services) -> None:
    captured.asker.ask(Question(QUESTION, "default"))  # the CLI and the eval gate ask so
    captured.asker.retrieve(Question(QUESTION, "default"))
    assert _records(captured) == []


def test_rate_zero_captures_nothing(services: Services, corpus: Path) -> None:
    services.ingestor.ingest(corpus)
    _ask(services)
    assert _records(services) == []


class _BrokenSink:
    def write(self, records: list[CaptureRecord]) -> None:
        raise OSError("disk full")

    def read(self, since: float, until: float) -> Iterator[CaptureRecord]:
        return iter(())

    def prune(self, before: float) -> None:
        raise AssertionError("not reached")


def test_a_capture_failure_never_fails_the_question(captured: Services) -> None:
    captured.capture.close()
    broken = Capture(_BrokenSink(), captured.dense.embed_query, rate=1.0)
    captured.capture = broken
    _ask(captured)
    broken.flush()
    assert broken.errors == 1
    broken.close()


def test_records_older_than_the_retention_are_pruned(captured: Services) -> None:
    _ask(captured)
    (record,) = _records(captured)
    captured.capture.sink.prune(record.time + 1)
    assert _records(captured) == []


def test_monitor_reports_on_captured_traffic_and_fails_on_a_breach(
    captured: Services, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for _ in range(3):
        _ask(captured)
    captured.capture.flush()
    limits = tmp_path / "monitor.toml"
    limits.write_text("min_sample = 50\n[metrics.refusal_rate]\nmax = 0.5\n", encoding="utf-8")
    out = tmp_path / "report"
    assert run_monitor(captured, 7, "previous", limits, out) == 0
    assert "not enough traffic" in capsys.readouterr().out
    assert json.loads((out / "monitor.json").read_text())["n_current"] == 3
    assert (out / "monitor.html").read_text().startswith("<!doctype html>")
    limits.write_text("[metrics.questions]\nmin = 100\n", encoding="utf-8")
    assert run_monitor(captured, 7, "previous", limits, out) == 1
    assert "BREACH: questions 3 < 100" in capsys.readouterr().out


def test_harvest_drafts_rows_the_golden_set_loader_accepts_and_the_gate_refuses(
    tmp_path: Path, model_dir: Path, dense: DenseEncoder, sparse: SparseEncoder, corpus: Path
) -> None:
    settings = make_settings(tmp_path, model_dir, capture_rate=1.0, audit_content="text")
    built = build_services(settings, dense=dense, sparse=sparse)
    try:
        built.ingestor.ingest(corpus)
        trace_id = _ask(built)
        built.capture.flush()
        built.feedback.add(trace_id, "default", "k", "down", "wrong")
        out = tmp_path / "harvest.jsonl"
        assert run_harvest(built, 7, out, overwrite=False) == 0
    finally:
        built.close()
    (item,) = load_golden_set(out)
    assert item.question == QUESTION
    assert not item.reviewed
    assert "down-voted" in item.tags
    assert "policies/passwords.md" in item.gold_sources
    with pytest.raises(BadRequestError, match="unreviewed draft row"):
        _check_reviewed([item], out, allowed=False)
