"""Uploads, ingestion jobs, listing and deleting documents through the HTTP API."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from {{ cookiecutter.package_name }}.api import create_app
from {{ cookiecutter.package_name }}.container import Services

from ...conftest import assert_error, keyed_client
from ...messy_files import pdf_bytes


def wait_for(client: TestClient, job: dict[str, Any], timeout_s: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while job["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, f"job still {job['status']}: {job}"
        time.sleep(0.05)
        job = client.get(f"/v1/ingestions/{job['id']}").json()
    return job


def upload(client: TestClient, *files: tuple[str, bytes]) -> dict[str, Any]:
    response = client.post(
        "/v1/documents", files=[("files", (name, content)) for name, content in files]
    )
    assert response.status_code == 202, response.text
    assert response.headers["Location"] == f"/v1/ingestions/{response.json()['id']}"
    return wait_for(client, response.json())


def answer_sources(client: TestClient, question: str) -> list[str]:
    body = client.post("/v1/retrieve", json={"query": question, "top_k": 3}).json()
    return [hit["source"] for hit in body["hits"]]


def test_uploaded_documents_are_ingested_by_a_job_and_retrievable(
    client: TestClient, services: Services
) -> None:
    job = upload(
        client,
        ("parking.md", b"# Parking\n\nVisitor parking is on level -2 of the east garage.\n"),
        ("arm.pdf", pdf_bytes(["The arm lifts at most 12 kilograms."])),
        ("broken.pdf", b"%PDF-1.4 nothing else"),
    )
    assert job["status"] == "succeeded"
    assert (job["total"], job["done"]) == (3, 3)
    outcomes = {o["source"]: o for o in job["outcomes"]}
    assert outcomes["parking.md"]["status"] == "added"
    assert outcomes["arm.pdf"]["status"] == "added"
    assert outcomes["broken.pdf"]["status"] == "skipped"
    assert "not a readable PDF" in outcomes["broken.pdf"]["reason"]
    assert answer_sources(client, "Where do visitors park?")[0] == "parking.md"

    listed = {d["source"]: d for d in client.get("/v1/documents").json()["documents"]}
    assert set(listed) == {"parking.md", "arm.pdf"}
    assert listed["parking.md"]["corpus"] == services.settings.upload_corpus
    assert listed["parking.md"]["chunks"] >= 1
    assert len(listed["parking.md"]["sha256"]) == 64
    assert listed["parking.md"]["ingested_at"]


def test_deleted_document_is_gone_from_answers_listing_and_disk(
    client: TestClient, services: Services
) -> None:
    upload(client, ("parking.md", b"Visitor parking is on level -2 of the east garage.\n"))
    document = client.get("/v1/documents").json()["documents"][0]
    response = client.delete(f"/v1/documents/{document['id']}")
    assert response.status_code == 200
    assert response.json()["chunks_deleted"] == document["chunks"]
    assert "parking.md" not in answer_sources(client, "Where do visitors park?")
    assert client.get("/v1/documents").json()["documents"] == []
    assert not (services.settings.uploads_path / "parking.md").exists()
    assert_error(client.delete(f"/v1/documents/{document['id']}"), 404, "GET /v1/documents")


def test_reuploading_a_file_replaces_its_earlier_version(client: TestClient) -> None:
    upload(client, ("hours.txt", b"The canteen opens at 11:30.\n"))
    job = upload(client, ("hours.txt", b"The canteen opens at 12:00 from May.\n"))
    assert [o["status"] for o in job["outcomes"]] == ["updated"]
    body = client.post("/v1/retrieve", json={"query": "canteen opening", "top_k": 5}).json()
    assert [hit["text"] for hit in body["hits"]] == ["The canteen opens at 12:00 from May."]


@pytest.mark.parametrize(
    ("name", "saved_as"),
    [
        ("../../etc/passwd.md", "passwd.md"),
        ("/abs/path/notes.md", "notes.md"),
        ("C:\\Users\\me\\notes.md", "notes.md"),
        ("we<i>rd|na:me.md", "we_i_rd_na_me.md"),
    ],
)
def test_file_names_are_sanitised_and_never_leave_the_upload_folder(
    client: TestClient, services: Services, tmp_path: Path, name: str, saved_as: str
) -> None:
    job = upload(client, (name, b"Some text about the upload folder.\n"))
    assert job["files"] == [saved_as]
    assert (services.settings.uploads_path / "default" / saved_as).is_file()
    assert not (tmp_path / "etc").exists()


@pytest.mark.parametrize(
    ("files", "status", "fragment"),
    [
        ([("virus.exe", b"MZ")], 415, "file type '.exe' is not supported"),
        ([("..", b"x")], 400, "no usable name"),
        ([(".env.md", b"x")], 400, "no usable name"),
        ([("a.md", b"x"), ("a.md", b"y")], 400, "appears twice"),
        ([("big.txt", b"x" * 2_000)], 413, "over the 1,000-byte limit per file"),
        ([(f"f{i}.md", b"x") for i in range(4)], 413, "RAG_MAX_UPLOAD_FILES"),
    ],
)
def test_bad_uploads_are_refused_with_the_reason_and_nothing_is_kept(
    services: Services, files: list[tuple[str, bytes]], status: int, fragment: str
) -> None:
    services.settings.max_file_bytes = 1_000
    services.settings.max_upload_files = 3
    with keyed_client(create_app(services=services), services.settings) as client:
        response = client.post(
            "/v1/documents", files=[("files", (name, content)) for name, content in files]
        )
        assert_error(response, status, fragment)
    assert not any(p.is_file() for p in services.settings.uploads_path.rglob("*"))


def test_unknown_job_is_a_404_that_says_where_ids_come_from(client: TestClient) -> None:
    assert_error(client.get("/v1/ingestions/nope"), 404, "POST /v1/documents")


def test_queries_are_answered_while_a_job_runs(client: TestClient) -> None:
    upload(client, ("seed.md", b"The fire assembly point is the north car park.\n"))
    many = [
        (f"doc{i}.md", f"# Note {i}\n\n".encode() + b"Filler sentence about nothing. " * 200)
        for i in range(4)
    ]
    response = client.post(
        "/v1/documents", files=[("files", (name, content)) for name, content in many]
    )
    job = response.json()
    answered_while_running = 0
    while client.get(f"/v1/ingestions/{job['id']}").json()["status"] in ("queued", "running"):
        assert answer_sources(client, "Where is the fire assembly point?")[0] == "seed.md"
        answered_while_running += 1
    assert answered_while_running > 0
    assert wait_for(client, job)["status"] == "succeeded"


def test_uploads_left_in_the_inbox_are_ingested_at_start_up(services: Services) -> None:
    inbox = services.settings.uploads_path / "default"  # the tenant's inbox
    inbox.mkdir(parents=True)
    (inbox / "pending.md").write_text("Accepted before a crash: the gym opens at six.\n")
    with keyed_client(create_app(services=services), services.settings) as client:
        deadline = time.monotonic() + 300  # jobs run at nice 19
        while not client.get("/v1/documents").json()["documents"]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert answer_sources(client, "When does the gym open?")[0] == "pending.md"


def test_hits_and_citations_say_where_they_are_and_how_they_rank(client: TestClient) -> None:
    upload(
        client,
        ("arm.pdf", pdf_bytes(["Safety first.", "The arm lifts at most 12 kilograms."])),
        ("limits.csv", b"item,limit\nbox,20 kilograms per box\ncrate,45 kilograms per crate\n"),
    )
    body = client.post("/v1/retrieve", json={"query": "How much can the arm lift?"}).json()
    hits = body["hits"]
    assert [h["rank"] for h in hits] == list(range(1, len(hits) + 1))
    arm = next(h for h in hits if h["source"] == "arm.pdf")
    assert (arm["page"], arm["row"], arm["line"]) == (2, None, None)
    assert -1 <= arm["dense_score"] <= 1  # readable evidence beside the fused score
    crate = client.post("/v1/query", json={"question": "What is the limit per crate?"}).json()
    cited = crate["citations"][0]
    assert (cited["source"], cited["row"], cited["number"]) == ("limits.csv", 2, 1)
    assert "item: crate; limit: 45 kilograms per crate" in crate["answer"]
