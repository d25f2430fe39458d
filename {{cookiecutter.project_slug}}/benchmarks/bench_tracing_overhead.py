"""What tracing costs a retrieval: spans exported over OTLP vs no exporter at all.

Runs, in one process, on the same store and models:
  off  Retriever.retrieve with a TracerProvider without processors (spans get ids, go nowhere)
  on   the same with a BatchSpanProcessor and the OTLP/HTTP exporter, sending to a tiny
       receiver on 127.0.0.1 started here (it parses nothing, it answers 200)
  on+  as `on`, with RAG_TRACE_CONTENT and RAG_TRACE_OPENINFERENCE attributes as well
The variants alternate query by query, so all see the same machine state. The ratios
(variant / off) are the figures to watch; absolute numbers depend on the machine.

    uv run python benchmarks/bench_tracing_overhead.py [--copies 1] [--rounds 8]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from {{ cookiecutter.package_name }}.container import build_services
from {{ cookiecutter.package_name }}.domain import Query
from {{ cookiecutter.package_name }}.evals.metrics import percentile
from {{ cookiecutter.package_name }}.retrieve import Retriever
from {{ cookiecutter.package_name }}.settings import Settings
from {{ cookiecutter.package_name }}.telemetry import SpanContent

PROJECT = Path(__file__).resolve().parents[1]


class Receiver(BaseHTTPRequestHandler):
    requests: ClassVar[int] = 0
    received_bytes: ClassVar[int] = 0

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.requests += 1
        Receiver.received_bytes += len(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def exporting_provider(endpoint: str) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    return provider


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=1, help="copies of the sample corpus")
    parser.add_argument("--rounds", type=int, default=8, help="passes over the golden questions")
    args = parser.parse_args()

    golden = PROJECT / "evals" / "golden.jsonl"
    lines = golden.read_text(encoding="utf-8").splitlines()
    questions = [json.loads(line)["question"] for line in lines if line.strip()] * args.rounds

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}/v1/traces"

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for n in range(args.copies):
            shutil.copytree(PROJECT / "data" / "sample", workdir / "corpus" / f"copy{n}")
        settings = Settings(_env_file=None, data_dir=workdir / "data", model_dir=workdir / "models")
        services = build_services(settings, tracer_provider=TracerProvider())
        on, on_plus = exporting_provider(endpoint), exporting_provider(endpoint)
        s = services
        variants: dict[str, Retriever] = {
            "off": s.retriever,
            "on": Retriever.from_settings(
                settings, s.store, s.dense, s.sparse, on.get_tracer(__name__)
            ),
            "on+": Retriever.from_settings(
                settings,
                s.store,
                s.dense,
                s.sparse,
                on_plus.get_tracer(__name__),
                content=SpanContent(record_content=True, openinference=True),
            ),
        }
        latencies: dict[str, list[float]] = {name: [] for name in variants}
        try:
            services.ingestor.ingest(workdir / "corpus")
            top_k = settings.default_top_k
            for retriever in variants.values():  # warm-up: first calls load lazily
                retriever.retrieve(Query(text=questions[0], top_k=top_k, tenant="default"))
            for question in questions:
                for name, retriever in variants.items():
                    started = time.perf_counter()
                    retriever.retrieve(Query(text=question, top_k=top_k, tenant="default"))
                    latencies[name].append((time.perf_counter() - started) * 1000)
        finally:
            on.shutdown()  # flushes the batch processors: every span reaches the receiver
            on_plus.shutdown()
            services.close()
            server.shutdown()
            server.server_close()

    print(
        f"{len(questions)} queries per variant, top_k={top_k}; receiver got "
        f"{Receiver.requests} OTLP requests ({Receiver.received_bytes / 1024:.0f} KiB)"
    )
    print(f"{'measure':<18}" + "".join(f"{name:>10}" for name in variants) + "  ratios vs off")
    for label, q in (("retrieve p50 ms", 50), ("retrieve p95 ms", 95)):
        values = {name: percentile(latencies[name], q) for name in variants}
        ratios = "  ".join(
            f"{name} {values[name] / values['off']:.3f}" for name in variants if name != "off"
        )
        print(f"{label:<18}" + "".join(f"{v:>10.2f}" for v in values.values()) + f"  {ratios}")


if __name__ == "__main__":
    main()
