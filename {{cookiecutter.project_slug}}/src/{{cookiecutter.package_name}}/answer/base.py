"""What every answerer offers: a whole answer, or the same answer as a stream of events."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from ..domain import Answer, Hit
from ..refusal import RefusalDecision


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
    """Writes answers; does not decide whether to answer. `decision` is the refusal policy's
    verdict on these hits, made once by the ask use case (ask.py): when it refuses, the
    answerer writes its refusal without further work (an LLM answerer without calling the
    model); either way its reason goes on the answer's span. None: answer the hits as given."""

    def answer(
        self, question: str, hits: list[Hit], *, decision: RefusalDecision | None = None
    ) -> Answer: ...

    def stream(
        self, question: str, hits: list[Hit], *, decision: RefusalDecision | None = None
    ) -> Iterator[AnswerEvent]:
        """Tokens, then exactly one Final. Closing the iterator early stops generation."""
        ...
