"""What the LLM answerer adds to a model call: context, prompt, spans, citation check, cache.

Runs, in one process, against a tiny OpenAI-compatible server on 127.0.0.1 started here that
answers instantly (so the answerer's own work is not hidden behind a model's seconds):
  raw     httpx POST /chat/completions with the same prompt, JSON parsed (the floor)
  answer  LLMAnswerer.answer with the cache off: budgeted context, prompt, call, citation
          check, usage and cost, spans and metrics
  cached  LLMAnswerer.answer on a cache hit (no call)
  stream  LLMAnswerer.stream: time to the first token, and to the final event
The variants alternate round by round, so all see the same machine state. The ratios against
`raw` are the figures to watch; absolute numbers depend on the machine. The fake closes the
connection after a stream (as its end marker), so each stream pays a TCP connect too.

    uv run python benchmarks/bench_llm_answerer.py [--rounds 300] [--chunks 5]
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider

from {{ cookiecutter.package_name }}.answer import Final, LLMAnswerer, Token
from {{ cookiecutter.package_name }}.answer.grounding import build_context
from {{ cookiecutter.package_name }}.answer.prompt import load_prompt
from {{ cookiecutter.package_name }}.container import build_llm_answerer
from {{ cookiecutter.package_name }}.domain import Hit
from {{ cookiecutter.package_name }}.evals.metrics import percentile
from {{ cookiecutter.package_name }}.settings import Settings
from {{ cookiecutter.package_name }}.telemetry import RagMetrics, SpanContent

REPLY = "Passwords must be at least 14 characters long [1] and are rotated every 180 days [2]."


class FakeModel(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without this, Nagle's algorithm and the
    # client's delayed ACK add ~40 ms to every keep-alive call, swamping what is measured.
    disable_nagle_algorithm = True

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        usage = {"prompt_tokens": 900, "completion_tokens": 20, "total_tokens": 920}
        if body.get("stream"):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            for word in REPLY.split(" "):
                chunk = {"model": body["model"], "choices": [{"delta": {"content": word + " "}}]}
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            last = {"model": body["model"], "choices": [], "usage": usage}
            self.wfile.write(f"data: {json.dumps(last)}\n\ndata: [DONE]\n\n".encode())
            self.close_connection = True
            return
        raw = json.dumps(
            {
                "model": body["model"],
                "choices": [{"message": {"content": REPLY}, "finish_reason": "stop"}],
                "usage": usage,
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, format: str, *args: object) -> None:
        pass


def hits(count: int) -> list[Hit]:
    text = " ".join(
        f"Sentence {i} of the policy says something specific about passwords." for i in range(15)
    )
    return [Hit(f"c{i}", f"doc{i}.md", text, 1.0 - i / 100, {}) for i in range(count)]


def answerer(base_url: str, cache_ttl_s: float) -> tuple[LLMAnswerer, httpx.Client]:
    settings = Settings(
        _env_file=None,
        answerer="llm",
        llm_provider="openai_like",
        llm_base_url=base_url,
        llm_model="bench",
        answer_cache_ttl_s=cache_ttl_s,
        llm_prices={"bench": [1.0, 2.0]},
    )
    tracer = TracerProvider().get_tracer("bench")  # spans made (and ended), exported nowhere
    metrics = RagMetrics.create(MeterProvider().get_meter("bench"))
    built, client = build_llm_answerer(settings, tracer, metrics, SpanContent())
    assert isinstance(built, LLMAnswerer)
    return built, client


def summary(name: str, samples: list[float], floor: float) -> str:
    p50, p95 = percentile(samples, 50), percentile(samples, 95)
    timings = f"p50 {p50 * 1000:7.2f} ms   p95 {p95 * 1000:7.2f} ms"
    return f"{name:<18} {timings}   p50 ratio {p50 / floor:5.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--chunks", type=int, default=5)
    args = parser.parse_args()

    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeModel)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    context_hits = hits(args.chunks)
    prompt = load_prompt("grounded_answer")
    context = build_context(context_hits, 3000)
    raw_body = {
        "model": "bench",
        "messages": [
            {"role": "system", "content": prompt.system()},
            {"role": "user", "content": prompt.user(context.text, "How long must a password be?")},
        ],
        "temperature": 0.0,
        "max_tokens": 512,
    }
    uncached, client_a = answerer(base_url, cache_ttl_s=0)
    cached, client_b = answerer(base_url, cache_ttl_s=3600)
    # Its own connections: the fake closes a connection after each stream.
    streamer, client_c = answerer(base_url, cache_ttl_s=0)
    raw_client = httpx.Client()
    cached.answer("How long must a password be?", context_hits)  # warm the cache

    times: dict[str, list[float]] = {k: [] for k in ("raw", "answer", "cached", "ttft", "stream")}
    for _ in range(args.rounds):
        started = time.perf_counter()
        response = raw_client.post(f"{base_url}/chat/completions", json=raw_body)
        response.json()["choices"][0]["message"]["content"]
        times["raw"].append(time.perf_counter() - started)

        started = time.perf_counter()
        answer = uncached.answer("How long must a password be?", context_hits)
        times["answer"].append(time.perf_counter() - started)
        assert answer.grounded
        assert not answer.cached

        started = time.perf_counter()
        assert cached.answer("How long must a password be?", context_hits).cached
        times["cached"].append(time.perf_counter() - started)

        started = time.perf_counter()
        first = None
        for event in streamer.stream("How long must a password be?", context_hits):
            if first is None and isinstance(event, Token):
                first = time.perf_counter() - started
            if isinstance(event, Final):
                assert event.answer.grounded
        times["ttft"].append(first or 0.0)
        times["stream"].append(time.perf_counter() - started)

    floor = percentile(times["raw"], 50)
    print(f"{args.rounds} rounds, {args.chunks} chunks of context ({context.tokens} tokens est.)")
    print(summary("raw HTTP call", times["raw"], floor))
    print(summary("answer (no cache)", times["answer"], floor))
    print(summary("answer (cached)", times["cached"], floor))
    print(summary("stream: 1st token", times["ttft"], floor))
    print(summary("stream: final", times["stream"], floor))
    added = percentile(times["answer"], 50) - floor
    print(f"answerer's own work per uncached answer (p50 difference): {added * 1000:.2f} ms")
    for client in (client_a, client_b, client_c, raw_client):
        client.close()
    server.shutdown()


if __name__ == "__main__":
    main()
