"""Two ways to run a sweep on every core, side by side on the same runs.

    python benchmarks/bench_sweep_parallel.py            # the 5 runs of the main grid at D = 2^18, ~2 minutes
    python benchmarks/bench_sweep_parallel.py --tokens 524288

- ``processes``: one run per core in a process pool, each run single-threaded (numba and
  OpenBLAS held to one thread);
- ``threads``: one run at a time in this process, on all cores (numba's threads, each calling a
  single-threaded OpenBLAS gemm on its block of rows).

The runs are the main grid's sizes (``sweep.MAIN_SIZES``) at one token budget, with the learning
rate of ``sweep.lr_rule``. Printed: the wall time of each way for all the runs, runs per hour, and
each run's final bits per character under both ways. The two orders alternate over ``--repeats``
so that load from elsewhere on the machine hits both; compare the ratio, not the absolute times.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from llm_from_scratch.scaling import sweep


def timed(specs, kind: str, workers: int) -> tuple[float, dict]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "runs.jsonl"
        t0 = time.perf_counter()
        sweep.run_sweep(specs, out, executor=kind, workers=workers, progress=False)
        seconds = time.perf_counter() - t0
        return seconds, {r["run_id"]: r for r in sweep.read_records(out)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=2**18)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args(argv)
    cores = os.cpu_count() or 1
    specs = sweep.grid(sweep.MAIN_SIZES, [args.tokens])
    print(f"{len(specs)} runs (N = {', '.join(f'{s.n_params:,}' for s in specs)}; D = {args.tokens:,}) on {cores} cores, "
          f"{sweep.machine()['cpu']}")
    times = {"processes": [], "threads": []}
    records = {}
    for repeat in range(args.repeats):
        order = ("processes", "threads") if repeat % 2 == 0 else ("threads", "processes")
        for kind in order:
            seconds, records[kind] = timed(specs, kind, cores)
            times[kind].append(seconds)
            print(f"  {kind:<9} {seconds:7.1f} s   {len(specs) / seconds * 3600:6.0f} runs/hour")
    best = {kind: min(t) for kind, t in times.items()}
    print(f"processes (1 thread each, {cores} at a time) / threads ({cores} threads, one run at a time): "
          f"{best['threads'] / best['processes']:.2f}x faster" if best["processes"] < best["threads"] else
          f"threads faster by {best['processes'] / best['threads']:.2f}x")
    print("final bpc, 1 thread vs all threads (the same spec; thread count changes the rounding):")
    for s in specs:
        a, b = records["processes"][s.run_id], records["threads"][s.run_id]
        print(f"  N={s.n_params:>8,}  {a['final_bpc']:.6f}  {b['final_bpc']:.6f}  "
              f"tokens/s {a['tokens_per_s']:>9,.0f} (1 thread) {b['tokens_per_s']:>9,.0f} ({b['threads']} threads)")


if __name__ == "__main__":
    main()
