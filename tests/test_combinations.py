"""Fast tier: every combination of the choice options that the pre-gen hook accepts (the
non-default values of SPARSE_OPTIONS only in a covering subset: FULL_RENDERS) renders,
parses and lints, prunes exactly the files its choices make irrelevant; refused ones fail
before anything is written, with one line saying why.

Renders run in one process per core (each with its own shared Jinja cache). Most files render
identically across combinations, so ruff lints a covering subset of the projects: enough
whole projects that every distinct (project config, path, content) Python file is in one of
them, in one ruff run (each project under its own pyproject.toml config).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import subprocess
import sys
import time
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
import yaml
from conftest import (
    CHOICES,
    CONFIG,
    FULL_RENDERS,
    PAIRWISE,
    REPO,
    SPARSE_OPTIONS,
    SUPPORTED,
    choice_combinations,
    combination_id,
    cookiecutter_cli,
    extend_cover,
    full_render_set,
    load_hook,
    pairwise_cover,
    parse_python,
    render,
    shared_template_cache,
    text_files,
)
from test_render import COPIED_UNRENDERED, JINJA_LEFTOVER

STATS: dict[str, float] = {}


def _render_share(root: Path, combinations: Sequence[dict[str, str]]) -> dict[str, str]:
    """One worker's renders (a process of its own: rendering is CPU-bound Python)."""
    with shared_template_cache():
        return {
            c_id: str(render(c, root / c_id).path)
            for c in combinations
            for c_id in [combination_id(c)]
        }


@pytest.fixture(scope="module")
def every_combination(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("all-combinations")
    started = time.perf_counter()
    workers = max(1, min(4, len(os.sched_getaffinity(0))))
    shares = [FULL_RENDERS[n::workers] for n in range(workers)]
    # fork: the children inherit the imported test modules, so nothing is re-imported.
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        rendered = pool.starmap(_render_share, [(root, share) for share in shares])
    by_id = {c_id: Path(path) for share in rendered for c_id, path in share.items()}
    projects = {combination_id(c): by_id[combination_id(c)] for c in FULL_RENDERS}
    STATS["render_s"] = time.perf_counter() - started
    print(
        f"\nrendered {len(projects)} of {len(SUPPORTED)} supported combinations (of "
        f"{len(choice_combinations())}) in {STATS['render_s']:.1f}s; pairwise set: "
        f"{len(PAIRWISE)}",
        file=sys.stderr,
    )
    return projects


def _parse_errors(project: Path, parsed: set[tuple[str, int]]) -> list[str]:
    """Unrendered Jinja in any file; parse errors, each distinct file content parsed once
    (most files render identically across combinations; the lock is test_locks' job)."""
    errors = []
    for path, text in text_files(project):
        name = path.relative_to(project).as_posix()
        if name.startswith(COPIED_UNRENDERED + "/") or name == "uv.lock":
            continue
        key = (path.suffix, hash(text))
        if key in parsed:
            continue
        parsed.add(key)
        for line_no, line in enumerate(text.splitlines(), 1):
            if JINJA_LEFTOVER.search(line):
                errors.append(f"{name}:{line_no}: unrendered: {line.strip()[:100]}")
        try:
            if path.suffix == ".py":
                parse_python(text, name)
            elif path.suffix in (".yaml", ".yml"):
                list(yaml.safe_load_all(text))
            elif path.suffix == ".json":
                json.loads(text)
            elif path.suffix == ".toml":
                tomllib.loads(text)
        except (SyntaxError, yaml.YAMLError, json.JSONDecodeError, tomllib.TOMLDecodeError) as e:
            errors.append(f"{name}: {type(e).__name__}: {e}")
    return errors


def test_every_supported_combination_renders_and_every_file_parses(
    every_combination: dict[str, Path],
) -> None:
    assert len(every_combination) == len(FULL_RENDERS)
    parsed: set[tuple[str, int]] = set()
    errors = {name: _parse_errors(path, parsed) for name, path in every_combination.items()}
    assert {name: e for name, e in errors.items() if e} == {}


RUFF_READS = (".py", ".pyi")  # what `ruff check` and `ruff format` look at here


def lint_cover(projects: Mapping[str, Path]) -> list[str]:
    """Greedy set cover: the fewest projects (by name) that hold every distinct Python file,
    a file keyed by its project's pyproject.toml (ruff's config), its path and its content."""
    items: dict[str, set[tuple[str, str, str]]] = {}
    for name, project in projects.items():
        config = hashlib.sha256((project / "pyproject.toml").read_bytes()).hexdigest()
        items[name] = {
            (
                config,
                path.relative_to(project).as_posix(),
                hashlib.sha256(path.read_bytes()).hexdigest(),
            )
            for path in project.rglob("*")
            if path.suffix in RUFF_READS and path.is_file()
        }
    uncovered = set().union(*items.values())
    chosen: list[str] = []
    while uncovered:
        best = max(items, key=lambda name: (len(items[name] & uncovered), name))
        chosen.append(best)
        uncovered -= items[best]
    return chosen


def test_lint_cover_holds_every_distinct_file_of_every_project(
    every_combination: dict[str, Path],
) -> None:
    chosen = lint_cover(every_combination)
    STATS["lint_projects"] = len(chosen)
    assert 0 < len(chosen) < len(every_combination)
    linted = {
        (path.relative_to(every_combination[name]).as_posix(), path.read_bytes())
        for name in chosen
        for path in every_combination[name].rglob("*.py")
    }
    for project in every_combination.values():
        for path in project.rglob("*.py"):
            assert (path.relative_to(project).as_posix(), path.read_bytes()) in linted, path


def test_every_combination_passes_its_own_ruff_config_in_one_run(
    every_combination: dict[str, Path],
) -> None:
    root = next(iter(every_combination.values())).parents[1]
    chosen = [
        str(every_combination[name].relative_to(root)) for name in lint_cover(every_combination)
    ]
    for command in (["check", "--no-cache", *chosen], ["format", "--check", "--no-cache", *chosen]):
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "ruff", *command],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        STATS[f"ruff_{command[0]}_s"] = time.perf_counter() - started
        assert result.returncode == 0, f"ruff {command[0]}:\n{result.stdout[-6000:]}"


