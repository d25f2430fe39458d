"""The extractive answerer's sentence vectors: the same vectors as embedding each sentence,
for fewer tokens (length-sorted batches) and once per sentence (a bounded cache)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from {{ cookiecutter.package_name }}.answer.sentences import SentenceVectors
from {{ cookiecutter.package_name }}.embeddings import DenseEncoder, cosine


class CountingEncoder:
    model_id = "counting"
    dimensions = 2

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls.append(list(texts))
        return [[float(len(t)), 1.0] for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return [float(len(text)), 1.0]


def test_vectors_come_back_in_order_from_length_sorted_batches() -> None:
    encoder = CountingEncoder()
    sentences = ["a" * n for n in (30, 3, 12, 7, 1, 25, 18, 2, 9, 40)]
    vectors = SentenceVectors(encoder, batch=4).vectors(sentences)
    assert [v[0] for v in vectors] == [float(len(s)) for s in sentences]
    assert [len(call) for call in encoder.calls] == [4, 4, 2]
    lengths = [len(t) for call in encoder.calls for t in call]
    assert lengths == sorted(lengths)  # similar lengths share a batch: little padding


def test_a_sentence_is_embedded_once_and_the_cache_is_bounded() -> None:
    encoder = CountingEncoder()
    cache = SentenceVectors(encoder, capacity=3, batch=8)
    cache.vectors(["one", "two", "three"])
    cache.vectors(["two", "one", "two"])
    assert encoder.calls == [["one", "two", "three"]]  # by length, then text
    cache.vectors(["four"])  # evicts the least recently used: "three"
    cache.vectors(["three", "one"])
    assert encoder.calls[1:] == [["four"], ["three"]]


def test_batched_vectors_equal_one_by_one_embeddings(dense: DenseEncoder) -> None:
    sentences = [
        "Passwords must be at least twelve characters long.",
        "Rotate them.",
        "x = compute(a, b)  # a long line of code that pads every batch it is in " * 4,
        "The office is closed on public holidays.",
    ]
    batched = SentenceVectors(dense, batch=2).vectors(sentences)
    for sentence, vector in zip(sentences, batched, strict=True):
        assert cosine(vector, dense.embed_documents([sentence])[0]) == pytest.approx(1.0, abs=1e-5)
