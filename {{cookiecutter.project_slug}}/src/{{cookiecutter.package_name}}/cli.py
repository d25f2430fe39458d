"""Command line: ingest, ask, serve, mcp, eval, demo, keys, store.

Errors print one actionable line and exit 2.

Heavy modules (the container and everything it builds, the API, the eval harness) are
imported by the command that uses them, so `--help` starts at once and `ask` pays only for
what it runs; test_cli_imports.py keeps it so.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import socket
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn

from pydantic import ValidationError

from .errors import ConfigurationError, ServiceError, StoreInUseError
from .ingest.formats import formats_help
from .settings import CONSOLE_SCRIPT, Settings
from .wording import plural

if TYPE_CHECKING:
    from .api.schemas import QueryResponse
    from .container import Services
    from .ingest import FileOutcome
    from .keys import KeyStore

DEMO_QUESTIONS = (
    "How many days of paid leave do employees get?",
    "When does the FleetOS REST API v1 reach end of life?",
    "How long is the warranty on NR-7 batteries?",
)


class TerminalProgress:
    """A progress bar with counts and ETA on stderr, only when stderr is a terminal (logs
    and CI output stay clean)."""

    def __init__(self) -> None:
        self._bar: Any = None

    def __enter__(self) -> TerminalProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()

    def start(self, total: int) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=total, unit="file", file=sys.stderr, disable=not sys.stderr.isatty())

    def begin(self, source: str) -> None:
        pass  # the bar moves on outcomes

    def advance(self, outcome: FileOutcome) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(outcome.status, refresh=False)
            self._bar.update(1)


class _Parser(argparse.ArgumentParser):
    """Usage mistakes are one `error:` line too (argparse prints the whole usage first), with
    where to look; exit 2 as argparse does."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message}; see `{self.prog} --help`.\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=CONSOLE_SCRIPT, description="Ingest documents, ask questions, serve the API, evaluate."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    ingest = commands.add_parser(
        "ingest",
        help="sync a folder of documents into the store",
        epilog=formats_help(),  # from the formats table, so it lists what the loader reads
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ingest.add_argument("path", type=Path, help="folder of files in the formats listed below")
    ingest.add_argument("--corpus", help="corpus name (default: the folder's name)")
    ingest.add_argument("--report", type=Path, help="also write the report as JSON here")
    ingest.add_argument(
        "--dry-run", action="store_true", help="show what would change; write nothing"
    )
    ingest.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 when any file, or any record or line in one, is skipped",
    )

    ingest.add_argument("--tenant", help="tenant the documents belong to (default: RAG_TENANT)")

    keys = commands.add_parser("keys", help="create, list or revoke API keys")
    key_actions = keys.add_subparsers(dest="action", required=True)
    create = key_actions.add_parser("create", help="create a key; prints it once")
    create.add_argument("--tenant", required=True, help="the tenant whose documents it reaches")
    create.add_argument(
        "--scopes", default="query", help="comma-separated: query, ingest, admin (default query)"
    )
    create.add_argument("--name", default="", help="a note on who or what uses the key")
    key_actions.add_parser("list", help="list key ids, tenants and scopes (never the keys)")
    revoke = key_actions.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id")

    ask = commands.add_parser("ask", help="answer a question with citations")
    ask.add_argument("question")
    ask.add_argument("--top-k", type=int, default=None)
    ask.add_argument("--source", action="append", help="only search this source (repeatable)")
    ask.add_argument("--json", action="store_true", help="print the POST /v1/query body")

    serve = commands.add_parser("serve", help="run the HTTP API")
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)

    evaluate = commands.add_parser(
        "eval",
        help="run the golden set and the go/no-go gate, or draft a golden set",
        description="`eval` (= `eval run`) scores the golden set and exits 1 on NO-GO; "
        "`eval generate` drafts questions from your documents with the judge LLM; "
        "`eval calibrate` fits the refusal model on the golden set's answerable and "
        "unanswerable rows and writes it (RAG_REFUSAL_MODEL_PATH, default "
        "evals/refusal_model.json) with its fit report; `eval harvest` drafts golden-set "
        "rows from captured production questions (down-voted, refused, drifted).",
    )
    evaluate.add_argument(
        "action", nargs="?", choices=("run", "generate", "calibrate", "harvest"), default="run"
    )
    evaluate.add_argument("--golden", type=Path, default=None, help="golden set JSONL")
    evaluate.add_argument("--thresholds", type=Path, default=None)
    evaluate.add_argument(
        "--baseline",
        type=Path,
        nargs="?",
        const=True,
        default=None,
        help="compare with a baseline (default file: RAG_EVAL_BASELINE); fail on regression",
    )
    evaluate.add_argument(
        "--save-baseline",
        type=Path,
        nargs="?",
        const=True,
        default=None,
        help="write this run's metrics as the new baseline (default file: RAG_EVAL_BASELINE)",
    )
    evaluate.add_argument(
        "--allow-unreviewed", action="store_true", help="also run unreviewed draft rows"
    )
    evaluate.add_argument(
        "--judge", action="store_true", help="add LLM-judge metrics (needs RAG_JUDGE_BASE_URL)"
    )
    evaluate.add_argument(
        "--corpus",
        type=Path,
        default=None,
        help="documents the golden set is about (default RAG_EVAL_CORPUS); a run makes "
        "<collection>_eval hold exactly these",
    )
    evaluate.add_argument(
        "--out",
        type=Path,
        default=None,
        help="generate: output JSONL; calibrate: the model file (default "
        "RAG_REFUSAL_MODEL_PATH, else evals/refusal_model.json)",
    )
    evaluate.add_argument(
        "--max-answerable-refused",
        type=float,
        default=0.10,
        help="calibrate: the operating point refuses at most this share of answerable rows",
    )
    evaluate.add_argument("--size", type=int, default=20, help="generate: questions to draft")
    evaluate.add_argument(
        "--overwrite", action="store_true", help="generate, harvest: replace --out"
    )
    evaluate.add_argument(
        "--days", type=float, default=7.0, help="harvest: captured traffic of the last N days"
    )

    mcp = commands.add_parser(
        "mcp",
        help="serve the MCP tools over stdio (for desktop clients)",
        description="Serve the MCP tools over stdin/stdout as the key in RAG_MCP_KEY. While "
        "the API holds the embedded store, messages go through its /mcp endpoint instead.",
    )
    mcp.add_argument("--url", help="always go through this /mcp endpoint (e.g. a remote API)")

    commands.add_parser("demo", help="ingest the sample corpus and answer three questions")

    store = commands.add_parser("store", help="move the vector store to another engine")
    store_actions = store.add_subparsers(dest="action", required=True)
    move = store_actions.add_parser(
        "migrate",
        help="copy RAG_COLLECTION with its vectors to another engine (no re-embedding)",
        description="Copy the collection RAG_COLLECTION, vectors and payloads, from one engine "
        "to another, then check it: equal counts, and sample queries with the same top "
        "results. The source is left as it was. server = RAG_QDRANT_URL.",
    )
    move.add_argument("--from", dest="source", choices=("local", "edge", "server"), required=True)
    move.add_argument("--to", dest="target", choices=("edge", "server", "local"), required=True)
    move.add_argument("--report", type=Path, help="also write the check as JSON here")

    monitor = commands.add_parser(
        "monitor",
        help="report on captured traffic (drift, refusals, operations); exit 1 on a breach",
    )
    monitor.add_argument("--days", type=float, default=7.0, help="window: the last N days")
    monitor.add_argument(
        "--reference",
        choices=("golden", "previous"),
        default="golden",
        help="compare with the golden set's questions or the previous window",
    )
    monitor.add_argument(
        "--thresholds", type=Path, default=Path("evals/monitor.toml"), help="limits file"
    )
    monitor.add_argument("--out", type=Path, default=None, help="report folder")
    monitor.add_argument(
        "--judge-sample",
        type=int,
        default=None,
        metavar="N",
        help="captured answers the LLM judge scores when RAG_JUDGE_BASE_URL is set "
        "(default RAG_MONITOR_JUDGE_SAMPLE; 0 = none)",
    )
    return parser


