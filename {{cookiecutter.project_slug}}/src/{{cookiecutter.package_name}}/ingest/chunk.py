"""Structure-aware chunking with llama-index node parsers, and deterministic chunk ids:
`Document -> [Chunk]`."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cached_property
from typing import TYPE_CHECKING

from ..domain import Chunk, Document, chunk_id

if TYPE_CHECKING:
    from llama_index.core.node_parser import MarkdownNodeParser, SentenceSplitter

# Bump when chunking logic changes, so the next ingest re-chunks every document.
CHUNKER_VERSION = 4  # 2: block packing; 3: lone headings, PDF lines; 4: long runs cut first


# Blocks are separated by blank lines: a paragraph, a run of list items or table rows, code.
_BLOCK_BREAK = re.compile(r"\n[ \t]*\n")
# A window of an overlong run is cut to this share of the chunk size by its estimated
# characters per token, so most windows fit at the first try.
_WINDOW_FILL = 0.9


@dataclass
class Chunker:
    chunk_size: int
    chunk_overlap: int
    # Pack whole blocks into chunks and split only blocks larger than a chunk; False: split
    # each section at sentences (RAG_CHUNK_PACK_BLOCKS, measured in the retrieval ADR).
    pack_blocks: bool = False

    # llama-index is imported on first use, not with this module: importing it takes
    # seconds, and `ask`, `serve` and `--help` build a Chunker without chunking anything.
    @cached_property
    def _markdown(self) -> MarkdownNodeParser:
        from llama_index.core.node_parser import MarkdownNodeParser

        return MarkdownNodeParser()

    @cached_property
    def _splitter(self) -> SentenceSplitter:
        from llama_index.core.node_parser import SentenceSplitter

        return SentenceSplitter(chunk_size=self.chunk_size, chunk_overlap=self.chunk_overlap)

    @cached_property
    def _tokenize(self) -> Callable[[str], list[object]]:
        from llama_index.core.utils import get_tokenizer

        tokenize: Callable[[str], list[object]] = get_tokenizer()
        return tokenize

    @cached_property
    def _long_run(self) -> re.Pattern[str]:
        # A run without whitespace at least a chunk's length in characters may be more
        # than a chunk in tokens (a token is rarely under one character).
        # (Concatenated: doubled braces in an f-string would be Jinja to the template.)
        return re.compile(r"\S{" + str(self.chunk_size) + ",}")

    def _tokens(self, text: str) -> int:
        return len(self._tokenize(text))

    def _split(self, text: str) -> list[str]:
        """The sentence splitter's pieces, with runs longer than a chunk and no whitespace
        (base64, a minified file, CJK without spaces) cut into chunk-sized windows first.

        Why: the splitter falls back to one split per character for such a run and counts
        each character's tokens alone, so a 7.5 MB single-line file took minutes to chunk
        and gave chunks of 200 characters (one "token" each), five times too many to embed."""
        pieces: list[str] = []
        start = 0
        for match in self._long_run.finditer(text):
            run = match.group()
            tokens = self._tokens(run)
            if tokens <= self.chunk_size:
                continue  # a long URL or word that fits: the splitter keeps it whole
            pieces += self._sentences(text[start : match.start()])
            pieces += self._windows(run, tokens)
            start = match.end()
        return pieces + self._sentences(text[start:])

    def _sentences(self, text: str) -> list[str]:
        return list(self._splitter.split_text(text)) if text.strip() else []

    def _windows(self, run: str, tokens: int) -> list[str]:
        """`run` cut at characters into pieces of at most chunk_size tokens, each counted
        once or a few times: linear in the run's length."""
        chars_per_token = len(run) / tokens
        windows: list[str] = []
        start = 0
        while start < len(run):
            width = max(1, int(self.chunk_size * chars_per_token * _WINDOW_FILL))
            while True:
                window = run[start : start + width]
                counted = self._tokens(window)
                if counted <= self.chunk_size or width == 1:
                    break
                width = max(1, int(width * self.chunk_size / counted * _WINDOW_FILL))
            windows.append(window)
            start += len(window)
        return windows

    def _pack(self, text: str) -> list[str]:
        """Whole blocks, greedily packed up to chunk_size tokens. A block that ends a chunk is
        repeated at the start of the next when it fits in chunk_overlap (context across the
        cut); a block larger than a chunk is split at sentences."""
        if not self.pack_blocks:
            return self._split(text)
        pieces: list[str] = []
        current: list[str] = []
        size = 0
        for block in (b.strip() for b in _BLOCK_BREAK.split(text)):
            if not block:
                continue
            tokens = self._tokens(block)
            if tokens > self.chunk_size:
                if current:
                    pieces.append("\n\n".join(current))
                    current, size = [], 0
                *full, tail = self._split(block)
                pieces.extend(full)
                current, size = [tail], self._tokens(tail)  # the tail may take more blocks
                continue
            if current and size + tokens > self.chunk_size:
                pieces.append("\n\n".join(current))
                last = current[-1]
                carried = self._tokens(last)
                current, size = ([last], carried) if carried <= self.chunk_overlap else ([], 0)
            current.append(block)
            size += tokens
        if current:
            pieces.append("\n\n".join(current))
        return pieces

    def version(self, document: Document) -> str:
        """The stored version of a document: its bytes and how they were chunked. Changing
        the chunk settings makes every document 'updated' on the next ingest."""
        recipe = (
            f"{CHUNKER_VERSION}:{int(self.pack_blocks)}:{self.chunk_size}:{self.chunk_overlap}:"
            f"{document.content_hash}"
        )
        return hashlib.sha256(recipe.encode("utf-8")).hexdigest()

    def _sections(self, document: Document) -> list[tuple[str, str]]:
        """(section path, text) pairs: Markdown and HTML split at headings, text as one."""
        if document.format == "text":
            return [("", document.text)]
        from llama_index.core import Document as LlamaDocument

        nodes = self._markdown.get_nodes_from_documents([LlamaDocument(text=document.text)])
        paths = [[p for p in str(n.metadata.get("header_path", "")).split("/") if p] for n in nodes]
        sections = []
        for index, node in enumerate(nodes):
            text = node.get_content()
            first_line, _, body = text.partition("\n")
            heading = first_line.lstrip("#").strip() if first_line.startswith("#") else ""
            if not heading:
                body = text
            parents = paths[index]
            if not body.strip():
                # A heading with nothing under it: its sub-sections carry it in their path
                # (embedded with them); a heading nothing follows is text in its own right.
                following = paths[index + 1] if index + 1 < len(paths) else []
                if heading in following:
                    continue
                path = [p for p in parents if p != document.title]
                sections.append((" > ".join(path), heading))
                continue
            path = [p for p in [*parents, heading] if p and p != document.title]
            sections.append((" > ".join(path), text if heading else body))
        return sections

    def chunk(self, document: Document, *, tenant: str, corpus: str) -> list[Chunk]:
        version = self.version(document)
        pieces = [
            (section, piece.strip())
            for section, text in self._sections(document)
            for piece in self._pack(text)
            if piece.strip()
        ]
        chunks = []
        for index, (section, piece) in enumerate(pieces):
            content_hash = hashlib.sha256(piece.encode("utf-8")).hexdigest()
            chunks.append(
                Chunk(
                    id=chunk_id(
                        tenant=tenant,
                        corpus=corpus,
                        source=document.source,
                        index=index,
                        content_hash=content_hash,
                    ),
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


# Document metadata that describes how the file was read, not what it says.
_READ_DETAILS = frozenset({"encoding"})


def chunk_document(
    chunker: Chunker, document: Document, *, tenant: str, corpus: str
) -> list[Chunk]:
    """Chunk each part (a page, a row) on its own, so no chunk crosses a page or a record,
    then number the chunks across the whole document and give each its part's metadata.
    Ids include the tenant: two tenants' identical files must never share a point."""
    pieces = [
        (chunk, {k: v for k, v in part.metadata.items() if k not in _READ_DETAILS})
        for part in document.parts()
        for chunk in chunker.chunk(part, tenant=tenant, corpus=corpus)
    ]
    return [
        replace(
            chunk,
            index=index,
            id=chunk_id(
                tenant=tenant,
                corpus=corpus,
                source=document.source,
                index=index,
                content_hash=chunk.content_hash,
            ),
            doc_chunks=len(pieces),
            metadata=metadata,
        )
        for index, (chunk, metadata) in enumerate(pieces)
    ]
