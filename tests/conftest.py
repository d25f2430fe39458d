"""Render the template the way users do and hand the results to the tests.

Combinations come from cookiecutter.json: every combination of its choice options
(itertools.product) that the pre-gen hook accepts, except that the non-default values of
SPARSE_OPTIONS (ui) are rendered only in a pairwise cover of the rest, is rendered by
test_combinations.py (FULL_RENDERS). The
per-project tests (SCENARIOS) run on a pairwise covering set of them (every pair of values of
two options in at least one combination), each with the default answers, with a second answer
set that changes every name and puts quotes and backslashes into the free-text answers, and
with the longest names the pre-gen hook accepts.
Renders are cached per session; a render takes well under a second.
"""

from __future__ import annotations

import ast
import importlib.util
import itertools
import json
import os
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
TEMPLATE_PROJECT = REPO / "{{cookiecutter.project_slug}}"
CONFIG: dict[str, Any] = json.loads((REPO / "cookiecutter.json").read_text(encoding="utf-8"))
# Choice options are the lists in cookiecutter.json (private `_` keys are not questions).
CHOICES: dict[str, list[str]] = {
    key: value
    for key, value in CONFIG.items()
    if isinstance(value, list) and not key.startswith("_")
}


def load_hook(name: str) -> ModuleType:
    """Import an unrendered hook: its Jinja lives only in strings that main() reads."""
    spec = importlib.util.spec_from_file_location(name, REPO / "hooks" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


DEFAULT_ANSWERS: dict[str, str] = {}
# Every name differs from the default and the free text carries quotes, a backslash and
# markup, which must survive into TOML, Python and YAML files unchanged.
OTHER_ANSWERS: dict[str, str] = {
    "project_name": 'Globex "Knowledge" Desk',
    "project_slug": "globex-kb",
    "package_name": "globex_kb",
    "description": 'Answers "what\'s our policy?" with citations \\ sources </script>',
    "author_name": 'Dana O\'Neil "DJ" \\ Smith',
    "author_email": "dana.o'neil@globex.example",
}
# The longest names the pre-gen hook accepts (a long client name, the slug and package at their
# length limits): a name is substituted into imports and commands, and the project's own lint
# (100 columns, import sorting, formatting) must pass for every valid length.
_LIMITS = load_hook("pre_gen_project")
LONG_ANSWERS: dict[str, str] = {
    "project_name": "Northwind Claims Assistant for the Regional Property and Casualty Division",
    "project_slug": ("northwind-claims-assistant-" + "x" * _LIMITS.MAX_SLUG_LENGTH)[
        : _LIMITS.MAX_SLUG_LENGTH
    ],
    "package_name": ("northwind_claims_assistant_" + "x" * _LIMITS.MAX_PACKAGE_LENGTH)[
        : _LIMITS.MAX_PACKAGE_LENGTH
    ],
    "description": "Answers claims handlers' questions over the policy wordings and the "
    "claims manual, with citations to the page, row or line it quotes from.",
}
ANSWER_SETS = {"default": DEFAULT_ANSWERS, "other": OTHER_ANSWERS, "long": LONG_ANSWERS}


def combination_id(answers: Mapping[str, str]) -> str:
    """The combination's values in option order, e.g. none-compose-github-yes-py3.11-embedded."""
    return "-".join(
        f"py{answers[k]}" if k == "python_version" else answers[k] for k in sorted(CHOICES)
    )


def choice_combinations(choices: Mapping[str, list[str]] | None = None) -> list[dict[str, str]]:
    """Every combination of the choice options, each value under its own option's name."""
    choices = CHOICES if choices is None else choices
    keys = sorted(choices)
    return [
        dict(zip(keys, values, strict=True))
        for values in itertools.product(*(choices[key] for key in keys))
    ]


def supported_combinations(
    choices: Mapping[str, list[str]] | None = None,
) -> list[dict[str, str]]:
    """The combinations the pre-gen hook accepts (it refuses a few with a reason)."""
    hook = load_hook("pre_gen_project")
    return [c for c in choice_combinations(choices) if not hook.unsupported(c)]


def pairwise_cover(combinations: list[dict[str, str]]) -> list[dict[str, str]]:
    """A small subset in which every pair of values of two options that occurs in
    `combinations` occurs at least once (greedy: take the combination covering most pairs
    not yet covered; ties go to the first, so the set is deterministic)."""

    def pairs(combination: Mapping[str, str]) -> set[tuple[str, str, str, str]]:
        items = sorted(combination.items())
        return {(a, x, b, y) for (a, x), (b, y) in itertools.combinations(items, 2)}

    uncovered = set().union(*(pairs(c) for c in combinations)) if combinations else set()
    chosen: list[dict[str, str]] = []
    while uncovered:
        best = max(combinations, key=lambda c: len(pairs(c) & uncovered))
        chosen.append(best)
        uncovered -= pairs(best)
    return chosen


def _pairs(combination: Mapping[str, str]) -> set[tuple[str, str, str, str]]:
    items = sorted(combination.items())
    return {(a, x, b, y) for (a, x), (b, y) in itertools.combinations(items, 2)}


def extend_cover(
    cover: list[dict[str, str]], option: str, supported: list[dict[str, str]]
) -> list[dict[str, str]]:
    """A pairwise cover of `supported` grown from a cover without `option` (in-parameter-order
    style): each row takes the value of `option` that covers most new pairs (the first row
    keeps the default), pairs of rows swap values while that covers more, and rows are added
    greedily only for pairs still missing. Adding a two-valued option to a greedy cover of
    everything grew it by two rows; this keeps the rows there were when the values fit."""
    allowed = {tuple(sorted(c.items())) for c in supported}
    values = list(dict.fromkeys(c[option] for c in supported))  # the default first
    wanted = set().union(*(_pairs(c) for c in supported)) if supported else set()

    def missing(rows: list[dict[str, str]]) -> int:
        return len(wanted - set().union(*(_pairs(r) for r in rows)))

    def ok(row: dict[str, str]) -> bool:
        return tuple(sorted(row.items())) in allowed

    rows: list[dict[str, str]] = []
    for base in cover:
        candidates = [{**base, option: v} for v in values if ok({**base, option: v})]
        if not candidates:
            continue
        covered = set().union(*(_pairs(r) for r in rows)) if rows else set()
        rows.append(max(candidates, key=lambda r: len((_pairs(r) & wanted) - covered)))
    improved = True
    while improved and missing(rows):
        improved = False
        for i, j in itertools.combinations(range(1, len(rows)), 2):
            for v, w in itertools.product(values, repeat=2):
                trial = list(rows)
                trial[i], trial[j] = {**rows[i], option: v}, {**rows[j], option: w}
                if ok(trial[i]) and ok(trial[j]) and missing(trial) < missing(rows):
                    rows, improved = trial, True
    uncovered = wanted - set().union(*(_pairs(r) for r in rows))
    while uncovered:
        best = max(supported, key=lambda c: len(_pairs(c) & uncovered))
        rows.append(best)
        uncovered -= _pairs(best)
    return rows


def sparse_pairwise(
    supported: list[dict[str, str]], sparse: Mapping[str, list[str]]
) -> list[dict[str, str]]:
    """The pairwise cover: greedy over the options that are not sparse, then each sparse
    option added as a column (extend_cover)."""
    dense = [c for c in supported if all(c[key] == values[0] for key, values in sparse.items())]
    cover = pairwise_cover([{k: v for k, v in c.items() if k not in sparse} for c in dense])
    pending = list(sparse)
    while pending:
        option = pending.pop(0)
        # The combinations over the options covered so far, the pending ones at their default.
        scope = [
            {k: v for k, v in c.items() if k not in pending}
            for c in supported
            if all(c[k] == sparse[k][0] for k in pending)
        ]
        cover = extend_cover(cover, option, scope)
    return cover


def full_render_set(
    supported: list[dict[str, str]],
    sparse: Mapping[str, list[str]],
    pairwise: list[dict[str, str]],
) -> list[dict[str, str]]:
    """What test_combinations renders: every supported combination with each `sparse` option
    at its default, then a pairwise cover of the rest (each other value of a sparse option
    beside every pair of the other options at least once), then any pairwise project not
    rendered yet. A two-valued option that only adds or removes files would otherwise double
    the renders; its other value is crossed with a covering subset instead of everything."""
    full = [c for c in supported if all(c[key] == values[0] for key, values in sparse.items())]
    chosen = full + pairwise_cover([c for c in supported if c not in full])
    return chosen + [c for c in pairwise if c not in chosen]


SUPPORTED = supported_combinations()
# Options whose non-default values are rendered with a covering subset only (see above).
SPARSE_OPTIONS = {key: CHOICES[key] for key in ("ui",)}
PAIRWISE = sparse_pairwise(SUPPORTED, SPARSE_OPTIONS)
FULL_RENDERS = full_render_set(SUPPORTED, SPARSE_OPTIONS, PAIRWISE)


@dataclass(frozen=True)
class Scenario:
    name: str
    answers: Mapping[str, str]

    @property
    def id(self) -> str:
        return f"{self.name}-{combination_id(self.answers)}"

    @property
    def choices(self) -> list[tuple[str, str]]:
        return [(key, self.answers[key]) for key in sorted(CHOICES)]


SCENARIOS = [
    Scenario(name, {**answers, **combination})
    for name, answers in ANSWER_SETS.items()
    for combination in PAIRWISE
]


def effective_answers(overrides: Mapping[str, str]) -> dict[str, Any]:
    """The answers cookiecutter will use, derived values included (as with --no-input)."""
    from cookiecutter.generate import generate_context
    from cookiecutter.prompt import prompt_for_config

    context = generate_context(
        context_file=str(REPO / "cookiecutter.json"), extra_context=dict(overrides)
    )
    answers: dict[str, Any] = prompt_for_config(context, no_input=True)
    return answers


@dataclass(frozen=True)
class Rendered:
    path: Path
    answers: dict[str, Any]

    @property
    def package(self) -> str:
        return str(self.answers["package_name"])

    @property
    def slug(self) -> str:
        return str(self.answers["project_slug"])

    @property
    def python_version(self) -> str:
        return str(self.answers["python_version"])


def render(overrides: Mapping[str, str], output_dir: Path) -> Rendered:
    """Render like `cookiecutter --no-input` (hooks included) through the Python API."""
    from cookiecutter.main import cookiecutter

    project = cookiecutter(
        str(REPO), no_input=True, output_dir=str(output_dir), extra_context=dict(overrides)
    )
    return Rendered(Path(project), effective_answers(overrides))


@contextmanager
def shared_template_cache() -> Iterator[None]:
    """Renders inside share one Jinja environment and loader, so each template file is lexed
    and compiled once instead of once per render (2.5x faster here, byte-identical output).

    Cookiecutter builds a new environment (and a new FileSystemLoader, whose identity keys
    Jinja's cache) for every render; the answers reach the templates only at render time.
    """
    import cookiecutter.generate as generate
    from jinja2 import FileSystemLoader

    environments: dict[str, Any] = {}
    loaders: dict[tuple[str, ...], FileSystemLoader] = {}
    create_env = generate.create_env_with_context

    def shared_env(context: dict[str, Any]) -> Any:
        options = context.get("cookiecutter", {})
        key = repr((options.get("_jinja2_env_vars"), options.get("_extensions")))
        if key not in environments:
            environments[key] = create_env(context)
        return environments[key]

    def shared_loader(searchpath: list[str]) -> FileSystemLoader:
        key = tuple(os.path.abspath(path) for path in searchpath)
        if key not in loaders:
            loaders[key] = FileSystemLoader(list(key))
        return loaders[key]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(generate, "create_env_with_context", shared_env)
        patch.setattr(generate, "FileSystemLoader", shared_loader)
        yield


def cookiecutter_cli(
    output_dir: Path, answers: Mapping[str, str]
) -> subprocess.CompletedProcess[str]:
    """Run the real command line, to see exit codes and messages as a user does."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "cookiecutter",
            "--no-input",
            "--output-dir",
            str(output_dir),
            str(REPO),
            *(f"{key}={value}" for key, value in answers.items()),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="session", autouse=True)
def isolated_cookiecutter_config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Ignore the user's ~/.cookiecutterrc (it could change the default answers) and keep
    replay files out of their home. Cookiecutter's API and CLI both read COOKIECUTTER_CONFIG."""
    root = tmp_path_factory.mktemp("cookiecutter-config")
    config = root / "config.yaml"
    config.write_text(
        f"cookiecutters_dir: {json.dumps(str(root / 'templates'))}\n"
        f"replay_dir: {json.dumps(str(root / 'replay'))}\n",
        encoding="utf-8",
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COOKIECUTTER_CONFIG", str(config))
        yield


@pytest.fixture(scope="session")
def render_cached(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Scenario], Rendered]:
    cache: dict[str, Rendered] = {}

    def _render(scenario: Scenario) -> Rendered:
        if scenario.id not in cache:
            cache[scenario.id] = render(scenario.answers, tmp_path_factory.mktemp(scenario.id))
        return cache[scenario.id]

    return _render


@pytest.fixture(scope="session", params=SCENARIOS, ids=[s.id for s in SCENARIOS])
def rendered(
    request: pytest.FixtureRequest, render_cached: Callable[[Scenario], Rendered]
) -> Rendered:
    scenario: Scenario = request.param
    return render_cached(scenario)


def text_files(root: Path) -> Iterator[tuple[Path, str]]:
    """Every UTF-8 text file under root (binary files are skipped)."""
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data:
            continue
        try:
            yield path, data.decode("utf-8")
        except UnicodeDecodeError:
            continue


def parse_python(text: str, filename: str) -> None:
    """ast.parse, with warnings (e.g. an invalid escape from a backslash answer) as errors."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ast.parse(text, filename=filename)


def uv_only_bin() -> Path:
    """A folder holding only the template's pinned uv, to put first on PATH.

    A rendered project writes `.python-version`, which pyenv reads too: inside a 3.12
    rendering a pyenv shim for a uv installed under another Python fails. The template's own
    uv (the `uv` package of its dev environment) runs whatever the folder says.
    """
    from uv import find_uv_bin

    folder = REPO / ".cache" / "uv-bin"
    link = folder / "uv"
    target = Path(find_uv_bin()).resolve()
    if not link.is_symlink() or link.resolve() != target:
        folder.mkdir(parents=True, exist_ok=True)
        link.unlink(missing_ok=True)
        link.symlink_to(target)
    return folder


def command_env(**overrides: str) -> dict[str, str]:
    """Environment for commands run inside a rendered project.

    The parent `uv run` exports VIRTUAL_ENV for the template tooling; the rendered project
    must use its own. UV_CACHE_DIR is passed through when set, else uv's default user cache
    is shared by every render (an install is about 1 GB; never a per-test cache). The
    template's uv comes first on PATH (see uv_only_bin).
    """
    env = {key: value for key, value in os.environ.items() if key != "VIRTUAL_ENV"}
    env.update(UV_PYTHON_DOWNLOADS="never", UV_NO_PROGRESS="1", NO_COLOR="1")
    env["PATH"] = os.pathsep.join([str(uv_only_bin()), env.get("PATH", "")])
    env.update(overrides)
    return env
