"""What is accepted is never lost or half applied: a file that breaks its reader, a file that
killed the process, an upload that fails half way, a delete that cannot be completed.

Disk faults are a write wrapper (the tests run as root, for whom a read-only mode bit is no
obstacle): the wrapped call raises the OSError a full or read-only disk raises.
"""

from __future__ import annotations

import errno
import json
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from {{ cookiecutter.package_name }}.api import create_app
from {{ cookiecutter.package_name }}.container import Services
from {{ cookiecutter.package_name }}.errors import StoreUnavailableError
from {{ cookiecutter.package_name }}.ingest.jobs import MAX_ATTEMPTS
from {{ cookiecutter.package_name }}.ingest.uploads import UploadInbox

from ...conftest import assert_error, keyed_client
from .test_documents import answer_sources, upload, wait_for

GOOD = ("gym.md", b"# Gym\n\nThe staff gym opens at six in the morning.\n")
# Legal JSON, nested deeper than the parser's recursion limit.
DEEP = ("deep.jsonl", b"[" * 5_000 + b"]" * 5_000 + b"\n")


def inbox_of(services: Services) -> Path:
    return services.settings.uploads_path / "default"


def audit_events(services: Services, event: str) -> list[dict[str, Any]]:
    path = services.settings.audit_path
    lines = path.read_text("utf-8").splitlines() if path.exists() else []
    return [record for record in map(json.loads, lines) if record["event"] == event]


def listed(client: TestClient) -> dict[str, dict[str, Any]]:
    return {d["source"]: d for d in client.get("/v1/documents").json()["documents"]}


def wait_until_listed(client: TestClient, source: str) -> None:
    deadline = time.monotonic() + 300  # jobs run at nice 19: slow on a loaded machine
    while source not in listed(client):
        assert time.monotonic() < deadline, f"{source} never landed"
        time.sleep(0.05)


def test_a_file_that_breaks_its_reader_is_its_own_outcome_and_is_quarantined(
    client: TestClient, services: Services
) -> None:
    job = upload(client, DEEP, GOOD)
    assert job["status"] == "succeeded", job
    outcomes = {o["source"]: o for o in job["outcomes"]}
    assert outcomes["gym.md"]["status"] == "added"
    assert outcomes["deep.jsonl"]["status"] == "skipped"
    assert "could not be read (RecursionError" in outcomes["deep.jsonl"]["reason"]
    assert answer_sources(client, "When does the gym open?")[0] == "gym.md"
    # Out of the inbox, so the next start does not trip on it again; the reason beside it.
    inbox = inbox_of(services)
    assert not (inbox / "deep.jsonl").exists()
    assert (inbox / ".quarantine" / "deep.jsonl").read_bytes() == DEEP[1]
    reason = (inbox / ".quarantine" / "deep.jsonl.reason.txt").read_text("utf-8")
    assert "RecursionError" in reason
    assert UploadInbox(inbox, services.settings.max_file_bytes).attempts("gym.md") == 0


def test_a_file_that_stopped_the_process_too_often_is_quarantined_at_start_up(
    services: Services,
) -> None:
    inbox = UploadInbox(inbox_of(services), services.settings.max_file_bytes)
    inbox.save("killer.md", [b"Whatever this file does, it killed the service thrice.\n"])
    inbox.save("retried.md", [b"The canteen closes at three in the afternoon.\n"])
    inbox.save(GOOD[0], [GOOD[1]])
    for _ in range(MAX_ATTEMPTS):
        inbox.count_attempt("killer.md")  # what three kills during this file leave behind
    for _ in range(MAX_ATTEMPTS - 1):
        inbox.count_attempt("retried.md")  # two kills: the machine's fault, maybe; retried
    with keyed_client(create_app(services=services), services.settings) as client:
        wait_until_listed(client, "gym.md")
        wait_until_listed(client, "retried.md")
        assert "killer.md" not in listed(client)
        # The count is cleared when the file's outcome is recorded, just after it is listed.
        deadline = time.monotonic() + 300
        while inbox.attempts("retried.md") != 0:
            assert time.monotonic() < deadline, "a landed file kept its attempt count"
            time.sleep(0.05)
    assert [p.name for p in inbox.files()] == ["gym.md", "retried.md"]
    reason = (inbox.folder / ".quarantine" / "killer.md.reason.txt").read_text("utf-8")
    assert f"stopped the service {MAX_ATTEMPTS} times" in reason


def test_a_name_over_255_bytes_refuses_the_whole_upload_before_anything_is_written(
    client: TestClient, services: Services
) -> None:
    long_name = "é" * 130 + ".md"  # 133 characters, 263 bytes: too long for a file system
    response = client.post(
        "/v1/documents",
        files=[("files", GOOD), ("files", (long_name, b"A note with a long name.\n"))],
    )
    assert_error(response, 400, "bytes in UTF-8")
    assert not any(p.is_file() for p in services.settings.uploads_path.rglob("*"))
    assert audit_events(services, "upload") == []


