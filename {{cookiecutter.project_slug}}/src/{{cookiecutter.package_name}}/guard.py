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
        r"\b(the )?(user|human|reader)\b",
        re.IGNORECASE,
    ),
}


def injection_signals(text: str) -> list[str]:
    """Names of the instruction-like patterns the text contains (empty: none)."""
    return [name for name, pattern in _SIGNALS.items() if pattern.search(text)]


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
