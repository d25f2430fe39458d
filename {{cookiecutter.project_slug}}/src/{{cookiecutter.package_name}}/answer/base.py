"""What every answerer offers: a whole answer, or the same answer as a stream of events."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from ..domain import Answer, Hit


@dataclass(frozen=True)
class Token:
    """A piece of answer text, in order."""

    text: str


@dataclass(frozen=True)
class Final:
    """The last event: the whole answer with citations, grounding, usage and cost."""

    answer: Answer


AnswerEvent = Token | Final


class Answerer(Protocol):
    def answer(self, question: str, hits: list[Hit]) -> Answer: ...

    def stream(self, question: str, hits: list[Hit]) -> Iterator[AnswerEvent]:
        """Tokens, then exactly one Final. Closing the iterator early stops generation."""
        ...
