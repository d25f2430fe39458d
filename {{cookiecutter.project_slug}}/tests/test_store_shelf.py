"""Records beside the corpus (feedback, captured questions): the same on every engine."""

from __future__ import annotations

import uuid

from {{ cookiecutter.package_name }}.store import VectorStore
from {{ cookiecutter.package_name }}.store.records import ShelfRecord

from .test_store import ENGINES, engine, store  # noqa: F401 - the engine-parametrised store

__all__ = ["ENGINES"]


def record(n: int, tenant: str, time: float, vector: list[float] | None = None) -> ShelfRecord:
    payload = {"tenant": tenant, "trace_id": f"t{n}", "time": time}
    return ShelfRecord(id=str(uuid.UUID(int=n)), payload=payload, vector=vector)


def test_records_are_found_by_field_and_time_and_dropped_by_age(store: VectorStore) -> None:
    shelf = store.shelf("votes", dimensions=4)
    assert list(shelf.find(equals={"tenant": "acme"})) == []  # nothing written yet
    shelf.put(
        [
            record(1, "acme", 100.0, [1.0, 0.0, 0.0, 0.0]),
            record(2, "acme", 200.0),
            record(3, "rival", 150.0),
        ]
    )
    mine = {r.payload["trace_id"] for r in shelf.find(equals={"tenant": "acme"})}
    assert mine == {"t1", "t2"}
    [one] = shelf.find(equals={"tenant": "acme", "trace_id": "t1"}, with_vectors=True)
    assert one.vector == [1.0, 0.0, 0.0, 0.0]
    assert [r.payload["trace_id"] for r in shelf.find(since=120.0, until=180.0)] == ["t3"]
    shelf.drop_before(160.0)
    assert {r.payload["trace_id"] for r in shelf.find()} == {"t2"}
    assert store.count() == 0  # the corpus never sees them
