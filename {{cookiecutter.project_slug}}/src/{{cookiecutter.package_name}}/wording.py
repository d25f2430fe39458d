"""Counts as people write them: "1 chunk", "2 chunks", "0 files"."""

from __future__ import annotations


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """`count` and the noun in the right number (`nouns` when not just noun + "s")."""
    return f"{count} {noun if count == 1 else nouns or noun + 's'}"
