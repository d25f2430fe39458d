"""`store migrate`: copy a collection between engines with its vectors, so a pilot moves from
local mode to the edge engine, or from the embedded store to a Qdrant server, without
re-embedding anything. The copy is checked: equal counts, and a sample of stored points asked
back as queries scores the same top results on both sides."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any, Literal

from ..domain import Hit, SparseVector
from ..errors import ConfigurationError
from ..settings import CONSOLE_SCRIPT, Settings
from .base import DENSE, SPARSE, SearchOptions, VectorStore
from .records import StoredPoint

Engine = Literal["edge", "local", "server"]
SAMPLE_QUERIES = 20
TOP_K = 5
# A server searches with HNSW once a segment is indexed: approximate, so allow some change.
SERVER_OVERLAP = 0.8


def _local_collection_exists(settings: Settings) -> bool:
    """Without importing qdrant-client: local mode keeps each collection in its own folder."""
    return (settings.qdrant_path / "collection" / settings.collection).is_dir()


def refuse_unmigrated(settings: Settings) -> None:
    """A store written before edge became the default must not look empty: say how to move it."""
    edge_shard = settings.edge_path / settings.collection / "shard"
    if not edge_shard.exists() and _local_collection_exists(settings):
        raise ConfigurationError(
            f"Collection {settings.collection!r} is stored at {settings.qdrant_path} by "
            "qdrant-client's local mode, and the embedded engine is now edge. Copy it once "
            f"(no re-embedding): `{CONSOLE_SCRIPT} store migrate --from local --to edge`; or "
            "keep local mode with RAG_EMBEDDED_ENGINE=local."
        )


def settings_for(settings: Settings, engine: Engine) -> Settings:
    if engine == "server":
        if not settings.qdrant_url:
            raise ConfigurationError(
                "Migrating to or from a server needs its URL: set RAG_QDRANT_URL "
                "(and RAG_QDRANT_API_KEY if it has one)."
            )
        return settings
    return settings.model_copy(update={"qdrant_url": None, "embedded_engine": engine})


def _open(settings: Settings) -> VectorStore:
    from . import open_store

    if settings.qdrant_url is None and settings.embedded_engine == "edge":
        from .edge import EdgeStore

        return EdgeStore(settings)  # no refusal: the target of a migration is empty
    return open_store(settings)


@dataclass
class MigrationReport:
    source: str
    target: str
    collection: str
    copied: int = 0
    source_count: int = 0
    target_count: int = 0
    queries: int = 0
    same_results: int = 0
    overlap: float = 1.0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        verdict = "checked" if self.ok else "NOT consistent: " + "; ".join(self.problems)
        return (
            f"Copied collection {self.collection!r} from {self.source} to {self.target}: "
            f"{self.copied} points; counts {self.source_count} / {self.target_count}; "
            f"{self.same_results} of {self.queries} sample queries scored the same top {TOP_K} "
            f"by dense and by BM25 (fused overlap {self.overlap:.2f}); {verdict}."
        )

    def to_json(self) -> str:
        return json.dumps({**self.__dict__, "ok": self.ok}, indent=2)


def migrate(
    settings: Settings, source: Engine, target: Engine, *, batch: int = 256
) -> MigrationReport:
    """Copy `settings.collection` from `source` to `target`; the target must not hold it."""
    if source == target:
        raise ConfigurationError(f"--from and --to are both {source}: nothing to copy.")
    from_settings, to_settings = settings_for(settings, source), settings_for(settings, target)
    reader = _open(from_settings)
    try:
        if not reader.collection_exists() or reader.count() == 0:
            raise ConfigurationError(
                f"Collection {settings.collection!r} is empty or missing in the {source} "
                f"store at {reader.location}: nothing to copy (check RAG_COLLECTION)."
            )
        schema = reader.stored_schema()
        writer = _open(to_settings)
        try:
            if writer.collection_exists() and writer.count() > 0:
                raise ConfigurationError(
                    f"Collection {settings.collection!r} already holds {writer.count()} points "
                    f"in the {target} store at {writer.location}; migrate into an empty one "
                    "(another RAG_COLLECTION, or delete it there first)."
                )
            writer.ensure_collection(
                str(schema["dense_model"]),
                int(schema["dense_dimensions"]),
                str(schema["sparse_model"]),
            )
            report = MigrationReport(reader.location, writer.location, settings.collection)
            rng = random.Random(0)  # noqa: S311 - a reproducible sample, not a secret
            probes: list[StoredPoint] = []
            for page in reader.export(batch=batch):
                writer.import_points(page)
                for point in page:  # a uniform sample of the points, in one pass
                    report.copied += 1
                    if len(probes) < SAMPLE_QUERIES:
                        probes.append(point)
                    elif (slot := rng.randrange(report.copied)) < SAMPLE_QUERIES:
                        probes[slot] = point
            report.source_count, report.target_count = reader.count(), writer.count()
            if report.source_count != report.target_count:
                report.problems.append(
                    f"{report.source_count} points in the source, {report.target_count} copied"
                )
            _compare(report, reader, writer, probes, settings, approximate=target == "server")
            return report
        finally:
            writer.close()
    finally:
        reader.close()


def _compare(
    report: MigrationReport,
    reader: VectorStore,
    writer: VectorStore,
    probes: list[StoredPoint],
    settings: Settings,
    *,
    approximate: bool,
) -> None:
    """Each probe's own vectors as a query, in its tenant: both stores must agree."""
    options = SearchOptions.from_settings(settings)
    overlaps = []
    for probe in probes:
        tenant = str(probe.payload.get("tenant", ""))
        query: dict[str, Any] = {
            "tenant": tenant,
            "top_k": TOP_K,
            "sources": None,
            "options": options,
        }
        sparse = SparseVector(indices=probe.sparse.indices, values=probe.sparse.values)
        before = reader.search(probe.dense, sparse, **query)
        after = writer.search(probe.dense, sparse, **query)
        ids_before, ids_after = {h.chunk_id for h in before}, {h.chunk_id for h in after}
        overlaps.append(len(ids_before & ids_after) / max(len(ids_before), 1))
        report.queries += 1
        # Each retriever alone must score the same: a tie (the same footer in many documents)
        # may put other ids at equal scores, and then the fused order differs legitimately.
        report.same_results += all(
            _scores(reader.search_one(using, vector, tenant=tenant, top_k=TOP_K))
            == _scores(writer.search_one(using, vector, tenant=tenant, top_k=TOP_K))
            for using, vector in ((DENSE, probe.dense), (SPARSE, sparse))
        )
    report.overlap = sum(overlaps) / len(overlaps) if overlaps else 1.0
    if approximate:
        if report.overlap < SERVER_OVERLAP:
            report.problems.append(
                f"sample queries overlap {report.overlap:.2f} < {SERVER_OVERLAP} between stores"
            )
    elif report.same_results != report.queries:
        report.problems.append(
            f"{report.queries - report.same_results} of {report.queries} sample queries "
            "ranked differently"
        )


def _scores(hits: list[Hit]) -> list[float]:
    return [round(h.score, 4) for h in hits]
