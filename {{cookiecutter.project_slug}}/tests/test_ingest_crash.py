"""Crash safety: an ingest killed with SIGKILL at any point, then run again, ends in exactly
the state a clean run gives (same points, no duplicates, no orphans)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from {{ cookiecutter.package_name }}.settings import PACKAGE_NAME, Settings
from {{ cookiecutter.package_name }}.store import holder_file, open_store

from .conftest import copy_sample_corpus

pytestmark = pytest.mark.slow

# Where the kill lands, as fractions of a clean run's time with the store open (after the
# models load, which writes nothing).
KILL_AT = (0.3, 0.7)


def ingest_command(corpus: Path) -> list[str]:
    return [sys.executable, "-m", PACKAGE_NAME, "ingest", str(corpus), "--corpus", "kb"]


@pytest.fixture(autouse=True)
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The engine under test (the ingest child and the checks read RAG_EMBEDDED_ENGINE): the
    default, unless a test is parametrized over `engine`."""
    name = str(getattr(request, "param", "edge"))
    monkeypatch.setenv("RAG_EMBEDDED_ENGINE", name)
    return name


def settings_for(data_dir: Path, model_dir: Path) -> Settings:
    return Settings(_env_file=None, data_dir=data_dir, model_dir=model_dir)


def environment(data_dir: Path, model_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        RAG_DATA_DIR=str(data_dir),
        RAG_MODEL_DIR=str(model_dir),
        RAG_UPSERT_BATCH_SIZE="4",  # many small writes: more places to die in between
        RAG_LOG_LEVEL="WARNING",
    )
    return env


def _store_opened(process: subprocess.Popen[bytes], data_dir: Path) -> float:
    """Wait until the process holds the store (it writes holder.json on opening it)."""
    holder = holder_file(settings_for(data_dir, Path()))
    while not holder.exists() and process.poll() is None:
        time.sleep(0.02)
    return time.monotonic()


def run_ingest(corpus: Path, data_dir: Path, model_dir: Path) -> float:
    """A complete run; returns how long it held the store."""
    holder_file(settings_for(data_dir, model_dir)).unlink(missing_ok=True)
    process = subprocess.Popen(
        ingest_command(corpus),
        env=environment(data_dir, model_dir),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    opened = _store_opened(process, data_dir)
    _, err = process.communicate()
    assert process.returncode == 0, err.decode()
    return time.monotonic() - opened


def killed_ingest(corpus: Path, data_dir: Path, model_dir: Path, after_s: float) -> None:
    holder_file(settings_for(data_dir, model_dir)).unlink(missing_ok=True)
    process = subprocess.Popen(
        ingest_command(corpus),
        env=environment(data_dir, model_dir),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _store_opened(process, data_dir)
    time.sleep(after_s)
    process.send_signal(signal.SIGKILL)
    process.wait()


def stored_state(data_dir: Path, model_dir: Path) -> tuple[int, set[tuple[str, str, int]]]:
    """Point count and (id, source, chunk index) of every point."""
    store = open_store(settings_for(data_dir, model_dir))
    try:
        ids = {
            (point.id, str(point.payload["source"]), int(point.payload["chunk_index"]))
            for page in store.export(batch=256)
            for point in page
        }
        return store.count(), ids
    finally:
        store.close()


def edit_corpus(corpus: Path) -> None:
    """Changes of every kind: an edit, a deletion, a new file."""
    faq = next(corpus.rglob("*.md"))
    faq.write_text(faq.read_text(encoding="utf-8") + "\n\nA new closing paragraph.\n")
    next(corpus.rglob("*.html")).unlink()
    (corpus / "new-note.txt").write_text("The night shift starts at 22:00 on weekdays.\n")


# Every embedded engine survives a killed write; the update scenario (deletes and re-chunks
# through the same store calls) runs on the default engine only, to keep CI's slow tier short.
@pytest.mark.parametrize("engine", ["edge", "local"], indirect=True)
def test_killed_first_ingest_then_rerun_equals_a_clean_run(tmp_path: Path, model_dir: Path) -> None:
    corpus = copy_sample_corpus(tmp_path / "kb")
    reference = tmp_path / "reference"
    duration = run_ingest(corpus, reference, model_dir)
    expected = stored_state(reference, model_dir)
    assert expected[0] == len(expected[1]) > 0

    interrupted = []
    for fraction in KILL_AT:
        data_dir = tmp_path / f"killed-{fraction}"
        killed_ingest(corpus, data_dir, model_dir, after_s=duration * fraction)
        interrupted.append(stored_state(data_dir, model_dir) != expected)
        run_ingest(corpus, data_dir, model_dir)
        assert stored_state(data_dir, model_dir) == expected, f"killed at {fraction:.0%}"
    assert any(interrupted), "no kill landed before the run finished: nothing was tested"


def test_killed_update_then_rerun_equals_a_clean_run(tmp_path: Path, model_dir: Path) -> None:
    corpus = copy_sample_corpus(tmp_path / "kb")
    first = tmp_path / "first"
    run_ingest(corpus, first, model_dir)
    data_dirs = [tmp_path / f"killed-{fraction}" for fraction in KILL_AT]
    for data_dir in data_dirs:
        shutil.copytree(first, data_dir)
    edit_corpus(corpus)
    reference = tmp_path / "reference"
    duration = run_ingest(corpus, reference, model_dir)
    expected = stored_state(reference, model_dir)

    interrupted = []
    for fraction, data_dir in zip(KILL_AT, data_dirs, strict=True):
        killed_ingest(corpus, data_dir, model_dir, after_s=duration * fraction)
        interrupted.append(stored_state(data_dir, model_dir) != expected)
        run_ingest(corpus, data_dir, model_dir)
        assert stored_state(data_dir, model_dir) == expected, f"killed at {fraction:.0%}"
    assert any(interrupted), "no kill landed before the run finished: nothing was tested"
