"""The numbered context given to the model, and the check that its citations point into it.

Tokens are counted with a documented approximation rather than the provider's tokenizer:
OpenAI's tokenizer (tiktoken) downloads its encodings at run time, Anthropic's counts over the
network, and local models each have their own. The approximation takes the larger of
characters / 4 and words * 4 / 3 (OpenAI's rules of thumb for English), which over-counts
code and non-English text rather than under-counting it, so the budget errs on the safe side.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ..domain import Citation, Hit
from ..guard import escape_for_prompt

_CITATION = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")


def approx_tokens(text: str) -> int:
    return max(math.ceil(len(text) / 4), math.ceil(len(text.split()) * 4 / 3))


@dataclass(frozen=True)
class Context:
    """The chunks given to the model, best first; chunk n is `hits[n - 1]`."""

    hits: list[Hit]
    text: str
    tokens: int


def _block(number: int, hit: Hit, text: str) -> str:
    # A document must not be able to close its own delimiter and speak outside it.
    source = escape_for_prompt(hit.source).replace('"', "'")
    body = escape_for_prompt(text)
    return f'<document index="{number}" source="{source}">\n{body}\n</document>'


def build_context(hits: list[Hit], budget_tokens: int) -> Context:
    """The best-scoring chunks that fit the budget, best first. A chunk that does not fit is
    skipped (a smaller one after it may still fit); the best chunk alone is cut to fit."""
    chosen: list[Hit] = []
    blocks: list[str] = []
    used = 0
    for hit in sorted(hits, key=lambda h: h.score, reverse=True):
        block = _block(len(chosen) + 1, hit, hit.text)
        cost = approx_tokens(block)
        if used + cost > budget_tokens:
            if chosen:
                continue
            # Cut the best chunk to the budget rather than giving the model nothing.
            keep = max(0, len(hit.text) * budget_tokens // max(cost, 1) - 32)
            block = _block(1, hit, hit.text[:keep])
            cost = approx_tokens(block)
        chosen.append(hit)
        blocks.append(block)
        used += cost
    return Context(hits=chosen, text="\n\n".join(blocks), tokens=used)


@dataclass(frozen=True)
class CitationCheck:
    text: str  # the answer, its valid citations renumbered so that [n] is citations[n - 1]
    citations: list[Citation]  # the chunks cited, in order of first citation
    invalid: list[int]  # numbers that point at no chunk given to the model

    @property
    def grounded(self) -> bool:
        return bool(self.citations) and not self.invalid


def cited_numbers(text: str) -> list[int]:
    """Every [n] and [n, m] in the text, in order, without repeats."""
    numbers: list[int] = []
    for match in _CITATION.finditer(text):
        for part in match.group(1).split(","):
            number = int(part)
            if number not in numbers:
                numbers.append(number)
    return numbers


def check_citations(text: str, context: Context) -> CitationCheck:
    """Resolve [n] against the context. Valid numbers are renumbered in order of first use
    (the model may cite [3] alone); invalid ones are left as written, for a person to see."""
    renumber: dict[int, int] = {}
    citations: list[Citation] = []
    invalid: list[int] = []
    for number in cited_numbers(text):
        if 1 <= number <= len(context.hits):
            hit = context.hits[number - 1]
            renumber[number] = len(citations) + 1
            citations.append(Citation.of(renumber[number], hit))
        else:
            invalid.append(number)

    def rewrite(match: re.Match[str]) -> str:
        parts = [int(part) for part in match.group(1).split(",")]
        return "[" + ", ".join(str(renumber.get(n, n)) for n in parts) + "]"

    return CitationCheck(_CITATION.sub(rewrite, text), citations, invalid)
