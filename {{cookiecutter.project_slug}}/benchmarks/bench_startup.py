"""How long the CLI takes to start: each command in a new process, beside `python -c pass`.

Times, in the same run and interleaved round by round (so all see the same machine state):
  baseline  `python -c pass`: the interpreter alone
  --help    the CLI's parser and nothing else
  ask       a cold `ask` over the ingested sample corpus: settings, store, models, answer
  serve     from starting `serve` to the first 200 from GET /healthz
Every command runs as a fresh process. One untimed round first writes the bytecode caches and
warms the OS file cache, as any first run after an install does (this machine's
PYTHONDONTWRITEBYTECODE is dropped for the children; --no-bytecode keeps compiling every time).
The aims (issue 14): `--help` within 1 s of the baseline, a cold `ask` under 3 s on two cores.

    uv run python benchmarks/bench_startup.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from sample_server import free_port, ingest_sample, server_env, spawn_server

from {{ cookiecutter.package_name }}.settings import PACKAGE_NAME

QUESTION = "How many days of paid leave do employees get?"
HELP_AIM_S = 1.0  # over the baseline
ASK_AIM_S = 3.0


def timed_run(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def serve_to_healthz(data_dir: Path, env: dict[str, str]) -> float:
    """Seconds from spawning `serve` to its first healthy answer; the server is stopped."""
    port = free_port()
    start = time.perf_counter()
    server = spawn_server(data_dir, port, quiet=True, env=env)
    try:
        while True:
            if server.poll() is not None:
                raise SystemExit(f"serve exited with {server.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                    if r.status == 200:
                        return time.perf_counter() - start
            except (urllib.error.URLError, ConnectionError):
                pass
            if time.perf_counter() - start > 120:
                raise SystemExit("serve did not answer /healthz in 120 s")
            time.sleep(0.02)
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (median reported)")
    parser.add_argument(
        "--no-bytecode",
        action="store_true",
        help="keep PYTHONDONTWRITEBYTECODE: every start compiles the sources again",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        env = server_env(data_dir)
        if not args.no_bytecode:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
        ingest_sample(data_dir, env)
        cli = [sys.executable, "-m", PACKAGE_NAME]
        commands: dict[str, Callable[[], float]] = {
            "python -c pass": lambda: timed_run([sys.executable, "-c", "pass"], env),
            "--help": lambda: timed_run([*cli, "--help"], env),
            "ask": lambda: timed_run([*cli, "ask", QUESTION], env),
            "serve -> /healthz": lambda: serve_to_healthz(data_dir, env),
        }
        for measure in commands.values():  # warm-up: bytecode and file caches
            measure()
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.rounds):
            for name, measure in commands.items():
                times[name].append(measure())

    medians = {name: statistics.median(values) for name, values in times.items()}
    base = medians["python -c pass"]
    load = ", ".join(f"{n:.1f}" for n in os.getloadavg())
    print(
        f"{args.rounds} rounds, {os.cpu_count()} cores, load average {load}, bytecode "
        f"{'compiled each start' if args.no_bytecode else 'cached'}\n"
    )
    print(f"{'command':<20} {'median s':>9} {'min s':>7} {'- baseline':>11} {'x baseline':>11}")
    for name, values in times.items():
        median = medians[name]
        print(
            f"{name:<20} {median:>9.3f} {min(values):>7.3f} {median - base:>11.3f} "
            f"{median / base:>11.1f}"
        )
    help_over = medians["--help"] - base
    print(
        f"\n--help within {HELP_AIM_S:.0f} s of the baseline: "
        f"{'yes' if help_over <= HELP_AIM_S else 'NO'} (+{help_over:.2f} s); "
        f"cold ask under {ASK_AIM_S:.0f} s: "
        f"{'yes' if medians['ask'] < ASK_AIM_S else 'NO'} ({medians['ask']:.2f} s)"
    )


if __name__ == "__main__":
    main()
