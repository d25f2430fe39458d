"""A fork pulls template updates with cruft (docs/decisions/0019 in the generated project).

A temporary git copy of this template gets an earlier commit (the template minus a change)
and a later one (the template as it is). A project made with `cruft create` at the earlier
commit gets fork-local edits (a new route file, a changed setting default, a removed file),
then `cruft update` to the later commit. The edits must survive, the template's change must
arrive, and the result must equal a fresh render at the later commit plus the same edits:
nothing else differs, because the hooks are deterministic.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import REPO

TEMPLATE_DIR = "{{cookiecutter.project_slug}}"
RUNBOOK = Path("docs") / "runbook.md"
# The template change the update must bring: a new paragraph at the end of the runbook.
TEMPLATE_CHANGE = "\n## Template update probe\n\nThis paragraph arrived with a template update.\n"
ROUTE = Path("src/acme_rag_pilot/api/routes/hello.py")
ROUTE_TEXT = '"""A fork-local route."""\n\nGREETING = "hello from the fork"\n'
SETTINGS = Path("src/acme_rag_pilot/settings.py")
OLD_DEFAULT = "default_top_k: int = Field(5,"
NEW_DEFAULT = "default_top_k: int = Field(7,"
REMOVED = Path("benchmarks/bench_startup.py")


def git(cwd: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"git {' '.join(args)}:\n{result.stdout}{result.stderr}"
    return result.stdout.strip()


def cruft(cwd: Path, *args: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cruft", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        input="",
    )
    assert result.returncode == 0, f"cruft {' '.join(args)}:\n{result.stdout}{result.stderr}"


@pytest.fixture(scope="module")
def template_repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """A git copy of the template with two commits: (path, earlier sha, later sha)."""
    repo = tmp_path_factory.mktemp("template-repo")
    ignore = shutil.ignore_patterns(".git", ".venv", ".cache", "build", "__pycache__", ".*_cache")
    shutil.copytree(REPO, repo, dirs_exist_ok=True, ignore=ignore)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "earlier")
    earlier = git(repo, "rev-parse", "HEAD")
    runbook = repo / TEMPLATE_DIR / RUNBOOK
    runbook.write_text(runbook.read_text(encoding="utf-8") + TEMPLATE_CHANGE, encoding="utf-8")
    git(repo, "commit", "-qam", "later")
    return repo, earlier, git(repo, "rev-parse", "HEAD")


def fork_edits(project: Path) -> None:
    (project / ROUTE).write_text(ROUTE_TEXT, encoding="utf-8")
    settings = project / SETTINGS
    text = settings.read_text(encoding="utf-8")
    assert OLD_DEFAULT in text.replace("\n        ", ""), "the edited default moved"
    settings.write_text(
        text.replace("default_top_k: int = Field(5", "default_top_k: int = Field(7"),
        encoding="utf-8",
    )
    (project / REMOVED).unlink()


def create(template: Path, sha: str, output: Path) -> Path:
    output.mkdir()
    cruft(output, "create", str(template), "--checkout", sha, "--no-input")
    project = output / "acme-rag-pilot"
    git(project, "init", "-q", "-b", "main")
    git(project, "add", "-A")
    git(project, "commit", "-qm", "generated")
    return project


def tree(project: Path, keep: Callable[[Path], bool] = lambda _: True) -> dict[str, bytes]:
    return {
        p.relative_to(project).as_posix(): p.read_bytes()
        for p in sorted(project.rglob("*"))
        if p.is_file() and ".git" not in p.relative_to(project).parts and keep(p)
    }


@pytest.mark.skipif(shutil.which("git") is None, reason="cruft needs git on PATH")
def test_update_keeps_fork_edits_brings_template_changes_and_nothing_else(
    template_repo: tuple[Path, str, str], tmp_path: Path
) -> None:
    template, earlier, later = template_repo
    fork = create(template, earlier, tmp_path / "fork")
    assert json.loads((fork / ".cruft.json").read_text())["commit"] == earlier
    assert TEMPLATE_CHANGE not in (fork / RUNBOOK).read_text(encoding="utf-8")
    fork_edits(fork)
    git(fork, "add", "-A")
    git(fork, "commit", "-qm", "fork-local edits")

    cruft(fork, "update", "--skip-apply-ask", "--checkout", later)

    recorded = json.loads((fork / ".cruft.json").read_text())
    assert recorded["commit"] == later
    assert recorded["context"]["cookiecutter"]["deploy"] == "compose"
    assert (fork / RUNBOOK).read_text(encoding="utf-8").endswith(TEMPLATE_CHANGE)
    assert (fork / ROUTE).read_text(encoding="utf-8") == ROUTE_TEXT
    assert "default_top_k: int = Field(7" in (fork / SETTINGS).read_text(encoding="utf-8")
    assert not (fork / REMOVED).exists()
    assert [p.name for p in fork.rglob("*.rej")] == []
    assert [p.name for p in fork.rglob("*.orig")] == []

    # No spurious diff: a fresh render at the later commit with the same edits is identical.
    fresh = create(template, later, tmp_path / "fresh")
    fork_edits(fresh)
    assert tree(fork) == tree(fresh)


@pytest.mark.skipif(shutil.which("git") is None, reason="cruft needs git on PATH")
def test_a_file_the_fork_deleted_stays_deleted_even_when_the_template_changed_it(
    template_repo: tuple[Path, str, str], tmp_path: Path
) -> None:
    # cruft 2.16 drops the template's change to a file the fork deleted, silently (no .rej):
    # the README's "Updating from the template" says so; this keeps that sentence true.
    template, earlier, later = template_repo
    fork = create(template, earlier, tmp_path / "fork")
    (fork / RUNBOOK).unlink()
    git(fork, "commit", "-qam", "the fork has no runbook")
    cruft(fork, "update", "--skip-apply-ask", "--checkout", later)
    assert not (fork / RUNBOOK).exists()
    assert [p.name for p in fork.rglob("*.rej")] == []
    assert git(fork, "status", "--short") == "M .cruft.json"
