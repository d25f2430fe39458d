"""Encoders: the bundled model is verified before loading; remote providers speak HTTP."""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from opentelemetry.sdk.trace import TracerProvider

from {{ cookiecutter.package_name }} import embeddings
from {{ cookiecutter.package_name }}.container import build_services
from {{ cookiecutter.package_name }}.domain import Query
from {{ cookiecutter.package_name }}.embeddings import (
    LOCAL_MODEL_DIMENSIONS,
    DenseEncoder,
    OpenAICompatibleEncoder,
    SparseEncoder,
)
from {{ cookiecutter.package_name }}.errors import EmbeddingError, ModelIntegrityError

from .conftest import make_settings

DIMENSIONS = 64
API_KEY = "test-key"


def bag_of_words_vector(text: str) -> list[float]:
    """Deterministic stand-in for a model: hashed word counts, normalised."""
    vector = [0.0] * DIMENSIONS
    for word in re.findall(r"[a-z0-9]+", text.lower()):
        vector[int(hashlib.md5(word.encode()).hexdigest(), 16) % DIMENSIONS] += 1.0
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]


class FakeEmbeddingsHandler(BaseHTTPRequestHandler):
    requests: ClassVar[list[dict[str, object]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), **body})
        if self.headers.get("Authorization") != f"Bearer {API_KEY}":
            self._send(401, {"error": {"message": "invalid api key"}})
            return
        data = [
            {"object": "embedding", "index": i, "embedding": bag_of_words_vector(text)}
            for i, text in enumerate(body["input"])
        ]
        self._send(200, {"object": "list", "data": list(reversed(data)), "model": body["model"]})

    def _send(self, status: int, payload: object) -> None:
        raw = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def embeddings_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeEmbeddingsHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    FakeEmbeddingsHandler.requests = []
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_local_model_embeds_offline_with_its_known_size(dense: DenseEncoder) -> None:
    assert dense.dimensions == LOCAL_MODEL_DIMENSIONS
    close = dense.embed_documents(["How do I reset my password?", "Steps to reset a password"])
    far = dense.embed_query("The warehouse robot charges overnight")
    similar = sum(a * b for a, b in zip(close[0], close[1], strict=True))
    unrelated = sum(a * b for a, b in zip(close[0], far, strict=True))
    assert similar > unrelated + 0.3


def test_tampered_model_file_is_refused_before_loading(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake = tmp_path / "model.onnx"
    fake.write_bytes(b"not the model we pinned")
    real_sources = embeddings._local_model_sources

    def tampered() -> dict[str, Path]:
        return {**real_sources(), "model.onnx": fake}

    monkeypatch.setattr(embeddings, "_local_model_sources", tampered)
    with pytest.raises(ModelIntegrityError, match="Refusing to load it"):
        embeddings.assemble_local_model(tmp_path / "assembled")


def test_bm25_weights_terms_and_drops_stopwords(sparse: SparseEncoder) -> None:
    query = sparse.embed_query("the password of the robot")
    assert len(query.indices) == 2  # "the", "of" are stopwords
    document = sparse.embed_documents(["password password robot"])[0]
    assert max(document.values) > min(document.values)


def test_openai_compatible_endpoint_embeds_in_batches(embeddings_server: str) -> None:
    encoder = OpenAICompatibleEncoder(embeddings_server, "test-embed", API_KEY, 2, 5.0)
    vectors = encoder.embed_documents(["one", "two", "three"])
    assert vectors == [bag_of_words_vector(t) for t in ("one", "two", "three")]  # order kept
    assert encoder.dimensions == DIMENSIONS
    assert [len(r["input"]) for r in FakeEmbeddingsHandler.requests[:2]] == [2, 1]  # type: ignore[arg-type]
    assert FakeEmbeddingsHandler.requests[0]["path"] == "/v1/embeddings"


def test_openai_compatible_endpoint_rejecting_the_key_says_so(embeddings_server: str) -> None:
    encoder = OpenAICompatibleEncoder(embeddings_server, "test-embed", "wrong", 8, 5.0)
    with pytest.raises(EmbeddingError, match="RAG_EMBEDDING_API_KEY"):
        encoder.embed_query("hello")


def test_unreachable_endpoint_names_the_setting_to_check() -> None:
    encoder = OpenAICompatibleEncoder("http://127.0.0.1:9/v1", "m", None, 8, 2.0)
    with pytest.raises(EmbeddingError, match="RAG_EMBEDDING_BASE_URL"):
        encoder.embed_query("hello")


def test_service_runs_end_to_end_on_an_openai_compatible_endpoint(
    embeddings_server: str, tmp_path: Path, model_dir: Path, corpus: Path, sparse: SparseEncoder
) -> None:
    settings = make_settings(
        tmp_path,
        model_dir,
        embedding_provider="openai",
        embedding_base_url=embeddings_server,
        embedding_api_key=API_KEY,
        embedding_model="test-embed",
    )
    services = build_services(settings, tracer_provider=TracerProvider(), sparse=sparse)
    try:
        services.ingestor.ingest(corpus)
        hits = services.retriever.retrieve(
            Query(text="password characters long", top_k=1, tenant="default")
        )
        assert hits[0].source == "policies/passwords.md"
        schema = services.store.stored_schema()
        assert schema["dense_model"] == "test-embed"
        assert schema["dense_dimensions"] == DIMENSIONS
    finally:
        services.close()


def test_hub_model_on_an_offline_machine_fails_with_the_fix(
    tmp_path: Path, model_dir: Path
) -> None:
    settings = make_settings(
        tmp_path,
        model_dir,
        embedding_provider="fastembed",
        embedding_model="BAAI/bge-small-en-v1.5",
    )
    with pytest.raises(EmbeddingError, match="RAG_EMBEDDING_PROVIDER=local"):
        embeddings.build_dense_encoder(settings)
