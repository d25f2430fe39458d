"""Decide what a sync does with each file, and do none of it.

The planner compares what the store holds for one corpus (its `IndexedDocument`s by source)
with what is on disk (each file's version, the hash of its bytes and its chunking, or why it
cannot be read) and returns decisions as frozen dataclasses. The executor (pipeline.py)
carries them out. Nothing here touches the store, an encoder or a file, so every rule of a sync
can be tested with plain data.

It decides one file at a time, against its own copy of the corpus's documents that it updates
as it decides (a file decided as added can be the holder of the next file's duplicate). That is
what lets the executor load, decide and write one file before it reads the next, so memory
follows one file, not the folder.

    planner = SyncPlanner(held, tenant=..., corpus=..., on_disk=sources)   # on_disk=None: upload
    for each file:  planner.unreadable(source, reason)              -> Skip
                    planner.file(source, version)                   -> Unchanged | Alias | ToChunk
                    planner.chunked(to_chunk, number_of_chunks)     -> Write | Skip
    then, a sync:   for source in planner.removals(): planner.remove(source) -> ForgetAlias | Delete

Exact duplicates are stored once: the first name holds the chunks, the others are aliases of
it. When the holder goes, a remaining duplicate (the heir) gets the chunks (a promotion).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import ClassVar, Literal

from ..domain import IndexedDocument
from .report import Status

Written = Literal["added", "updated"]


@dataclass(frozen=True)
class Skip:
    """Write nothing for this file: it cannot be read, or yields no text chunks. A stored
    version stays as it is."""

    source: str
    reason: str
    status: ClassVar[Status] = "skipped"


@dataclass(frozen=True)
class Unchanged:
    """The store already holds exactly this version, complete."""

    source: str
    chunks: int
    alias_of: str | None = None  # a duplicate: the name that holds its chunks
    status: ClassVar[Status] = "unchanged"

    @property
    def reason(self) -> str:
        return f"same content as {self.alias_of}" if self.alias_of else ""


@dataclass(frozen=True)
class ForgetAlias:
    """Drop a duplicate's name from its holder; the holder's chunks stay."""

    source: str
    holder: str
    remaining: tuple[str, ...]  # the holder's aliases without this one
    status: ClassVar[Status] = "deleted"

    @property
    def reason(self) -> str:
        return f"was a duplicate of {self.holder}"


@dataclass(frozen=True)
class Alias:
    """Store the file as another name of content a holder already stores: no chunks written."""

    source: str
    status: Written
    holder: str
    aliases: tuple[str, ...]  # the holder's aliases, this name included
    forget: ForgetAlias | None = None  # first: the name was a duplicate of something else

    @property
    def reason(self) -> str:
        return f"same content as {self.holder}: stored once"


@dataclass(frozen=True)
class ToChunk:
    """The file needs chunks of its own: chunk it, then ask `SyncPlanner.chunked`."""

    source: str
    status: Written
    version: str


@dataclass(frozen=True)
class Promote:
    """A duplicate takes over the content: its own chunks, from its file, carrying the
    remaining names as aliases, written before the holder's chunks are deleted."""

    heir: str
    aliases: tuple[str, ...]


@dataclass(frozen=True)
class Write:
    """Write the file's chunks (added, updated, or repaired after an interrupted ingest)."""

    source: str
    status: Written
    version: str
    chunks: int
    forget: ForgetAlias | None = None  # first: a duplicate that changed leaves its holder
    replaces: bool = False  # after the write, delete this name's chunks of other versions
    repair: bool = False  # this version was already partly or wholly stored
    # First of all: a holder that changes hands its old content to an unchanged duplicate.
    promote: Promote | None = None

    @property
    def reason(self) -> str:
        notes = ["repaired an interrupted ingest"] if self.repair else []
        if self.promote is not None:
            notes.append(f"its duplicate {self.promote.heir} now holds the old content")
        return "; ".join(notes)


@dataclass(frozen=True)
class Delete:
    """Delete a document's chunks, after promoting its heir when it has duplicates left."""

    source: str
    chunks: int
    promote: Promote | None = None
    status: ClassVar[Status] = "deleted"

    @property
    def reason(self) -> str:
        return f"its duplicate {self.promote.heir} now holds the content" if self.promote else ""


FileDecision = Skip | Unchanged | Alias | ToChunk
Removal = ForgetAlias | Delete


