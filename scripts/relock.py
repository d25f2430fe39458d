"""Regenerate the per-Python-version lock files the template ships.

    uv run python scripts/relock.py                  # every version in cookiecutter.json
    uv run python scripts/relock.py --python 3.12    # one version
    uv run python scripts/relock.py --upgrade        # also move pins to the newest releases

For each version: render the template with a placeholder project name, run `uv lock` in the
rendered project with that version's interpreter, then store the lock as
`{{cookiecutter.project_slug}}/.locks/py<version>.uv.lock` with the placeholder slug turned
back into the Jinja expression. The post-gen hook later picks the lock for the chosen version.

The current lock seeds each run (the render already contains it as uv.lock), so uv keeps the
pinned versions: rerunning without --upgrade rewrites the same bytes. A version whose lock is
missing is bootstrapped with an empty file so the template still renders. Why one lock per
version: docs/decisions/0001-one-lock-per-python-version.md.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TEMPLATE_PROJECT = REPO / "{{cookiecutter.project_slug}}"
LOCKS = TEMPLATE_PROJECT / ".locks"
PLACEHOLDER_NAME = "Lockfile Placeholder"
PLACEHOLDER_SLUG = "lockfile-placeholder"
PLACEHOLDER_PACKAGE = "lockfile_placeholder"
SLUG_EXPRESSION = "{{ cookiecutter.project_slug }}"
JINJA_MARKERS = ("{{", "{%", "{#")


def python_versions() -> list[str]:
    """The python_version choices offered by cookiecutter.json."""
    config = json.loads((REPO / "cookiecutter.json").read_text(encoding="utf-8"))
    versions: list[str] = config["python_version"]
    return versions


def lock_path(version: str) -> Path:
    return LOCKS / f"py{version}.uv.lock"


def _reports_version(executable: str, version: str) -> bool:
    # pyenv shims exist on PATH even when that version is not selected, and then fail.
    try:
        result = subprocess.run(
            [executable, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except OSError:
        return False
    return result.returncode == 0 and result.stdout.strip() == version


def find_python(version: str) -> str | None:
    """A working interpreter for `version` ("3.12"): PATH first, then pyenv's versions folder."""
    candidates: list[str] = []
    on_path = shutil.which(f"python{version}")
    if on_path:
        candidates.append(on_path)
    pyenv_root = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))
    candidates += sorted(
        glob.glob(f"{pyenv_root}/versions/{version}*/bin/python{version}"), reverse=True
    )
    if sys.version_info[:2] == tuple(int(part) for part in version.split(".")):
        candidates.append(sys.executable)
    for candidate in candidates:
        if _reports_version(candidate, version):
            return candidate
    return None


def uv_command() -> list[str]:
    """uv on PATH, else the one installed into this interpreter (`pip install uv`)."""
    found = shutil.which("uv")
    return [found] if found else [sys.executable, "-m", "uv"]


def uv_env(python: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(UV_PYTHON=python, UV_PYTHON_DOWNLOADS="never", UV_NO_PROGRESS="1")
    # A parent `uv run` exports its own project's venv; the rendered project must not use it.
    env.pop("VIRTUAL_ENV", None)
    return env


def render(version: str, output_dir: Path) -> Path:
    """Render the template with the placeholder answers; returns the project folder."""
    from cookiecutter.main import cookiecutter  # imported here: only relock needs it

    # Our own config: the user's ~/.cookiecutterrc must not change the answers, and the
    # replay file belongs in the scratch folder, not in ~/.cookiecutter_replay/.
    config = output_dir / "cookiecutter-config.yaml"
    config.write_text(f"replay_dir: {json.dumps(str(output_dir / 'replay'))}\n", encoding="utf-8")
    project = cookiecutter(
        str(REPO),
        no_input=True,
        output_dir=str(output_dir / "render"),
        config_file=str(config),
        extra_context={"project_name": PLACEHOLDER_NAME, "python_version": version},
    )
    return Path(project)


def templated_lock(lock_text: str, version: str) -> str:
    """Turn a lock for the placeholder project into the template's lock, checking it first."""
    for marker in JINJA_MARKERS:
        assert marker not in lock_text, (
            f"py{version}: uv.lock contains {marker!r}; Jinja would try to render it. "
            "Wrap that part in {% raw %} or add the lock to _copy_without_render."
        )
    assert PLACEHOLDER_PACKAGE not in lock_text, (
        f"py{version}: uv.lock mentions the package name {PLACEHOLDER_PACKAGE!r}; "
        "only the slug is templated, so other package names would get a wrong lock"
    )
    assert f'name = "{PLACEHOLDER_SLUG}"' in lock_text, (
        f"py{version}: the project {PLACEHOLDER_SLUG!r} is not in the lock"
    )
    assert f'requires-python = ">={version}"' in lock_text, (
        f"py{version}: the lock's requires-python does not follow the template"
    )
    return lock_text.replace(PLACEHOLDER_SLUG, SLUG_EXPRESSION)


def relock(version: str, *, upgrade: bool) -> bool:
    """Relock one version. Returns True when the stored lock changed."""
    python = find_python(version)
    if python is None:
        raise SystemExit(
            f"relock: no Python {version} interpreter found (looked for python{version} on PATH "
            f"and ~/.pyenv/versions/{version}*/bin/python{version}). Install it and rerun."
        )
    target = lock_path(version)
    bootstrapped = not target.exists()
    if bootstrapped:
        # The post-gen hook insists the selected lock exists; an empty one lets us render.
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("", encoding="utf-8")
    try:
        with tempfile.TemporaryDirectory(prefix="relock-") as tmp:
            project = render(version, Path(tmp))
            seed = project / "uv.lock"
            if seed.stat().st_size == 0:
                seed.unlink()  # uv cannot read an empty lock; let it resolve from scratch
            command = [*uv_command(), "lock", *(["--upgrade"] if upgrade else [])]
            subprocess.run(command, cwd=project, env=uv_env(python), check=True)
            new_text = templated_lock(seed.read_text(encoding="utf-8"), version)
    except BaseException:
        if bootstrapped:
            target.unlink()  # never leave an empty lock behind
        raise
    old_text = "" if bootstrapped else target.read_text(encoding="utf-8")
    if new_text == old_text:
        return False
    target.write_text(new_text, encoding="utf-8")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Regenerate the per-Python-version lock files.")
    parser.add_argument(
        "--python",
        action="append",
        choices=python_versions(),
        help="version to relock (repeatable; default: all)",
    )
    parser.add_argument("--upgrade", action="store_true", help="allow newer package versions")
    args = parser.parse_args(argv)
    for version in args.python or python_versions():
        changed = relock(version, upgrade=args.upgrade)
        status = "updated" if changed else "unchanged"
        print(f"relock: {lock_path(version).relative_to(REPO)} {status}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
