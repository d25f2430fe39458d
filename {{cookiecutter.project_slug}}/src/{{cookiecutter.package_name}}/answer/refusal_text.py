"""Is a model's reply a refusal, even when it does not use the prompt's exact sentence?

The prompt asks for one exact refusal sentence, but models paraphrase it ("The provided
documents do not mention...", "I couldn't find this in the context."). Such a reply cites
nothing, so the citation check would flag it as ungrounded, the opposite of what it is. A
reply counts as a refusal when its first sentence says the documents do not answer and it
cites nothing: an answer that cites a document is checked as an answer, whatever it says.
"""

from __future__ import annotations

import re

_CITATION = re.compile(r"\[\d+(?:\s*,\s*\d+)*\]")
_SOURCES = r"(?:provided |given |supplied |available |retrieved |ingested |above |these |the )*"
_SOURCES += r"(?:documents?|context|sources?|passages?|texts?|excerpts?|materials?|information)"
_PATTERNS = [
    r"\bi (?:do not|don't) know\b",
    r"\bi (?:cannot|can't|could not|couldn't|am unable to|am not able to|was unable to|"
    r"was not able to) (?:find|answer|determine|tell|locate|say|see|identify)\b",
    rf"\b{_SOURCES} (?:do|does|did) not (?:answer|contain|mention|say|include|provide|specify|"
    r"state|cover|address|describe|discuss|give|offer|have|tell)\b",
    r"\b(?:there is|there's|i found|i see|with) no (?:information|mention|details?|answer|data|"
    r"reference|indication)\b",
    r"\bno (?:information|mention|details?|answer|data) (?:about|on|regarding|of|for|is|was)\b",
    rf"\bnot (?:mentioned|covered|specified|stated|addressed|found|discussed|described|"
    rf"answered|included|available) (?:in|by|within) {_SOURCES}",
    r"\b(?:insufficient|not enough) (?:information|context|detail)\b",
    rf"\b{_SOURCES}(?: provided| given)? (?:is|are) (?:silent|insufficient|not sufficient)\b",
    rf"\boutside (?:the scope of|of) {_SOURCES}",
]
_REFUSAL = re.compile("|".join(f"(?:{p})" for p in _PATTERNS))
_FIRST_SENTENCE = re.compile(r"^(.+?[.!?])(?:\s|$)", re.DOTALL)


def _normalise(text: str) -> str:
    """Lower case, plain apostrophes, contractions spelled out ("don't" -> "do not")."""
    text = text.replace("\u2019", "'").replace("\u2018", "'").lower()
    text = text.replace("can't", "cannot").replace("won't", "will not").replace("n't", " not")
    return " ".join(text.split())


def is_refusal(text: str, exact: str) -> bool:
    """True for the prompt's exact refusal and for a paraphrase of it that cites nothing."""
    normalised = _normalise(text)
    if normalised.startswith(_normalise(exact).rstrip(".")):
        return True
    if not normalised or _CITATION.search(normalised):
        return False
    match = _FIRST_SENTENCE.match(normalised)
    first = match.group(1) if match else normalised
    return _REFUSAL.search(first) is not None
