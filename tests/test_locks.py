"""The per-version lock files the template ships (see scripts/relock.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import relock
from conftest import CHOICES

VERSIONS = CHOICES["python_version"]


@pytest.mark.parametrize("version", VERSIONS)
def test_every_python_choice_ships_a_templated_lock(version: str) -> None:
    path = relock.lock_path(version)
    assert path.is_file(), f"{path} is missing: run `make relock`"
    text = path.read_text(encoding="utf-8")
    assert text.startswith("version = "), f"{path.name} is not a uv lock (empty bootstrap?)"
    assert f'requires-python = ">={version}"' in text
    # The slug is the only Jinja in a lock; anything else would be rendered or break Jinja.
    assert re.findall(r"\{\{.*?\}\}|\{%|\{#", text) == [relock.SLUG_EXPRESSION]
    assert f'name = "{relock.SLUG_EXPRESSION}"' in text


def test_only_locks_for_offered_versions_are_shipped() -> None:
    shipped = sorted(p.name for p in relock.LOCKS.iterdir())
    assert shipped == sorted(f"py{v}.uv.lock" for v in VERSIONS)


def test_relock_refuses_a_lock_jinja_would_misread() -> None:
    lock = 'version = 1\nrequires-python = ">=3.11"\n[[package]]\nname = "lockfile-placeholder"\n'
    assert relock.templated_lock(lock, "3.11").count(relock.SLUG_EXPRESSION) == 1
    with pytest.raises(AssertionError, match="Jinja"):
        relock.templated_lock(lock + "# {% raw %}\n", "3.11")
    with pytest.raises(AssertionError, match="requires-python"):
        relock.templated_lock(lock, "3.12")


def test_find_python_skips_interpreters_that_do_not_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A pyenv shim for an unselected version is on PATH but exits non-zero.
    shim = tmp_path / "python3.99"
    shim.write_text("#!/bin/sh\necho 'pyenv: python3.99: command not found' >&2\nexit 127\n")
    shim.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "no-pyenv"))
    assert relock.find_python("3.99") is None


@pytest.mark.slow
@pytest.mark.parametrize("version", VERSIONS)
def test_relock_is_idempotent(
    version: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if relock.find_python(version) is None:
        pytest.skip(f"no Python {version} interpreter (python{version} or ~/.pyenv/versions)")
    shipped = relock.lock_path(version).read_bytes()
    # Render from the real template (its lock is the seed) but write the result elsewhere.
    monkeypatch.setattr(relock, "LOCKS", tmp_path)
    relock.lock_path(version).write_bytes(shipped)
    assert relock.relock(version, upgrade=False) is False
    assert relock.lock_path(version).read_bytes() == shipped
