"""Command line: ingest, ask, serve, eval, demo. Errors print one actionable line, exit 2."""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from .api.schemas import QueryResponse
from .container import Services, build_services
from .domain import Query
from .errors import ServiceError
from .settings import CONSOLE_SCRIPT, Settings
from .telemetry import current_trace_id

DEMO_QUESTIONS = (
    "How many days of paid leave do employees get?",
    "When does the FleetOS REST API v1 reach end of life?",
    "How long is the warranty on NR-7 batteries?",
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=CONSOLE_SCRIPT, description="Ingest documents, ask questions, serve the API, evaluate."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    ingest = commands.add_parser("ingest", help="sync a folder of documents into the store")
    ingest.add_argument("path", type=Path, help="folder of .md, .txt and .html files")
    ingest.add_argument("--corpus", help="corpus name (default: the folder's name)")
    ingest.add_argument("--report", type=Path, help="also write the report as JSON here")

    ask = commands.add_parser("ask", help="answer a question with citations")
    ask.add_argument("question")
    ask.add_argument("--top-k", type=int, default=None)
    ask.add_argument("--source", action="append", help="only search this source (repeatable)")
    ask.add_argument("--json", action="store_true", help="print the POST /v1/query body")

    serve = commands.add_parser("serve", help="run the HTTP API")
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)

    evaluate = commands.add_parser("eval", help="run the golden set and the go/no-go gate")
    evaluate.add_argument("--golden", type=Path, default=None)
    evaluate.add_argument("--thresholds", type=Path, default=None)

    commands.add_parser("demo", help="ingest the sample corpus and answer three questions")
    return parser


def _side_collection(settings: Settings, purpose: str) -> Settings:
    """Demo and eval data live in their own collection, never mixed into what `serve` answers
    from, and the eval measures exactly the corpus its golden set is about."""
    return settings.model_copy(update={"collection": f"{settings.collection}_{purpose}"})


def _answer(
    services: Services, question: str, top_k: int | None, sources: list[str] | None
) -> QueryResponse:
    tracer = services.tracer_provider.get_tracer(__name__)
    with tracer.start_as_current_span("cli ask"):
        k = top_k or services.settings.default_top_k
        hits = services.retriever.retrieve(Query(text=question, top_k=k, sources=sources))
        answer = services.answerer.answer(question, hits)
        return QueryResponse.of(answer, current_trace_id())


def _print_answer(question: str, response: QueryResponse) -> None:
    print(f"Q: {question}")
    print(textwrap.fill(f"A: {response.answer}", width=100, subsequent_indent="   "))
    for number, citation in enumerate(response.citations, start=1):
        snippet = " ".join(citation.text.split())[:90]
        print(f"   [{number}] {citation.source} (score {citation.score:.3f}): {snippet}...")
    print(f"   trace id: {response.trace_id}")


def _run(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "serve":
        import uvicorn

        from .api import create_app

        # Embedded Qdrant allows one process: one worker. Scale out with a Qdrant server.
        uvicorn.run(
            create_app(settings),
            host=args.host or settings.host,
            port=args.port or settings.port,
            workers=1,
        )
        return 0
    if args.command == "eval":
        from .evals.gate import run_gate

        golden = args.golden or settings.eval_golden_set
        thresholds = args.thresholds or settings.eval_thresholds
        services = build_services(_side_collection(settings, "eval"))
        try:
            return run_gate(
                services, golden, thresholds, settings.eval_corpus, settings.eval_report_dir
            )
        finally:
            services.close()

    if args.command == "demo":
        settings = _side_collection(settings, "demo")
    services = build_services(settings)
    try:
        if args.command == "ingest":
            report = services.ingestor.ingest(args.path, args.corpus)
            for outcome in report.files:
                detail = f" ({outcome.chunks} chunks)" if outcome.chunks else ""
                reason = f": {outcome.reason}" if outcome.reason else ""
                print(f"  {outcome.status:<9} {outcome.source}{detail}{reason}")
            print(report.summary())
            if args.report:
                args.report.write_text(report.to_json(), encoding="utf-8")
            return 0
        if args.command == "ask":
            response = _answer(services, args.question, args.top_k, args.source)
            if args.json:
                print(response.model_dump_json(indent=2))
            else:
                _print_answer(args.question, response)
            return 0
        if args.command == "demo":
            print(f"Demo collection: {settings.collection}")
            print(services.ingestor.ingest(settings.eval_corpus).summary(), end="\n\n")
            for question in DEMO_QUESTIONS:
                _print_answer(question, _answer(services, question, None, None))
                print()
            return 0
    finally:
        services.close()
    raise AssertionError(f"unhandled command {args.command}")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        for error in exc.errors():
            name = (
                "RAG_" + "_".join(str(p) for p in error["loc"]).upper()
                if error["loc"]
                else "settings"
            )
            print(f"error: {name}: {error['msg']}", file=sys.stderr)
        return 2
    try:
        return _run(args, settings)
    except ServiceError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