def _side_collection(settings: Settings, purpose: str) -> Settings:
    """Demo and eval data live in their own collection, never mixed into what `serve` answers
    from, and the eval measures exactly the corpus its golden set is about."""
    return settings.model_copy(update={"collection": f"{settings.collection}_{purpose}"})


def _answer(
    services: Services, question: str, top_k: int | None, sources: list[str] | None
) -> QueryResponse:
    from .api.schemas import QueryResponse
    from .ask import Question

    tracer = services.tracer_provider.get_tracer(__name__)
    with tracer.start_as_current_span("cli ask"):
        asked = services.asker.ask(Question(question, services.settings.tenant, top_k, sources))
        return QueryResponse.of(asked.answer, asked.trace_id)


def _print_answer(question: str, response: QueryResponse) -> None:
    print(f"Q: {question}")
    print(textwrap.fill(f"A: {response.answer}", width=100, subsequent_indent="   "))
    for number, citation in enumerate(response.citations, start=1):
        snippet = " ".join(citation.text.split())[:90]
        print(f"   [{number}] {citation.source} (score {citation.score:.3f}): {snippet}...")
    if response.prompt_version is not None:  # an LLM wrote it: say how, and at what cost
        cost = "unknown" if response.cost_usd is None else f"${response.cost_usd:.6f}"
        flags = [] if response.grounded else ["NOT GROUNDED"]
        flags += ["cached"] if response.cached else []
        flags += ["fallback"] if response.fallback_used else []
        print(
            f"   model {response.model}, {response.usage.input_tokens} in / "
            f"{response.usage.output_tokens} out tokens, cost {cost}"
            + "".join(f", {flag}" for flag in flags)
        )
    print(f"   trace id: {response.trace_id}")


