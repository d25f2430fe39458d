"""Shape the rendered project from the declared manifest, then print the next steps.

The manifest is `_manifest` in cookiecutter.json:
  select       target path <- source path; `{answer}` placeholders are filled from the answers
               (e.g. pick the lock file for the chosen Python version)
  remove_when  answer -> value -> paths to delete when that answer has that value (`{answer}`
               placeholders filled as in select, e.g. `src/{package_name}/mcp`)
  remove       paths always deleted (scaffolding such as the per-version lock folder)

Deterministic and offline: no network, no randomness, no `uv lock`, so re-rendering the same
answers gives the same files (which `cruft update` relies on). A manifest entry that names a
missing path is an error: it means the template and its manifest drifted apart.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path, PurePosixPath
from typing import Any

# Rendered by cookiecutter; tojson keeps quotes and newlines in answers from breaking the file.
CONTEXT_JSON = r"""{{ cookiecutter | tojson }}"""


class ManifestError(Exception):
    """The manifest does not match the rendered files."""


def _inside(project: Path, relative: str) -> Path:
    """Resolve a manifest path, refusing anything that escapes the project folder."""
    pure = PurePosixPath(relative)
    if pure.is_absolute() or ".." in pure.parts or not pure.parts:
        raise ManifestError(f"manifest path {relative!r} must be relative and inside the project")
    return project.joinpath(*pure.parts)


def _delete(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def apply_manifest(project: Path, manifest: dict[str, Any], answers: dict[str, Any]) -> None:
    """Apply select, then remove_when, then remove. Raises ManifestError on drift."""
    for target, source_pattern in manifest.get("select", {}).items():
        try:
            source = _inside(project, source_pattern.format(**answers))
        except KeyError as error:
            raise ManifestError(f"select {target!r}: unknown answer {error}") from None
        if not source.is_file():
            raise ManifestError(
                f"select {target!r}: {source.relative_to(project)} is not in the template"
            )
        os.replace(source, _inside(project, target))

    for answer, by_value in manifest.get("remove_when", {}).items():
        if answer not in answers:
            raise ManifestError(f"remove_when names unknown answer {answer!r}")
        for pattern in by_value.get(str(answers[answer]), []):
            try:
                path = pattern.format(**answers)
            except KeyError as error:
                raise ManifestError(f"remove_when {answer}: unknown answer {error}") from None
            resolved = _inside(project, path)
            if not resolved.exists():
                raise ManifestError(f"remove_when {answer}: {path!r} does not exist")
            _delete(resolved)

    for path in manifest.get("remove", []):
        resolved = _inside(project, path)
        if not resolved.exists():
            raise ManifestError(f"remove: {path!r} does not exist")
        _delete(resolved)


def next_steps(answers: dict[str, Any]) -> str:
    slug = answers["project_slug"]
    return "\n".join(
        [
            f"Created {slug}/ (Python {answers['python_version']}). Next steps:",
            f"  cd {slug}",
            "  make setup   # install the locked environment",
            "  make demo    # ingest the sample corpus and print cited answers",
            "  make test    # all tests, including the end-to-end tier",
        ]
    )


def main() -> int:
    context = json.loads(CONTEXT_JSON)
    answers = {key: value for key, value in context.items() if not key.startswith("_")}
    try:
        apply_manifest(Path.cwd(), context["_manifest"], answers)
    except ManifestError as error:
        print(f"ERROR: template manifest: {error}", file=sys.stderr)
        return 1
    print(next_steps(answers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
