"""The LLM-judge tier: ragas' LLM metrics scored by an OpenAI-compatible judge endpoint.

Optional and off by default: it needs RAG_JUDGE_BASE_URL (and usually RAG_JUDGE_API_KEY,
RAG_JUDGE_MODEL, RAG_JUDGE_EMBEDDING_MODEL). A metric the judge cannot score (an HTTP error,
a timeout, output that is not the JSON asked for) is recorded as NaN with its error in
`JudgeScorer.errors`; it never stops the run.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import os
import warnings
from collections.abc import Awaitable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from ..errors import BadRequestError, ServiceError
from ..settings import Settings
from .metrics import require_eval_group

if TYPE_CHECKING:
    from openai import AsyncOpenAI

# Report names of the judge metrics, in the order they are reported.
JUDGE_METRICS = (
    "judge_faithfulness",
    "judge_answer_relevancy",
    "judge_factual_correctness",
    "judge_context_precision",
    "judge_context_recall",
)
# The ones that need no reference answer: what `monitor` scores production answers with.
REFERENCE_FREE_METRICS = ("judge_faithfulness", "judge_answer_relevancy")
# Sent instead of a key when RAG_JUDGE_API_KEY is unset (local servers often need none). The
# openai client would otherwise fall back to OPENAI_API_KEY and send it to this endpoint.
_NO_KEY = "no-key-configured"


class JudgeError(ServiceError):
    """The judge endpoint failed in a way that stops the whole job (generation)."""

    status_code = 502


def require_judge(settings: Settings, purpose: str, note: str = "") -> str:
    """The judge's base URL, or a BadRequestError saying which settings `purpose` needs."""
    if not settings.judge_base_url:
        raise BadRequestError(
            f"{purpose} needs an LLM judge: set RAG_JUDGE_BASE_URL to an OpenAI-compatible "
            "endpoint (e.g. https://api.openai.com/v1 or http://localhost:11434/v1), "
            "RAG_JUDGE_API_KEY to its key, RAG_JUDGE_MODEL to a chat model and "
            "RAG_JUDGE_EMBEDDING_MODEL to an embeddings model served by the same endpoint."
            + (f" {note}" if note else "")
        )
    return settings.judge_base_url


def prepare_ragas(state_dir: Path) -> None:
    """Keep ragas offline and inside the project: no analytics, its user id file under
    `state_dir`, tiktoken encodings from the copy llama-index ships."""
    require_eval_group("The judge and `eval generate`")
    os.environ["RAGAS_DO_NOT_TRACK"] = "true"
    state_dir.mkdir(parents=True, exist_ok=True)
    os.environ["XDG_DATA_HOME"] = str(state_dir.resolve())
    if "TIKTOKEN_CACHE_DIR" not in os.environ:
        from ..embeddings import llama_index_static

        bundled = llama_index_static() / "tiktoken_cache"
        if bundled.is_dir():
            os.environ["TIKTOKEN_CACHE_DIR"] = str(bundled)


def judge_client(settings: Settings, max_retries: int, *, keepalive: bool = True) -> AsyncOpenAI:
    """An async OpenAI client for the judge endpoint (ragas' modern metrics need async).

    keepalive=False for callers that use one client from several event loops (ragas' test-set
    generator runs each phase under its own `asyncio.run`): a pooled connection belongs to the
    loop that opened it and breaks once that loop is closed.
    """
    require_eval_group("The judge and `eval generate`")
    import openai

    key = settings.judge_api_key.get_secret_value() if settings.judge_api_key else _NO_KEY
    http_client = None
    if not keepalive:
        # openai's own Limits type (httpx or httpx2, depending on the openai version).
        limits_type: Any = type(openai.DEFAULT_CONNECTION_LIMITS)
        limits = limits_type(max_connections=100, max_keepalive_connections=0)
        http_client = openai.DefaultAsyncHttpxClient(limits=limits)
    return openai.AsyncOpenAI(
        base_url=require_judge(settings, "The judge"),
        api_key=key or _NO_KEY,
        timeout=settings.judge_timeout_s,
        max_retries=max_retries,
        http_client=http_client,
    )


