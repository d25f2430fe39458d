from __future__ import annotations

import io
import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from {{ cookiecutter.package_name }}.api import create_app
from {{ cookiecutter.package_name }}.cli import TerminalProgress, main
from {{ cookiecutter.package_name }}.container import Services
from {{ cookiecutter.package_name }}.evals.metrics import RagasScorer
from {{ cookiecutter.package_name }}.ingest import FileOutcome
from {{ cookiecutter.package_name }}.settings import CONSOLE_SCRIPT, PACKAGE_NAME, Settings
from {{ cookiecutter.package_name }}.telemetry import configure_logging

from .conftest import cli_server, free_port, keyed_client
from .fake_openai import FakeOpenAI, Reply

LLM_KEY = "sk-api-test-key"
QUESTION = "How long must a password be?"


def test_ingest_prints_every_file_and_a_summary(
    cli_env: Path, corpus: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (corpus / "broken.txt").write_bytes(b"\x00\x00")
    report = cli_env / "report.json"
    assert main(["ingest", str(corpus), "--report", str(report)]) == 0
    out = capsys.readouterr().out
    assert "added     policies/passwords.md" in out
    assert "skipped   broken.txt" in out
    assert "3 added, 0 updated, 0 unchanged, 0 deleted, 1 skipped" in out
    assert json.loads(report.read_text())["counts"]["skipped"] == 1
    assert main(["ingest", str(corpus)]) == 0
    assert "(nothing changed)" in capsys.readouterr().out


def test_ask_json_prints_exactly_what_the_api_returns(
    cli_env: Path, corpus: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    question = "How long must a password be?"
    main(["ingest", str(corpus)])
    capsys.readouterr()
    assert main(["ask", question, "--json"]) == 0
    from_cli = json.loads(capsys.readouterr().out)
    with keyed_client(create_app(), Settings()) as client:
        from_api = client.post("/v1/query", json={"question": question}).json()
    assert from_cli.pop("trace_id") != from_api.pop("trace_id")
    assert from_cli == from_api


def test_ask_prints_answer_citations_and_trace_id(
    cli_env: Path, corpus: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["ingest", str(corpus)])
    assert main(["ask", "When is the office closed in April?"]) == 0
    out = capsys.readouterr().out
    assert "27 April" in out
    assert "[1] holidays.html" in out
    assert "trace id: " in out


def test_bad_setting_is_one_line_naming_the_variable(
    cli_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RAG_DEFAULT_TOP_K", "many")
    assert main(["ask", "anything"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: RAG_DEFAULT_TOP_K:")
    assert "Traceback" not in err


def test_top_k_below_one_is_refused_not_taken_as_the_default(
    cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ask", "anything", "--top-k", "0"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("error: top_k=0 must be at least 1; leave it out for the default")


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["ask"], "the following arguments are required: question"),
        (["ask", "x", "--top-k", "many"], "argument --top-k: invalid int value: 'many'"),
        (["serve", "--port", "http"], "argument --port: invalid int value: 'http'"),
        (["reindex"], "argument command: invalid choice: 'reindex'"),
    ],
)
def test_usage_mistakes_are_one_error_line_pointing_at_help(
    argv: list[str], problem: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"error: {problem}")
    assert line.endswith("--help`.")


def test_missing_folder_is_reported_without_a_traceback(
    cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ingest", "does-not-exist"]) == 2
    assert "error: Folder does-not-exist does not exist" in capsys.readouterr().err


def test_console_script_is_installed_under_the_project_slug(cli_env: Path) -> None:
    script = Path(sys.executable).parent / CONSOLE_SCRIPT
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=True)
    for command in ("ingest", "ask", "serve", "eval", "demo"):
        assert command in result.stdout


@pytest.mark.slow
def test_serve_answers_over_http_and_holds_the_store(
    cli_env: Path, corpus: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ingest", str(corpus)]) == 0
    capsys.readouterr()
    assert main(["keys", "create", "--tenant", "default", "--scopes", "query"]) == 0
    key = capsys.readouterr().out.strip()
    with cli_server() as (base, server):
        question = {"question": "How long must a password be?"}
        assert httpx.post(f"{base}/v1/query", json=question).status_code == 401
        response = httpx.post(
            f"{base}/v1/query", json=question, headers={"Authorization": f"Bearer {key}"}
        )
        assert response.status_code == 200
        assert "14 characters" in response.json()["answer"]
        assert response.headers["X-Trace-Id"] == response.json()["trace_id"]

        capsys.readouterr()
        assert main(["ingest", str(corpus)]) == 2
        err = capsys.readouterr().err
        assert f"in use by process {server.pid}" in err
        assert "serve" in err


def test_serve_on_a_port_in_use_is_one_line_naming_the_fix(cli_env: Path) -> None:
    with socket.socket() as held:  # another server on the port
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        script = Path(sys.executable).parent / CONSOLE_SCRIPT
        result = subprocess.run(
            [str(script), "serve", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 2
    assert result.stdout == ""
    [line] = result.stderr.splitlines()  # no uvicorn or app start-up lines before it
    assert line.startswith(f"error: port {port} on 127.0.0.1 is already in use")
    assert "--port or RAG_PORT" in line


def test_serve_on_an_address_not_of_this_machine_names_host(
    cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 192.0.2.1 is TEST-NET-1 (RFC 5737): never assigned to a local interface.
    assert main(["serve", "--host", "192.0.2.1", "--port", str(free_port())]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot listen on 192.0.2.1")
    assert "--host or RAG_HOST" in err
    assert len(err.splitlines()) == 1


def test_unwritable_report_path_names_report_not_the_data_folder(
    cli_env: Path, corpus: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = cli_env / "missing-folder" / "report.json"
    assert main(["ingest", str(corpus), "--report", str(report)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot write the report to {report}")
    assert "--report" in err
    assert "RAG_DATA_DIR" not in err


def _notes(count: int, sentences: int) -> list[tuple[str, bytes]]:
    """Distinct Markdown files (identical ones would be stored once), about 30 chunks each."""
    return [
        (
            f"note{i}.md",
            f"# Note {i}\n\n".encode()
            + "".join(
                f"Item {j} of note {i} says the courier for region {i * 97 + j} leaves at "
                f"{j % 24} hours and carries parcels up to {i + j} kilograms. "
                for j in range(sentences)
            ).encode(),
        )
        for i in range(count)
    ]


@pytest.mark.slow
def test_sigterm_stops_serve_within_the_grace_while_a_job_runs_and_nothing_is_lost(
    cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["keys", "create", "--tenant", "default", "--scopes", "ingest"]) == 0
    headers = {"Authorization": f"Bearer {capsys.readouterr().out.strip()}"}
    grace = 2.0
    notes = _notes(12, 120)
    with cli_server({**os.environ, "RAG_SHUTDOWN_GRACE_S": str(grace)}) as (base, server):
        files = [("files", (name, content)) for name, content in notes]
        accepted = httpx.post(f"{base}/v1/documents", files=files, headers=headers, timeout=30)
        assert accepted.status_code == 202, accepted.text
        job_url = f"{base}{accepted.headers['Location']}"
        deadline = time.monotonic() + 60
        while (job := httpx.get(job_url, headers=headers).json())["status"] == "queued":
            assert time.monotonic() < deadline, "the job never started"
            time.sleep(0.05)
        assert job["status"] == "running", job
        assert job["done"] < job["total"], job
        sent = time.monotonic()
        server.terminate()  # SIGTERM
        server.wait(timeout=grace + 30)
        stopped_after = time.monotonic() - sent
    # Exits within the grace (plus start-up of the shutdown, and interpreter exit), where it
    # used to wait for the whole job.
    print(f"serve stopped {stopped_after:.1f} s after SIGTERM (grace {grace} s)")
    assert stopped_after < grace + 5, f"serve took {stopped_after:.1f} s to stop"

    with cli_server() as (base, server):  # the inbox kept every accepted file: the next start
        deadline = time.monotonic() + 300  # ingests it
        while True:
            listed = httpx.get(f"{base}/v1/documents", headers=headers).json()["documents"]
            if {d["source"] for d in listed} == {name for name, _ in notes}:
                break
            assert time.monotonic() < deadline, f"after the restart only {len(listed)} landed"
            time.sleep(0.5)


def test_demo_uses_its_own_collection(
    cli_env: Path, corpus: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RAG_EVAL_CORPUS", str(corpus))
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert f"Demo collection: {PACKAGE_NAME}_demo" in out
    assert out.count("trace id: ") == 3
    assert main(["ask", "How long must a password be?", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["citations"] == []  # serving collection untouched


@pytest.mark.filterwarnings("ignore:Failed to obtain server version")
def test_unreachable_qdrant_server_is_one_actionable_line(
    cli_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RAG_QDRANT_URL", "http://127.0.0.1:9")
    assert main(["ask", "anything"]) == 2
    err = capsys.readouterr().err
    assert "Qdrant at http://127.0.0.1:9 is unreachable" in err
    assert "RAG_QDRANT_URL" in err
    assert "Traceback" not in err


def test_strict_ingest_fails_when_a_file_is_skipped(
    cli_env: Path, corpus: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ingest", str(corpus), "--strict"]) == 0
    (corpus / "broken.txt").write_bytes(b"\x00\x01")
    assert main(["ingest", str(corpus), "--strict"]) == 1
    err = capsys.readouterr().err
    assert "1 file skipped and 0 warnings (--strict)" in err
    assert main(["ingest", str(corpus), "--dry-run"]) == 0
    assert "Dry run of " in capsys.readouterr().out


def test_strict_ingest_fails_on_a_skipped_record_and_prints_it(
    cli_env: Path, corpus: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (corpus / "faq.jsonl").write_text('{"text": "Lunch is at noon."}\n{oops\n', encoding="utf-8")
    assert main(["ingest", str(corpus), "--strict"]) == 1
    captured = capsys.readouterr()
    assert "warning: skipped line 2 is not valid JSON" in captured.out
    assert "0 files skipped and 1 warning (--strict)" in captured.err


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_ingest_prints_its_summary_once_and_counts_in_words(
    cli_env: Path, corpus: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (corpus / "short.txt").write_text("The car park opens at seven.\n", encoding="utf-8")
    assert main(["ingest", str(corpus)]) == 0  # stderr is not a terminal here: JSON logs
    captured = capsys.readouterr()
    summaries = [line for line in (captured.out + captured.err).splitlines() if "Ingested " in line]
    assert summaries == [line for line in captured.out.splitlines() if "Ingested " in line]
    assert len(summaries) == 1
    assert "added     short.txt (1 chunk)\n" in captured.out
    assert "chunks)" in captured.out  # the longer files
    assert "1 chunks" not in captured.out


@pytest.mark.parametrize("terminal", [True, False])
def test_logs_are_text_on_a_terminal_and_json_otherwise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, terminal: bool
) -> None:
    stderr = _Terminal() if terminal else io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    configure_logging(Settings(_env_file=None, data_dir=tmp_path))  # RAG_LOG_FORMAT unset: auto
    logging.getLogger("acme.test").warning("disk almost full")
    [line] = stderr.getvalue().splitlines()
    if terminal:
        assert line.endswith("WARNING acme.test: disk almost full")
    else:
        assert json.loads(line)["message"] == "disk almost full"


def test_eval_metrics_log_nothing_at_info(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(Settings(_env_file=None, data_dir=tmp_path))
    scorer = RagasScorer(tmp_path / "ragas")
    scorer.score("q?", "An answer.", "The answer.", ["a.md"], ["a.md"])
    # rouge-score logged "Using default tokenizer." through absl, once per question.
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("terminal", [True, False])
def test_progress_bar_shows_counts_only_on_a_terminal(
    monkeypatch: pytest.MonkeyPatch, terminal: bool
) -> None:
    stderr = _Terminal() if terminal else io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    with TerminalProgress() as progress:
        progress.start(3)
        for name in ("a.md", "b.md", "c.md"):
            progress.advance(FileOutcome(name, "added", 1))
    shown = stderr.getvalue()
    if terminal:
        assert "3/3" in shown
        assert "file" in shown
    else:
        assert shown == ""


def test_ingest_while_the_store_is_held_says_to_upload_through_the_api(
    services: Services,
    corpus: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("RAG_DATA_DIR", str(services.settings.data_dir))
    monkeypatch.setenv("RAG_MODEL_DIR", str(services.settings.models_path))
    monkeypatch.setenv("RAG_COLLECTION", services.settings.collection)  # one lock per collection
    assert main(["ingest", str(corpus)]) == 2
    err = capsys.readouterr().err
    assert "is in use by" in err
    assert "curl -F files=@report.pdf http://127.0.0.1:8000/v1/documents" in err
    assert "Traceback" not in err


# --- with the LLM answerer -------------------------------------------------------------------


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI(api_key=LLM_KEY).start()
    yield server
    server.stop()


def test_ask_json_prints_what_the_api_returns_with_the_llm_answerer(
    cli_env: Path,
    corpus: Path,
    fake: FakeOpenAI,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from {{ cookiecutter.package_name }}.cli import main

    for name, value in {
        "RAG_ANSWERER": "llm",
        "RAG_LLM_PROVIDER": "openai_like",
        "RAG_LLM_BASE_URL": fake.base_url,
        "RAG_LLM_API_KEY": LLM_KEY,
        "RAG_LLM_MODEL": "fake-chat",
        "RAG_LLM_PRICES": '{"fake-chat": [0.5, 1.5]}',
    }.items():
        monkeypatch.setenv(name, value)
    fake.replies = [Reply(content="At least 14 characters [1].")] * 3
    main(["ingest", str(corpus)])
    capsys.readouterr()
    assert main(["ask", QUESTION, "--json"]) == 0
    from_cli = json.loads(capsys.readouterr().out)
    app = create_app()
    with keyed_client(app, app.state.services.settings) as client:
        from_api = client.post("/v1/query", json={"question": QUESTION}).json()
    assert from_cli.pop("trace_id") != from_api.pop("trace_id")
    assert from_cli == from_api
    assert from_cli["grounded"] is True
    assert from_cli["cost_usd"] > 0
    assert main(["ask", QUESTION]) == 0
    out = capsys.readouterr().out
    assert "model fake-chat" in out
    assert "5 out tokens, cost $0.000" in out


def test_ask_with_an_unreachable_model_prints_one_line(
    cli_env: Path, corpus: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from {{ cookiecutter.package_name }}.cli import main

    monkeypatch.setenv("RAG_ANSWERER", "llm")
    monkeypatch.setenv("RAG_LLM_PROVIDER", "openai_like")
    monkeypatch.setenv("RAG_LLM_BASE_URL", f"http://127.0.0.1:{free_port()}/v1")  # nobody there
    monkeypatch.setenv("RAG_LLM_MAX_RETRIES", "0")
    main(["ingest", str(corpus)])
    capsys.readouterr()
    assert main(["ask", QUESTION]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1
    assert "cannot reach http://127.0.0.1:" in lines[0]
    assert "Traceback" not in err
