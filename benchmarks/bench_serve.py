"""Load-test ``llm-scratch serve`` with and without continuous batching, on this machine only.

Starts the server on a free port of 127.0.0.1 for a given run folder (``llm-scratch train`` makes
one), once with continuous batching (``--max-batch`` rows) and once with ``--no-batching`` (one
request at a time), both running at once and taking turns, and for each runs ``serve.loadtest.run_load`` with N = 1, 4, 16, 64 closed-loop
clients: each client sends a greedy completion of ``--max-tokens`` tokens, waits for it, sends the
next, until ``--requests-per-client`` x N requests (at least 16) are done or ``--duration`` seconds
have passed, ``--rounds`` times. Reported per N: completion tokens per second of wall time (the
median of the rounds), and the p50 / p99 latency of a request (seconds, first byte sent to last
byte received) over the requests of all rounds.

Also, first, the engine alone (no HTTP: ``serve.Engine`` in this process, N requests submitted at
once, ``--max-batch`` rows against one), which shows what batching gives the model's forward
passes before the web server's per-token costs are added.

Run: ``python benchmarks/bench_serve.py RUN_DIR [--threads 1] [--max-tokens 32] [--max-batch 64]``.
The server is a child process of this script, stopped at the end (and on any error). Exits with
status 1 if batching is not at least 2x the throughput of one-at-a-time at N = 16.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from _bench import add_threads, parser, pin_threads, print_header, ratio, report

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def parse_args():
    p = parser(__doc__)
    p.add_argument("run_dir", help="a run folder written by llm-scratch train")
    add_threads(p, 1, "threads of the server's numpy BLAS and numba")
    p.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16, 64], help="concurrent clients N")
    p.add_argument("--max-tokens", type=int, default=32, help="completion tokens per request")
    p.add_argument("--max-batch", type=int, default=64, help="rows of the batch with batching")
    p.add_argument("--requests-per-client", type=int, default=2, help="requests per run = this x N (at least 16)")
    p.add_argument("--duration", type=float, default=120.0, help="seconds per run at most")
    p.add_argument("--kernels", choices=("numpy", "numba"), default="numba")
    p.add_argument("--rounds", type=int, default=3, help="load-test rounds per N and server (median tokens/s; "
                   "latency percentiles over the requests of all rounds)")
    return p.parse_args()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(args, batching: bool) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    cmd = [sys.executable, "-m", "llm_from_scratch.cli", "serve", args.run_dir, "--port", str(port),
           "--no-embeddings", "--kernels", args.kernels, "--max-batch", str(args.max_batch),
           "--max-tokens", str(args.max_tokens), "--max-waiting", "1024", "--request-timeout", "600"]
    if not batching:
        cmd.append("--no-batching")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ.copy())
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if json.load(r)["status"] == "ok":
                    return proc, url
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the server did not answer /health within 120 s")


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def engine_alone(args) -> dict:
    """{(batching, N): tokens/s} of the engine in this process, N greedy requests submitted at once."""
    import threading

    from llm_from_scratch.pretrain import load_run
    from llm_from_scratch.serve.engine import Engine, SamplingParams

    params, config, tok = load_run(args.run_dir)
    prompts = [tok.encode(p) for p in ("Mia was", "Tom saw a", "The dog", "Anna and Ben")]
    out = {}
    for batching in (True, False):
        engine = Engine(params, config, tok.decode, max_batch=args.max_batch if batching else 1,
                        kernels=args.kernels, max_waiting=1024).start()
        try:
            for n in [2] + args.clients:  # the first, 2, is a warm-up
                left = [n]
                done = threading.Event()

                def on_event(kind, payload):
                    if kind != "text":
                        left[0] -= 1
                        if left[0] == 0:
                            done.set()

                start = time.perf_counter()
                for i in range(n):
                    engine.submit(prompts[i % len(prompts)], SamplingParams(max_tokens=args.max_tokens, temperature=0),
                                  on_event, timeout=600)
                done.wait(600)
                out[batching, n] = n * args.max_tokens / (time.perf_counter() - start)
        finally:
            engine.stop()
    return out


def main() -> int:
    args = parse_args()
    pin_threads(args.threads)  # before numpy loads; inherited by the server processes
    from llm_from_scratch.serve.loadtest import percentile, run_load

    alone = engine_alone(args)
    print(f"engine alone (no HTTP), {args.max_tokens} greedy tokens per request, {args.threads} thread(s)")
    print_header(f"{'N':>4} | {'batching: tok/s':>15} | {'one at a time: tok/s':>20} | {'throughput ratio':>16}")
    for n in args.clients:
        print(f"{n:>4} | {alone[True, n]:>15.0f} | {alone[False, n]:>20.0f} | "
              f"{ratio(alone[True, n] / alone[False, n], 16)}")
    print()

    results = {}
    servers = {}
    try:
        for batching in (True, False):  # both up at once; an idle server waits without using the CPU
            servers[batching] = start_server(args, batching)
        for batching, (proc, url) in servers.items():
            run_load(url, 2, 4, args.max_tokens, args.duration)  # warm-up
        for _ in range(args.rounds):
            for n in args.clients:  # the two take turns at each N, so a busy spell on the machine hits both
                for batching, (proc, url) in servers.items():
                    results.setdefault((batching, n), []).append(
                        run_load(url, n, max(16, args.requests_per_client * n), args.max_tokens, args.duration))
        for batching, (proc, url) in servers.items():
            with urllib.request.urlopen(url + "/health", timeout=5) as r:
                stats = json.load(r)
            print(f"{'batching' if batching else 'no batching'}: mean rows per decode step {stats['mean_batch']}, "
                  f"largest {stats['largest_batch']}")
    finally:
        for proc, url in servers.values():
            stop_server(proc)

    print(f"{args.run_dir}: {args.max_tokens} greedy tokens per request, {args.threads} thread(s), "
          f"kernels {args.kernels}, max batch {args.max_batch}; median tokens/s of {args.rounds} rounds, "
          f"latency percentiles over all their requests")
    print_header(f"{'N':>4} | {'batching: tok/s':>15} {'p50 s':>7} {'p99 s':>7} | {'one at a time: tok/s':>20} "
                 f"{'p50 s':>7} {'p99 s':>7} | {'throughput ratio':>16}")
    failures = []
    for n in args.clients:
        row = {}
        for batching in (True, False):
            runs = results[batching, n]
            latencies = [t for r in runs for t in r["latencies"]]
            row[batching] = (statistics.median(r["tokens_per_second"] for r in runs),
                             percentile(latencies, 50) if latencies else float("nan"),
                             percentile(latencies, 99) if latencies else float("nan"))
            errors = sum(r["errors"] for r in runs)
            if errors:
                first = next(r["first_error"] for r in runs if r["errors"])
                failures.append(f"N={n} {'batching' if batching else 'no batching'}: {errors} errors, the first: {first}")
        (bt, b50, b99), (st, s50, s99) = row[True], row[False]
        print(f"{n:>4} | {bt:>15.0f} {b50:>7.3f} {b99:>7.3f} | {st:>20.0f} {s50:>7.3f} {s99:>7.3f} | "
              f"{ratio(bt / st, 16)}")
        if n == 16 and bt < 2 * st:
            failures.append(f"N=16: batching gives {bt:.0f} tok/s, less than 2x one at a time ({st:.0f})")
    return report(failures, "FAIL")


if __name__ == "__main__":
    raise SystemExit(main())
