"""The LLM-judge tier and golden-set drafting, against a fake OpenAI-compatible endpoint."""

from __future__ import annotations

import itertools
import json
import logging
import math
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from {{ cookiecutter.package_name }}.cli import main
from {{ cookiecutter.package_name }}.errors import BadRequestError
from {{ cookiecutter.package_name }}.evals.generate import generate_golden_set
from {{ cookiecutter.package_name }}.evals.golden import load_golden_set
from {{ cookiecutter.package_name }}.evals.judge import (
    JUDGE_METRICS,
    JudgeError,
    JudgeScorer,
)
from {{ cookiecutter.package_name }}.settings import Settings

from .conftest import PROJECT_ROOT, SAMPLE_CORPUS, make_settings
from .fake_openai import FakeOpenAI, bag_of_words_vector

pytestmark = pytest.mark.usefixtures("ragas_environment")  # ragas sets process-wide state

KEY = "sk-test-judge-secret"
QUESTION = "How long must passwords be?"
ANSWER = "Passwords must be at least 14 characters long."
REFERENCE = "Passwords need at least 14 characters."
CONTEXTS = [
    "Passwords must be at least 14 characters long.",
    "Oat milk is restocked on Mondays.",
]
# What a sensible judge says about that answer: every statement supported, every context
# useful, a committal answer whose implied question is the one asked.
AGREEING_JUDGE = {"verdict": 1, "attributed": 1, "noncommittal": 0, "question": QUESTION}
SYNTHESIZERS = {
    "single_hop_specific_query_synthesizer",
    "multi_hop_abstract_query_synthesizer",
    "multi_hop_specific_query_synthesizer",
}


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI(api_key=KEY).start()
    yield server
    server.stop()


def judge_settings(tmp_path: Path, model_dir: Path, fake: FakeOpenAI, **extra: Any) -> Settings:
    return make_settings(
        tmp_path,
        model_dir,
        judge_base_url=fake.base_url,
        judge_api_key=KEY,
        judge_model="judge-model",
        judge_embedding_model="judge-embed",
        # Headroom for a loaded CI machine (ragas runs four workers against one fake server);
        # the timeout case sets its own.
        judge_timeout_s=extra.pop("judge_timeout_s", 30.0),
        **extra,
    )


def test_judge_scores_five_metrics_and_says_what_judged(
    fake: FakeOpenAI, tmp_path: Path, model_dir: Path
) -> None:
    fake.overrides.update(AGREEING_JUDGE)
    settings = judge_settings(tmp_path, model_dir, fake)
    scorer = JudgeScorer(settings, max_retries=0)

    scores = scorer.score(QUESTION, ANSWER, REFERENCE, CONTEXTS)

    assert list(scores) == list(JUDGE_METRICS)
    assert all(0.0 <= v <= 1.0 for v in scores.values()), scores
    assert scores["judge_faithfulness"] == 1.0
    assert scores["judge_factual_correctness"] == 1.0
    assert scores["judge_context_recall"] == 1.0
    assert scores["judge_answer_relevancy"] == pytest.approx(1.0)  # same question, embedded
    assert scores["judge_context_precision"] == pytest.approx(1.0)
    assert scorer.errors == []

    described = scorer.describe()
    assert described["judge_model"] == "judge-model"
    assert described["judge_embedding_model"] == "judge-embed"
    assert described["ragas_version"] == "0.4.3"
    assert described["prompt_version"].startswith("ragas-0.4.3/")
    assert len(described["prompt_version"].split("/")[1]) == 12
    assert described["judge_endpoint"] == fake.base_url
    assert KEY not in json.dumps(described)

    chats, embeds = fake.chat_requests(), fake.embedding_requests()
    assert chats
    assert embeds
    assert {r["auth"] for r in fake.requests} == {f"Bearer {KEY}"}
    assert {r["body"]["model"] for r in chats} == {"judge-model"}
    assert {r["body"]["model"] for r in embeds} == {"judge-embed"}
    # The sample reached the judge: the answer's statements are checked against the contexts.
    assert any(CONTEXTS[1] in json.dumps(r["body"]) for r in chats)
    # ragas stays offline and keeps its state inside the project's data folder.
    assert not (tmp_path / "home").exists()
    assert all(p.is_relative_to(settings.data_dir) for p in settings.data_dir.rglob("*"))


