"""The MCP tools through the SDK's own client over real streamable HTTP (uvicorn on
127.0.0.1): each tool against the REST API for the same input, tenants kept apart through
every tool (guessed ids included), hostile inputs answered as MCP errors, never a 5xx, and
every call audited and traced."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from {{ cookiecutter.package_name }}.api import create_app
from {{ cookiecutter.package_name }}.api.limits import RateLimiter
from {{ cookiecutter.package_name }}.api.security import Authenticator
from {{ cookiecutter.package_name }}.container import Services, build_services
from {{ cookiecutter.package_name }}.embeddings import DenseEncoder, SparseEncoder
from {{ cookiecutter.package_name }}.mcp import build_server

from ..conftest import TRACE_ID, api_key, auth, make_settings, serve_on_loopback
from .support import Statuses, mcp_session, structured, text

READ_TOOLS = {"search", "ask", "list_documents", "get_document", "get_chunk"}
WRITE_TOOLS = {"upload_document", "ingestion_status", "delete_document"}


@dataclass
class Api:
    base: str
    services: Services
    spans: InMemorySpanExporter
    keys: dict[str, str]
    app: Any


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, body in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(body, encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def api(
    tmp_path_factory: pytest.TempPathFactory,
    model_dir: Path,
    dense: DenseEncoder,
    sparse: SparseEncoder,
) -> Iterator[Api]:
    root = tmp_path_factory.mktemp("mcp")
    settings = make_settings(root, model_dir, mcp_write_tools=True, max_top_k=20, capture_rate=1.0)
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    services = build_services(settings, tracer_provider=provider, dense=dense, sparse=sparse)
    acme = _write(
        root / "acme",
        {
            "policies/passwords.md": "# Password policy\n\n## Length\n\nPasswords must be at "
            "least 14 characters long.\n\n## Rotation\n\nPasswords are rotated every 180 "
            "days or after a suspected leak.\n",
            "coffee.txt": "The espresso machine on the third floor is descaled every Friday "
            "morning.\n\nOat milk is restocked on Mondays.\n",
        },
    )
    globex = _write(
        root / "globex",
        {
            "nightingale.md": "# Project Nightingale\n\nProject Nightingale launches on 3 "
            "March with a budget of 4.2 million euros.\n",
            "policies/passwords.md": "# Password policy\n\nGlobex passwords must be at least "
            "9 characters long.\n",
        },
    )
    services.ingestor.for_tenant("acme").ingest(acme, "handbook")
    services.ingestor.for_tenant("globex").ingest(globex, "handbook")
    keys = {
        "acme": api_key(settings, "acme", ("query",)),
        "acme_ingest_only": api_key(settings, "acme", ("ingest",)),
        "acme_all": api_key(settings, "acme", ("query", "ingest")),
        "globex": api_key(settings, "globex", ("query", "ingest")),
        "writer": api_key(settings, "writer", ("query", "ingest")),
    }
    app = create_app(services=services)
    with serve_on_loopback(app) as base:
        yield Api(base, services, spans, keys, app)
    services.close()


def call(api: Api, key: str | None, tool: str, arguments: dict[str, Any], **kw: Any) -> Any:
    async def go() -> Any:
        async with mcp_session(api.base, key, **kw) as client:
            return await client.call_tool(tool, arguments)

    return anyio.run(go)


def rest(api: Api, key: str, method: str, path: str, **kw: Any) -> httpx.Response:
    return httpx.request(method, api.base + path, headers=auth(api.keys[key]), timeout=60, **kw)


def test_tools_are_listed_with_the_rest_limits_in_their_schemas(api: Api) -> None:
    async def go() -> Any:
        async with mcp_session(api.base, api.keys["acme"]) as client:
            return (await client.list_tools()).tools, await client.list_resource_templates()

    tools, templates = anyio.run(go)
    by_name = {tool.name: tool for tool in tools}
    assert set(by_name) == READ_TOOLS | WRITE_TOOLS
    settings = api.services.settings
    search = by_name["search"].input_schema["properties"]
    assert search["query"]["maxLength"] == settings.max_question_chars
    assert search["query"]["minLength"] == 1
    top_k = next(s for s in search["top_k"]["anyOf"] if s.get("type") == "integer")
    assert (top_k["minimum"], top_k["maximum"]) == (1, settings.max_top_k)
    sources = next(s for s in search["sources"]["anyOf"] if s.get("type") == "array")
    assert sources["maxItems"] == settings.max_filter_values
    assert by_name["ask"].input_schema["properties"]["question"]["maxLength"] == (
        settings.max_question_chars
    )
    for name in READ_TOOLS:
        assert by_name[name].description
        assert len(by_name[name].description) > 60
        assert by_name[name].annotations
        assert by_name[name].annotations.read_only_hint
    assert by_name["delete_document"].annotations.destructive_hint
    assert [t.uri_template for t in templates.resource_templates] == ["doc://{document_id}"]


def test_writing_tools_are_off_unless_enabled(services: Services) -> None:
    assert services.settings.mcp_write_tools is False
    server = build_server(services, Authenticator(services.settings, services.keys))

    async def go() -> set[str]:
        async with Client(server) as client:
            return {tool.name for tool in (await client.list_tools()).tools}

    assert anyio.run(go) == READ_TOOLS


def test_search_returns_what_post_v1_retrieve_returns(api: Api) -> None:
    arguments = {"query": "How long must a password be?", "top_k": 3}
    result = structured(call(api, api.keys["acme"], "search", arguments))
    body = rest(api, "acme", "POST", "/v1/retrieve", json=arguments).json()
    assert [h["chunk_id"] for h in result["hits"]] == [h["chunk_id"] for h in body["hits"]]
    assert [h["text"] for h in result["hits"]] == [h["text"] for h in body["hits"]]
    assert [h["score"] for h in result["hits"]] == pytest.approx([h["score"] for h in body["hits"]])
    first = result["hits"][0]
    assert first["source"] == "policies/passwords.md"
    assert first["corpus"] == "handbook"
    assert first["title"] == "Password policy"
    assert TRACE_ID.match(result["trace_id"])
    assert result["trace_id"] != body["trace_id"]
    listed = rest(api, "acme_all", "GET", "/v1/documents").json()["documents"]
    ids = {(d["corpus"], d["source"]): d["id"] for d in listed}
    assert first["document_id"] == ids[("handbook", "policies/passwords.md")]


def test_search_with_a_source_filter_matches_rest(api: Api) -> None:
    arguments = {"query": "What is restocked?", "sources": ["coffee.txt"]}
    result = structured(call(api, api.keys["acme"], "search", arguments))
    body = rest(
        api,
        "acme",
        "POST",
        "/v1/retrieve",
        json={"query": arguments["query"], "filters": {"source": ["coffee.txt"]}},
    ).json()
    assert {h["source"] for h in result["hits"]} == {"coffee.txt"}
    assert [h["chunk_id"] for h in result["hits"]] == [h["chunk_id"] for h in body["hits"]]


def test_ask_returns_what_post_v1_query_returns(api: Api) -> None:
    question = {"question": "How often are passwords rotated?"}
    result = structured(call(api, api.keys["acme"], "ask", question))
    body = rest(api, "acme", "POST", "/v1/query", json=question).json()
    assert "180 days" in result["answer"]
    assert result["refused"] is False
    assert result["grounded"] is True
    assert {k: v for k, v in result.items() if k != "trace_id"} == {
        k: v for k, v in body.items() if k != "trace_id"
    }
    assert result["citations"][0]["source"] == "policies/passwords.md"
    assert TRACE_ID.match(result["trace_id"])


def test_ask_refuses_what_the_documents_do_not_say(api: Api) -> None:
    result = structured(
        call(api, api.keys["acme"], "ask", {"question": "Who won the 1966 World Cup final?"})
    )
    assert result["refused"] is True
    assert result["citations"] == []


def test_documents_and_chunks_can_be_listed_and_read(api: Api) -> None:
    key = api.keys["acme"]
    listed = structured(call(api, key, "list_documents", {}))["documents"]
    assert listed == rest(api, "acme_all", "GET", "/v1/documents").json()["documents"]
    passwords = next(d for d in listed if d["source"] == "policies/passwords.md")
    read = structured(call(api, key, "get_document", {"document_id": passwords["id"]}))
    assert read["document"] == passwords
    assert [c["index"] for c in read["chunks"]] == list(range(passwords["chunks"]))
    assert "14 characters" in " ".join(c["text"] for c in read["chunks"])
    assert read["next_offset"] is None
    hit = structured(call(api, key, "search", {"query": "password length", "top_k": 1}))["hits"][0]
    chunk = structured(call(api, key, "get_chunk", {"chunk_id": hit["chunk_id"]}))
    assert (chunk["chunk_id"], chunk["text"], chunk["source"]) == (
        hit["chunk_id"],
        hit["text"],
        hit["source"],
    )
    assert chunk["document_id"] == passwords["id"]

    async def resource() -> Any:
        async with mcp_session(api.base, key) as client:
            return await client.read_resource(f"doc://{passwords['id']}")

    contents = anyio.run(resource).contents
    assert "14 characters" in contents[0].text
    assert "180 days" in contents[0].text


def test_get_document_pages_through_long_documents(api: Api) -> None:
    key = api.keys["acme"]
    listed = structured(call(api, key, "list_documents", {}))["documents"]
    passwords = next(d for d in listed if d["source"] == "policies/passwords.md")
    assert passwords["chunks"] >= 2
    first = structured(call(api, key, "get_document", {"document_id": passwords["id"], "limit": 1}))
    assert len(first["chunks"]) == 1
    assert first["next_offset"] == 1
    second = structured(
        call(api, key, "get_document", {"document_id": passwords["id"], "offset": 1, "limit": 1})
    )
    assert second["chunks"][0]["index"] == 1


# --- tenants --------------------------------------------------------------------------------


def _globex_ids(api: Api) -> tuple[str, str]:
    """A document id and a chunk id of tenant globex, as an attacker might guess them."""
    listed = structured(call(api, api.keys["globex"], "list_documents", {}))["documents"]
    secret = next(d for d in listed if d["source"] == "nightingale.md")
    hit = structured(
        call(api, api.keys["globex"], "search", {"query": "Project Nightingale budget"})
    )["hits"][0]
    assert hit["source"] == "nightingale.md"
    return secret["id"], hit["chunk_id"]


def test_tenant_a_never_sees_tenant_b_through_any_tool(api: Api) -> None:
    document_id, chunk_id = _globex_ids(api)
    key = api.keys["acme"]
    searched = structured(
        call(api, key, "search", {"query": "Project Nightingale budget euros", "top_k": 20})
    )
    assert "Nightingale" not in json.dumps(searched)
    filtered = structured(
        call(api, key, "search", {"query": "Nightingale", "sources": ["nightingale.md"]})
    )
    assert filtered["hits"] == []
    answered = structured(
        call(api, key, "ask", {"question": "When does Project Nightingale launch?"})
    )
    assert "March" not in answered["answer"]
    assert answered["refused"] is True
    same_path = structured(call(api, key, "ask", {"question": "How long must a password be?"}))
    assert "14 characters" in same_path["answer"]
    assert "9 characters" not in same_path["answer"]
    listed = structured(call(api, key, "list_documents", {}))["documents"]
    assert "nightingale.md" not in {d["source"] for d in listed}
    for tool, arguments in (
        ("get_document", {"document_id": document_id}),
        ("get_chunk", {"chunk_id": chunk_id}),
        ("delete_document", {"document_id": document_id}),
    ):
        result = call(api, api.keys["acme_all"], tool, arguments)
        assert result.is_error, tool
        assert "not-found" in text(result), (tool, text(result))
        assert "Nightingale" not in text(result)

    async def resource() -> str:
        async with mcp_session(api.base, key) as client:
            try:
                read = await client.read_resource(f"doc://{document_id}")
            except Exception as exc:  # the SDK raises the server's error
                return str(exc)
            return json.dumps(read.model_dump())

    refused = anyio.run(resource)
    assert "not found" in refused.lower() or "no document" in refused.lower(), refused
    assert "Nightingale" not in refused
    # ... and globex still has its document: nothing was deleted by the attempt.
    listed = structured(call(api, api.keys["globex"], "list_documents", {}))["documents"]
    assert document_id in {d["id"] for d in listed}


# --- auth, scopes, limits ------------------------------------------------------------------


def test_a_key_without_the_query_scope_cannot_read(api: Api) -> None:
    result = call(api, api.keys["acme_ingest_only"], "search", {"query": "passwords"})
    assert result.is_error
    assert "forbidden" in text(result)
    assert "'query' scope" in text(result)


def test_writing_needs_the_ingest_scope(api: Api) -> None:
    result = call(api, api.keys["acme"], "upload_document", {"filename": "x.md", "content": "# X"})
    assert result.is_error
    assert "'ingest' scope" in text(result)


def test_tool_calls_are_rate_limited_per_key(api: Api) -> None:
    authenticator = api.app.state.authenticator
    saved = authenticator.limiter
    authenticator.limiter = RateLimiter(per_minute=1, burst=2)
    try:

        async def go() -> list[Any]:
            async with mcp_session(api.base, api.keys["acme"]) as client:
                return [await client.call_tool("list_documents", {}) for _ in range(3)]

        results = anyio.run(go)
    finally:
        authenticator.limiter = saved
    assert [r.is_error for r in results] == [False, False, True]
    assert "too-many-requests" in text(results[2])
    assert "retry in" in text(results[2])


# --- hostile input -------------------------------------------------------------------------


HOSTILE: list[tuple[str, dict[str, Any]]] = [
    ("search", {"query": 3}),
    ("search", {"query": "passwords", "top_k": "many"}),
    ("search", {"query": "x" * 2001}),
    ("search", {"query": "   "}),
    ("search", {"query": "passwords", "top_k": 10**9}),
    ("search", {"query": "passwords", "top_k": -1}),
    ("search", {"query": "passwords", "sources": ["a.md"] * 21}),
    ("search", {"query": "passwords", "sources": ["x" * 5000]}),
    ("search", {"query": "passwords", "sources": "coffee.txt"}),
    ("search", {"query": "passwords", "sources": [{"$ne": 1}]}),
    ("search", {}),
    ("ask", {"question": None}),
    ("ask", {"question": "\u0000" * 3000}),
    ("get_document", {"document_id": "../../etc/passwd"}),
    ("get_document", {"document_id": "00000000-0000-0000-0000-000000000000"}),
    ("get_document", {"document_id": "00000000-0000-0000-0000-000000000000", "limit": 10**6}),
    ("get_chunk", {"chunk_id": "' OR 1=1 --"}),
    ("get_chunk", {"chunk_id": "6f1c2a52-3f8e-4d0b-9a57-2b3f3c1d9e10"}),
    ("list_documents", {"corpus": "x" * 10_000}),
    ("upload_document", {"filename": "../../evil.sh", "content": "echo"}),
    ("upload_document", {"filename": "a.pdf", "content": "not base64!", "encoding": "base64"}),
    ("upload_document", {"filename": "a.md", "content": "x", "encoding": "rot13"}),
    ("ingestion_status", {"job_id": "../../x"}),
    ("no_such_tool", {}),
]


def test_hostile_inputs_are_mcp_errors_never_5xx(api: Api) -> None:
    statuses = Statuses()

    async def go() -> list[Any]:
        async with mcp_session(api.base, api.keys["acme_all"], statuses=statuses) as client:
            return [await client.call_tool(tool, arguments) for tool, arguments in HOSTILE]

    results = anyio.run(go)
    for (tool, arguments), result in zip(HOSTILE, results, strict=True):
        assert result.is_error, (tool, arguments, text(result))
        assert "Traceback" not in text(result)
        assert 'File "' not in text(result)
    assert statuses.seen
    assert all(status < 500 for status in statuses.seen), statuses.seen


def test_an_unexpected_failure_is_an_error_result_naming_the_trace(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(**_: Any) -> list[Any]:
        raise RuntimeError("disk on fire at /secret/path")

    monkeypatch.setattr(api.services.store, "chunks", broken)
    result = call(
        api, api.keys["acme"], "get_chunk", {"chunk_id": "6f1c2a52-3f8e-4d0b-9a57-2b3f3c1d9e10"}
    )
    assert result.is_error
    assert "trace id" in text(result)
    assert "/secret/path" not in text(result)


# --- audit and traces ----------------------------------------------------------------------


def _audit(api: Api) -> list[dict[str, Any]]:
    lines = api.services.settings.audit_path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def _ancestors(span: ReadableSpan, spans: dict[int, ReadableSpan]) -> list[str]:
    names = []
    while span.parent is not None and span.parent.span_id in spans:
        span = spans[span.parent.span_id]
        names.append(span.name)
    return names


def test_each_call_is_audited_with_the_tool_key_tenant_and_trace(api: Api) -> None:
    api.spans.clear()
    asked = structured(
        call(api, api.keys["acme"], "ask", {"question": "How often are passwords rotated?"})
    )
    key_id = api.keys["acme"].split("_")[1]
    line = next(e for e in reversed(_audit(api)) if e.get("tool") == "ask")
    assert line["event"] == "query"
    assert line["key_id"] == key_id
    assert line["tenant"] == "acme"
    assert line["trace_id"] == asked["trace_id"]
    assert line["grounded"] is True
    assert line["refused"] is False
    assert line["cited"] == [c["chunk_id"] for c in asked["citations"]]
    assert "question" in line
    assert "text" not in line["question"]

    searched = structured(call(api, api.keys["acme"], "search", {"query": "espresso"}))
    line = next(e for e in reversed(_audit(api)) if e.get("tool") == "search")
    assert line["event"] == "retrieve"
    assert line["trace_id"] == searched["trace_id"]
    assert [s["chunk_id"] for s in line["sources"]] == [h["chunk_id"] for h in searched["hits"]]

    refused = call(
        api,
        api.keys["acme_ingest_only"],
        "get_chunk",
        {"chunk_id": searched["hits"][0]["chunk_id"]},
    )
    assert refused.is_error
    line = _audit(api)[-1]
    assert (line["event"], line["tool"], line["error"], line["status"]) == (
        "tool_error",
        "get_chunk",
        "ForbiddenError",
        403,
    )


def test_search_and_ask_are_captured_for_monitor(api: Api) -> None:
    asked = structured(
        call(api, api.keys["acme"], "ask", {"question": "When is the espresso descaled?"})
    )
    searched = structured(call(api, api.keys["acme"], "search", {"query": "oat milk"}))
    api.services.capture.flush()
    records = {r.trace_id: r for r in api.services.capture.sink.read(0.0, time.time() + 60)}
    assert records[asked["trace_id"]].refused is False
    assert records[asked["trace_id"]].tenant == "acme"
    assert records[searched["trace_id"]].refused is None  # a retrieval
    assert records[searched["trace_id"]].chunk_ids == [h["chunk_id"] for h in searched["hits"]]


def test_execute_tool_span_parents_retrieval_and_answer(api: Api) -> None:
    api.spans.clear()
    asked = structured(
        call(api, api.keys["acme"], "ask", {"question": "How often are passwords rotated?"})
    )
    spans = {s.context.span_id: s for s in api.spans.get_finished_spans()}
    tool = next(s for s in spans.values() if s.name == "execute_tool ask")
    assert format(tool.context.trace_id, "032x") == asked["trace_id"]
    attributes = dict(tool.attributes or {})
    assert attributes["gen_ai.operation.name"] == "execute_tool"
    assert attributes["gen_ai.tool.name"] == "ask"
    assert attributes["rag.tenant"] == "acme"
    retrieval = next(s for s in spans.values() if s.name.startswith("retrieval "))
    answer = next(s for s in spans.values() if s.name.startswith("answer "))
    for child in (retrieval, answer):
        assert "execute_tool ask" in _ancestors(child, spans)
    # The HTTP server span of POST /mcp is the tool span's ancestor: one trace per call.
    assert any(name.startswith("POST /mcp") for name in _ancestors(tool, spans))


def test_a_failed_call_marks_its_span(api: Api) -> None:
    api.spans.clear()
    call(api, api.keys["acme_ingest_only"], "search", {"query": "passwords"})
    tool = next(s for s in api.spans.get_finished_spans() if s.name == "execute_tool search")
    assert tool.status.status_code.name == "ERROR"
    assert dict(tool.attributes or {})["error.type"] == "ForbiddenError"


# --- writing -------------------------------------------------------------------------------


def test_upload_then_search_then_delete(api: Api) -> None:
    key = api.keys["writer"]
    job = structured(
        call(
            api,
            key,
            "upload_document",
            {
                "filename": "../../onboarding.md",
                "content": "# Onboarding\n\nNew starters get a laptop and a badge on day one.\n",
            },
        )
    )
    assert job["files"] == ["onboarding.md"]
    deadline = time.monotonic() + 60
    while job["status"] not in ("succeeded", "failed"):
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
        job = structured(call(api, key, "ingestion_status", {"job_id": job["id"]}))
    assert job["status"] == "succeeded", job
    hits = structured(call(api, key, "search", {"query": "What do new starters get?"}))["hits"]
    assert hits[0]["source"] == "onboarding.md"
    deleted = structured(call(api, key, "delete_document", {"document_id": hits[0]["document_id"]}))
    assert deleted["source"] == "onboarding.md"
    assert deleted["chunks_deleted"] >= 1
    assert (
        structured(call(api, key, "search", {"query": "What do new starters get?"}))["hits"] == []
    )
    events = [(e["event"], e.get("tool")) for e in _audit(api) if e["tenant"] == "writer"]
    assert ("upload", "upload_document") in events
    assert ("delete", "delete_document") in events


def test_a_binary_upload_travels_as_base64(api: Api) -> None:
    import base64

    data = "id,question,answer\n1,Where is the printer?,Next to the lifts on floor 2\n"
    job = structured(
        call(
            api,
            api.keys["writer"],
            "upload_document",
            {
                "filename": "faq.csv",
                "content": base64.b64encode(data.encode()).decode(),
                "encoding": "base64",
            },
        )
    )
    assert job["files"] == ["faq.csv"]
