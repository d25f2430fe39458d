"""The hooks' rules, called directly (no rendering): fast and precise about each message."""

from __future__ import annotations

import ast
import itertools
from pathlib import Path
from typing import Any

import pytest
from conftest import CHOICES, CONFIG, TEMPLATE_PROJECT, effective_answers, load_hook

pre_gen = load_hook("pre_gen_project")
post_gen = load_hook("post_gen_project")

VALID = effective_answers({})


def problems_for(**changes: str) -> list[str]:
    return list(pre_gen.problems({**VALID, **changes}))


def test_default_answers_are_valid() -> None:
    assert problems_for() == []


def test_defaults_derive_slug_and_package_from_the_project_name() -> None:
    assert (VALID["project_slug"], VALID["package_name"]) == ("acme-rag-pilot", "acme_rag_pilot")


def test_hook_knows_exactly_the_python_versions_cookiecutter_offers() -> None:
    assert list(pre_gen.SUPPORTED_PYTHONS) == CONFIG["python_version"]


@pytest.mark.parametrize(
    ("answer", "value", "reason"),
    [
        ("package_name", "json", "standard-library"),
        ("package_name", "asyncore", "standard-library"),  # gone in 3.12, present in 3.11
        ("package_name", "qdrant_client", "imports"),
        ("package_name", "llama_index", "imports"),
        ("package_name", "tests", "folder"),
        ("package_name", "class", "keyword"),
        ("package_name", "My Package", "identifier"),
        ("package_name", "MyPackage", "identifier"),
        ("package_name", "my-package", "identifier"),
        ("package_name", "_private", "lowercase letter"),
        ("package_name", "9lives", "identifier"),
        ("package_name", "café", "identifier"),
        ("package_name", "northwind_claims_assistant_for_the_casualty_division", "characters"),
        ("package_name", "p" * 41, "at most 40"),
        ("project_slug", "my/app", "path separator"),
        ("project_slug", "my\\app", "path separator"),
        ("project_slug", "../app", "path separator"),
        ("project_slug", "my app", "whitespace"),
        ("project_slug", "My-App", "distribution name"),
        ("project_slug", "my_app", "distribution name"),
        ("project_slug", "my--app", "distribution name"),
        ("project_slug", "-app", "distribution name"),
        ("project_slug", "s" * 65, "at most 64"),
        ("author_email", "dana.example.com", "email"),
        ("author_email", "@example.com", "email"),
        ("author_email", "dana@", "email"),
        ("author_email", "dana smith@example.com", "email"),
        ("author_email", "dana@example.com\nBcc: x@y.z", "several lines"),
        ("project_name", "", "empty"),
        ("project_name", "   ", "empty"),
        ("project_name", "Acme\nPilot", "several lines"),
        ("description", "line one\nline two", "several lines"),
        ("description", "tab\x00nul", "control"),
        ("author_name", "Dana\r\nSmith", "several lines"),
        ("author_name", "Dana \U0001f680", "Basic Multilingual Plane"),
        ("python_version", "3.10", "not one of"),
    ],
)
def test_bad_answer_is_named_with_reason_and_valid_example(
    answer: str, value: str, reason: str
) -> None:
    found = problems_for(**{answer: value})
    assert len(found) == 1, found
    message = found[0]
    assert message.startswith(f"{answer}={value!r} ")
    assert reason in message
    assert "\n" not in message, "one line per problem"
    example = message.rsplit("Example of a valid value: ", 1)[1]
    # The example offered must itself pass the rule it illustrates.
    assert problems_for(**{answer: ast.literal_eval(example)}) == []


def test_every_bad_answer_gets_its_own_line() -> None:
    found = problems_for(package_name="json", author_email="nope", description="a\nb")
    assert [line.split("=", 1)[0] for line in found] == [
        "description",
        "package_name",
        "author_email",
    ]


@pytest.mark.parametrize(
    ("slug", "suggestion"),
    [("My App", "my-app"), ("my/app", "my-app"), ("Acme_RAG", "acme-rag")],
)
def test_slug_suggestion_is_the_normalized_answer(slug: str, suggestion: str) -> None:
    [message] = problems_for(project_slug=slug)
    assert message.endswith(f"Example of a valid value: {suggestion!r}")


def test_longest_valid_names_are_accepted() -> None:
    assert problems_for(project_slug="s" * 64, package_name="p" * 40) == []


def test_a_long_project_name_gets_shortened_slug_and_package_suggestions() -> None:
    name = "Northwind Claims Assistant for the Regional Property and Casualty Insurance Division"
    answers = effective_answers({"project_name": name})
    found = pre_gen.problems(answers)
    assert [line.split("=", 1)[0] for line in found] == ["project_slug", "package_name"]
    suggestions = {
        line.split("=", 1)[0]: ast.literal_eval(line.rsplit("valid value: ", 1)[1])
        for line in found
    }
    assert suggestions == {
        "project_slug": "northwind-claims-assistant-for-the-regional-property-and",
        "package_name": "northwind_claims_assistant_for_the",
    }
    assert pre_gen.problems({**answers, **suggestions}) == []


# Free text may hold anything printable on one line; product() covers each field x value.
PRINTABLE_HOSTILE = ['"', "'", "\\", '"""', "</script>", "{}", "$(rm -rf /)", "Zoë Ærø", "ä" * 300]


@pytest.mark.parametrize(
    ("answer", "value"),
    list(itertools.product(["project_name", "description", "author_name"], PRINTABLE_HOSTILE)),
)
def test_printable_one_line_free_text_is_accepted(answer: str, value: str) -> None:
    assert problems_for(**{answer: value}) == []