def test_scores_follow_the_judges_verdicts(
    fake: FakeOpenAI, tmp_path: Path, model_dir: Path
) -> None:
    fake.overrides.update({**AGREEING_JUDGE, "verdict": 0, "attributed": 0, "noncommittal": 1})
    scorer = JudgeScorer(judge_settings(tmp_path, model_dir, fake), max_retries=0)
    scores = scorer.score(QUESTION, ANSWER, REFERENCE, CONTEXTS)
    assert scores["judge_faithfulness"] == 0.0
    assert scores["judge_context_recall"] == 0.0
    assert scores["judge_context_precision"] == 0.0
    assert scores["judge_answer_relevancy"] == 0.0  # a noncommittal answer scores 0
    assert scorer.errors == []


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ({"chat_status": 500}, "500"),
        ({"chat_content": "Sure! The answer is great."}, "ValidationError"),
        ({"chat_content": '{"unexpected": true}'}, "ValidationError"),
        ({"chat_delay_s": 1.5}, "timed out"),
    ],
    ids=["http-500", "not-json", "wrong-json", "timeout"],
)
def test_a_failing_judge_gives_nan_and_an_error_not_a_crash(
    fake: FakeOpenAI,
    tmp_path: Path,
    model_dir: Path,
    caplog: pytest.LogCaptureFixture,
    script: dict[str, Any],
    expected: str,
) -> None:
    for name, value in script.items():
        setattr(fake, name, value)
    settings = judge_settings(tmp_path, model_dir, fake, judge_timeout_s=0.5)
    scorer = JudgeScorer(settings, max_retries=0)

    with caplog.at_level(logging.DEBUG):
        scores = scorer.score(QUESTION, ANSWER, REFERENCE, CONTEXTS)

    assert list(scores) == list(JUDGE_METRICS)
    assert all(math.isnan(v) for v in scores.values()), scores
    assert len(scorer.errors) == len(JUDGE_METRICS)
    for name in JUDGE_METRICS:
        (error,) = [e for e in scorer.errors if e.startswith(f"{name} on ")]
        assert expected in error
    assert KEY not in "\n".join(scorer.errors)
    assert KEY not in caplog.text


def test_one_failing_metric_leaves_the_others_scored(
    fake: FakeOpenAI, tmp_path: Path, model_dir: Path
) -> None:
    fake.overrides.update(AGREEING_JUDGE)
    fake.embeddings_status = 503  # only response relevancy embeds
    scorer = JudgeScorer(judge_settings(tmp_path, model_dir, fake), max_retries=0)
    scores = scorer.score(QUESTION, ANSWER, REFERENCE, CONTEXTS)
    assert math.isnan(scores["judge_answer_relevancy"])
    assert [e.split(" on ")[0] for e in scorer.errors] == ["judge_answer_relevancy"]
    assert "503" in scorer.errors[0]
    assert scores["judge_faithfulness"] == 1.0


def test_judge_without_an_endpoint_says_which_setting(tmp_path: Path, model_dir: Path) -> None:
    with pytest.raises(BadRequestError, match="RAG_JUDGE_BASE_URL"):
        JudgeScorer(make_settings(tmp_path, model_dir))


# --- golden-set drafting --------------------------------------------------------------------


def _last_input(prompt: str) -> Any:
    """The JSON input ragas appends to each prompt (`input: {...}` before `Output:`)."""
    start = prompt.rfind("input: ") + len("input: ")
    return json.JSONDecoder().raw_decode(prompt, start)[0]


def script_generation(fake: FakeOpenAI) -> None:
    """A judge that plays along with ragas' generator. Three answers must refer to the
    prompt's own input, as any real model's do: which persona cares about which theme, which
    themes to combine, and a distinct question each time. The rest is schema-driven."""
    counter = itertools.count(1)

    def persona_mapping(prompt: str) -> dict[str, list[str]]:
        data = _last_input(prompt)
        return {persona["name"]: data["themes"] for persona in data["personas"]}

    def combinations(prompt: str) -> list[list[str]]:
        concepts = _last_input(prompt)["lists_of_concepts"]
        return [[concepts[0][0], concepts[-1][0]]]

    fake.overrides.update(
        {
            "mapping": persona_mapping,
            "combinations": combinations,
            "query": lambda _prompt: f"Draft question number {next(counter)}?",
            "score": 3,  # the chunk quality filter keeps passages scored above 2
        }
    )


def test_generation_writes_draft_rows_the_golden_loader_reads(
    fake: FakeOpenAI, tmp_path: Path, model_dir: Path, corpus: Path
) -> None:
    script_generation(fake)
    out = tmp_path / "evals" / "generated.jsonl"
    out.parent.mkdir()
    out.write_text("old drafts\n", encoding="utf-8")
    settings = judge_settings(tmp_path, model_dir, fake)

    written = generate_golden_set(settings, corpus, out, size=4, overwrite=True, max_retries=0)

    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert written == len(rows) == 4
    documents = {p.relative_to(corpus).as_posix() for p in corpus.rglob("*") if p.is_file()}
    for row in rows:
        assert row["reviewed"] is False
        assert row["answerable"] is True
        assert row["tags"][0] == "generated"
        assert row["tags"][1] in SYNTHESIZERS
        assert row["question"].startswith("Draft question number")
        assert row["reference_answer"]
        assert row["gold_sources"]
        assert set(row["gold_sources"]) <= documents
    assert len({row["id"] for row in rows}) == len(rows)
    assert {row["tags"][1] for row in rows} == SYNTHESIZERS  # taken in turn from each
    items = load_golden_set(out)  # the loader ignores `reviewed`
    assert [item.id for item in items] == [row["id"] for row in rows]
    assert {r["auth"] for r in fake.requests} == {f"Bearer {KEY}"}
    assert not (tmp_path / "home").exists()
    assert not out.with_name(out.name + ".partial").exists()


