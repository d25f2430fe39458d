from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from {{ cookiecutter.package_name }}.settings import Settings

from .conftest import PROJECT_ROOT


def test_defaults_are_offline_embedded_and_keyless() -> None:
    settings = Settings(_env_file=None)
    assert settings.qdrant_url is None
    assert settings.embedding_provider == "local"
    assert settings.trace_exporter == "none"
    assert settings.embedding_api_key is None


def test_settings_are_read_from_prefixed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_DEFAULT_TOP_K", "7")
    monkeypatch.setenv("RAG_QDRANT_URL", "http://qdrant.internal:6333")
    settings = Settings(_env_file=None)
    assert settings.default_top_k == 7
    assert settings.qdrant_url == "http://qdrant.internal:6333"


def test_overlap_not_smaller_than_chunk_size_is_refused_with_a_fix() -> None:
    with pytest.raises(
        ValidationError, match=r"chunk_overlap \(300\) must be smaller.*RAG_CHUNK_OVERLAP"
    ):
        Settings(_env_file=None, chunk_size=200, chunk_overlap=300)


def test_openai_embeddings_without_base_url_are_refused() -> None:
    with pytest.raises(ValidationError, match="RAG_EMBEDDING_BASE_URL"):
        Settings(_env_file=None, embedding_provider="openai")


def test_env_example_documents_every_setting_with_its_default() -> None:
    text = (PROJECT_ROOT / ".env.example").read_text(encoding="utf-8")
    for name, field in Settings.model_fields.items():
        variable = f"RAG_{name.upper()}"
        match = re.search(rf"^#?\s*{variable}=(.*)$", text, flags=re.MULTILINE)
        assert match, f"{variable} is missing from .env.example"
        if field.default is None:
            continue
        documented = match.group(1).strip()
        expected = field.get_default(call_default_factory=True)
        if isinstance(expected, list):
            assert documented == ",".join(expected), variable
        elif isinstance(expected, Path):
            assert Path(documented) == expected, variable
        elif isinstance(expected, (int, float)) and not isinstance(expected, bool):
            assert float(documented) == float(expected), variable
        else:
            assert documented == str(expected), variable


def test_record_fields_are_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_RECORD_TEXT_FIELDS", "question, answer")
    assert Settings(_env_file=None).record_text_fields == ["question", "answer"]


def test_unknown_legacy_encoding_is_refused() -> None:
    with pytest.raises(ValidationError, match="unknown encoding 'klingon'"):
        Settings(_env_file=None, legacy_encoding="klingon")