def expected_presence(answers: Mapping[str, str]) -> dict[str, bool]:
    """Which optional paths a combination keeps."""
    deploy, ci = answers["deploy"], answers["ci"]
    return {
        "compose.yaml": deploy == "compose",
        "deploy/otel-collector.yaml": deploy == "compose",
        "deploy/kubernetes/base/kustomization.yaml": deploy == "kubernetes",
        "Dockerfile": True,
        ".github/workflows/ci.yml": ci == "github",
        ".gitlab-ci.yml": ci == "gitlab",
        "src/acme_rag_pilot/mcp/__init__.py": answers["mcp_server"] == "yes",
        "tests/mcp": answers["mcp_server"] == "yes",
        "docs/mcp.md": answers["mcp_server"] == "yes",
        "benchmarks/bench_mcp.py": answers["mcp_server"] == "yes",
        "src/acme_rag_pilot/ui/static/index.html": answers["ui"] == "yes",
        "src/acme_rag_pilot/api/routes/ui.py": answers["ui"] == "yes",
        "tests/test_ui_browser.py": answers["ui"] == "yes",
        "tests/api/routes/test_ui.py": answers["ui"] == "yes",
        "docs/ui.md": answers["ui"] == "yes",
        "docs/screenshots/ask.png": answers["ui"] == "yes",
        "src/acme_rag_pilot/api/routes/search.py": True,
    }


def test_each_choice_prunes_exactly_its_files(every_combination: dict[str, Path]) -> None:
    wrong = []
    for combination in FULL_RENDERS:
        project = every_combination[combination_id(combination)]
        for path, kept in expected_presence(combination).items():
            if (project / path).exists() != kept:
                wrong.append(
                    f"{combination_id(combination)}: {path} {'missing' if kept else 'left'}"
                )
    assert wrong == []


def test_project_json_records_the_choices(every_combination: dict[str, Path]) -> None:
    for combination in FULL_RENDERS:
        project = every_combination[combination_id(combination)]
        recorded = json.loads((project / "src/acme_rag_pilot/project.json").read_text())
        assert recorded["choices"] == {
            k: v for k, v in combination.items() if k != "python_version"
        }


def test_make_lint_checks_the_web_apps_javascript_only_when_there_is_one(
    every_combination: dict[str, Path],
) -> None:
    for combination in FULL_RENDERS:
        project = every_combination[combination_id(combination)]
        makefile = (project / "Makefile").read_text(encoding="utf-8")
        lint = makefile.split("\nlint:", 1)[1].split("\n\n", 1)[0]
        expected = "\t$(RUN) oxlint --deny-warnings src/acme_rag_pilot/ui/static"
        assert (expected in lint.splitlines()) == (combination["ui"] == "yes"), lint


def _files(project: Path) -> set[str]:
    return {p.relative_to(project).as_posix() for p in project.rglob("*") if p.is_file()}


def test_a_sparse_options_other_value_removes_exactly_its_manifest_files(
    every_combination: dict[str, Path],
) -> None:
    """ui=no against the same combination with ui=yes: the files under the manifest's ui
    paths are gone, nothing else is, and no other file is added (text may differ: README)."""
    compared = 0
    for combination in FULL_RENDERS:
        changed = [k for k, values in SPARSE_OPTIONS.items() if combination[k] != values[0]]
        if len(changed) != 1:
            continue
        [option] = changed
        twin = {**combination, option: SPARSE_OPTIONS[option][0]}
        pruned = _files(every_combination[combination_id(combination)])
        kept = _files(every_combination[combination_id(twin)])
        paths = [
            p.format(package_name="acme_rag_pilot")
            for p in CONFIG["_manifest"]["remove_when"][option][combination[option]]
        ]
        under = {f for f in kept if any(f == p or f.startswith(p + "/") for p in paths)}
        assert all(any(f == p or f.startswith(p + "/") for f in kept) for p in paths), paths
        assert (combination_id(combination), kept - pruned) == (combination_id(combination), under)
        assert pruned - kept == set()
        compared += 1
    assert compared >= len(PAIRWISE) // 3