def test_generation_refuses_to_overwrite(
    fake: FakeOpenAI, tmp_path: Path, model_dir: Path, corpus: Path
) -> None:
    out = tmp_path / "golden.jsonl"
    out.write_text('{"id": "q1", "reviewed": true}\n', encoding="utf-8")
    settings = judge_settings(tmp_path, model_dir, fake)
    with pytest.raises(BadRequestError, match="already exists"):
        generate_golden_set(settings, corpus, out, size=2)
    assert out.read_text(encoding="utf-8") == '{"id": "q1", "reviewed": true}\n'
    assert fake.requests == []


def test_generation_without_a_judge_explains_what_it_needs(
    tmp_path: Path, model_dir: Path, corpus: Path
) -> None:
    out = tmp_path / "golden.jsonl"
    with pytest.raises(BadRequestError) as error:
        generate_golden_set(make_settings(tmp_path, model_dir), corpus, out, size=2)
    for needed in ("RAG_JUDGE_BASE_URL", "RAG_JUDGE_API_KEY", "RAG_JUDGE_MODEL", "embeddings"):
        assert needed in error.value.message
    assert "reviewed" in error.value.message
    assert not out.exists()


def test_generation_with_a_failing_judge_writes_nothing(
    fake: FakeOpenAI, tmp_path: Path, model_dir: Path, corpus: Path
) -> None:
    fake.chat_status = 500
    out = tmp_path / "golden.jsonl"
    settings = judge_settings(tmp_path, model_dir, fake)
    with pytest.raises(JudgeError, match="RAG_JUDGE_BASE_URL"):
        generate_golden_set(settings, corpus, out, size=2, max_retries=0)
    assert not out.exists()


# --- the fake itself, for other tests that reuse it ---------------------------------------------


class Colour(StrEnum):
    RED = "red"
    BLUE = "blue"


class Part(BaseModel):
    name: str
    colour: Colour


class Order(BaseModel):
    parts: list[Part]
    note: str | None
    urgent: bool
    count: int
    weight: float


@pytest.mark.parametrize("mode", ["TOOLS", "JSON_SCHEMA", "JSON", "MD_JSON"])
def test_fake_answers_every_instructor_mode_from_the_schema(fake: FakeOpenAI, mode: str) -> None:
    import instructor
    from openai import OpenAI

    client = instructor.from_openai(
        OpenAI(base_url=fake.base_url, api_key=KEY, max_retries=0),
        mode=getattr(instructor.Mode, mode),
    )
    order = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "Order two parts."}], response_model=Order
    )
    assert isinstance(order, Order)
    assert 1 <= len(order.parts) <= 2
    assert order.parts[0].colour is Colour.RED  # first enum value, through $ref/$defs
    body = fake.chat_requests()[-1]["body"]
    assert ("tools" in body) == (mode == "TOOLS")


def test_fake_embeds_deterministically_in_both_encodings(fake: FakeOpenAI) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=fake.base_url, api_key=KEY, max_retries=0)
    as_base64 = client.embeddings.create(model="e", input=["one two", "three"])  # the default
    as_floats = client.embeddings.create(model="e", input="one two", encoding_format="float")
    assert as_floats.data[0].embedding == bag_of_words_vector("one two")
    assert as_base64.data[0].embedding == pytest.approx(bag_of_words_vector("one two"), abs=1e-6)
    assert len(as_base64.data) == 2


@pytest.mark.slow
def test_eval_judge_tier_through_the_cli_records_judge_metrics_and_identity(
    fake: FakeOpenAI, tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.overrides.update(AGREEING_JUDGE)
    for name, value in {
        "RAG_DATA_DIR": tmp_path / ".data",
        "RAG_MODEL_DIR": model_dir,
        "RAG_EVAL_CORPUS": SAMPLE_CORPUS,
        "RAG_EVAL_GOLDEN_SET": PROJECT_ROOT / "evals" / "golden.jsonl",
        "RAG_EVAL_THRESHOLDS": PROJECT_ROOT / "evals" / "thresholds.toml",
        "RAG_JUDGE_BASE_URL": fake.base_url,
        "RAG_JUDGE_API_KEY": KEY,
        "RAG_JUDGE_MODEL": "judge-model",
    }.items():
        monkeypatch.setenv(name, str(value))
    assert main(["eval", "--judge"]) == 0
    report = json.loads((tmp_path / ".data" / "eval" / "report.json").read_text())
    assert report["context"]["judge_model"] == "judge-model"
    assert report["context"]["judge_prompt_version"].startswith("ragas-")
    for metric in ("judge_faithfulness", "judge_answer_relevancy", "judge_context_recall"):
        assert 0.0 <= report["summary"][metric] <= 1.0
    assert report["judge_errors"] == []
    assert all(r["auth"] == f"Bearer {KEY}" for r in fake.requests if "auth" in r)


def test_eval_generate_without_a_judge_is_one_line_naming_the_settings(
    tmp_path: Path,
    model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("RAG_DATA_DIR", str(tmp_path / ".data"))
    assert main(["eval", "generate", "--corpus", str(SAMPLE_CORPUS)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert "RAG_JUDGE_BASE_URL" in err
    assert "Traceback" not in err