class SyncPlanner:
    """Decisions for one run over one corpus of one tenant."""

    def __init__(
        self,
        held: Mapping[str, IndexedDocument],
        *,
        tenant: str,
        corpus: str,
        on_disk: Iterable[str] | None = None,
    ) -> None:
        """`held`: the corpus's documents by source, as the store reports them (not changed).
        `on_disk`: every source in the folder, for a sync that removes what is gone; None for
        an upload, which only adds."""
        self.tenant = tenant
        self.corpus = corpus
        self._held = dict(held)
        gone = set(held) - set(on_disk) if on_disk is not None else set()
        self._gone = gone
        # Duplicates' names first, so a holder that goes hands over to a name that stays.
        self._removals = sorted(gone, key=lambda s: (held[s].alias_of is None, s))

    def holds(self, source: str) -> IndexedDocument | None:
        """The document as the plan now sees it (after the decisions made so far)."""
        return self._held.get(source)

    def removals(self) -> list[str]:
        """Sources held but no longer on disk, in the order to remove them."""
        return list(self._removals)

    def unreadable(self, source: str, reason: str) -> Skip:
        kept = "; the previously ingested version is kept" if source in self._held else ""
        return Skip(source, reason + kept)

    def file(self, source: str, version: str) -> Unchanged | Alias | ToChunk:
        previous = self._held.get(source)
        if previous is not None and previous.holds_only(version):
            return Unchanged(source, previous.chunks, previous.alias_of)
        status: Written = "added" if previous is None else "updated"
        holder = self._holder_of(version, exclude=source)
        if holder is not None and (previous is None or previous.alias_of is not None):
            # A new name (or a duplicate that changed) for content already stored.
            forget = self._forget(source) if previous is not None else None
            holder = self._held[holder.source]  # as it is after the forget
            aliases = tuple(sorted({*holder.aliases, source}))
            self._held[holder.source] = replace(holder, aliases=list(aliases))
            self._held[source] = replace(holder, source=source, aliases=[], alias_of=holder.source)
            return Alias(source, status, holder.source, aliases, forget)
        return ToChunk(source, status, version)

    def chunked(self, decided: ToChunk, chunks: int) -> Write | Skip:
        """The decision for a file that needed chunks, once it is known how many it has."""
        if chunks == 0:
            return Skip(decided.source, "produced no text chunks")
        source, version = decided.source, decided.version
        previous = self._held.get(source)
        repair = previous is not None and version in previous.stored and not previous.alias_of
        forget = None
        promote = None
        if previous is not None and previous.alias_of is not None:
            # A duplicate whose file changed: it stops being an alias, gets its own chunks.
            forget = self._forget(source)
            previous = None
        elif previous is not None and version not in previous.stored:
            # A holder whose file changed: its old chunks also served its duplicates, so one
            # of them that stays takes the old content over before those chunks go.
            promote = self._hand_over(previous)
        self._held[source] = IndexedDocument(
            tenant=self.tenant,
            corpus=self.corpus,
            source=source,
            chunks=chunks,
            stored={version: chunks},
            declared={version: chunks},
        )
        return Write(
            source,
            decided.status,
            version,
            chunks,
            forget=forget,
            replaces=previous is not None,
            repair=repair,
            promote=promote,
        )

    def remove(self, source: str) -> Removal:
        """Remove a held document: forget a duplicate's name, or delete a document (its heir,
        if it has duplicates left, taking over first)."""
        document = self._held[source]
        if document.alias_of is not None:
            return self._forget(source)
        del self._held[source]
        return Delete(source, document.chunks, self._hand_over(document))

    def _hand_over(self, holder: IndexedDocument) -> Promote | None:
        """The holder's content passes to its first duplicate still on disk, the others
        become that one's duplicates; None when no duplicate stays."""
        staying = [a for a in holder.aliases if a in self._held and a not in self._gone]
        if not staying:
            return None
        heir, others = staying[0], staying[1:]
        self._held[heir] = replace(holder, source=heir, aliases=others, alias_of=None)
        for other in others:
            self._held[other] = replace(self._held[other], alias_of=heir)
        return Promote(heir, tuple(others))

    def _forget(self, source: str) -> ForgetAlias:
        document = self._held.pop(source)
        assert document.alias_of is not None, "only a duplicate's name is forgotten"
        holder = self._held.get(document.alias_of)
        remaining = [a for a in (holder.aliases if holder else []) if a != source]
        if holder is not None:
            self._held[holder.source] = replace(holder, aliases=remaining)
        return ForgetAlias(source, document.alias_of, tuple(remaining))

    def _holder_of(self, version: str, exclude: str) -> IndexedDocument | None:
        """The document already holding exactly this content (same bytes, same chunking)."""
        return next(
            (
                doc
                for doc in self._held.values()
                if doc.source != exclude and doc.alias_of is None and doc.holds_only(version)
            ),
            None,
        )
