"""Answerers turn hits into an answer with citations; the extractive one needs no LLM."""

from .base import Answerer, AnswerEvent, Final, Token
from .extractive import REFUSAL, ExtractiveAnswerer
from .llm import LLMAnswerer, LLMOptions

__all__ = [
    "REFUSAL",
    "AnswerEvent",
    "Answerer",
    "ExtractiveAnswerer",
    "Final",
    "LLMAnswerer",
    "LLMOptions",
    "Token",
]
