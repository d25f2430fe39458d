"""`monitor` has the LLM judge score a sample of production answers (ragas faithfulness and
answer relevancy), against the fake OpenAI-compatible judge; without a judge it says so."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint

from {{ cookiecutter.package_name }}.api import create_app
from {{ cookiecutter.package_name }}.container import Services, build_services
from {{ cookiecutter.package_name }}.embeddings import DenseEncoder, SparseEncoder
from {{ cookiecutter.package_name }}.evals.judge import JudgeScorer
from {{ cookiecutter.package_name }}.monitor.command import run_monitor
from {{ cookiecutter.package_name }}.monitor.judged import judge_sample

from ..conftest import keyed_client, make_settings
from ..fake_openai import FakeOpenAI
from ..test_evals_judge import AGREEING_JUDGE, KEY, QUESTION, judge_settings

pytestmark = pytest.mark.usefixtures("ragas_environment")  # ragas sets process-wide state

PASSWORD_POLICY = "at least 14 characters"  # what policies/passwords.md says


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI(api_key=KEY).start()
    yield server
    server.stop()


def _serve(
    tmp_path: Path,
    model_dir: Path,
    dense: DenseEncoder,
    sparse: SparseEncoder,
    corpus: Path,
    reader: InMemoryMetricReader,
    fake: FakeOpenAI | None,
    **settings: Any,
) -> Services:
    values = {"capture_rate": 1.0, "audit_content": "text", **settings}
    built = build_services(
        judge_settings(tmp_path, model_dir, fake, **values)
        if fake
        else make_settings(tmp_path, model_dir, **values),
        dense=dense,
        sparse=sparse,
        meter_provider=MeterProvider(metric_readers=[reader]),
    )
    built.ingestor.ingest(corpus)
    with keyed_client(create_app(services=built), built.settings) as client:
        for _ in range(3):
            assert client.post("/v1/query", json={"question": QUESTION}).status_code == 200
    built.capture.flush()
    return built


def _monitor(services: Services, tmp_path: Path, **kw: Any) -> tuple[dict[str, Any], str]:
    limits = tmp_path / "monitor.toml"
    limits.write_text("[metrics.judge_faithfulness]\nmin = 0.7\n", encoding="utf-8")
    out = tmp_path / "report"
    assert run_monitor(services, 7, "previous", limits, out, now=time.time() + 1, **kw) == 0
    report = json.loads((out / "monitor.json").read_text(encoding="utf-8"))
    return report, (out / "monitor.md").read_text(encoding="utf-8")


def test_a_sample_of_production_answers_is_judged_and_exported(
    fake: FakeOpenAI,
    tmp_path: Path,
    model_dir: Path,
    dense: DenseEncoder,
    sparse: SparseEncoder,
    corpus: Path,
) -> None:
    fake.overrides.update(AGREEING_JUDGE)
    reader = InMemoryMetricReader()
    services = _serve(tmp_path, model_dir, dense, sparse, corpus, reader, fake)
    try:
        report, markdown = _monitor(services, tmp_path, judge_sample=2)
        data = reader.get_metrics_data()
    finally:
        services.close()
    judge = report["judge"]
    assert judge["ran"] is True
    assert (judge["judged"], judge["candidates"]) == (2, 3)
    assert judge["judge"]["judge_model"] == "judge-model"
    assert judge["judge"]["metrics"] == "judge_faithfulness,judge_answer_relevancy"
    assert judge["errors"] == []
    assert report["figures"]["judge_faithfulness"] == 1.0
    assert report["figures"]["judge_answer_relevancy"] == pytest.approx(1.0, abs=1e-6)
    assert report["breaches"] == []
    assert "Judge: 2 of 3 captured answers judged. By judge-model" in markdown
    # The judge read the production question, answer and the passages it was answered from.
    chats = json.dumps([r["body"] for r in fake.chat_requests()])
    assert QUESTION in chats
    assert PASSWORD_POLICY in chats
    assert data is not None
    gauges = {
        m.name: p.value
        for r in data.resource_metrics
        for s in r.scope_metrics
        for m in s.metrics
        for p in m.data.data_points
        if isinstance(p, NumberDataPoint) and m.name.startswith("rag.monitor.")
    }
    assert gauges["rag.monitor.judge.faithfulness"] == report["figures"]["judge_faithfulness"]


def test_without_a_judge_the_report_says_the_judge_metrics_were_not_run(
    tmp_path: Path, model_dir: Path, dense: DenseEncoder, sparse: SparseEncoder, corpus: Path
) -> None:
    services = _serve(tmp_path, model_dir, dense, sparse, corpus, InMemoryMetricReader(), None)
    try:
        report, markdown = _monitor(services, tmp_path)
    finally:
        services.close()
    assert report["judge"]["ran"] is False
    assert report["judge"]["note"] == (
        "judge metrics not run: no judge is configured (set RAG_JUDGE_BASE_URL and RAG_JUDGE_*)"
    )
    assert report["judge"]["judged"] == 0
    assert "judge_faithfulness" not in report["figures"]
    assert "Judge: judge metrics not run: no judge is configured" in markdown


def test_answers_captured_as_a_hash_are_not_sent_to_the_judge(
    fake: FakeOpenAI,
    tmp_path: Path,
    model_dir: Path,
    dense: DenseEncoder,
    sparse: SparseEncoder,
    corpus: Path,
) -> None:
    reader = InMemoryMetricReader()
    services = _serve(
        tmp_path, model_dir, dense, sparse, corpus, reader, fake, audit_content="hash"
    )
    try:
        report, _ = _monitor(services, tmp_path)
    finally:
        services.close()
    assert report["judge"]["ran"] is False
    assert "RAG_AUDIT_CONTENT=text" in report["judge"]["note"]
    assert fake.requests == []


def test_answers_whose_passages_were_re_ingested_are_skipped_not_judged(
    fake: FakeOpenAI,
    tmp_path: Path,
    model_dir: Path,
    dense: DenseEncoder,
    sparse: SparseEncoder,
    corpus: Path,
) -> None:
    services = _serve(tmp_path, model_dir, dense, sparse, corpus, InMemoryMetricReader(), fake)
    try:
        records = list(services.capture.sink.read(0.0, time.time() + 60))
        summary = judge_sample(records, 5, JudgeScorer(services.settings), lambda r: None)
    finally:
        services.close()
    assert not summary.ran
    assert summary.skipped == 3
    assert "no longer stored" in summary.note
    assert fake.chat_requests() == []
