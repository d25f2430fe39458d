"""The same service against a Qdrant server. Needs a server: set QDRANT_TEST_URL to run."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider

from {{ cookiecutter.package_name }}.container import build_services
from {{ cookiecutter.package_name }}.domain import Query
from {{ cookiecutter.package_name }}.embeddings import DenseEncoder, SparseEncoder

from .conftest import indexed, make_settings, qdrant_client

SERVER_URL = os.environ.get("QDRANT_TEST_URL")

pytestmark = [
    pytest.mark.qdrant_server,
    pytest.mark.skipif(
        not SERVER_URL,
        reason="no Qdrant server: set QDRANT_TEST_URL=http://host:6333 to run server-mode tests",
    ),
]


def test_sync_and_retrieval_work_against_a_server(
    tmp_path: Path, model_dir: Path, corpus: Path, dense: DenseEncoder, sparse: SparseEncoder
) -> None:
    collection = f"test_{uuid.uuid4().hex[:8]}"
    settings = make_settings(tmp_path, model_dir, qdrant_url=SERVER_URL, collection=collection)
    services = build_services(
        settings, tracer_provider=TracerProvider(), dense=dense, sparse=sparse
    )
    try:
        assert services.ingestor.ingest(corpus).counts["added"] == 3
        hits = services.retriever.retrieve(
            Query(text="How long must a password be?", top_k=1, tenant="default")
        )
        assert hits[0].source == "policies/passwords.md"
        (corpus / "coffee.txt").unlink()
        assert services.ingestor.ingest(corpus).counts["deleted"] == 1
        assert "coffee.txt" not in indexed(services)
        # Tenants: an indexed tenant field, and another tenant sees nothing of these.
        schema = qdrant_client(services).get_collection(collection).payload_schema
        assert {"tenant", "source", "corpus"} <= set(schema)
        other = Query(text="How long must a password be?", top_k=3, tenant="other")
        assert services.retriever.retrieve(other) == []
        assert indexed(services, tenant="other") == {}
    finally:
        qdrant_client(services).delete_collection(collection)
        services.close()
