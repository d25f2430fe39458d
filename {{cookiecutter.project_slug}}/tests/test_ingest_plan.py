"""The sync planner on plain data: what the store holds and what is on disk in, decisions out.
No store, no model, no file: every rule of a sync, each in a few lines."""

from __future__ import annotations

from dataclasses import replace

import pytest

from {{ cookiecutter.package_name }}.domain import IndexedDocument
from {{ cookiecutter.package_name }}.ingest.plan import (
    Alias,
    Delete,
    ForgetAlias,
    Promote,
    Skip,
    SyncPlanner,
    ToChunk,
    Unchanged,
    Write,
)

V1, V2, V3 = "v1" * 32, "v2" * 32, "v3" * 32


def held(
    source: str, version: str, chunks: int = 3, *, aliases: tuple[str, ...] = ()
) -> list[IndexedDocument]:
    """A stored document as the store lists it: the holder, then one entry per duplicate."""
    holder = IndexedDocument(
        tenant="acme",
        corpus="kb",
        source=source,
        chunks=chunks,
        stored={version: chunks},
        declared={version: chunks},
        aliases=list(aliases),
    )
    copies = [replace(holder, source=a, aliases=[], alias_of=source) for a in aliases]
    return [holder, *copies]


def planner(*documents: list[IndexedDocument], on_disk: list[str] | None = None) -> SyncPlanner:
    store = {d.source: d for group in documents for d in group}
    return SyncPlanner(store, tenant="acme", corpus="kb", on_disk=on_disk)


def written(plan: SyncPlanner, source: str, version: str, chunks: int = 4) -> Write | Skip:
    """A file that needs its own chunks, chunked into `chunks`."""
    decided = plan.file(source, version)
    assert isinstance(decided, ToChunk), decided
    return plan.chunked(decided, chunks)


def test_a_new_file_is_added_and_held_from_then_on() -> None:
    plan = planner(on_disk=["a.md"])
    assert written(plan, "a.md", V1) == Write("a.md", "added", V1, 4)
    now = plan.holds("a.md")
    assert now is not None
    assert (now.tenant, now.corpus, now.stored, now.declared) == ("acme", "kb", {V1: 4}, {V1: 4})
    assert plan.removals() == []


def test_the_same_version_is_unchanged() -> None:
    plan = planner(held("a.md", V1, 5), on_disk=["a.md"])
    decision = plan.file("a.md", V1)
    assert decision == Unchanged("a.md", 5)
    assert isinstance(decision, Unchanged)
    assert decision.reason == ""


def test_a_new_version_is_an_update_that_replaces_the_old_chunks_after_writing() -> None:
    plan = planner(held("a.md", V1), on_disk=["a.md"])
    decision = written(plan, "a.md", V2, 7)
    assert decision == Write("a.md", "updated", V2, 7, replaces=True)
    assert decision.reason == ""
    assert plan.file("a.md", V2) == Unchanged("a.md", 7)  # what the plan holds now


@pytest.mark.parametrize(
    ("stored", "declared"),
    [
        ({V1: 3, V2: 4}, {V1: 3, V2: 4}),  # crashed after writing V2, before deleting V1
        ({V2: 2}, {V2: 4}),  # crashed halfway through V2's chunks
    ],
)
def test_an_interrupted_ingest_is_repaired(
    stored: dict[str, int], declared: dict[str, int]
) -> None:
    interrupted = IndexedDocument(
        tenant="acme", corpus="kb", source="a.md", chunks=5, stored=stored, declared=declared
    )
    plan = planner([interrupted], on_disk=["a.md"])
    decision = written(plan, "a.md", V2)
    assert decision == Write("a.md", "updated", V2, 4, replaces=True, repair=True)
    assert decision.reason == "repaired an interrupted ingest"


