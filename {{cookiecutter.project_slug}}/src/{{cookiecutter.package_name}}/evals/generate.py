"""Draft a golden set from the client's documents with ragas' test-set generator.

The drafts are a starting point, not a golden set: every row is written with
`"reviewed": false` and a person must check the question, the reference answer and the gold
sources before the set gates anything.

How it runs: documents are read with the project's own loader and cut with the project's own
chunker (so a question's context is a passage the service can retrieve); ragas gets a
knowledge graph of DOCUMENT nodes with their CHUNK children and enriches it with the judge
LLM and embeddings (summaries, a quality filter, themes, entities, similarity and overlap
relationships), then `TestsetGenerator` writes the questions. Each question's gold sources
are the documents its reference contexts came from.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any

from ..domain import Document
from ..errors import BadRequestError
from ..ingest.chunk import Chunker
from ..ingest.load import SkippedFileError, discover, load_document
from ..settings import Settings
from .judge import JudgeError, judge_client, judge_models, prepare_ragas, require_judge

_REVIEW_NOTE = (
    "Generated questions are drafts: they are written with reviewed=false, and a person must "
    "check each question, reference answer and gold source before the set is used to gate."
)
_HOP_PREFIX = re.compile(r"^<\d+-hop>\s*")


def generate_golden_set(
    settings: Settings,
    corpus: Path,
    out: Path,
    size: int,
    *,
    overwrite: bool = False,
    max_retries: int = 2,
) -> int:
    """Write up to `size` draft questions about the documents under `corpus` to `out` (JSONL
    in the golden-set format) and return how many were written."""
    if not settings.judge_base_url:
        require_judge(settings, "Drafting a golden set (eval generate)", _REVIEW_NOTE)
    if size < 1:
        raise BadRequestError(f"The golden set size must be at least 1, not {size}.")
    if out.exists() and not overwrite:
        raise BadRequestError(
            f"{out} already exists; refusing to overwrite it (reviewed questions would be "
            "lost). Write to another file, or ask to overwrite it (--overwrite)."
        )
    if not corpus.is_dir():
        raise BadRequestError(f"Corpus folder {corpus} does not exist or is not a folder.")
    documents = _load_documents(corpus, settings.max_file_bytes, settings.legacy_encoding)
    chunker = Chunker(settings.chunk_size, settings.chunk_overlap, settings.chunk_pack_blocks)

    prepare_ragas(settings.data_dir / "ragas")
    client = judge_client(settings, max_retries, keepalive=False)
    llm, embeddings = judge_models(settings, client)
    graph, sources_by_text = _knowledge_graph(documents, chunker, corpus.resolve().name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        testset = _run_ragas(graph, llm, embeddings, size, settings.judge_timeout_s)

    rows = _rows(testset, sources_by_text, size)
    if not rows:
        raise JudgeError(
            "ragas produced no usable questions (none had a question, an answer and a context "
            "from the corpus). Check the judge model with a few documents first."
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    partial.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    os.replace(partial, out)
    return len(rows)


def _load_documents(corpus: Path, max_bytes: int, legacy_encoding: str) -> list[Document]:
    documents = []
    for path in discover(corpus):
        try:
            documents.append(load_document(path, corpus, max_bytes, legacy_encoding))
        except SkippedFileError:
            continue  # `ingest` reports skipped files; here they simply yield no questions
    if not documents:
        raise BadRequestError(f"No readable documents under {corpus} to draft questions from.")
    return documents


def _knowledge_graph(
    documents: list[Document], chunker: Chunker, corpus: str
) -> tuple[Any, dict[str, list[str]]]:
    """ragas' graph: one DOCUMENT node per file, the project's chunks as its CHUNK children."""
    from ragas.testset.graph import KnowledgeGraph, Node, NodeType, Relationship

    nodes: list[Any] = []
    relationships: list[Any] = []
    sources_by_text: dict[str, list[str]] = defaultdict(list)
    for document in documents:
        metadata = {"source": document.source, "title": document.title}
        parent = Node(
            type=NodeType.DOCUMENT,
            properties={"page_content": document.text, "document_metadata": metadata},
        )
        nodes.append(parent)
        previous = None
        # Chunk ids are not stored here; only the texts become graph nodes.
        for chunk in chunker.chunk(document, tenant="drafts", corpus=corpus):
            child = Node(
                type=NodeType.CHUNK,
                properties={
                    "page_content": chunk.text,
                    "document_metadata": {**metadata, "section": chunk.section},
                },
            )
            nodes.append(child)
            relationships.append(Relationship(type="child", source=parent, target=child))
            if previous is not None:
                relationships.append(Relationship(type="next", source=previous, target=child))
            previous = child
            if document.source not in sources_by_text[chunk.text.strip()]:
                sources_by_text[chunk.text.strip()].append(document.source)
    return KnowledgeGraph(nodes=nodes, relationships=relationships), dict(sources_by_text)


def _transforms(llm: Any, embeddings: Any) -> list[Any]:
    """ragas' default enrichment for long documents, with the project's chunks in place of
    its headline splitter (which needs the LLM to quote headlines verbatim)."""
    from ragas.testset.graph import NodeType
    from ragas.testset.transforms import (
        CosineSimilarityBuilder,
        CustomNodeFilter,
        EmbeddingExtractor,
        OverlapScoreBuilder,
        Parallel,
        SummaryExtractor,
    )
    from ragas.testset.transforms.extractors.llm_based import NERExtractor, ThemesExtractor

    def documents(node: Any) -> bool:
        return bool(node.type == NodeType.DOCUMENT)

    def chunks(node: Any) -> bool:
        return bool(node.type == NodeType.CHUNK)

    return [
        SummaryExtractor(llm=llm, filter_nodes=documents),
        CustomNodeFilter(llm=llm, filter_nodes=chunks),
        Parallel(
            EmbeddingExtractor(
                embedding_model=embeddings,
                property_name="summary_embedding",
                embed_property_name="summary",
                filter_nodes=documents,
            ),
            ThemesExtractor(llm=llm, filter_nodes=chunks),
            NERExtractor(llm=llm, filter_nodes=chunks),
        ),
        Parallel(
            CosineSimilarityBuilder(
                property_name="summary_embedding",
                new_property_name="summary_similarity",
                threshold=0.7,
                filter_nodes=documents,
            ),
            OverlapScoreBuilder(threshold=0.01, filter_nodes=chunks),
        ),
    ]


def _run_ragas(graph: Any, llm: Any, embeddings: Any, size: int, timeout_s: float) -> Any:
    from ragas.run_config import RunConfig
    from ragas.testset import TestsetGenerator
    from ragas.testset.synthesizers.multi_hop import (
        MultiHopAbstractQuerySynthesizer,
        MultiHopSpecificQuerySynthesizer,
    )
    from ragas.testset.synthesizers.single_hop.specific import (
        SingleHopSpecificQuerySynthesizer,
    )
    from ragas.testset.transforms import apply_transforms

    # One job may make several judge calls; ragas' own default is 180 s.
    run_config = RunConfig(timeout=max(180, int(timeout_s * 3)), max_workers=4, max_retries=1)
    try:
        apply_transforms(graph, _transforms(llm, embeddings), run_config=run_config)
        candidates: list[Any] = [
            SingleHopSpecificQuerySynthesizer(llm=llm),
            MultiHopAbstractQuerySynthesizer(llm=llm),
            MultiHopSpecificQuerySynthesizer(llm=llm),
        ]
        usable = []
        for synthesizer in candidates:  # as ragas' default_query_distribution does
            try:
                if synthesizer.get_node_clusters(graph):
                    usable.append(synthesizer)
            except Exception:  # noqa: S112 - a synthesizer the graph cannot feed is skipped
                continue
        if not usable:
            raise JudgeError(
                "ragas found nothing to write questions about: the judge's summaries, themes "
                "and entities left no usable passages. Check RAG_JUDGE_MODEL and the corpus."
            )
        generator = TestsetGenerator(llm=llm, embedding_model=embeddings, knowledge_graph=graph)
        return generator.generate(
            testset_size=size,
            query_distribution=[(s, 1 / len(usable)) for s in usable],
            run_config=run_config,
        )
    except JudgeError:
        raise
    except Exception as exc:
        raise JudgeError(
            f"Drafting questions with the judge at RAG_JUDGE_BASE_URL failed: "
            f"{type(exc).__name__}: {str(exc).strip()[:400]}"
        ) from exc


def _rows(testset: Any, sources_by_text: dict[str, list[str]], size: int) -> list[dict[str, Any]]:
    """Usable, distinct questions; at most `size`, taken in turn from each synthesizer
    (ragas may write more than it was asked for)."""
    by_synthesizer: dict[str, list[dict[str, Any]]] = defaultdict(list)
    seen: set[str] = set()
    for sample in testset.samples:
        turn = sample.eval_sample
        question = str(getattr(turn, "user_input", "") or "").strip()
        reference = str(getattr(turn, "reference", "") or "").strip()
        sources: list[str] = []
        for context in getattr(turn, "reference_contexts", None) or []:
            for source in sources_by_text.get(_HOP_PREFIX.sub("", context).strip(), []):
                if source not in sources:
                    sources.append(source)
        key = " ".join(question.casefold().split())
        if not question or not reference or not sources or key in seen:
            continue
        seen.add(key)
        synthesizer = str(sample.synthesizer_name)
        by_synthesizer[synthesizer].append(
            {
                "id": "",
                "question": question,
                "reference_answer": reference,
                "gold_sources": sources,
                "tags": ["generated", synthesizer],
                "answerable": True,
                "reviewed": False,
            }
        )
    interleaved = [
        row
        for turn in itertools.zip_longest(*by_synthesizer.values())
        for row in turn
        if row is not None
    ][:size]
    for number, row in enumerate(interleaved, start=1):
        row["id"] = f"gen-{number:03d}"
    return interleaved


__all__ = ["generate_golden_set"]