def judge_models(settings: Settings, client: AsyncOpenAI) -> tuple[Any, Any]:
    """ragas' instructor LLM and modern embeddings on the judge endpoint."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from ragas.embeddings.openai_provider import OpenAIEmbeddings
        from ragas.llms import llm_factory

        llm = llm_factory(settings.judge_model, provider="openai", client=client)
        embeddings = OpenAIEmbeddings(client=client, model=settings.judge_embedding_model)
    return llm, embeddings


def public_endpoint(url: str) -> str:
    """The endpoint without credentials or query string, safe to write into a report."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _build_metrics(llm: Any, embeddings: Any) -> dict[str, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from ragas.metrics.collections import (
            AnswerRelevancy,
            ContextPrecisionWithReference,
            ContextRecall,
            FactualCorrectness,
            Faithfulness,
        )

        return {
            "judge_faithfulness": Faithfulness(llm=llm),
            "judge_answer_relevancy": AnswerRelevancy(llm=llm, embeddings=embeddings),
            "judge_factual_correctness": FactualCorrectness(llm=llm, mode="f1"),
            "judge_context_precision": ContextPrecisionWithReference(llm=llm),
            "judge_context_recall": ContextRecall(llm=llm),
        }


def _prompt_fingerprint(metrics: dict[str, Any]) -> str:
    """sha256 over every prompt the metrics send: instruction, examples, output schema."""
    from pydantic import BaseModel
    from ragas.prompt.metrics.base_prompt import BasePrompt

    def dump(value: Any) -> Any:
        if isinstance(value, BaseModel):
            return value.model_dump(mode="json")
        if isinstance(value, list | tuple):
            return [dump(v) for v in value]
        return value

    parts = []
    for name, metric in metrics.items():
        settings = {
            k: v
            for k, v in vars(metric).items()
            if isinstance(v, str | int | float | bool) and not k.startswith("_")
        }
        parts.append({"metric": name, "class": type(metric).__name__, "settings": settings})
        for attribute, prompt in sorted(vars(metric).items()):
            if isinstance(prompt, BasePrompt):
                parts.append(
                    {
                        "metric": name,
                        "prompt": f"{attribute}:{type(prompt).__name__}",
                        "instruction": prompt.instruction,
                        "examples": dump(prompt.examples),
                        "schema": prompt.output_model.model_json_schema(),
                        "language": prompt.language,
                    }
                )
    raw = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()[:12]


