"""Optional second stage: a hosted cross-encoder reranks the fused candidates.

Two request shapes cover the common rerank APIs (`RAG_RERANK_API`):
- cohere: `POST {url}` `{"model", "query", "documents", "top_n"}` ->
  `{"results": [{"index", "relevance_score"}]}` (Cohere, Jina, Voyage, mixedbread, vLLM);
- tei: `POST {url}` `{"query", "texts"}` -> `[{"index", "score"}]` (Hugging Face TEI).
No PyPI package ships cross-encoder weights to run offline (see the retrieval-defaults ADR),
so the offline default has no reranker.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import httpx

from .domain import Hit
from .errors import RerankError
from .remote import post_json
from .settings import RerankApi, Settings


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


def build_reranker(settings: Settings) -> HostedReranker | None:
    if settings.rerank_url is None:
        return None
    key = settings.rerank_api_key.get_secret_value() if settings.rerank_api_key else None
    return HostedReranker(
        settings.rerank_url,
        settings.rerank_api,
        settings.rerank_model,
        key,
        settings.rerank_timeout_s,
    )
