"""A bounded load generator for ``llm-scratch serve``: N concurrent clients, a fixed number of
requests, a time limit, and only this machine as the target.

Each of ``concurrency`` client threads sends one ``POST /v1/completions`` at a time (closed
loop: the next as soon as the last answered) until ``requests`` have been sent or ``duration``
seconds have passed; then it stops by itself. Reported:

- throughput: completion tokens (from each response's ``usage``) per second of wall time;
- latency: seconds from sending a request to its last byte, median (p50) and 99th percentile
  (p99, the nearest-rank percentile: with fewer than 100 requests it is the slowest one or close).

The target must be 127.0.0.1, ``localhost`` or ``::1``: this is a tool for measuring one's own
server, not for sending traffic elsewhere.

    python -m llm_from_scratch.serve.loadtest --url http://127.0.0.1:8000 --concurrency 16 --requests 64

References: G. Tene, "How NOT to Measure Latency" (2015; percentiles, not means); the
closed-loop clients are those of vLLM's ``benchmarks/benchmark_serving.py`` with
``--max-concurrency``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import threading
import time
from urllib.parse import urlsplit

__all__ = ["LOCAL_HOSTS", "MAX_REQUESTS", "MAX_DURATION", "percentile", "run_load", "main"]

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
MAX_REQUESTS = 10_000  # a hard bound on one run
MAX_DURATION = 600.0  # seconds


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile: the smallest value with at least q% of the values at
    or below it.

    >>> percentile([4.0, 1.0, 3.0, 2.0], 50), percentile([4.0, 1.0, 3.0, 2.0], 99)
    (2.0, 4.0)
    """
    if not values:
        raise ValueError("no values to take a percentile of")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def _target(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname not in LOCAL_HOSTS:
        raise ValueError(f"the load generator only sends to this machine: expected http://127.0.0.1:PORT "
                         f"(or localhost, ::1), got {url!r}")
    return parts.hostname, parts.port or 80


def run_load(url: str, concurrency: int, requests: int, max_tokens: int = 32, duration: float = 60.0,
             prompts: tuple[str, ...] = ("Mia was", "Tom saw a", "The dog", "Anna and Ben"),
             temperature: float = 0.0, timeout: float = 120.0) -> dict:
    """Send ``requests`` completions from ``concurrency`` closed-loop clients (stopping early
    after ``duration`` seconds) and summarise: requests, errors, completion_tokens, seconds,
    tokens_per_second, latency_p50, latency_p99 (seconds), and every request's latency."""
    host, port = _target(url)
    for name, value, low, high in (("concurrency", concurrency, 1, 1024), ("requests", requests, 1, MAX_REQUESTS)):
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
    if not 0 < duration <= MAX_DURATION:
        raise ValueError(f"duration must be in (0, {MAX_DURATION}] seconds, got {duration!r}")
    lock = threading.Lock()
    sent = [0]
    latencies: list[float] = []
    tokens = [0]
    errors: list[str] = []
    start = time.perf_counter()
    stop_at = start + duration

    def client(worker: int) -> None:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
        try:
            while time.perf_counter() < stop_at:
                with lock:
                    if sent[0] >= requests:
                        return
                    i = sent[0]
                    sent[0] += 1
                body = json.dumps({"prompt": prompts[i % len(prompts)], "max_tokens": max_tokens,
                                   "temperature": temperature, "seed": i})
                t0 = time.perf_counter()
                try:
                    conn.request("POST", "/v1/completions", body=body, headers={"Content-Type": "application/json"})
                    resp = conn.getresponse()
                    data = resp.read()
                except (OSError, http.client.HTTPException) as exc:
                    conn.close()
                    conn = http.client.HTTPConnection(host, port, timeout=timeout)
                    with lock:
                        errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                elapsed = time.perf_counter() - t0
                with lock:
                    if resp.status == 200:
                        latencies.append(elapsed)
                        tokens[0] += json.loads(data)["usage"]["completion_tokens"]
                    else:
                        errors.append(f"{resp.status}: {data[:200]!r}")
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(w,), daemon=True) for w in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(duration + timeout)
    seconds = time.perf_counter() - start
    return {"concurrency": concurrency, "requests": len(latencies) + len(errors), "errors": len(errors),
            "first_error": errors[0] if errors else None, "completion_tokens": tokens[0], "seconds": seconds,
            "tokens_per_second": tokens[0] / seconds,
            "latency_p50": percentile(latencies, 50) if latencies else float("nan"),
            "latency_p99": percentile(latencies, 99) if latencies else float("nan"), "latencies": latencies}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default="http://127.0.0.1:8000", help="the server (this machine only)")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 64], help="clients, one run each")
    p.add_argument("--requests", type=int, default=None, help="requests per run (default: 4 x concurrency, "
                   "at least 16)")
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--duration", type=float, default=60.0, help="seconds per run at most")
    args = p.parse_args(argv)
    print(f"{'clients':>8} {'requests':>8} {'errors':>6} {'tokens/s':>9} {'p50 s':>7} {'p99 s':>7}")
    for n in args.concurrency:
        r = run_load(args.url, n, args.requests or max(16, 4 * n), args.max_tokens, args.duration)
        print(f"{n:>8} {r['requests']:>8} {r['errors']:>6} {r['tokens_per_second']:>9.1f} "
              f"{r['latency_p50']:>7.3f} {r['latency_p99']:>7.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
