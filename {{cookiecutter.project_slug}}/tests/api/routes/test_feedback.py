"""POST /v1/feedback: a vote on an answer, kept under the caller's tenant, audited, durable."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from {{ cookiecutter.package_name }}.api import create_app
from {{ cookiecutter.package_name }}.api.schemas import MAX_FEEDBACK_COMMENT_CHARS
from {{ cookiecutter.package_name }}.audit import AuditLog
from {{ cookiecutter.package_name }}.container import Services, build_services
from {{ cookiecutter.package_name }}.embeddings import DenseEncoder, SparseEncoder

from ...conftest import assert_error, keyed_client

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def vote(client: TestClient, **body: object) -> Any:
    return client.post("/v1/feedback", json={"trace_id": TRACE, **body})


def test_feedback_round_trip_is_stored_and_audited(client: TestClient, services: Services) -> None:
    response = client.post(
        "/v1/feedback", json={"trace_id": TRACE, "rating": "down", "comment": "  Wrong page.  "}
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["trace_id"] == TRACE
    assert body["rating"] == "down"
    (stored,) = services.feedback.of_tenant("default", TRACE)
    assert (stored.feedback_id, stored.rating, stored.comment) == (
        body["feedback_id"],
        "down",
        "Wrong page.",
    )
    (line,) = [
        r for r in AuditLog(services.settings.audit_path).records() if r["event"] == "feedback"
    ]
    assert line["answer_trace_id"] == TRACE
    assert line["feedback_id"] == body["feedback_id"]
    assert line["tenant"] == "default"
    assert line["commented"] is True
    assert "Wrong page" not in services.settings.audit_path.read_text()  # the comment is not logged


def test_feedback_is_scoped_to_the_callers_tenant(services: Services) -> None:
    app = create_app(services=services)
    with keyed_client(app, services.settings, tenant="acme") as acme:
        assert vote(acme, rating="up").status_code == 202
    with keyed_client(app, services.settings, tenant="globex") as globex:
        assert vote(globex, rating="down").status_code == 202
    assert [f.rating for f in services.feedback.of_tenant("acme")] == ["up"]
    assert [f.rating for f in services.feedback.of_tenant("globex", TRACE)] == ["down"]
    assert list(services.feedback.of_tenant("default")) == []


def test_bad_feedback_is_a_problem_naming_the_field(client: TestClient) -> None:
    assert_error(vote(client, rating="meh"), 422, "rating")
    assert_error(
        client.post("/v1/feedback", json={"trace_id": "nope", "rating": "up"}), 422, "trace_id"
    )
    too_long = "x" * (MAX_FEEDBACK_COMMENT_CHARS + 1)
    assert_error(
        client.post("/v1/feedback", json={"trace_id": TRACE, "rating": "up", "comment": too_long}),
        422,
        "comment",
    )
    assert_error(client.post("/v1/feedback", json={"trace_id": TRACE, "rating": "up", "x": 1}), 422)


def test_feedback_needs_a_key(services: Services) -> None:
    with TestClient(create_app(services=services)) as anonymous:
        assert_error(vote(anonymous, rating="up"), 401)


def test_feedback_survives_a_restart(
    services: Services, dense: DenseEncoder, sparse: SparseEncoder
) -> None:
    services.feedback.add(TRACE, "default", "k1", "down", None)
    settings = services.settings
    services.close()
    reopened = build_services(settings, dense=dense, sparse=sparse)
    try:
        assert [f.rating for f in reopened.feedback.of_tenant("default", TRACE)] == ["down"]
    finally:
        reopened.close()