def test_full_renders_are_every_default_combination_plus_a_cover_of_the_rest() -> None:
    full = [c for c in SUPPORTED if all(c[k] == v[0] for k, v in SPARSE_OPTIONS.items())]
    assert FULL_RENDERS[: len(full)] == full
    assert len({combination_id(c) for c in FULL_RENDERS}) == len(FULL_RENDERS)
    assert all(c in SUPPORTED for c in FULL_RENDERS)
    assert all(c in FULL_RENDERS for c in PAIRWISE)

    # Every pair of values that can be combined is rendered, at a small cost over the
    # combinations without the sparse options (not twice as many).
    def pairs(c: Mapping[str, str]) -> set[tuple[str, str, str, str]]:
        items = sorted(c.items())
        return {(a, x, b, y) for i, (a, x) in enumerate(items) for b, y in items[i + 1 :]}

    rest = [c for c in SUPPORTED if c not in full]
    assert set().union(*(pairs(c) for c in rest)) <= set().union(
        *(pairs(c) for c in FULL_RENDERS[len(full) :])
    )
    assert len(FULL_RENDERS) - len(full) <= 2 * len(PAIRWISE)


def test_extend_cover_adds_a_column_without_adding_rows() -> None:
    choices = {"a": ["1", "2", "3"], "b": ["x", "y", "z"], "c": ["p", "q"]}
    everything = choice_combinations(choices)
    cover = pairwise_cover(choice_combinations({k: choices[k] for k in ("a", "b")}))
    assert len(cover) == 9
    extended = extend_cover(cover, "c", everything)
    assert len(extended) == 9
    assert extended[0]["c"] == "p"
    assert full_render_set(everything, {"c": ["p", "q"]}, extended)[:9] == [
        c for c in everything if c["c"] == "p"
    ]


def test_pairwise_set_covers_every_pair_of_values_that_can_be_combined() -> None:
    def pairs(c: Mapping[str, str]) -> set[tuple[str, str, str, str]]:
        items = sorted(c.items())
        return {(a, x, b, y) for i, (a, x) in enumerate(items) for b, y in items[i + 1 :]}

    possible = set().union(*(pairs(c) for c in SUPPORTED))
    assert set().union(*(pairs(c) for c in PAIRWISE)) == possible
    # Within reach of the lower bound (the two largest options' value counts multiplied).
    sizes = sorted(len(v) for v in CHOICES.values())
    assert len(PAIRWISE) <= 2 * sizes[-1] * sizes[-2]
    assert PAIRWISE[0] == {k: v[0] for k, v in CHOICES.items()}, "defaults first"


def test_shared_template_cache_renders_byte_identical_projects(tmp_path: Path) -> None:
    combination = PAIRWISE[1]
    plain = render(combination, tmp_path / "plain").path
    with shared_template_cache():
        render(PAIRWISE[2], tmp_path / "warm-up")
        cached = render(combination, tmp_path / "cached").path
    files = sorted(p.relative_to(plain) for p in plain.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(cached) for p in cached.rglob("*") if p.is_file())
    assert [f for f in files if (plain / f).read_bytes() != (cached / f).read_bytes()] == []


def test_pairwise_cover_on_a_small_example() -> None:
    choices = {"a": ["1", "2"], "b": ["x", "y"], "c": ["p", "q"]}
    cover = pairwise_cover(choice_combinations(choices))
    assert len(cover) == 4  # the known optimum for three two-valued options
    assert len(choice_combinations(choices)) == 8


@pytest.mark.parametrize(
    ("answers", "reason"),
    [({"deploy": "kubernetes", "vector_store": "embedded"}, "replicas")],
)
def test_refused_combination_fails_before_writing_with_one_line(
    tmp_path: Path, answers: dict[str, str], reason: str
) -> None:
    result = cookiecutter_cli(tmp_path, answers)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR: ")]
    assert len(errors) >= 1
    assert reason in errors[0]
    assert "vector_store=qdrant_server" in errors[0]
    assert list(tmp_path.iterdir()) == []


def test_every_refused_combination_is_one_the_hook_names() -> None:
    hook = load_hook("pre_gen_project")
    refused = [c for c in choice_combinations() if hook.unsupported(c)]
    assert len(refused) + len(SUPPORTED) == len(choice_combinations())
    assert all(c["deploy"] == "kubernetes" and c["vector_store"] == "embedded" for c in refused)


def test_hook_knows_exactly_the_choices_cookiecutter_offers() -> None:
    hook = load_hook("pre_gen_project")
    config = json.loads((REPO / "cookiecutter.json").read_text(encoding="utf-8"))
    assert {k: list(v) for k, v in hook.OPTION_VALUES.items()} == {
        k: config[k] for k in hook.OPTION_VALUES
    }
    assert set(hook.OPTION_VALUES) | {"python_version"} == set(CHOICES)
