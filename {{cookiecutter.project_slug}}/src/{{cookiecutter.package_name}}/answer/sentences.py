"""The units an extractive answer may quote (sentences, list items, table rows, records),
their dense vectors, and how well each matches a question.

The extractive answerer quotes the best units; the refusal model may read the best one's
cosine (`Hit.sentence_score`, put on the hits before refusal decides). Both score through one
`SentenceScorer`, so with the extractive answerer a question's units are embedded once.

The encoder pads a batch to its longest member, so one long line (a code block, a table row)
among 40 short sentences made every one of them cost that many tokens: sentences are embedded
sorted by length, a few at a time. A chunk that answers many questions has its sentences
embedded once: vectors are kept in a bounded least-recently-used cache, as float32 (1.5 kB
each for 384 dimensions).
"""

from __future__ import annotations

import re
import threading
from array import array
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace

from ..domain import Hit
from ..embeddings import DenseEncoder, cosine

BATCH = 8  # sentences of similar length per encoder call (measured: 8 beat 16 and 64)
CAPACITY = 20_000  # sentences kept: about 30 MB at 384 dimensions
QUERIES = 64  # question vectors kept: refusal and the answerer score the same question

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
_TABLE_RULE = re.compile(r"^\|?[\s:|-]+\|?$")
_EMPHASIS = re.compile(r"(\*\*|__|`)")


def split_sentences(text: str) -> list[str]:
    """Sentences and list items of a chunk, and each row of a Markdown table as one unit with
    its header names (`Role: Adjuster; Limit: 5,000`; a row whose header is not in the chunk
    is not quoted: without it the cells mean nothing). Headings, table rules and questions (an
    FAQ's question lines match the user's question best, but answer nothing) are not evidence."""
    units: list[str] = []
    table: list[str] = []
    for raw_line in [*text.splitlines(), ""]:
        line = _EMPHASIS.sub("", raw_line).strip()
        if line.startswith("|"):
            table.append(line)
            continue
        if table:
            units += [row for row in _table_rows(table) if _is_evidence(row)]
            table = []
        line = line.lstrip("-*+ ").strip()
        if not line or line.startswith("#"):
            continue
        units += [s.strip() for s in _SENTENCE_END.split(line) if _is_evidence(s.strip())]
    return units


def record_unit(text: str) -> str:
    """A CSV row or JSONL record as one quotable unit: its `field: value` lines joined."""
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


def units(hit: Hit) -> list[str]:
    """What may be quoted from a hit: a record whole, other text sentence by sentence."""
    return [record_unit(hit.text)] if hit.is_record else split_sentences(hit.text)


def _table_rows(lines: list[str]) -> list[str]:
    def cells(line: str) -> list[str]:
        return [cell.strip() for cell in line.strip().strip("|").split("|")]

    if len(lines) < 3 or not _TABLE_RULE.match(lines[1]):
        return []
    header = cells(lines[0])
    return [
        "; ".join(
            f"{name}: {value}" for name, value in zip(header, cells(row), strict=False) if value
        )
        for row in lines[2:]
        if not _TABLE_RULE.match(row)
    ]


def _is_evidence(unit: str) -> bool:
    return len(re.findall(r"\w+", unit)) >= 3 and not unit.endswith("?")


class SentenceVectors:
    def __init__(self, dense: DenseEncoder, capacity: int = CAPACITY, batch: int = BATCH) -> None:
        self._dense = dense
        self._capacity = capacity
        self._batch = batch
        self._cache: OrderedDict[str, array[float]] = OrderedDict()
        self._lock = threading.Lock()  # API requests share one answerer

    def vectors(self, sentences: Sequence[str]) -> list[list[float]]:
        """One vector per sentence, in the order given."""
        found: dict[str, array[float]] = {}
        with self._lock:
            for sentence in sentences:
                if sentence in self._cache:
                    self._cache.move_to_end(sentence)
                    found[sentence] = self._cache[sentence]
        missing = sorted({s for s in sentences if s not in found}, key=lambda s: (len(s), s))
        for start in range(0, len(missing), self._batch):
            group = missing[start : start + self._batch]
            for sentence, vector in zip(group, self._dense.embed_documents(group), strict=True):
                found[sentence] = array("f", vector)
        with self._lock:
            for sentence in missing:
                self._cache[sentence] = found[sentence]
            while len(self._cache) > self._capacity:
                self._cache.popitem(last=False)
        return [found[sentence].tolist() for sentence in sentences]


@dataclass(frozen=True)
class ScoredUnit:
    text: str
    hit: Hit
    score: float  # cosine to the question


class SentenceScorer:
    """Scores the hits' quotable units against a question, sharing one vector cache."""

    def __init__(self, dense: DenseEncoder, vectors: SentenceVectors | None = None) -> None:
        self._dense = dense
        self._vectors = vectors or SentenceVectors(dense)
        self._queries: OrderedDict[str, list[float]] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def dense(self) -> DenseEncoder:
        return self._dense

    def score(self, question: str, hits: Sequence[Hit]) -> list[ScoredUnit]:
        """Every distinct unit of the hits (a repeated one counts for its first hit), best
        first."""
        seen: set[str] = set()
        pairs: list[tuple[str, Hit]] = []
        for hit in hits:
            for unit in units(hit):
                if unit.lower() not in seen:
                    seen.add(unit.lower())
                    pairs.append((unit, hit))
        if not pairs:
            return []
        query = self._query(question)
        vectors = self._vectors.vectors([unit for unit, _ in pairs])
        scored = [
            ScoredUnit(unit, hit, cosine(query, vector))
            for (unit, hit), vector in zip(pairs, vectors, strict=True)
        ]
        return sorted(scored, key=lambda s: s.score, reverse=True)

    def annotate(self, question: str, hits: Sequence[Hit]) -> list[Hit]:
        """The hits with `sentence_score` set: their best unit's cosine (-1.0 without units)."""
        groups = [units(hit) for hit in hits]
        flat = [unit for group in groups for unit in group]
        query = self._query(question) if flat else []
        vectors = iter(self._vectors.vectors(flat))
        best = [max((cosine(query, next(vectors)) for _ in g), default=-1.0) for g in groups]
        return [replace(hit, sentence_score=b) for hit, b in zip(hits, best, strict=True)]

    def _query(self, question: str) -> list[float]:
        with self._lock:
            if question in self._queries:
                self._queries.move_to_end(question)
                return self._queries[question]
        vector = self._dense.embed_query(question)
        with self._lock:
            self._queries[question] = vector
            while len(self._queries) > QUERIES:
                self._queries.popitem(last=False)
        return vector
