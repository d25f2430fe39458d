"""An exact-match answer cache, in process memory, with a time to live.

The key holds the normalised question, a fingerprint of the context the model would be given
(which chunks, in which version: the part of the index this question sees, so re-ingesting a
document or changing filters misses), the model and the prompt version.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Callable

from ..domain import Answer, Hit


def normalise_question(question: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", question).casefold().split())


def cache_key(question: str, hits: list[Hit], model: str, prompt_version: str) -> str:
    context = [[h.chunk_id, hashlib.sha256(h.text.encode()).hexdigest()] for h in hits]
    raw = json.dumps([normalise_question(question), context, model, prompt_version])
    return hashlib.sha256(raw.encode()).hexdigest()


class AnswerCache:
    def __init__(
        self, ttl_s: float, max_entries: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, Answer]] = OrderedDict()
        self._lock = threading.Lock()  # the API answers from a thread pool

    @property
    def enabled(self) -> bool:
        return self._ttl_s > 0

    def get(self, key: str) -> Answer | None:
        if not self.enabled:
            return None
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            stored_at, answer = entry
            if self._clock() - stored_at > self._ttl_s:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return answer

    def put(self, key: str, answer: Answer) -> None:
        if not self.enabled:
            return
        with self._lock:
            self._entries[key] = (self._clock(), answer)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)
