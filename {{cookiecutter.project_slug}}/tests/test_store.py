from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from {{ cookiecutter.package_name }}.container import Services
from {{ cookiecutter.package_name }}.domain import Query
from {{ cookiecutter.package_name }}.errors import ConfigurationError, StoreInUseError
from {{ cookiecutter.package_name }}.settings import Settings
from {{ cookiecutter.package_name }}.store.qdrant import QdrantStore

from .conftest import qdrant_client


def test_collection_has_named_dense_and_idf_sparse_vectors(services: Services) -> None:
    info = qdrant_client(services).get_collection("test")
    vectors = info.config.params.vectors
    assert isinstance(vectors, dict)
    assert vectors["dense"].size == 384
    sparse = info.config.params.sparse_vectors
    assert sparse is not None
    assert sparse["bm25"].modifier is not None
    assert sparse["bm25"].modifier.value == "idf"


def test_second_client_on_the_same_folder_gets_an_actionable_error(
    services: Services, settings: Settings
) -> None:
    with pytest.raises(StoreInUseError) as error:
        QdrantStore(settings)
    message = str(error.value)
    assert str(settings.qdrant_path) in message
    assert "RAG_QDRANT_URL" in message
    assert "process" in message


def test_store_held_by_another_process_names_that_process(settings: Settings) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, time
                from {{ cookiecutter.package_name }}.settings import Settings
                from {{ cookiecutter.package_name }}.store.qdrant import QdrantStore
                store = QdrantStore(Settings(_env_file=None, data_dir={str(settings.data_dir)!r}))
                print("holding", flush=True)
                time.sleep(60)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(StoreInUseError, match=f"process {holder.pid} "):
            QdrantStore(settings)
    finally:
        holder.kill()
        holder.wait()
    QdrantStore(settings).close()  # released when the holder dies


def test_collection_built_with_another_model_is_refused(services: Services) -> None:
    with pytest.raises(ConfigurationError, match="RAG_COLLECTION"):
        services.store.ensure_collection("some/other-model", 768, "Qdrant/bm25")


def test_mixed_concurrent_reads_and_writes_are_serialised(services: Services, corpus: Path) -> None:
    """FastAPI runs sync routes in threads; embedded Qdrant breaks under mixed use unlocked."""
    services.ingestor.ingest(corpus)
    errors: list[BaseException] = []
    deadline = time.monotonic() + 30

    def reader() -> None:
        try:
            for _ in range(15):
                services.retriever.retrieve(
                    Query(text="password length", top_k=3, tenant="default")
                )
        except BaseException as exc:
            errors.append(exc)

    def writer(n: int) -> None:
        try:
            for i in range(5):
                (corpus / f"w{n}-{i}.md").write_text(f"# Note {n} {i}\n\nText {i}.", "utf-8")
                services.ingestor.ingest(corpus)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    threads += [threading.Thread(target=writer, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    assert not errors
    assert services.store.count() > 0
    assert services.retriever.retrieve(Query(text="password length", top_k=1, tenant="default"))
