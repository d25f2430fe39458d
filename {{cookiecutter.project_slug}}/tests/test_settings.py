from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from {{ cookiecutter.package_name }}.cli import main
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


def only_error(raised: pytest.ExceptionInfo[ValidationError]) -> tuple[str, str]:
    [error] = raised.value.errors()
    return "RAG_" + "_".join(str(part) for part in error["loc"]).upper(), error["msg"]


@pytest.mark.parametrize(
    ("variable", "suggestion"),
    [
        ("RAG_QDRANT_ULR", "did you mean RAG_QDRANT_URL?"),
        ("rag_chunk_siz", "did you mean RAG_CHUNK_SIZE?"),
        ("RAG_TOP_K", "did you mean RAG_DEFAULT_TOP_K or RAG_MAX_TOP_K?"),
        ("RAG_WHATEVER_ELSE", "every setting is listed in .env.example"),
    ],
)
def test_unknown_variable_in_the_environment_is_refused_with_the_nearest_setting(
    variable: str, suggestion: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, "http://qdrant.internal:6333")
    with pytest.raises(ValidationError) as raised:
        Settings(_env_file=None)
    name, message = only_error(raised)
    assert name == variable.upper()
    assert message == f"unknown setting (in the environment); {suggestion}"


def test_unknown_variable_in_dotenv_is_refused_naming_the_file(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("RAG_CHUNK_SIZE=400\nRAG_QDRANT_ULR=http://q:6333\n", encoding="utf-8")
    with pytest.raises(ValidationError) as raised:
        Settings(_env_file=env_file)
    assert only_error(raised) == (
        "RAG_QDRANT_ULR",
        "unknown setting (in .env); did you mean RAG_QDRANT_URL?",
    )


def test_other_prefixes_in_dotenv_are_not_ours_to_refuse(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("OTEL_SERVICE_NAME=x\nHF_HUB_OFFLINE=1\nRAG_CHUNK_SIZE=400\n", "utf-8")
    assert Settings(_env_file=env_file).chunk_size == 400


def test_cli_refuses_to_start_on_a_typo_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RAG_QDRANT_ULR", "http://qdrant.internal:6333")
    assert main(["ask", "anything"]) == 2
    assert capsys.readouterr().err == (
        "error: RAG_QDRANT_ULR: unknown setting (in the environment); "
        "did you mean RAG_QDRANT_URL?\n"
    )


def test_empty_value_means_unset_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_QDRANT_URL", "")
    monkeypatch.setenv("RAG_CHUNK_SIZE", "")
    monkeypatch.setenv("RAG_NOT_A_SETTING", "")  # empty: unset, so nothing to refuse
    settings = Settings(_env_file=None)
    assert settings.qdrant_url is None
    assert settings.chunk_size == Settings.model_fields["chunk_size"].default


def test_empty_value_means_unset_in_dotenv(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("RAG_QDRANT_URL=\nRAG_OTLP_ENDPOINT=\n", encoding="utf-8")
    settings = Settings(_env_file=env_file)
    assert settings.qdrant_url is None
    assert settings.otlp_endpoint == Settings.model_fields["otlp_endpoint"].default


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
