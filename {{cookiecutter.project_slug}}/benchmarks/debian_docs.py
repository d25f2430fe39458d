"""Public documentation corpora from Debian packages, fetched and unpacked once into a cache.

    from debian_docs import doc_root
    root = doc_root("python3.11-doc")  # .cache/corpora/python3.11-doc/tree/usr/share/doc/...

The package is fetched with `apt-get download` (no root needed) into `.cache/corpora/` and
unpacked with `dpkg-deb -x`; later calls reuse the unpacked tree. The version fetched is
whatever the machine's apt sources offer, so record `package_version()` next to results.
Raises CorpusUnavailableError with a one-line fix when apt or dpkg-deb cannot do it.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
CACHE = PROJECT / ".cache" / "corpora"

# Where each known package keeps its HTML pages, relative to the unpacked tree.
DOC_ROOTS = {
    "python3.11-doc": "usr/share/doc/python3.11/html",
    "debian-reference-en": "usr/share/debian-reference",
}


class CorpusUnavailableError(RuntimeError):
    """The corpus could not be fetched or unpacked; the message says how to fix it."""


def _run(command: list[str], cwd: Path) -> str:
    if shutil.which(command[0]) is None:
        raise CorpusUnavailableError(
            f"`{command[0]}` is not installed: the benchmark corpus comes from a Debian package, "
            "so run it on Debian or Ubuntu (or in the project's container)."
        )
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise CorpusUnavailableError(
            f"`{' '.join(command)}` failed: {detail[-1] if detail else done.returncode}. "
            "Run `apt-get update` (as root) so apt knows the package, then retry."
        )
    return done.stdout


def package_version(package: str, cache: Path = CACHE) -> str:
    """The version of the unpacked package (from the .deb's file name)."""
    debs = sorted((cache / package).glob(f"{package}_*.deb"))
    if not debs:
        raise CorpusUnavailableError(f"{package} is not fetched yet: call doc_root({package!r}).")
    return debs[-1].name.split("_")[1]


def doc_root(package: str = "python3.11-doc", cache: Path = CACHE) -> Path:
    """Fetch and unpack `package` (once) and return the folder holding its HTML pages."""
    if package not in DOC_ROOTS:
        known = ", ".join(sorted(DOC_ROOTS))
        raise CorpusUnavailableError(f"Unknown corpus package {package!r}; known: {known}.")
    folder = cache / package
    root = folder / "tree" / DOC_ROOTS[package]
    if root.is_dir():
        return root
    folder.mkdir(parents=True, exist_ok=True)
    if not list(folder.glob(f"{package}_*.deb")):
        _run(["apt-get", "download", package], cwd=folder)
    deb = sorted(folder.glob(f"{package}_*.deb"))[-1]
    staging = folder / "tree.partial"
    shutil.rmtree(staging, ignore_errors=True)
    _run(["dpkg-deb", "-x", str(deb), str(staging)], cwd=folder)
    staging.rename(folder / "tree")  # only a complete unpack is ever seen as the corpus
    if not root.is_dir():
        raise CorpusUnavailableError(f"{deb.name} has no {DOC_ROOTS[package]}: update DOC_ROOTS.")
    return root


if __name__ == "__main__":
    import sys

    name = sys.argv[1] if len(sys.argv) > 1 else "python3.11-doc"
    try:
        print(doc_root(name))
    except CorpusUnavailableError as exc:
        raise SystemExit(str(exc)) from None
