"""What the benchmark scripts share: flags, thread counts, timing and the way ratios are printed.

Timing: ``median_seconds`` warms every function up once (numba compiles, buffers are
allocated), then times them in interleaved rounds, so a busy spell on a shared machine hits all
of them alike, and reports the median of each (``round_seconds`` gives every round's time, for
the ratio within each round and its spread). Ratios measured side by side this way are the
figures to quote; absolute times drift from run to run.

Threads: numpy's BLAS reads its thread count once, when numpy is first imported, so a script
that pins threads calls ``pin_threads`` before it imports numpy (this module imports neither
numpy nor numba). ``set_threads`` then gives numba and PyTorch the same count.

    >>> calls = []
    >>> t = median_seconds({"a": lambda: calls.append("a") or 1, "b": lambda: calls.append("b") or 2},
    ...                    repeats={"a": 2, "b": 1})
    >>> calls                       # a warm-up call each, then rounds: a b, a
    ['a', 'b', 'a', 'b', 'a']
    >>> t["a"][1], t["b"][1]        # (median seconds, the last result)
    (1, 2)
    >>> ratio(2.0), ratio(12.345, width=8, digits=1)
    ('          2.00x', '   12.3x')
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Callable

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


def parser(doc: str) -> argparse.ArgumentParser:
    """An argument parser whose description is the first paragraph of a script's docstring."""
    return argparse.ArgumentParser(description=doc.split("\n\n")[0])


def add_repeats(p: argparse.ArgumentParser, default: int, help: str = "timed rounds (median reported)") -> None:
    p.add_argument("--repeats", type=int, default=default, help=help)


def add_threads(p: argparse.ArgumentParser, default: int | None, help: str | None = None) -> None:
    """``--threads``; with no default, numba's own (the number of cores) for numba and PyTorch."""
    if help is None:
        help = ("threads for numba and PyTorch (default: numba's default, the number of cores)" if default is None
                else "threads for numpy's BLAS, numba and PyTorch")
    p.add_argument("--threads", type=int, default=default, help=help)


def pin_threads(n: int) -> None:
    """Every thread pool (OpenMP, OpenBLAS, MKL, numba) to ``n`` threads; call before importing numpy."""
    for var in THREAD_VARIABLES:
        os.environ[var] = str(n)


def set_threads(n: int | None, torch=None) -> int:
    """numba to ``n`` threads (``None``: its default, the number of cores) and PyTorch, if given,
    to as many; returns the count."""
    import numba

    if n:
        numba.set_num_threads(n)
    threads = numba.get_num_threads()
    if torch is not None:
        torch.set_num_threads(threads)
    return threads


def timed(fn: Callable):
    """``(seconds, result)`` of one call of ``fn()``."""
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def round_seconds(fns: dict[str, Callable], repeats: int | dict[str, int]
                  ) -> dict[str, tuple[list[float], object]]:
    """``{name: (seconds of each timed round, the last result)}``: one warm-up call each, then
    interleaved rounds; ``repeats`` is one count for all or a count per name (a slow function
    can sit out the later rounds). Round ``i`` of two functions ran back to back, so the ratio
    of their times in that round is the figure least disturbed by the rest of the machine."""
    counts = repeats if isinstance(repeats, dict) else dict.fromkeys(fns, repeats)
    outs = {name: fn() for name, fn in fns.items()}  # warm-up: compile, allocate, fill caches
    times = {name: [] for name in fns}
    for i in range(max(counts.values())):
        for name, fn in fns.items():
            if i < counts[name]:
                seconds, outs[name] = timed(fn)
                times[name].append(seconds)
    return {name: (times[name], outs[name]) for name in fns}


def median_seconds(fns: dict[str, Callable], repeats: int | dict[str, int]) -> dict[str, tuple[float, object]]:
    """``{name: (median seconds per call, the last result)}`` of ``round_seconds``."""
    return {name: (statistics.median(times), out) for name, (times, out) in round_seconds(fns, repeats).items()}


# the columns and the footnote of a table comparing a numba twin with its numpy reference and PyTorch
TWIN_COLUMNS = f"{'numpy':>10}{'numba':>10}{'torch':>10}{'numba vs numpy':>17}{'numba vs torch':>17}"
TWIN_NOTE = "(ratios > 1 mean numba is faster: numpy time / numba time, torch time / numba time)"


def twin_setup(doc: str, repeats: int, repeats_help: str):
    """Parse ``--repeats`` and ``--threads`` for a twin-vs-reference-vs-PyTorch script, import
    PyTorch and give it numba's thread count: ``(args, torch, threads)``."""
    p = parser(doc)
    add_repeats(p, repeats, repeats_help)
    add_threads(p, None)
    args = p.parse_args()
    import torch

    return args, torch, set_threads(args.threads, torch)


def ratio(value: float, width: int = 15, digits: int = 2) -> str:
    """``value`` as a right-aligned ratio, ``width`` characters with its "x"."""
    return f"{value:>{width - 1}.{digits}f}x"


def print_header(header: str) -> None:
    """A table's header line and a rule under it."""
    print(header)
    print("-" * len(header))


def report(failures: list[str], label: str) -> int:
    """Print each failure after ``label``; the exit status (1 if any)."""
    for line in failures:
        print(f"{label}: {line}")
    return 1 if failures else 0