def _eval(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "harvest":
        from .container import build_services
        from .monitor.harvest import run_harvest

        services = build_services(settings)
        try:
            out = args.out or Path("evals/golden.harvest.jsonl")
            return run_harvest(services, args.days, out, args.overwrite)
        finally:
            services.close()
    if args.action == "generate":
        from .evals.generate import generate_golden_set

        out = args.out or Path("evals/golden.draft.jsonl")
        corpus = args.corpus or settings.eval_corpus
        written = generate_golden_set(settings, corpus, out, args.size, overwrite=args.overwrite)
        print(
            f"Wrote {plural(written, 'draft question')} to {out}, marked "
            '"reviewed": false. Review each one (question, answer, gold sources) before the '
            "gate will use them."
        )
        return 0

    if args.action == "calibrate":
        return _calibrate(args, settings)

    from .evals.gate import GateOptions, run_gate

    def default_to_setting(value: Path | bool | None) -> Path | None:
        return settings.eval_baseline if value is True else value or None

    options = GateOptions(
        golden=args.golden or settings.eval_golden_set,
        thresholds=args.thresholds or settings.eval_thresholds,
        corpus=args.corpus or settings.eval_corpus,
        report_dir=settings.eval_report_dir,
        baseline=default_to_setting(args.baseline),
        save_baseline=default_to_setting(args.save_baseline),
        allow_unreviewed=args.allow_unreviewed,
    )
    judge = None
    if args.judge:
        from .evals.judge import JudgeScorer

        # instructor logs every retried judge call at ERROR; failures land in the report.
        logging.getLogger("instructor").setLevel(logging.CRITICAL)
        judge = JudgeScorer(settings)
    from .container import build_services

    services = build_services(_side_collection(settings, "eval"))
    try:
        return run_gate(services, options, judge)
    finally:
        services.close()


def _calibrate(args: argparse.Namespace, settings: Settings) -> int:
    from .errors import BadRequestError
    from .evals.calibrate import calibrate, calibration_items, describe
    from .evals.gate import load_thresholds, sync_eval_corpus
    from .evals.metrics import require_eval_group

    require_eval_group("`eval calibrate`")
    if not 0.0 <= args.max_answerable_refused < 1.0:
        raise BadRequestError(
            f"--max-answerable-refused {args.max_answerable_refused} must be a share in [0, 1)"
        )
    golden = args.golden or settings.eval_golden_set
    items = calibration_items(golden, allow_unreviewed=args.allow_unreviewed)
    k, _ = load_thresholds(args.thresholds or settings.eval_thresholds)
    out = args.out or settings.refusal_model_path or Path("evals/refusal_model.json")
    from .container import build_services

    services = build_services(_side_collection(settings, "eval"))
    try:
        corpus = args.corpus or settings.eval_corpus
        if corpus is not None:
            sync_eval_corpus(services, corpus)
        model = calibrate(
            services, items, golden, out, k=k, max_answerable_refused=args.max_answerable_refused
        )
    finally:
        services.close()
    print(describe(model, out))
    if (
        settings.refusal_model_path is None
        or settings.refusal_model_path.resolve() != out.resolve()
    ):
        print(f"Use it: RAG_REFUSAL_MODEL_PATH={out} and RAG_REFUSAL=model.")
    return 0


def _keys(args: argparse.Namespace, settings: Settings) -> int:
    from .keys import KeyStore, keys_in_store, open_keys

    if not keys_in_store(settings):
        return _manage_keys(args, KeyStore(settings.keys_path))
    from .store import open_store

    vectors = open_store(settings)  # keys on its shelf, which every replica reads
    try:
        return _manage_keys(args, open_keys(settings, vectors))
    finally:
        vectors.close()


def _manage_keys(args: argparse.Namespace, store: KeyStore) -> int:
    from .keys import parse_scopes

    if args.action == "create":
        key, token = store.create(args.tenant, parse_scopes(args.scopes), args.name)
        print(token)
        print(
            f"Key {key.id} for tenant {key.tenant!r}, scopes {','.join(key.scopes)}. It is "
            f"shown only this once (only its hash is kept in {store.location}); send it as "
            "`Authorization: Bearer <key>`.",
            file=sys.stderr,
        )
    elif args.action == "list":
        for key in store.keys().values():
            note = f"  {key.name}" if key.name else ""
            print(f"{key.id}  {key.tenant:<20} {','.join(key.scopes):<18} {key.created_at}{note}")
    else:
        key = store.revoke(args.key_id)
        print(f"Revoked key {key.id} (tenant {key.tenant!r}).")
    return 0


def _write_report(path: Path, text: str) -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:  # main's OSError line would blame RAG_DATA_DIR
        raise ConfigurationError(
            f"cannot write the report to {path}: {exc.strerror or exc}; give --report a file "
            "in a folder that exists and is writable (the documents were ingested)."
        ) from exc


def _listen(host: str, port: int) -> socket.socket:
    """The API's socket, bound before the store and models are loaded: a port in use is one
    line at once, and uvicorn serves on this very socket (nothing can take the port between
    a check and the start)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    # As uvicorn does: a restarted server may rebind while old connections are in TIME_WAIT.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            fix = (
                f"port {port} on {host} is already in use (another server, or an earlier "
                "`serve` still running); choose another with --port or RAG_PORT, or stop it."
            )
        elif exc.errno == errno.EACCES:
            fix = (
                f"port {port} needs privileges here; use a port above 1023 with --port or RAG_PORT."
            )
        else:  # not an address of this machine, or a name that does not resolve
            fix = (
                f"cannot listen on {host} ({exc.strerror or exc}); use an address of this "
                "machine with --host or RAG_HOST (127.0.0.1, or 0.0.0.0 for every interface)."
            )
        raise ConfigurationError(fix) from exc
    return sock


def _serve(host: str, port: int, settings: Settings) -> int:
    import uvicorn

    from .api import create_app

    sock = _listen(host, port)
    with sock:
        app = create_app(settings)
        jobs = app.state.services.jobs

        class Server(uvicorn.Server):
            def handle_exit(self, sig: int, frame: FrameType | None) -> None:
                # At the signal, not after open requests end: no new ingestion turn starts,
                # and the grace for the file being ingested counts from now.
                jobs.stop()
                super().handle_exit(sig, frame)

        # Embedded Qdrant allows one process: one worker. Scale out with a Qdrant server.
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            workers=1,
            log_config=None,  # uvicorn's own lines go through our (JSON) logging too
            timeout_graceful_shutdown=max(1, round(settings.shutdown_grace_s)),
        )
        server = Server(config)
        server.run(sockets=[sock])
    if not server.started:  # the app's startup failed; uvicorn logged why
        print("error: the API did not start; the log lines above say why.", file=sys.stderr)
        return 2
    return 0


def _serve_mcp(settings: Settings, url: str | None) -> int:
    # Imported by name: a project generated with mcp_server=no has no mcp/ package.
    try:
        module = importlib.import_module(f"{__package__}.mcp")
    except ModuleNotFoundError as error:
        if error.name != f"{__package__}.mcp":
            raise
        print(
            "error: this project was generated without the MCP server (mcp_server=no)",
            file=sys.stderr,
        )
        return 2
    return int(module.serve_stdio(settings, url))


def _run(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "keys":
        return _keys(args, settings)
    if args.command == "serve":
        return _serve(args.host or settings.host, args.port or settings.port, settings)
    if args.command == "eval":
        return _eval(args, settings)
    if args.command == "store":
        from .store.migrate import migrate

        moved = migrate(settings, args.source, args.target)
        print(moved.summary())
        if args.report:
            _write_report(args.report, moved.to_json())
        return 0 if moved.ok else 1
    if args.command == "mcp":
        return _serve_mcp(settings, args.url)

    if args.command == "demo":
        settings = _side_collection(settings, "demo")
    from .container import build_services

    try:
        services = build_services(settings)
    except StoreInUseError as exc:
        if args.command != "ingest":
            raise
        raise StoreInUseError(
            f"{exc.message} While the API runs, add documents through it: curl -F "
            f"files=@report.pdf http://{settings.host}:{settings.port}/v1/documents "
            '-H "Authorization: Bearer <key from `keys create --scopes ingest`>" '
            f"(they land in corpus {settings.upload_corpus!r})."
        ) from exc
    try:
        if args.command == "ingest":
            with TerminalProgress() as progress:
                ingestor = services.ingestor.for_tenant(args.tenant or settings.tenant)
                report = ingestor.ingest(
                    args.path, args.corpus, dry_run=args.dry_run, progress=progress
                )
            for outcome in report.files:
                detail = f" ({plural(outcome.chunks, 'chunk')})" if outcome.chunks else ""
                reason = f": {outcome.reason}" if outcome.reason else ""
                print(f"  {outcome.status:<9} {outcome.source}{detail}{reason}")
                for warning in outcome.warnings:
                    print(f"            warning: {warning}")
            print(report.summary())
            if args.report:
                _write_report(args.report, report.to_json())
            skipped = report.counts["skipped"]
            if args.strict and (skipped or report.warnings):
                print(
                    f"error: {plural(skipped, 'file')} skipped and "
                    f"{plural(report.warnings, 'warning')} (--strict); see the reasons above.",
                    file=sys.stderr,
                )
                return 1
            return 0
        if args.command == "ask":
            response = _answer(services, args.question, args.top_k, args.source)
            if args.json:
                print(response.model_dump_json(indent=2))
            else:
                _print_answer(args.question, response)
            return 0
        if args.command == "monitor":
            from .monitor.command import run_monitor

            out = args.out or settings.data_dir / "monitor"
            return run_monitor(
                services,
                args.days,
                args.reference,
                args.thresholds,
                out,
                judge_sample=args.judge_sample,
            )
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


# The ingest pipeline logs each run's summary (with its counts) for the API's uploads, where
# nobody reads stdout. Commands that print that summary do not repeat it on stderr; an OTLP
# logs exporter, a handler of its own, still gets the record.
_INGEST_LOGGER = f"{__package__}.ingest.pipeline"


def _not_the_printed_summary(record: logging.LogRecord) -> bool:
    return not (record.name == _INGEST_LOGGER and hasattr(record, "counts"))


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
    from .telemetry import configure_logging

    stderr_log = configure_logging(settings)
    if args.command in ("ingest", "demo", "eval"):
        stderr_log.addFilter(_not_the_printed_summary)
    try:
        return _run(args, settings)
    except ServiceError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    except OSError as exc:  # a read-only, missing or full data folder: one line, not a trace
        where = f" {exc.filename}" if exc.filename else ""
        print(
            f"error: cannot use{where}: {exc.strerror or exc}; RAG_DATA_DIR and RAG_MODEL_DIR "
            "must be writable folders on a disk with free space.",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        return 130
