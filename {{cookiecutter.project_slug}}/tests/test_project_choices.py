"""The choices this project was generated with (project.json) are the defaults it runs with.

The rest of the suite pins the offline answerer (see conftest); these tests drop that pin and
check the generated defaults themselves: the chosen answerer answers with citations, against
the fake server of the chosen LLM provider when there is one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from {{ cookiecutter.package_name }}.container import build_services
from {{ cookiecutter.package_name }}.domain import Query
from {{ cookiecutter.package_name }}.embeddings import DenseEncoder, SparseEncoder
from {{ cookiecutter.package_name }}.settings import PACKAGE_NAME, Settings

from .conftest import PROJECT_ROOT, make_settings
from .fake_anthropic import FakeAnthropic
from .fake_openai import FakeOpenAI, LoopbackServer, Reply

CHOICES: dict[str, str] = json.loads(
    resources.files(PACKAGE_NAME).joinpath("project.json").read_text("utf-8")
)["choices"]
KEY = "sk-choice-test-0123456789"


def default(name: str) -> Any:
    return Settings.model_fields[name].get_default(call_default_factory=True)


@pytest.fixture
def chosen_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """Undo conftest's pin of the offline answerer: the project's own defaults apply."""
    for name in ("RAG_ANSWERER", "RAG_LLM_PROVIDER", "RAG_LLM_MODEL"):
        monkeypatch.delenv(name, raising=False)


def test_answerer_defaults_follow_the_llm_provider_choice() -> None:
    provider = CHOICES["llm_provider"]
    if provider == "none":
        assert default("answerer") == "extractive"
    else:
        assert default("answerer") == "llm"
        assert default("llm_provider") == provider
    # openai_like has no public endpoint: its default must name one (a local Ollama).
    assert (default("llm_base_url") is not None) == (provider == "openai_like")


def test_mcp_default_follows_the_mcp_server_choice() -> None:
    assert default("mcp_enabled") is (CHOICES["mcp_server"] == "yes")
    package = PROJECT_ROOT / "src" / PACKAGE_NAME / "mcp"
    assert package.is_dir() is (CHOICES["mcp_server"] == "yes")


def test_env_example_points_at_a_qdrant_server_only_when_chosen() -> None:
    text = (PROJECT_ROOT / ".env.example").read_text(encoding="utf-8")
    active = re.search(r"^RAG_QDRANT_URL=(\S+)$", text, flags=re.MULTILINE)
    assert (active is not None) == (CHOICES["vector_store"] == "qdrant_server")


@contextmanager
def chosen_fake() -> Iterator[LoopbackServer | None]:
    """The fake server of the chosen provider (none for the extractive answerer)."""
    provider = CHOICES["llm_provider"]
    if provider == "none":
        yield None
        return
    fake: FakeOpenAI | FakeAnthropic
    fake = FakeAnthropic(api_key=KEY) if provider == "anthropic" else FakeOpenAI(api_key=KEY)
    fake.replies = [Reply(content="Passwords need at least 14 characters [1].")]
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.mark.usefixtures("chosen_defaults")
def test_the_default_answerer_answers_with_citations(
    tmp_path: Path, model_dir: Path, corpus: Path, dense: DenseEncoder, sparse: SparseEncoder
) -> None:
    with chosen_fake() as fake:
        remote: dict[str, Any] = {}
        if fake is not None:
            # Only the address and key differ from the generated defaults.
            remote = {"llm_base_url": fake.base_url, "llm_api_key": KEY}
        settings = make_settings(tmp_path, model_dir, **remote)
        assert settings.answerer == default("answerer")
        services = build_services(settings, dense=dense, sparse=sparse)
        try:
            services.ingestor.ingest(corpus)
            question = "How long must a password be?"
            hits = services.retriever.retrieve(Query(text=question, top_k=5, tenant="default"))
            answer = services.asker.answer(question, hits)
        finally:
            services.close()
    assert not answer.refused
    assert "14 characters" in answer.text
    assert answer.citations[0].source == "policies/passwords.md"
    if isinstance(fake, (FakeOpenAI, FakeAnthropic)):
        (request,) = [r for r in fake.requests if r["body"].get("messages")]
        assert request["body"]["model"] == default("llm_model")