# --- post-gen: the manifest -------------------------------------------------------------


def make_tree(root: Path, *files: str) -> None:
    for name in files:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(name, encoding="utf-8")


@pytest.mark.parametrize("version", CHOICES["python_version"])
def test_shipped_manifest_moves_the_chosen_lock_and_removes_the_rest(
    tmp_path: Path, version: str
) -> None:
    locks = [f".locks/py{v}.uv.lock" for v in CHOICES["python_version"]]
    # What the default choices prune: the Kubernetes files and the GitLab pipeline.
    pruned = ["deploy/kubernetes/base/kustomization.yaml", ".gitlab-ci.yml"]
    make_tree(tmp_path, "pyproject.toml", *locks, *pruned)
    post_gen.apply_manifest(tmp_path, CONFIG["_manifest"], {**VALID, "python_version": version})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deploy", "pyproject.toml", "uv.lock"]
    assert list((tmp_path / "deploy").iterdir()) == []
    assert (tmp_path / "uv.lock").read_text(encoding="utf-8") == f".locks/py{version}.uv.lock"


def test_remove_when_paths_are_filled_from_the_answers(tmp_path: Path) -> None:
    manifest: dict[str, Any] = {"remove_when": {"mcp": {"no": ["src/{package_name}/mcp"]}}}
    make_tree(tmp_path, "src/claims/mcp/__init__.py", "src/claims/cli.py")
    post_gen.apply_manifest(tmp_path, manifest, {"mcp": "no", "package_name": "claims"})
    assert [p.name for p in (tmp_path / "src" / "claims").iterdir()] == ["cli.py"]


def test_shipped_manifest_removes_the_web_app_only_when_ui_is_no(tmp_path: Path) -> None:
    ui_paths = CONFIG["_manifest"]["remove_when"]["ui"]["no"]
    # Each one is in the template (the package folder under its Jinja name).
    package = "{{cookiecutter.package_name}}"
    for path in ui_paths:
        assert (TEMPLATE_PROJECT / path.format(package_name=package)).exists(), path
    manifest: dict[str, Any] = {"remove_when": {"ui": {"no": ui_paths}}}
    web_app = [
        "src/claims/ui/__init__.py",
        "src/claims/ui/static/index.html",
        "src/claims/api/routes/ui.py",
        "tests/test_ui_browser.py",
        "tests/api/routes/test_ui.py",
        "docs/ui.md",
        "docs/screenshots/ask.png",
        "docs/decisions/0016-ui-without-a-build-step.md",
        "docs/decisions/0022-javascript-lint-with-oxlint.md",
    ]
    rest = [
        "src/claims/api/app.py",
        "src/claims/api/routes/search.py",
        "tests/api/routes/test_search.py",
        "tests/test_api_docs.py",
        "docs/security.md",
        "docs/decisions/0011-api-docs-served-offline.md",
    ]
    make_tree(tmp_path, *web_app, *rest)
    post_gen.apply_manifest(tmp_path, manifest, {"ui": "yes", "package_name": "claims"})
    assert all((tmp_path / name).exists() for name in web_app + rest)
    post_gen.apply_manifest(tmp_path, manifest, {"ui": "no", "package_name": "claims"})
    left = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert left == sorted(rest)
    assert not (tmp_path / "src/claims/ui").exists()
    assert not (tmp_path / "docs/screenshots").exists()


def test_a_choice_outside_its_values_is_refused_with_the_valid_ones() -> None:
    [message] = problems_for(deploy="helm")
    assert message.startswith("deploy='helm' is not one of compose, kubernetes, none")


def test_remove_when_deletes_only_for_the_matching_answer(tmp_path: Path) -> None:
    manifest: dict[str, Any] = {"remove_when": {"docker": {"no": ["Dockerfile", "deploy"]}}}
    make_tree(tmp_path, "Dockerfile", "deploy/compose.yaml", "keep.txt")
    post_gen.apply_manifest(tmp_path, manifest, {"docker": "yes"})
    assert (tmp_path / "Dockerfile").exists()
    post_gen.apply_manifest(tmp_path, manifest, {"docker": "no"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


@pytest.mark.parametrize(
    ("manifest", "answers", "error"),
    [
        (
            {"select": {"uv.lock": ".locks/py{python_version}.uv.lock"}},
            {"python_version": "3.9"},
            "not in the template",
        ),
        ({"select": {"uv.lock": ".locks/{nope}.lock"}}, {}, "unknown answer"),
        ({"remove": ["missing"]}, {}, "does not exist"),
        ({"remove": ["../outside"]}, {}, "inside the project"),
        ({"remove": ["/etc"]}, {}, "inside the project"),
        ({"remove_when": {"nope": {"x": ["a"]}}}, {}, "unknown answer"),
    ],
)
def test_manifest_drift_is_an_error_not_a_silent_skip(
    tmp_path: Path, manifest: dict[str, Any], answers: dict[str, str], error: str
) -> None:
    with pytest.raises(post_gen.ManifestError, match=error):
        post_gen.apply_manifest(tmp_path, manifest, answers)


def test_next_steps_name_the_project_folder_and_the_make_targets() -> None:
    text = post_gen.next_steps({"project_slug": "globex-kb", "python_version": "3.12"})
    assert "cd globex-kb" in text
    for target in ("make setup", "make demo", "make test"):
        assert target in text
