"""Optional second stage: re-order the fused candidates, then keep the best `top_k`.

Two stages sit behind one seam (`Reranker`, built by `build_reranker` from Settings):
- `DenseResort` (`RAG_SECOND_STAGE=dense_resort`), offline: sorts the candidates by their
  MiniLM cosine to the query (the store returns it for every fused hit from the stored
  vectors, so nothing more is embedded) and fuses that order back with the fused order by
  weighted RRF. Measured in docs/decisions/0014-second-ranking-stage.md.
- `HostedReranker` (`RAG_RERANK_URL`): a hosted cross-encoder. Two request shapes cover the
  common rerank APIs (`RAG_RERANK_API`):
  cohere: `POST {url}` `{"model", "query", "documents", "top_n"}` ->
  `{"results": [{"index", "relevance_score"}]}` (Cohere, Jina, Voyage, mixedbread, vLLM);
  tei: `POST {url}` `{"query", "texts"}` -> `[{"index", "score"}]` (Hugging Face TEI).
  When set, it replaces the offline stage: a cross-encoder reads query and passage together.
- `LocalCrossEncoder` (`RAG_RERANK_MODEL_PATH`): a cross-encoder's ONNX weights the client
  copies in (no package ships any that load offline), loaded through FastEmbed's
  `TextCrossEncoder` with `specific_model_path`, after its sha256 matches
  `RAG_RERANK_MODEL_SHA256`. Its logits become 0..1 scores (a sigmoid), as hosted ones are.
Only the cross-encoders (hosted or local) set `Hit.rerank_score`; the offline stage changes
the order and `Hit.score`, never the dense/BM25 evidence refusal is decided from.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

import httpx

from .domain import Hit
from .errors import ConfigurationError, ModelIntegrityError, RerankError
from .remote import post_json
from .settings import RerankApi, Settings


class Reranker(Protocol):
    name: str
    reads_query_cosines: bool  # the store must put `query_cosine` on every fused hit

    def rerank(self, query: str, hits: Sequence[Hit], top_k: int) -> list[Hit]:
        """The `top_k` best of `hits` (the fused candidates, best first), re-ordered."""
        ...

    def span_attributes(self) -> dict[str, str | float]: ...

    def close(self) -> None: ...


def rrf_fuse(
    hits: Sequence[Hit],
    signals: Sequence[tuple[Sequence[float], float]],
    k: int,
) -> list[Hit]:
    """Fuse the given order of `hits` (weight 1) with the order each (scores, weight) signal
    sorts them in, by the RRF Qdrant uses: rank r scores 1 / (r / weight + k - 1). Ties keep
    the given order (Python's sort is stable), so equal scores never reshuffle."""

    def rrf(rank: int, weight: float) -> float:
        return 1.0 / (rank / weight + k - 1)

    fused = [rrf(rank, 1.0) for rank in range(1, len(hits) + 1)]
    for scores, weight in signals:
        if len(scores) != len(hits):
            raise ValueError(f"{len(scores)} scores for {len(hits)} hits")
        order = sorted(range(len(hits)), key=lambda i: scores[i], reverse=True)
        for rank, i in enumerate(order, start=1):
            fused[i] += rrf(rank, weight)
    order = sorted(range(len(hits)), key=lambda i: fused[i], reverse=True)
    return [replace(hits[i], score=fused[i]) for i in order]


# A signal scores each candidate for a query; the higher, the better.
Signal = Callable[[str, Sequence[Hit]], list[float]]


def query_cosine(_query: str, hits: Sequence[Hit]) -> list[float]:
    """Each hit's dense cosine to the query; a hit without one (the store was not asked for
    it) sorts last."""
    return [h.query_cosine if h.query_cosine is not None else -2.0 for h in hits]


class SignalResort:
    """Re-sort the candidates by cheap signals and fuse those orders back (RRF)."""

    def __init__(self, name: str, signals: Sequence[tuple[Signal, float]], rrf_k: int) -> None:
        self.name = name
        self.reads_query_cosines = True
        self._signals = list(signals)
        self._k = rrf_k

    def rerank(self, query: str, hits: Sequence[Hit], top_k: int) -> list[Hit]:
        scored = [(signal(query, hits), weight) for signal, weight in self._signals]
        return rrf_fuse(hits, scored, self._k)[:top_k]

    def span_attributes(self) -> dict[str, str | float]:
        return {"rerank.stage": self.name, "rerank.rrf.k": self._k}

    def close(self) -> None:
        """Nothing to release: the stage holds no connection."""


def dense_resort(rrf_k: int, weight: float) -> SignalResort:
    return SignalResort("dense_resort", [(query_cosine, weight)], rrf_k)


class HostedReranker:
    def __init__(
        self,
        url: str,
        api: RerankApi,
        model: str | None,
        api_key: str | None,
        timeout_s: float,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.name = "hosted"
        self.reads_query_cosines = False
        self.url = url
        self.api = api
        self.model = model
        self._client = httpx.Client(headers=headers, timeout=timeout_s)

    def rerank(self, query: str, hits: Sequence[Hit], top_k: int) -> list[Hit]:
        """The `top_k` best hits by the reranker's score, each carrying `rerank_score`."""
        if not hits:
            return []
        texts = [hit.text for hit in hits]
        body: dict[str, Any] = (
            {"query": query, "texts": texts}
            if self.api == "tei"
            else {"query": query, "documents": texts, "top_n": len(texts)}
        )
        if self.model and self.api == "cohere":
            body["model"] = self.model
        scores = self._scores(self._post(body), len(hits))
        order = sorted(range(len(hits)), key=lambda i: scores[i], reverse=True)[:top_k]
        return [replace(hits[i], rerank_score=scores[i]) for i in order]

    def span_attributes(self) -> dict[str, str | float]:
        attributes: dict[str, str | float] = {
            "rerank.stage": self.name,
            "rerank.url": self.url,
            "rerank.api": self.api,
        }
        if self.model:
            attributes["gen_ai.request.model"] = self.model
        return attributes

    def _post(self, body: dict[str, Any]) -> Any:
        response = post_json(
            self._client,
            self.url,
            body,
            what=f"the reranker at {self.url}",
            error=RerankError,
            unreachable_fix="Check RAG_RERANK_URL, or unset it to retrieve without reranking.",
            key_setting="RAG_RERANK_API_KEY",
        )
        try:
            return response.json()
        except ValueError as exc:
            raise RerankError(
                f"The reranker at {self.url} did not answer JSON: {response.text[:200]}"
            ) from exc

    def _scores(self, payload: Any, expected: int) -> list[float]:
        rows = payload.get("results") if isinstance(payload, dict) else payload
        scores: dict[int, float] = {}
        try:
            if not isinstance(rows, list):
                raise TypeError("no list of scored documents")
            for row in rows:
                score = row["relevance_score"] if "relevance_score" in row else row["score"]
                scores[int(row["index"])] = float(score)
        except (TypeError, KeyError, ValueError) as exc:
            raise RerankError(
                f"The reranker at {self.url} answered neither Cohere/Jina "
                "({'results': [{'index', 'relevance_score'}]}) nor TEI ([{'index', 'score'}]) "
                f"JSON: {str(payload)[:200]}"
            ) from exc
        if sorted(scores) != list(range(expected)):
            raise RerankError(
                f"The reranker at {self.url} scored {len(scores)} of {expected} documents; "
                "it must score every document it is sent."
            )
        return [scores[i] for i in range(expected)]

    def close(self) -> None:
        self._client.close()


# FastEmbed looks models up by name; a client's own weights are registered under this one.
LOCAL_CROSS_ENCODER = "local/cross-encoder"
# What FastEmbed's tokenizer loader reads from the folder (config.json is optional).
CROSS_ENCODER_FILES = ("model.onnx", "tokenizer.json", "tokenizer_config.json")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class LocalCrossEncoder:
    """A cross-encoder from ONNX files on disk: query and passage read together, offline."""

    def __init__(self, folder: Path, sha256: str | None, threads: int | None = None) -> None:
        missing = [name for name in CROSS_ENCODER_FILES if not (folder / name).is_file()]
        if missing:
            raise ConfigurationError(
                f"RAG_RERANK_MODEL_PATH={folder} lacks {', '.join(missing)}: copy in the "
                "cross-encoder's ONNX export (model.onnx) and its tokenizer files."
            )
        actual = file_sha256(folder / "model.onnx")
        if sha256 is None:
            raise ConfigurationError(
                f"RAG_RERANK_MODEL_SHA256 is not set; {folder / 'model.onnx'} has sha256 "
                f"{actual}. Check that the file is the one you meant to copy in, then set it."
            )
        if actual != sha256:
            raise ModelIntegrityError(
                f"Cross-encoder file {folder / 'model.onnx'} has sha256 {actual}, expected "
                f"{sha256} (RAG_RERANK_MODEL_SHA256). Refusing to load it: copy the right file "
                "in, or set the hash of the one you checked."
            )
        from fastembed.common.model_description import ModelSource
        from fastembed.rerank.cross_encoder import TextCrossEncoder

        known = {m["model"].lower() for m in TextCrossEncoder.list_supported_models()}
        if LOCAL_CROSS_ENCODER not in known:
            # The source is never fetched: specific_model_path points at the files.
            TextCrossEncoder.add_custom_model(
                LOCAL_CROSS_ENCODER,
                sources=ModelSource(url=folder.resolve().as_uri()),
                model_file="model.onnx",
            )
        try:
            self._model = TextCrossEncoder(
                LOCAL_CROSS_ENCODER,
                specific_model_path=str(folder),
                threads=threads,
                local_files_only=True,
            )
        except Exception as exc:  # ONNX Runtime and tokenizers raise their own types
            raise ConfigurationError(
                f"The cross-encoder in {folder} does not load ({type(exc).__name__}: "
                f"{str(exc)[:200]}); it needs a FastEmbed-compatible ONNX export (inputs "
                "input_ids, attention_mask[, token_type_ids]; logits [batch, 1])."
            ) from exc
        self.name = "cross_encoder"
        self.reads_query_cosines = False
        self.folder = folder
        self.sha256 = actual
        self._max_tokens = _max_tokens(folder)

    def scores(self, query: str, texts: Sequence[str]) -> list[float]:
        """Relevance in 0..1: the sigmoid of the model's logit for each (query, text)."""
        logits = self._model.rerank(query, list(texts))
        return [1.0 / (1.0 + math.exp(-max(min(float(v), 60.0), -60.0))) for v in logits]

    def rerank(self, query: str, hits: Sequence[Hit], top_k: int) -> list[Hit]:
        if not hits:
            return []
        scores = self.scores(query, [hit.text for hit in hits])
        order = sorted(range(len(hits)), key=lambda i: scores[i], reverse=True)[:top_k]
        return [replace(hits[i], rerank_score=scores[i]) for i in order]

    def span_attributes(self) -> dict[str, str | float]:
        return {
            "rerank.stage": self.name,
            "rerank.model.sha256": self.sha256,
            "rerank.model.max_tokens": self._max_tokens,
        }

    def close(self) -> None:
        """Nothing to release: the ONNX session goes with the object."""


def _max_tokens(folder: Path) -> float:
    try:
        config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
        return float(config.get("model_max_length") or 0)
    except (OSError, ValueError, TypeError):
        return 0.0


def build_reranker(settings: Settings) -> Reranker | None:
    """The configured second stage: the hosted reranker when RAG_RERANK_URL is set, else the
    local cross-encoder when RAG_RERANK_MODEL_PATH is (both read query and passage together,
    so they supersede the offline stage), else RAG_SECOND_STAGE."""
    if settings.rerank_url is not None:
        key = settings.rerank_api_key.get_secret_value() if settings.rerank_api_key else None
        return HostedReranker(
            settings.rerank_url,
            settings.rerank_api,
            settings.rerank_model,
            key,
            settings.rerank_timeout_s,
        )
    if settings.rerank_model_path is not None:
        return LocalCrossEncoder(
            settings.rerank_model_path, settings.rerank_model_sha256, settings.rerank_threads
        )
    if settings.second_stage == "dense_resort":
        return dense_resort(settings.second_stage_rrf_k, settings.second_stage_weight)
    return None