class JudgeScorer:
    """Scores one answered question with ragas' LLM metrics against the judge endpoint.

    `score()` is synchronous (it runs its own event loop); from async code await `ascore()`.
    """

    def __init__(self, settings: Settings, *, max_retries: int = 2) -> None:
        self._settings = settings
        self._base_url = require_judge(settings, "The LLM-judge eval tier (eval --judge)")
        self._max_retries = max_retries
        self._secret = settings.judge_api_key.get_secret_value() if settings.judge_api_key else ""
        self.errors: list[str] = []
        prepare_ragas(settings.data_dir / "ragas")
        from ragas import __version__ as ragas_version

        self._ragas_version = str(ragas_version)
        # Built once to fingerprint the prompts (and fail early if ragas cannot build them);
        # this client never sends a request, so there is nothing to close.
        metrics = _build_metrics(*judge_models(settings, judge_client(settings, max_retries=0)))
        self._prompt_version = f"ragas-{self._ragas_version}/{_prompt_fingerprint(metrics)}"

    def describe(self, metrics: tuple[str, ...] = JUDGE_METRICS) -> dict[str, str]:
        """What judged: recorded in reports next to the scores."""
        return {
            "judge_model": self._settings.judge_model,
            "judge_embedding_model": self._settings.judge_embedding_model,
            "judge_endpoint": public_endpoint(self._base_url),
            "ragas_version": self._ragas_version,
            "prompt_version": self._prompt_version,
            "metrics": ",".join(metrics),
        }

    def score(
        self, question: str, answer: str, reference: str, contexts: list[str]
    ) -> dict[str, float]:
        return asyncio.run(self.ascore(question, answer, reference, contexts))

    def score_without_reference(
        self, question: str, answer: str, contexts: list[str]
    ) -> dict[str, float]:
        """REFERENCE_FREE_METRICS only: for answers nobody wrote a reference for (production)."""
        return asyncio.run(self.ascore(question, answer, None, contexts))

    async def ascore(
        self, question: str, answer: str, reference: str | None, contexts: list[str]
    ) -> dict[str, float]:
        """Every JUDGE_METRICS score; with `reference` None, REFERENCE_FREE_METRICS only."""
        client = judge_client(self._settings, self._max_retries)
        try:
            llm, embeddings = judge_models(self._settings, client)
            metrics = _build_metrics(llm, embeddings)
            calls: dict[str, Awaitable[Any]] = {
                "judge_faithfulness": metrics["judge_faithfulness"].ascore(
                    user_input=question, response=answer, retrieved_contexts=contexts
                ),
                "judge_answer_relevancy": metrics["judge_answer_relevancy"].ascore(
                    user_input=question, response=answer
                ),
            }
            if reference is not None:
                calls |= self._reference_calls(metrics, question, answer, reference, contexts)
            values = await asyncio.gather(
                *(self._guarded(name, call, question) for name, call in calls.items())
            )
        finally:
            await client.close()
        return dict(zip(calls, values, strict=True))

    @staticmethod
    def _reference_calls(
        metrics: dict[str, Any], question: str, answer: str, reference: str, contexts: list[str]
    ) -> dict[str, Awaitable[Any]]:
        return {
            "judge_factual_correctness": metrics["judge_factual_correctness"].ascore(
                response=answer, reference=reference
            ),
            "judge_context_precision": metrics["judge_context_precision"].ascore(
                user_input=question, reference=reference, retrieved_contexts=contexts
            ),
            "judge_context_recall": metrics["judge_context_recall"].ascore(
                user_input=question, retrieved_contexts=contexts, reference=reference
            ),
        }

    async def _guarded(self, name: str, call: Awaitable[Any], question: str) -> float:
        try:
            result = await call
            value = float(result.value)
        except Exception as exc:  # any failure of one metric: NaN and a note, not a crash
            self.errors.append(f"{name} on {question[:80]!r}: {self._describe_error(exc)}")
            return math.nan
        if math.isnan(value):  # ragas' own "cannot score", e.g. no statements in the answer
            self.errors.append(f"{name} on {question[:80]!r}: ragas returned no score (NaN)")
            return value
        if not -1.0 <= value <= 1.0 + 1e-6:
            self.errors.append(f"{name} on {question[:80]!r}: out-of-range score {value}")
            return math.nan
        # Response relevancy is a mean cosine: unrelated questions can land a little below 0,
        # identical ones a hair above 1.
        return min(1.0, max(0.0, value))

    def _describe_error(self, exc: BaseException) -> str:
        """The exception and its causes (instructor wraps the real failure), one line."""
        parts: list[str] = []
        seen: set[str] = set()
        current: BaseException | None = exc
        while current is not None and len(parts) < 3:
            lines = [line.strip() for line in str(current).splitlines() if line.strip()]
            message = " ".join(lines[:2])
            if message.startswith("<") or message in seen:
                message = ""  # instructor's XML dump of attempts, or a repeat
            seen.add(message)
            parts.append(
                f"{type(current).__name__}: {message}" if message else type(current).__name__
            )
            current = current.__cause__ or current.__context__
        text = " <- ".join(parts)
        if self._secret:
            text = text.replace(self._secret, "***")
        return text[:600]