def test_an_unreadable_file_is_skipped_and_says_when_its_stored_version_stays() -> None:
    plan = planner(held("a.md", V1), on_disk=["a.md", "b.md"])
    assert plan.unreadable("b.md", "contains NUL bytes") == Skip("b.md", "contains NUL bytes")
    assert plan.unreadable("a.md", "contains NUL bytes") == Skip(
        "a.md", "contains NUL bytes; the previously ingested version is kept"
    )
    assert plan.removals() == []  # skipped, not gone
    assert plan.file("a.md", V1) == Unchanged("a.md", 3)


def test_a_file_without_chunks_is_skipped_and_changes_nothing() -> None:
    plan = planner(held("b.md", V1, aliases=("c.md",)), on_disk=["b.md", "c.md"])
    decided = plan.file("c.md", V2)  # a duplicate whose file changed
    assert decided == ToChunk("c.md", "updated", V2)
    assert plan.chunked(decided, 0) == Skip("c.md", "produced no text chunks")
    assert plan.file("c.md", V1) == Unchanged("c.md", 3, alias_of="b.md")  # still a duplicate


def test_a_file_with_content_already_stored_becomes_an_alias_of_its_holder() -> None:
    plan = planner(held("a.md", V1), on_disk=["a.md", "copy.md"])
    decision = plan.file("copy.md", V1)
    assert decision == Alias("copy.md", "added", holder="a.md", aliases=("copy.md",))
    assert decision.reason == "same content as a.md: stored once"
    assert plan.file("copy.md", V1) == Unchanged("copy.md", 3, alias_of="a.md")
    holder = plan.holds("a.md")
    assert holder is not None
    assert holder.aliases == ["copy.md"]


def test_two_new_files_with_the_same_content_are_stored_once() -> None:
    plan = planner(on_disk=["a.md", "b.md"])
    assert written(plan, "a.md", V1) == Write("a.md", "added", V1, 4)
    assert plan.file("b.md", V1) == Alias("b.md", "added", holder="a.md", aliases=("b.md",))


def test_a_duplicate_that_changes_leaves_its_holder_and_gets_its_own_chunks() -> None:
    plan = planner(held("a.md", V1, aliases=("b.md", "c.md")), on_disk=["a.md", "b.md", "c.md"])
    decision = written(plan, "b.md", V2)
    assert decision == Write(
        "b.md", "updated", V2, 4, forget=ForgetAlias("b.md", "a.md", ("c.md",)), replaces=False
    )
    holder = plan.holds("a.md")
    assert holder is not None
    assert holder.aliases == ["c.md"]


def test_a_duplicate_that_changes_to_another_holders_content_moves_to_it() -> None:
    plan = planner(held("a.md", V1, aliases=("b.md",)), held("z.md", V2), on_disk=["b.md"])
    assert plan.file("b.md", V2) == Alias(
        "b.md", "updated", holder="z.md", aliases=("b.md",), forget=ForgetAlias("b.md", "a.md", ())
    )


def test_a_file_gone_from_the_folder_is_deleted() -> None:
    plan = planner(held("a.md", V1, 6), held("b.md", V2), on_disk=["b.md"])
    assert plan.removals() == ["a.md"]
    decision = plan.remove("a.md")
    assert decision == Delete("a.md", 6)
    assert decision.reason == ""
    assert plan.holds("a.md") is None


def test_a_gone_duplicate_only_forgets_its_name() -> None:
    plan = planner(held("a.md", V1, aliases=("b.md", "c.md")), on_disk=["a.md", "c.md"])
    assert plan.removals() == ["b.md"]
    decision = plan.remove("b.md")
    assert decision == ForgetAlias("b.md", "a.md", ("c.md",))
    assert decision.reason == "was a duplicate of a.md"


