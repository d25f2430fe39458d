from __future__ import annotations

import re
from pathlib import Path

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from {{ cookiecutter.package_name }}.answer import REFUSAL
from {{ cookiecutter.package_name }}.answer.sentences import split_sentences
from {{ cookiecutter.package_name }}.container import Services
from {{ cookiecutter.package_name }}.domain import Answer, Query


def test_top_k_limits_the_hits(services: Services, corpus: Path) -> None:
    services.ingestor.ingest(corpus)
    assert len(services.retriever.retrieve(Query(text="office", top_k=2, tenant="default"))) == 2


def test_source_filter_is_applied_in_the_engine(services: Services, corpus: Path) -> None:
    services.ingestor.ingest(corpus)
    hits = services.retriever.retrieve(
        Query(
            text="How long must a password be?", top_k=5, sources=["coffee.txt"], tenant="default"
        )
    )
    assert hits
    assert {hit.source for hit in hits} == {"coffee.txt"}


def test_retrieval_span_carries_genai_attributes(
    services: Services, corpus: Path, spans: InMemorySpanExporter
) -> None:
    services.ingestor.ingest(corpus)
    spans.clear()
    hits = services.retriever.retrieve(Query(text="password rotation", top_k=2, tenant="default"))
    span = next(s for s in spans.get_finished_spans() if s.name == "retrieval test")
    attributes = dict(span.attributes or {})
    assert attributes["gen_ai.operation.name"] == "retrieval"
    assert attributes["gen_ai.data_source.id"] == "test"
    assert attributes["gen_ai.request.top_k"] == 2
    assert hits[0].chunk_id in str(attributes["gen_ai.retrieval.documents"])


def answer_of(services: Services, question: str) -> Answer:
    """Retrieve the top 5 of tenant `default`, then answer from them."""
    hits = services.retriever.retrieve(Query(text=question, top_k=5, tenant="default"))
    return services.asker.answer(question, hits)


def test_answer_quotes_the_evidence_and_cites_it(services: Services, corpus: Path) -> None:
    services.ingestor.ingest(corpus)
    answer = answer_of(services, "How many characters must a password have?")
    assert not answer.refused
    assert "at least 14 characters" in answer.text
    numbers = {int(n) for n in re.findall(r"\[(\d+)\]", answer.text)}
    assert numbers == set(range(1, len(answer.citations) + 1))
    first = answer.citations[0]
    assert first.source == "policies/passwords.md"
    assert "14 characters" in first.text


def test_question_the_documents_cannot_answer_is_refused(services: Services, corpus: Path) -> None:
    services.ingestor.ingest(corpus)
    question = "What was the revenue of the company in 2019?"
    answer = services.asker.answer(
        question, services.retriever.retrieve(Query(text=question, top_k=5, tenant="default"))
    )
    assert answer.refused
    assert answer.text == REFUSAL
    assert answer.citations == []


def test_no_hits_means_refusal(services: Services) -> None:
    assert services.asker.answer("Anything at all?", []).refused


def test_sentences_skip_headings_and_quote_table_rows_whole_with_their_header() -> None:
    text = (
        "## Limits\n| City | Hotel limit |\n|---|---|\n| Paris | 190 EUR per night |\n"
        "| Lyon | 120 EUR per night |\n"
        "- Keep receipts for ten years. Submit them monthly."
    )
    assert split_sentences(text) == [
        "City: Paris; Hotel limit: 190 EUR per night",
        "City: Lyon; Hotel limit: 120 EUR per night",
        "Keep receipts for ten years.",
        "Submit them monthly.",
    ]


def test_table_rows_without_their_header_in_the_chunk_are_not_quoted() -> None:
    # A chunk that starts inside a table: the cells alone would be cited out of context.
    text = "| Adjuster | up to 5,000 EUR |\n| Senior adjuster | up to 25,000 EUR |\nEnd of list."
    assert split_sentences(text) == ["End of list."]


def test_a_record_is_quoted_whole_and_cited_with_its_row(
    services: Services, tmp_path: Path
) -> None:
    corpus = tmp_path / "claims"
    corpus.mkdir()
    (corpus / "claims.csv").write_text(
        "claim_id,peril,notes\n"
        "C-101,storm,Roof tiles replaced after the adjuster's visit.\n"
        "C-102,flood,River flooding excluded under the basic policy.\n",
        encoding="utf-8",
    )
    services.ingestor.ingest(corpus)
    answer = answer_of(services, "Is river flooding covered for claim C-102?")
    assert not answer.refused
    assert "claim_id: C-102; peril: flood; notes: River flooding excluded" in answer.text
    assert "C-101" not in answer.text
    cited = answer.citations[0]
    assert (cited.source, cited.location) == ("claims.csv", {"row": 2})  # data rows from 1


def test_questions_in_documents_are_not_quoted_as_answers() -> None:
    faq = "How do I open a ticket?\nOpen a ticket in the support portal or call the hotline."
    assert split_sentences(faq) == ["Open a ticket in the support portal or call the hotline."]
