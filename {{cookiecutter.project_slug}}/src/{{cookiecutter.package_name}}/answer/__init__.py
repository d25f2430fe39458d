"""Answerers turn hits into an answer with citations; the extractive one needs no LLM."""

from .extractive import REFUSAL, ExtractiveAnswerer

__all__ = ["REFUSAL", "ExtractiveAnswerer"]
