"""Dense vectors of the sentences an extractive answer may quote, computed as cheaply as the
encoder allows.

The encoder pads a batch to its longest member, so one long line (a code block, a table row)
among 40 short sentences made every one of them cost that many tokens: sentences are embedded
sorted by length, a few at a time. A chunk that answers many questions has its sentences
embedded once: vectors are kept in a bounded least-recently-used cache, as float32 (1.5 kB
each for 384 dimensions).
"""

from __future__ import annotations

import threading
from array import array
from collections import OrderedDict
from collections.abc import Sequence

from ..embeddings import DenseEncoder

BATCH = 8  # sentences of similar length per encoder call (measured: 8 beat 16 and 64)
CAPACITY = 20_000  # sentences kept: about 30 MB at 384 dimensions


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
