"""What is kept out of telemetry, and what is pointed out in it.

`redact` masks personal data (e-mail addresses, phone numbers, IBANs, card numbers, IP
addresses) in what leaves the process as logs, exported spans and audit text, when
RAG_REDACT_PII is on. Pattern-based: it catches the common shapes, not every name or address.

`flag_suspicious` marks retrieved chunks that read like instructions to a model (planted
prompt injection) on the current span, so a reviewer finds them by trace. The extractive
answerer follows no instructions; an LLM answerer must keep retrieved text out of its rules.
"""

from __future__ import annotations

import json
import logging
import re
import unicodedata
from collections.abc import Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from .domain import Hit

_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b")
_CARD = re.compile(r"\b\d(?:[ -]?\d){12,18}\b")
_PHONE = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]?\d{2,4}){2,4}(?!\w)"
)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_IPV4 = re.compile(r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b")


def _luhn(digits: str) -> bool:
    total = 0
    for i, char in enumerate(reversed(digits)):
        n = int(char)
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def _card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group())
    return "[CARD]" if _luhn(digits) else match.group()


def _phone(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group())
    if _DATE.match(match.group()) or not 9 <= len(digits) <= 15:
        return match.group()
    return "[PHONE]"


def redact(text: str) -> str:
    """The text with personal data replaced by [EMAIL], [IBAN], [CARD], [IP], [PHONE]."""
    text = _EMAIL.sub("[EMAIL]", text)
    text = _IBAN.sub("[IBAN]", text)
    text = _CARD.sub(_card, text)
    text = _IPV4.sub("[IP]", text)
    return _PHONE.sub(_phone, text)


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, (list, tuple)):
        return [redact(v) if isinstance(v, str) else v for v in value]
    return value


class RedactingSpanExporter(SpanExporter):
    """Redacts every string attribute (and event attribute) of a span before export."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self.inner.export([self._redacted(span) for span in spans])

    @staticmethod
    def _redacted(span: ReadableSpan) -> ReadableSpan:
        attributes = {k: _redact_value(v) for k, v in (span.attributes or {}).items()}
        events = [
            Event(
                event.name,
                {k: _redact_value(v) for k, v in (event.attributes or {}).items()},
                event.timestamp,
            )
            for event in span.events
        ]
        return ReadableSpan(
            name=span.name,
            context=span.context,
            parent=span.parent,
            resource=span.resource,
            attributes=attributes,
            events=events,
            links=span.links,
            kind=span.kind,
            status=span.status,
            start_time=span.start_time,
            end_time=span.end_time,
            instrumentation_scope=span.instrumentation_scope,
        )

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.inner.force_flush(timeout_millis)


class RedactingFilter(logging.Filter):
    """Redacts a log record's message (with its arguments merged in) before it is written."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        return True


# A credential in a URL's query string (`?api_key=...`, `&token=...`): its value is masked in
# every log line, whatever logger wrote it (uvicorn's access log puts the whole URL in).
_URL_CREDENTIAL = re.compile(
    r"(?i)([?&](?:api_?key|key|token|access_token|auth|authorization)=)[^&\s\"']*"
)


def mask_url_credentials(text: str) -> str:
    return _URL_CREDENTIAL.sub(r"\1[REDACTED]", text)


