"""The README is what a client's engineer runs first: its claims and its quickstart commands
are checked against the service, so they cannot drift from it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from {{ cookiecutter.package_name }}.cli import main
from {{ cookiecutter.package_name }}.ingest.formats import BY_SUFFIX

from .conftest import PROJECT_ROOT, SAMPLE_CORPUS, cli_server
from .messy_files import write_pdf

README = PROJECT_ROOT / "README.md"
# curl prints the status after the body, so each command's answer can be checked.
WITH_STATUS = "curl() { command curl -w '\\n%{http_code}' \"$@\"; }"
UNFINISHED = {"queued", "running"}


def section(title: str) -> str:
    text = README.read_text(encoding="utf-8")
    return text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def shell_commands(markdown: str) -> list[str]:
    """The commands of every sh block, in order: continuation lines joined, comment lines
    and blank lines dropped."""
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", markdown, flags=re.S):
        joined = block.replace("\\\n", " ")
        commands += [line.strip() for line in joined.splitlines()]
    return [line for line in commands if line and not line.startswith("#")]


def test_readme_lists_exactly_the_formats_ingestion_reads() -> None:
    intro = README.read_text(encoding="utf-8").split("\n## ", 1)[0]
    assert set(re.findall(r"`(\.[a-z0-9]+)`", intro)) == set(BY_SUFFIX)


def test_every_readme_curl_to_the_api_sends_a_key() -> None:
    text = README.read_text(encoding="utf-8")
    inline = [" ".join(c.split()) for c in re.findall(r"`(curl [^`]+)`", text)]
    curls = [c for c in shell_commands(text) + inline if c.startswith("curl")]
    keyed = ('"Authorization: Bearer $KEY"', '"$H"')
    assert 'H="Authorization: Bearer $KEY"' in text  # what "$H" stands for
    to_api = [c for c in curls if "localhost:8000/v1/" in c]
    assert len(to_api) >= 9
    for command in to_api:  # without one, each answers 401
        assert any(header in command for header in keyed), command


def as_a_reader_runs_it(command: str, base: str, seen: dict[str, str]) -> str:
    """The README's command with what its reader fills in: the server they started, and the
    ids earlier answers gave."""
    command = command.replace("localhost:8000", base.removeprefix("http://"))
    for placeholder, value in seen.items():
        command = command.replace(f"<{placeholder}>", value)
    assert "<" not in command.split("#")[0], f"a placeholder no answer filled: {command}"
    return command


def run(command: str, prelude: list[str], cwd: Path) -> tuple[int, str]:
    script = "\n".join([WITH_STATUS, *prelude, command])
    done = subprocess.run(
        ["bash", "-c", script], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, (command, done.stdout, done.stderr)
    body, status = done.stdout.rsplit("\n", 1)
    return int(status), body


def check_answer(command: str, status: int, body: str, seen: dict[str, str]) -> Any:
    """A 2xx and the body the README says it gives; records the ids later commands use."""
    assert 200 <= status < 300, (command, status, body)
    if '"stream": true' in command:
        assert "event: final" in body, body
        assert "event: error" not in body, body
        return None
    answer = json.loads(body)
    if "/readyz" in command:
        assert answer["ready"] is True, answer
    elif "/v1/retrieve" in command:
        assert answer["hits"], answer
    elif "/v1/query" in command:
        assert not answer["refused"], answer
        sources = {citation["source"] for citation in answer["citations"]}
        if "filters" in command:
            assert sources == {"warranty-terms.txt"}, answer
        assert sources, answer
    elif "-F files=@" in command:
        assert status == 202, answer
        seen["job id"] = answer["id"]
    elif "-X DELETE" in command:
        assert answer["source"] == "handbook.pdf", answer
        assert answer["chunks_deleted"] > 0, answer
    elif "/v1/documents" in command:
        by_source = {document["source"]: document["id"] for document in answer["documents"]}
        assert {"handbook.pdf", "faq.jsonl", "warranty-terms.txt"} <= set(by_source), answer
        seen["document id"] = by_source["handbook.pdf"]
    return answer


@pytest.mark.slow
def test_quickstart_commands_work_against_a_live_server(
    cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every curl of the quickstart, run as its reader runs it: after `make ingest` (of the
    sample corpus, which its questions are about) and `make key`, against `serve`."""
    assert shutil.which("curl"), "the README's commands need curl"
    assert main(["ingest", str(SAMPLE_CORPUS)]) == 0
    capsys.readouterr()
    assert main(["keys", "create", "--tenant", "default", "--scopes", "query,ingest"]) == 0
    key = capsys.readouterr().out.strip()
    # The files the upload example sends, in the folder the reader runs it from.
    write_pdf(cli_env / "handbook.pdf", ["Travel expenses are reimbursed within 30 days."])
    (cli_env / "faq.jsonl").write_text(
        json.dumps({"question": "Where is the canteen?", "answer": "On the ground floor."}),
        encoding="utf-8",
    )
    commands = shell_commands(section("Quickstart"))
    curls = [c for c in commands if c.startswith("curl")]
    assert len(curls) >= 9, curls
    # The other lines set the terminal's variables (KEY: the key `make key` printed).
    prelude = [c.replace("rag_...", key) for c in commands if c.startswith(("export ", "H="))]
    seen: dict[str, str] = {}
    with cli_server() as (base, _):
        for command in curls:
            runnable = as_a_reader_runs_it(command, base, seen)
            answer = check_answer(command, *run(runnable, prelude, cli_env), seen)
            deadline = time.monotonic() + 180
            while "/v1/ingestions/" in command and answer["status"] in UNFINISHED:
                assert time.monotonic() < deadline, answer  # the reader re-runs it until done
                time.sleep(0.5)
                answer = check_answer(command, *run(runnable, prelude, cli_env), seen)
            if "/v1/ingestions/" in command:
                assert answer["status"] == "succeeded", answer
                assert {o["status"] for o in answer["outcomes"]} == {"added"}, answer