def test_a_disk_that_fills_during_an_upload_keeps_none_of_it(
    client: TestClient, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_save = UploadInbox.save
    saved: list[str] = []

    def fills_up(self: UploadInbox, name: str, blocks: Any) -> Path:
        if saved:
            raise OSError(errno.ENOSPC, "No space left on device")
        saved.append(name)
        return real_save(self, name, blocks)

    monkeypatch.setattr(UploadInbox, "save", fills_up)
    response = client.post(
        "/v1/documents",
        files=[("files", GOOD), ("files", ("second.md", b"Never stored.\n"))],
    )
    assert_error(response, 503, "No space left on device", "free disk space")
    assert saved == ["gym.md"]  # the first file was written, then taken back
    assert not any(p.is_file() for p in services.settings.uploads_path.rglob("*"))
    assert audit_events(services, "upload") == []
    monkeypatch.undo()
    # A restart finds nothing to ingest: the refused upload does not come back.
    with keyed_client(create_app(services=services), services.settings) as again:
        time.sleep(0.5)
        assert listed(again) == {}


def test_an_upload_that_cannot_be_audited_is_refused_whole(
    client: TestClient, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    def read_only(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(services.audit, "upload", read_only)
    response = client.post("/v1/documents", files=[("files", GOOD)])
    assert_error(response, 503, "Read-only file system")
    assert not any(p.is_file() for p in services.settings.uploads_path.rglob("*"))


def test_uploads_cut_off_by_a_crash_roll_back_or_forward_whole(services: Services) -> None:
    inbox = UploadInbox(inbox_of(services), services.settings.max_file_bytes)
    accepted = inbox.staging("accepted")
    accepted.save(GOOD[0], [GOOD[1]])
    accepted.save("canteen.md", [b"The canteen closes at three in the afternoon.\n"])
    (accepted.folder / ".accepted").touch()  # audited, crashed before the files moved in
    unfinished = inbox.staging("unfinished")
    unfinished.save("half.md", [b"This upload never finished; nobody was told it was.\n"])
    with keyed_client(create_app(services=services), services.settings) as client:
        wait_until_listed(client, "gym.md")
        wait_until_listed(client, "canteen.md")
        assert "half.md" not in listed(client)
    assert [p.name for p in inbox.files()] == ["canteen.md", "gym.md"]
    assert not list(inbox.folder.glob(".staging-*"))


def test_a_delete_that_cannot_be_audited_changes_nothing(
    client: TestClient, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    upload(client, GOOD)
    document = listed(client)["gym.md"]

    def read_only(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(services.audit, "delete", read_only)
    response = client.delete(f"/v1/documents/{document['id']}")
    assert_error(response, 503, "Read-only file system", "Nothing was changed")
    assert listed(client)["gym.md"]["chunks"] == document["chunks"]
    assert answer_sources(client, "When does the gym open?")[0] == "gym.md"
    assert (inbox_of(services) / "gym.md").is_file()  # so a restart changes nothing either


def test_a_delete_whose_store_write_fails_keeps_the_document_and_its_file(
    client: TestClient, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    upload(client, GOOD)
    document = listed(client)["gym.md"]

    def unavailable(**kwargs: Any) -> None:
        raise StoreUnavailableError("The store is unavailable.")

    monkeypatch.setattr(services.store, "delete_document", unavailable)
    response = client.delete(f"/v1/documents/{document['id']}")
    assert_error(response, 503, "store is unavailable")
    monkeypatch.undo()
    assert (inbox_of(services) / "gym.md").is_file()
    assert not (inbox_of(services) / ".deleting" / "gym.md").exists()
    assert listed(client)["gym.md"]["id"] == document["id"]
    # The attempt is audited; a retry completes it.
    assert [e["document_id"] for e in audit_events(services, "delete")] == [document["id"]]
    assert client.delete(f"/v1/documents/{document['id']}").status_code == 200
    assert listed(client) == {}
    assert not (inbox_of(services) / "gym.md").exists()


def test_a_delete_cut_off_by_a_crash_is_finished_or_undone_at_start_up(
    client: TestClient, services: Services
) -> None:
    job = upload(client, GOOD, ("canteen.md", b"The canteen closes at three.\n"))
    assert wait_for(client, job)["status"] == "succeeded"
    inbox = inbox_of(services)
    aside = inbox / ".deleting"
    aside.mkdir()
    # Crashed after setting the file aside, before deleting the chunks: the delete did not
    # happen, the file comes back.
    (inbox / "gym.md").rename(aside / "gym.md")
    # Crashed after deleting the chunks, before removing the file: the delete happened.
    canteen = listed(client)["canteen.md"]
    assert client.delete(f"/v1/documents/{canteen['id']}").status_code == 200
    (aside / "canteen.md").write_bytes(b"The canteen closes at three.\n")
    with keyed_client(create_app(services=services), services.settings) as again:
        time.sleep(0.5)
        assert set(listed(again)) == {"gym.md"}
    assert [p.name for p in UploadInbox(inbox, 1 << 20).files()] == ["gym.md"]
    assert not list(aside.iterdir())