class CredentialQueryFilter(logging.Filter):
    """Masks credential query parameters in a record's message and arguments; always on."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = mask_url_credentials(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(
                mask_url_credentials(a) if isinstance(a, str) else a for a in record.args
            )
        return True


# Characters that render as nothing: soft hyphen, zero-width spaces and joiners, bidi
# controls, word joiner and invisible operators, BOM, interlinear annotations, and the Unicode
# tag block (E0000-E007F, "ASCII smuggling": invisible text a model still reads).
_INVISIBLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f"
    "\u202a-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff9-\ufffb"
    "\U000e0000-\U000e0fff]"
)
# After normalising: a `<` that starts anything tag-like (`</document>`, `<\/documents>`,
# `< /document>`, `< document >`, `<|im_start|>`, `<start_of_turn>`, `<s>`), the `|>` that
# ends chat-template tokens, and Llama's `[INST]` / `[/INST]`. `a < b` stays as written.
_TAG_START = re.compile(r"<(?=[A-Za-z!?|]|\s*[/\\]+\s*[A-Za-z|]|\s+[A-Za-z|][\w:|-]*\s*>)")
_SMUGGLED = re.compile("[\U000e0000-\U000e007f]")
_INST = re.compile(r"\[(?=\s*/?\s*INST\s*\])", re.IGNORECASE)


def normalise(text: str) -> str:
    """NFKC (fullwidth and other compatibility forms of `<`, `/`, `|` become the ASCII ones)
    with invisible characters removed, before and after (NFKC may expose new ones)."""
    return _INVISIBLE.sub("", unicodedata.normalize("NFKC", _INVISIBLE.sub("", text)))


def escape_for_prompt(text: str) -> str:
    """Document text made safe to place between prompt delimiters: normalised first, so no
    spelling of a tag survives, then every tag-like `<`, every `|>` and `[INST]` escaped.
    The model still reads the text (`&lt;` is plain to it); it cannot close a delimiter or
    open a chat turn."""
    escaped = _TAG_START.sub("&lt;", normalise(text)).replace("|>", "|&gt;")
    return _INST.sub("&#91;", escaped)


# Phrases that address a model rather than a reader. Deliberately few and specific: a flag
# asks a person to look; it blocks nothing.
_SIGNALS = {
    "override": re.compile(
        r"\b(ignore|disregard|forget|override)\b[^.\n]{0,40}\b(previous|prior|above|earlier|"
        r"all|any|your)\b[^.\n]{0,20}\b(instructions?|rules|prompts?|directions)\b",
        re.IGNORECASE,
    ),
    "role": re.compile(r"\b(you are now|act as|pretend to be|from now on,? you)\b", re.IGNORECASE),
    "prompt_reference": re.compile(
        r"\b(system prompt|system message|developer message|hidden instructions?)\b",
        re.IGNORECASE,
    ),
    "exfiltration": re.compile(
        r"\b(reveal|print|repeat|send|leak)\b[^.\n]{0,30}\b(prompt|instructions|api key|"
        r"password|secret)s?\b",
        re.IGNORECASE,
    ),
    "chat_markup": re.compile(r"<\|?(im_start|im_end|system|endoftext)\|?>|\[/?INST\]", re.I),
    "concealment": re.compile(
        r"\b(do not|don't|never)\b[^.\n]{0,20}\b(tell|inform|mention|reveal)\b[^.\n]{0,20}"
        r"\b(the )?(user|human|reader)\b"
        r"|\b(quietly|silently|secretly)\b[^.\n]{0,20}\b(leave out|omit|skip|drop|add|change)\b"
        r"|\b(do not|don't|never)\b (mention|say|admit) that you\b",
        re.IGNORECASE,
    ),
    # Paraphrases: text that speaks to a model by name ("Note to the assistant", "If you are
    # a language model", "AI models reading this page", "Chatbots:") ...
    "addresses_model": re.compile(
        r"\b(note|message|instructions?|attention)\b[^.\n]{0,12}\b(to|for)\b[^.\n]{0,12}"
        r"\b(assistants?|ai|chatbots?|bots?|models?|llms?|automated (readers?|systems?))\b"
        r"|\bif (you are|you're) (an?|the) (ai|assistant|chatbot|bot|language model|llm|"
        r"automated)\b|\bif an? (ai|assistant|chatbot|bot|language model|llm|automated \w+) "
        r"(is|are)\b"
        r"|\b(ai|language|large language) models?\b[^.\n]{0,20}\b(reading|processing|"
        r"summari[sz]ing|quoting|answering)\b"
        r"|\b(any|every|all|to any|dear|hey)\s+(ai|assistants?|chatbots?|bots?|language "
        r"models?|llms?|automated readers?)\b"
        r"|(^|[.!?:]\s+)(hey\s+)?(assistant|ai|chatbots?|bot|model|llm)\s*[,:]",
        re.IGNORECASE | re.MULTILINE,
    ),
    # ... or declares the model's own instructions void or replaced ("the guidance you
    # received earlier no longer applies", "your new task is", "new rule:").
    "supersedes": re.compile(
        r"\b(you (were|have been) (given|told|configured|set up|started|instructed)|you "
        r"received|you run under|your (operator|setup|configuration|earlier|previous|prior|"
        r"original) ?\w*)\b[^.\n]{0,40}\b(no longer appl(y|ies)|void|outdated|obsolete|"
        r"expired|replaced|cancell?ed|precedence)\b"
        r"|\b(takes?|has) precedence over (your|the assistant's|the model's)\b"
        r"|\byour new (task|instructions?|rules?|objective|goal)\b"
        r"|\b(new rule|new instructions?|instructions? update)\s*:",
        re.IGNORECASE,
    ),
    # ... or dictates every answer ("answer every question with", "every answer must end").
    "answer_control": re.compile(
        r"\b(answer|respond|reply)\b[^.\n]{0,12}\b(every|each|all|any) (questions?|requests?)"
        r"\b[^.\n]{0,12}\bwith\b"
        r"|\b(every|each|all) (answers?|repl(y|ies)|responses?) (must|should|shall)\b"
        r"|\brespond (only )?in \w+ (speak|language)\b",
        re.IGNORECASE,
    ),
}


def injection_signals(text: str) -> list[str]:
    """Names of the instruction-like patterns the text contains (empty: none), read after
    normalising (a zero-width space inside "ignore" hides nothing)."""
    clean = normalise(text)
    found = [name for name, pattern in _SIGNALS.items() if pattern.search(clean)]
    if _SMUGGLED.search(text):
        found.append("invisible_text")
    return found


def flag_suspicious(hits: Sequence[Hit]) -> list[dict[str, Any]]:
    """Flag instruction-like chunks on the current span; returns them (chunk id, signals)."""
    flagged = [
        {"chunk_id": hit.chunk_id, "source": hit.source, "signals": signals}
        for hit in hits
        if (signals := injection_signals(hit.text))
    ]
    span = trace.get_current_span()
    span.set_attribute("rag.suspicious_chunks.count", len(flagged))
    if flagged:
        span.set_attribute("rag.suspicious_chunks", json.dumps(flagged))
    return flagged