def test_a_gone_holder_promotes_a_remaining_duplicate_first() -> None:
    plan = planner(held("a.md", V1, 5, aliases=("b.md", "c.md")), on_disk=["b.md", "c.md"])
    decision = plan.remove("a.md")
    assert decision == Delete("a.md", 5, Promote("b.md", ("c.md",)))
    assert decision.reason == "its duplicate b.md now holds the content"
    heir, other = plan.holds("b.md"), plan.holds("c.md")
    assert heir is not None
    assert other is not None
    assert (heir.alias_of, heir.aliases, heir.stored) == (None, ["c.md"], {V1: 5})
    assert other.alias_of == "b.md"


def test_a_holder_that_changes_hands_its_old_content_to_a_duplicate_that_stays() -> None:
    plan = planner(
        held("a.md", V1, 5, aliases=("b.md", "c.md", "d.md")), on_disk=["a.md", "b.md", "d.md"]
    )
    decision = written(plan, "a.md", V2)
    assert decision == Write(
        "a.md", "updated", V2, 4, replaces=True, promote=Promote("b.md", ("d.md",))
    )
    assert decision.reason == "its duplicate b.md now holds the old content"
    heir = plan.holds("b.md")
    assert heir is not None
    assert (heir.alias_of, heir.aliases, heir.stored) == (None, ["d.md"], {V1: 5})
    assert plan.file("b.md", V1) == Unchanged("b.md", 5)
    assert plan.file("d.md", V1) == Unchanged("d.md", 5, alias_of="b.md")


def test_a_holder_that_changes_without_a_duplicate_left_promotes_nobody() -> None:
    plan = planner(held("a.md", V1, aliases=("b.md",)), on_disk=["a.md"])
    decision = written(plan, "a.md", V2)
    assert isinstance(decision, Write)
    assert decision.promote is None


def test_duplicates_are_removed_before_holders_so_only_remaining_names_inherit() -> None:
    plan = planner(
        held("a.md", V1, aliases=("b.md", "c.md")), held("x.md", V2), on_disk=["c.md", "x.md"]
    )
    assert plan.removals() == ["b.md", "a.md"]
    assert plan.remove("b.md") == ForgetAlias("b.md", "a.md", ("c.md",))
    assert plan.remove("a.md") == Delete("a.md", 3, Promote("c.md", ()))


def test_a_holder_whose_duplicates_all_went_is_simply_deleted() -> None:
    plan = planner(held("a.md", V1, aliases=("b.md",)), on_disk=[])
    assert plan.removals() == ["b.md", "a.md"]
    plan.remove("b.md")
    assert plan.remove("a.md") == Delete("a.md", 3)


def test_a_renamed_file_is_aliased_then_takes_over_from_its_old_name() -> None:
    plan = planner(held("old.md", V1), on_disk=["new.md"])
    assert plan.file("new.md", V1) == Alias("new.md", "added", "old.md", aliases=("new.md",))
    assert plan.removals() == ["old.md"]
    assert plan.remove("old.md") == Delete("old.md", 3, Promote("new.md", ()))


def test_an_upload_only_adds() -> None:
    plan = planner(held("a.md", V1), held("b.md", V1, aliases=("c.md",)))  # on_disk None
    assert plan.removals() == []
    assert written(plan, "d.md", V2) == Write("d.md", "added", V2, 4)


def test_deleting_one_document_by_hand_can_promote_its_duplicate() -> None:
    plan = planner(held("a.md", V1, aliases=("b.md",)))
    assert plan.remove("a.md") == Delete("a.md", 3, Promote("b.md", ()))


def test_the_plan_never_changes_what_it_was_given() -> None:
    documents = held("a.md", V1, aliases=("b.md",)) + held("x.md", V2)
    store = {d.source: d for d in documents}
    before = {s: replace(d, aliases=list(d.aliases)) for s, d in store.items()}
    plan = SyncPlanner(store, tenant="acme", corpus="kb", on_disk=["b.md", "n.md"])
    plan.file("n.md", V2)
    written(plan, "b.md", V3)
    for source in plan.removals():
        plan.remove(source)
    assert store == before
