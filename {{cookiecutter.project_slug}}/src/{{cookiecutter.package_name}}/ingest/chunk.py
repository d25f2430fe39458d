"""Structure-aware chunking with llama-index node parsers, and deterministic chunk ids."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass

from llama_index.core import Document as LlamaDocument
from llama_index.core.node_parser import MarkdownNodeParser, SentenceSplitter

from ..domain import Chunk, Document

# Fixed forever: changing it would give every stored chunk a new id.
CHUNK_NAMESPACE = uuid.UUID("6f1c2a52-3f8e-4d0b-9a57-2b3f3c1d9e10")
# Bump when chunking logic changes, so the next ingest re-chunks every document.
CHUNKER_VERSION = 1


def chunk_id(corpus: str, source: str, index: int, content_hash: str) -> str:
    return str(uuid.uuid5(CHUNK_NAMESPACE, f"{corpus}/{source}#{index}:{content_hash}"))


@dataclass
class Chunker:
    chunk_size: int
    chunk_overlap: int

    def __post_init__(self) -> None:
        self._markdown = MarkdownNodeParser()
        self._splitter = SentenceSplitter(
            chunk_size=self.chunk_size, chunk_overlap=self.chunk_overlap
        )

    def version(self, document: Document) -> str:
        """The stored version of a document: its bytes and how they were chunked. Changing
        the chunk settings makes every document 'updated' on the next ingest."""
        recipe = f"{CHUNKER_VERSION}:{self.chunk_size}:{self.chunk_overlap}:{document.content_hash}"
        return hashlib.sha256(recipe.encode("utf-8")).hexdigest()

    def _sections(self, document: Document) -> list[tuple[str, str]]:
        """(section path, text) pairs: Markdown and HTML split at headings, text as one."""
        if document.format == "text":
            return [("", document.text)]
        nodes = self._markdown.get_nodes_from_documents([LlamaDocument(text=document.text)])
        sections = []
        for node in nodes:
            text = node.get_content()
            first_line, _, body = text.partition("\n")
            heading = first_line.lstrip("#").strip() if first_line.startswith("#") else ""
            if not heading:
                body = text
            if not body.strip():
                continue  # a heading with nothing under it
            parents = [p for p in str(node.metadata.get("header_path", "")).split("/") if p]
            path = [p for p in [*parents, heading] if p and p != document.title]
            sections.append((" > ".join(path), text if heading else body))
        return sections

    def chunk(self, document: Document, corpus: str) -> list[Chunk]:
        version = self.version(document)
        pieces = [
            (section, piece.strip())
            for section, text in self._sections(document)
            for piece in self._splitter.split_text(text)
            if piece.strip()
        ]
        chunks = []
        for index, (section, piece) in enumerate(pieces):
            content_hash = hashlib.sha256(piece.encode("utf-8")).hexdigest()
            chunks.append(
                Chunk(
                    id=chunk_id(corpus, document.source, index, content_hash),
                    source=document.source,
                    index=index,
                    text=piece,
                    title=document.title,
                    section=section,
                    content_hash=content_hash,
                    doc_hash=version,
                    doc_chunks=len(pieces),
                )
            )
        return chunks
