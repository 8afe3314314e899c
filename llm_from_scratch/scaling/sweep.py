"""Scaling sweeps: a grid of GPT training runs over model size N and training tokens D.

Each run trains a GPT from scratch with a character tokenizer, so its loss is in bits per
character and sits directly above StoryWorld's exact entropy floor (``StoryWorld().entropy_floor()``,
0.287 bits/char): a law ``L(N, D) = E + A / N^alpha + B / D^beta`` fitted to the grid must find
``E`` near that floor. One finished run is one line of a JSON-lines file.

What a run is (``RunSpec``, one frozen dataclass; its identity is a hash of its fields):

- N is the non-embedding parameter count (``num_params(config, non_embedding=True)``, Kaplan et
  al. 2020, section 2.1); the token and position tables are recorded apart as ``N_embedding``.
- D = steps * batch_size * block_size tokens. The training text is cut into non-overlapping
  windows of ``block_size`` characters (each predicting the text shifted by one); a run visits
  each window once, in an order shuffled by its seed, so D tokens are D distinct characters: one
  epoch, no repetition. ``unique_chars``
  caps the distinct training text at U < D instead, and the U/T windows are then visited
  D/U times, each epoch reshuffled (repeated data, Muennighoff et al. 2023). Every run reads a
  prefix of the same text stream, so a smaller budget sees a subset of a larger one's data.
- AdamW (betas 0.9, 0.95, weight decay 0.1), gradient clipping at 1, linear warmup over the first
  5% of steps, cosine decay to lr/10 at the last step: the schedule ends with the data, as
  Hoffmann et al. (2022, section 3 and appendix B) found it must for each D.
- The learning-rate rule, chosen by the LR search at the smallest and largest sizes of the grid
  (``storyworld_lr.jsonl``: 5 LRs from 1e-3 to 1e-1 at D = 2^20; ``best_lr`` reads the optimum
  off a parabola in log(lr) through the three best, 3.0e-2 at N = 6.6k and 4.6e-3 at N = 397k):
  the power law through the two optima, ``lr(N) = 3.0e-2 * (N / 6592)^(-0.46)`` (``lr_rule``).
  Smaller models take larger steps, as Kaplan et al. (2020, eq. D.1) found too.
- Validation: the mean loss over every character of a fixed held-out text (``VAL_CHARS`` characters
  of StoryWorld's own "val" split, or the first ``VAL_CHARS`` of the standard library text, which the
  training text then starts after), in non-overlapping windows of ``block_size``. The same text
  for every run. It is measured ``evals`` times, evenly spaced; the record keeps the curve, the
  final value and the best.
- Divergence: the loss or a gradient not finite, or a training loss above twice that of a uniform
  guess (2 ln V). The run is recorded with ``status="diverged"`` and the step, and never redone.
- Determinism: the seed fixes the initialisation and the window order, and a run always executes
  on a fixed number of threads (``threads``, 1 by default; numba and OpenBLAS are both held to
  it), so the same spec gives bit-identical losses on the same machine. ``run_one(spec)`` re-runs
  any committed record.

Execution (``run_sweep``) goes through a ``concurrent.futures`` executor and appends each finished
run's record to the results file as it arrives (one ``write`` of a whole line, then ``fsync``:
a reader never sees half a line; a line torn by a crash is ignored with a warning and cut off
before the next append). A sweep started again skips every run whose id is in the file, and ``reuse`` files lend
it the records of runs they already hold. Three ways
to run (``--executor``):

- ``processes`` (default): one run per core, each single-threaded, in a process pool;
- ``threads``: one run at a time on all cores (2.8x slower on this machine's two cores, measured
  side by side by ``benchmarks/bench_sweep_parallel.py``);
- ``--scheduler ADDRESS``: the same runs on an existing Dask cluster. Start one with::

      dask scheduler                                    # prints tcp://HOST:8786
      dask worker tcp://HOST:8786 --nthreads 1 --nworkers 2     # on each machine
      llm-scratch sweep --preset storyworld --out runs.jsonl --scheduler tcp://HOST:8786

  A worker that dies loses only the run it was doing: Dask reschedules it on another worker.

Left out: multi-seed runs per grid point (pass several ``--seeds`` to get them), a BPE tokenizer
(losses would need a chars-per-token conversion), learning-rate schedules other than cosine, and
any fitting: ``llm_from_scratch.scaling.fit`` reads these files.

References: Kaplan et al., "Scaling Laws for Neural Language Models" (2020); Hoffmann et al.,
"Training Compute-Optimal Large Language Models" (2022); Muennighoff et al., "Scaling
Data-Constrained Language Models" (2023).
"""

from __future__ import annotations

import concurrent.futures as cf
import functools
import hashlib
import json
import math
import os
import time
import warnings
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np

from llm_from_scratch.models.gpt import GPTConfig, flops_per_token, gpt_backward, gpt_forward, init_params, num_params
from llm_from_scratch.optim import AdamW, clip_grad_norm, warmup_cosine
from llm_from_scratch.train import TrainingDiverged, _check_finite

__all__ = ["RunSpec", "lr_rule", "best_lr", "deterministic_fields", "machine", "grid", "PRESETS", "preset", "run_one", "run_sweep", "read_records",
           "append_record", "VAL_CHARS", "PEAK_FLOPS_PER_THREAD"]

VAL_CHARS = 150_000                  # characters of held-out text every run is measured on
STDLIB_MAX_CHARS = 8_000_000         # the standard library text read (and its character set)
PEAK_FLOPS_PER_THREAD = 103.6e9      # float32 matmul peak of one core here (performance.md): MFU's denominator
DATASETS = ("storyworld", "stdlib")


@dataclass(frozen=True)
class RunSpec:
    """One training run of a sweep. ``run_id`` is a hash of all fields, so it names the run.

    >>> s = RunSpec(n_layer=2, n_embd=16, n_head=2, tokens=2**18, lr=1e-2)
    >>> s.steps, s.tokens == s.steps * s.batch_size * s.block_size, s.n_params
    (256, True, 6592)
    """

    n_layer: int                  # L: transformer blocks
    n_embd: int                   # C: width of the residual stream
    n_head: int                   # NH: attention heads (C must divide by it)
    tokens: int                   # D: training tokens, a multiple of batch_size * block_size
    lr: float                     # peak learning rate (see lr_rule)
    batch_size: int = 16          # B: windows per step
    block_size: int = 64          # T: characters per window (the context)
    seed: int = 0                 # initialisation and window order
    data: str = "storyworld"      # "storyworld" or "stdlib"
    unique_chars: int = 0         # U: distinct training characters; 0 means U = D (one epoch)
    warmup: float = 0.05          # fraction of steps of linear warmup
    min_lr_ratio: float = 0.1     # the cosine ends at lr * min_lr_ratio
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    evals: int = 4                # validation measurements, evenly spaced, the last at the end

    def __post_init__(self):
        for name in ("n_layer", "n_embd", "n_head", "tokens", "batch_size", "block_size", "evals"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd = {self.n_embd} must be divisible by n_head = {self.n_head}")
        if self.data not in DATASETS:
            raise ValueError(f"data must be one of {DATASETS}, got {self.data!r}")
        window = self.batch_size * self.block_size
        if self.tokens % window or self.tokens // window < 2:
            raise ValueError(f"tokens = {self.tokens} must be a multiple of batch_size * block_size = {window} "
                             f"and at least two steps ({2 * window} tokens)")
        if self.unique_chars and not self.block_size <= self.unique_chars <= self.tokens:
            raise ValueError(f"unique_chars must be 0 (all unique) or in [block_size, tokens] = "
                             f"[{self.block_size}, {self.tokens}], got {self.unique_chars}")
        if self.data == "stdlib" and self.unique + 1 > STDLIB_MAX_CHARS - VAL_CHARS:
            raise ValueError(f"the standard library text holds {STDLIB_MAX_CHARS - VAL_CHARS} training characters; "
                             f"a run needs {self.unique + 1}")
        if not (self.lr > 0 and 0 <= self.min_lr_ratio <= 1 and 0 <= self.warmup < 1):
            raise ValueError(f"need lr > 0, min_lr_ratio in [0, 1], warmup in [0, 1); got lr={self.lr}, "
                             f"min_lr_ratio={self.min_lr_ratio}, warmup={self.warmup}")

    @property
    def steps(self) -> int:
        return self.tokens // (self.batch_size * self.block_size)

    @property
    def unique(self) -> int:
        """Distinct training characters U (D when every token is new)."""
        return self.unique_chars or self.tokens

    @property
    def n_params(self) -> int:
        """N: non-embedding parameters (the vocabulary does not matter for it)."""
        return num_params(self.gpt_config(vocab_size=1), non_embedding=True)

    def gpt_config(self, vocab_size: int) -> GPTConfig:
        return GPTConfig(vocab_size=vocab_size, n_positions=self.block_size, n_embd=self.n_embd,
                         n_layer=self.n_layer, n_head=self.n_head)

    @property
    def run_id(self) -> str:
        """A stable name: the first 16 hex digits of sha256 of the fields as sorted JSON."""
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]

    @classmethod
    def from_dict(cls, d: dict) -> RunSpec:
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown RunSpec fields {sorted(unknown)}; expected some of {sorted(names)}")
        return cls(**d)


# ------------------------------------------------------------------------------------------------
# grids and presets

LR_SMALL = (6_592, 3.0e-2)    # (N, best LR) of the LR search at the smallest size (best_lr)
LR_LARGE = (396_800, 4.6e-3)  # ... and at the largest


def best_lr(points) -> float:
    """The learning rate at the vertex of the parabola through the three best ``(lr, bpc)`` points,
    in log(lr): a search on a grid of half decades, read between its points.

    >>> round(best_lr([(1e-3, 2.0), (1e-2, 1.0), (1e-1, 2.0)]), 6)   # symmetric: the middle one
    0.01
    """
    points = sorted((lr, bpc) for lr, bpc in points if bpc is not None)
    if len(points) < 3:
        raise ValueError(f"need at least 3 finished runs to place a parabola, got {len(points)}")
    i = min(max(int(np.argmin([b for _, b in points])), 1), len(points) - 2)
    x = np.log([lr for lr, _ in points[i - 1:i + 2]])                         # [3]
    a, b, _ = np.polyfit(x, [bpc for _, bpc in points[i - 1:i + 2]], 2)
    if a <= 0:   # no minimum between the points: keep the best one
        return points[int(np.argmin([b for _, b in points]))][0]
    return float(np.exp(-b / (2 * a)))


def lr_rule(n_params: int) -> float:
    """The peak learning rate for a model of ``n_params`` non-embedding parameters: the power law
    through the best LRs of the search at the smallest and largest sizes, rounded to 3 digits.

    >>> lr_rule(LR_SMALL[0]) == LR_SMALL[1], lr_rule(LR_LARGE[0]) == LR_LARGE[1]
    (True, True)
    """
    (n0, lr0), (n1, lr1) = LR_SMALL, LR_LARGE
    slope = math.log(lr1 / lr0) / math.log(n1 / n0)
    return float(f"{lr0 * (n_params / n0) ** slope:.3g}")


def grid(sizes, tokens, seeds=(0,), **common) -> list[RunSpec]:
    """Every (size, tokens, seed) combination; ``sizes`` are (n_layer, n_embd, n_head) triples and
    the learning rate follows ``lr_rule`` unless ``common`` gives one."""
    specs = []
    for L, C, NH in sizes:
        for D in tokens:
            for seed in seeds:
                spec = RunSpec(n_layer=L, n_embd=C, n_head=NH, tokens=D, seed=seed, lr=common.get("lr", 1.0),
                               **{k: v for k, v in common.items() if k != "lr"})
                specs.append(spec if "lr" in common else replace(spec, lr=lr_rule(spec.n_params)))
    return specs


MAIN_SIZES = tuple((2, C, C // 16) for C in (16, 32, 64, 96, 128))   # N = 6.6k ... 397k, heads of 16
LARGE_SIZE = (4, 128, 8)                                              # N = 793k
LR_SEARCH = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)


def preset(name: str) -> list[RunSpec]:
    """The runs of a committed sweep (see ``PRESETS``)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; expected one of {', '.join(sorted(PRESETS))}")
    return PRESETS[name]()


PRESETS = {
    # the main grid: 5 sizes x 5 budgets (0.26M ... 4.2M tokens), one epoch each
    "storyworld": lambda: grid(MAIN_SIZES, [2**18, 2**19, 2**20, 2**21, 2**22]),
    # the LR search at the smallest and largest sizes of the main grid, at a middle budget
    "storyworld_lr": lambda: [spec for size in (MAIN_SIZES[0], MAIN_SIZES[-1]) for lr in LR_SEARCH
                              for spec in grid([size], [2**20], lr=lr)],
    # one held-out run with 4x the compute (6ND) of the largest run of the main grid
    "storyworld_large": lambda: grid([LARGE_SIZE], [2**23]),
    # repeated data: U = 2^18 characters seen 2..16 times, against all-unique data of the same D
    "storyworld_repeat": lambda: (grid([MAIN_SIZES[2]], [2**18 * e for e in (1, 2, 4, 8, 16)])
                                  + grid([MAIN_SIZES[2]], [2**18 * e for e in (2, 4, 8, 16)],
                                         unique_chars=2**18)),
    # the standard library's Python source: 3 sizes x 3 budgets
    "stdlib": lambda: grid([MAIN_SIZES[i] for i in (1, 2, 4)], [2**18, 2**19, 2**20], data="stdlib"),
}


def parse_count(text: str) -> int:
    """``"256K"`` -> 262144, ``"1M"`` -> 1048576 (binary K and M), ``"5000"`` -> 5000.

    >>> [parse_count(t) for t in ("256K", "1M", "0.5M", "5000")]
    [262144, 1048576, 524288, 5000]
    """
    text = text.strip()
    scale = {"K": 2**10, "M": 2**20}.get(text[-1:].upper(), 1)
    try:
        value = float(text[:-1] if scale > 1 else text) * scale
    except ValueError:
        raise ValueError(f"expected a count like 5000, 256K or 1M, got {text!r}") from None
    return int(round(value))


def parse_sizes(text: str) -> list[tuple[int, int, int]]:
    """``"2:32,2:64:4"`` -> ``[(2, 32, 2), (2, 64, 4)]``: L:C[:NH], heads default to C // 16."""
    sizes = []
    for item in filter(None, (t.strip() for t in text.split(","))):
        try:
            parts = [int(p) for p in item.split(":")]
        except ValueError:
            raise ValueError(f"--sizes: expected L:C or L:C:NH with integers, got {item!r}") from None
        if len(parts) == 2:
            parts.append(max(1, parts[1] // 16))
        if len(parts) != 3 or min(parts) < 1:
            raise ValueError(f"--sizes: expected L:C or L:C:NH with positive integers, got {item!r}")
        if parts[1] % parts[2]:
            raise ValueError(f"--sizes: {item!r} does not fit: width {parts[1]} must divide by its {parts[2]} heads")
        sizes.append(tuple(parts))
    return sizes


def specs_from_args(args) -> list[RunSpec]:
    """The runs asked for on the command line (``llm-scratch sweep``): a preset or a grid."""
    if args.preset is not None:
        if args.sizes or args.tokens:
            raise ValueError("give either --preset or --sizes/--tokens, not both")
        return preset(args.preset)
    if not args.sizes or not args.tokens:
        raise ValueError("give --preset NAME, or both --sizes and --tokens")
    sizes = parse_sizes(args.sizes)
    window = args.batch_size * args.block_size
    if window < 1 or args.batch_size < 1:
        raise ValueError(f"--batch-size and --block-size must be positive, got {args.batch_size} and "
                         f"{args.block_size}")
    tokens = sorted({max(2, round(parse_count(t) / window)) * window for t in args.tokens.split(",") if t.strip()})
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    if not sizes or not tokens or not seeds:
        raise ValueError(f"the grid is empty: {len(sizes)} sizes x {len(tokens)} token budgets x {len(seeds)} seeds")
    common = {"data": args.data, "batch_size": args.batch_size, "block_size": args.block_size,
              "unique_chars": parse_count(args.unique_chars)}
    if args.lr is not None:
        common["lr"] = args.lr
    return grid(sizes, tokens, seeds, **common)


# ------------------------------------------------------------------------------------------------
# data

@functools.lru_cache(maxsize=4)
def _stream(data: str, n_chars: int) -> tuple[str, str]:
    """``(train_text, val_text)``: at least ``n_chars`` of training text (a prefix of one fixed
    stream: asking for more only appends) and the fixed validation text."""
    if data == "storyworld":
        from llm_from_scratch.data import StoryWorld
        world = StoryWorld()
        return world.corpus("train", n_chars=n_chars, seed=0), world.corpus("val", n_chars=VAL_CHARS, seed=0)
    from llm_from_scratch.data.realtext import python_stdlib_text
    text = python_stdlib_text(max_bytes=STDLIB_MAX_CHARS)
    return text[VAL_CHARS:], text[:VAL_CHARS]


def _alphabet(data: str) -> str:
    """The fixed character set of a dataset: its validation text and its first 2^20 training
    characters (StoryWorld), or the whole text read (stdlib)."""
    train, val = _stream(data, 2**20 if data == "storyworld" else STDLIB_MAX_CHARS)
    return "".join(sorted(set(val) | set(train if data == "stdlib" else train[:2**20])))


def load_data(spec: RunSpec) -> tuple[str, np.ndarray, np.ndarray]:
    """``(alphabet, train_ids, val_ids)``: the first ``U + 1`` training characters and the validation
    text, as int64 ids of the dataset's fixed character set."""
    size = 2**20
    while size < spec.unique + 2 * 512:  # a little spare: corpus() stops at the last whole story
        size *= 2
    train, val = _stream(spec.data, size if spec.data == "storyworld" else STDLIB_MAX_CHARS)
    alphabet = _alphabet(spec.data)
    lookup = np.full(0x110000, -1, dtype=np.int64)
    lookup[[ord(ch) for ch in alphabet]] = np.arange(len(alphabet))

    def encode(text):
        ids = lookup[np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)]   # [n]
        if (ids < 0).any():
            bad = text[int(np.argmax(ids < 0))]
            raise ValueError(f"character {bad!r} is not in the {spec.data} alphabet")
        return ids

    train = train[:spec.unique + 1]
    if len(train) < spec.unique + 1:
        raise ValueError(f"the {spec.data} text has only {len(train)} training characters; the run needs "
                         f"{spec.unique + 1}")
    return alphabet, encode(train), encode(val)


def window_order(spec: RunSpec) -> np.ndarray:
    """The start of every window the run trains on, in order: ``steps * batch_size`` starts, each
    epoch of the U // T windows once in a fresh shuffle.

    >>> s = RunSpec(n_layer=1, n_embd=4, n_head=1, tokens=32, lr=1e-3, batch_size=2, block_size=4,
    ...             unique_chars=16)
    >>> sorted(window_order(s)[:4].tolist()), sorted(window_order(s)[4:].tolist())   # two epochs
    ([0, 4, 8, 12], [0, 4, 8, 12])
    """
    T = spec.block_size
    per_epoch = spec.unique // T
    need = spec.steps * spec.batch_size
    rng = np.random.default_rng(spec.seed)
    epochs = [rng.permutation(per_epoch) for _ in range(-(-need // per_epoch))]
    return np.concatenate(epochs)[:need] * T                                     # [steps * B]


# ------------------------------------------------------------------------------------------------
# one run

def evaluate_bpc(params, config: GPTConfig, val_ids: np.ndarray, T: int, batch: int = 64) -> float:
    """Mean loss over every target of ``val_ids`` (non-overlapping windows of ``T``), in bits/char."""
    n = (len(val_ids) - 1) // T
    x_all = val_ids[:n * T].reshape(n, T)                                         # [n, T]
    y_all = val_ids[1:n * T + 1].reshape(n, T)                                    # [n, T]
    total = 0.0
    for i in range(0, n, batch):
        _, loss, _ = gpt_forward(params, config, x_all[i:i + batch], y_all[i:i + batch], kernels="numba")
        total += float(loss) * len(x_all[i:i + batch])
    return total / n / math.log(2)


def _set_threads(threads: int) -> None:
    import numba
    from threadpoolctl import threadpool_limits

    numba.set_num_threads(threads)
    threadpool_limits(threads)


def run_one(spec: RunSpec | dict, threads: int = 1) -> dict:
    """Train the run ``spec`` (a ``RunSpec`` or a record's ``"spec"``) and return its record."""
    if isinstance(spec, dict):
        spec = RunSpec.from_dict(spec)
    _set_threads(threads)
    t_start = time.perf_counter()
    alphabet, train_ids, val_ids = load_data(spec)
    V, T, B = len(alphabet), spec.block_size, spec.batch_size
    config = spec.gpt_config(V)
    params = init_params(config, seed=spec.seed)
    opt = AdamW(lr=spec.lr, betas=(0.9, 0.95), weight_decay=spec.weight_decay)
    starts = window_order(spec).reshape(spec.steps, B)                           # [steps, B]
    offsets = np.arange(T)                                                       # [T]
    warmup = max(1, int(spec.warmup * spec.steps))
    eval_at = {round(spec.steps * (k + 1) / spec.evals) for k in range(spec.evals)}
    curve, losses, status, diverged_step = [], [], "ok", None
    train_seconds = eval_seconds = 0.0
    for step in range(spec.steps):
        t0 = time.perf_counter()
        idx = starts[step][:, None] + offsets                                    # [B, T]
        x, y = train_ids[idx], train_ids[idx + 1]                                # [B, T] each
        _, loss, cache = gpt_forward(params, config, x, y, kernels="numba")
        grads = gpt_backward(cache)
        loss = float(loss)
        try:
            _check_finite(step, loss, grads)
            if loss > 2 * math.log(V):
                raise TrainingDiverged(step, "the loss", f"{loss:.3f} nats, above twice a uniform guess's")
            clip_grad_norm(grads, spec.grad_clip)
        except FloatingPointError:   # TrainingDiverged, or a gradient norm that overflows
            status, diverged_step = "diverged", step
            break
        opt.lr = warmup_cosine(step, spec.lr, warmup, spec.steps, spec.lr * spec.min_lr_ratio)
        opt.step(params, grads)
        losses.append(loss)
        train_seconds += time.perf_counter() - t0
        if step + 1 in eval_at:
            t0 = time.perf_counter()
            curve.append([(step + 1) * B * T, evaluate_bpc(params, config, val_ids, T)])
            eval_seconds += time.perf_counter() - t0
    n_embedding = num_params(config) - num_params(config, non_embedding=True)
    fpt = flops_per_token(config, T)
    done_tokens = len(losses) * B * T
    tail = losses[-max(1, len(losses) // 10):] if losses else [math.nan]
    return {
        "run_id": spec.run_id, "spec": asdict(spec), "status": status, "diverged_step": diverged_step,
        "model": {"vocab_size": V, "n_positions": T, "n_embd": spec.n_embd, "n_layer": spec.n_layer,
                  "n_head": spec.n_head},
        "N": spec.n_params, "N_embedding": n_embedding, "D": spec.tokens, "U": spec.unique,
        "epochs": spec.tokens / spec.unique, "steps": spec.steps,
        "lr_schedule": {"peak": spec.lr, "warmup_steps": warmup, "min_lr": spec.lr * spec.min_lr_ratio,
                        "decay": "cosine", "betas": [0.9, 0.95]},
        "flops_6ND": 6 * spec.n_params * spec.tokens, "flops": fpt * spec.tokens, "flops_per_token": fpt,
        "val_chars": len(val_ids) - 1 - (len(val_ids) - 1) % T,
        "val_curve": curve,                                                  # [[tokens seen, val bpc], ...]
        "final_bpc": curve[-1][1] if status == "ok" else None,
        "best_bpc": min(b for _, b in curve) if curve else None,
        "train_bpc_last10pct": float(np.mean(tail)) / math.log(2),
        "threads": threads, "wall_seconds": time.perf_counter() - t_start,
        "train_seconds": train_seconds, "eval_seconds": eval_seconds,
        "tokens_per_s": done_tokens / train_seconds if train_seconds else None,
        "mfu": fpt * done_tokens / train_seconds / (PEAK_FLOPS_PER_THREAD * threads) if train_seconds else None,
        "machine": machine(),
    }


@functools.lru_cache(maxsize=1)
def machine() -> dict:
    """What a run's timings and exact bits depend on: core count, CPU model, numpy and numba."""
    import numba
    cpu = ""
    if Path("/proc/cpuinfo").exists():
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"nproc": os.cpu_count(), "cpu": cpu, "numpy": np.__version__, "numba": numba.__version__}


def deterministic_fields(record: dict) -> dict:
    """A record without the fields that depend on the machine's load (``TIMING_FIELDS``): what the
    same spec must reproduce bit for bit on the same machine."""
    return {k: v for k, v in record.items() if k not in TIMING_FIELDS}


# fields of a record that depend on the machine's load, not on the spec
TIMING_FIELDS = ("wall_seconds", "train_seconds", "eval_seconds", "tokens_per_s", "mfu", "machine")


# ------------------------------------------------------------------------------------------------
# the results file

def append_record(path, record: dict) -> None:
    """Append one record as one line: a single ``write`` on an ``O_APPEND`` file, then ``fsync``."""
    line = (json.dumps(record, sort_keys=True) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        written = os.write(fd, line)
        if written != len(line):
            raise OSError(f"wrote {written} of {len(line)} bytes to {path}")
        os.fsync(fd)
    finally:
        os.close(fd)


def read_records(path) -> list[dict]:
    """Every record of a results file. A last line without its newline (a crash mid-write) is
    ignored with a warning; any other line that is not JSON is an error."""
    path = Path(path)
    if not path.exists():
        return []
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    if lines[-1]:   # no final newline: the last line is torn
        warnings.warn(f"{path}: ignoring a torn last line ({len(lines[-1])} bytes without a newline)")
    records = []
    for number, line in enumerate(lines[:-1], start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}, line {number}: not a JSON record ({exc})") from None
    return records


def _cut_torn_line(path: Path) -> None:
    """Drop a torn last line before appending, so the next record starts on a line of its own."""
    if not path.exists():
        return
    raw = path.read_bytes()
    if raw and not raw.endswith(b"\n"):
        keep = raw.rfind(b"\n") + 1
        warnings.warn(f"{path}: cutting a torn last line ({len(raw) - keep} bytes without a newline)")
        with open(path, "r+b") as f:
            f.truncate(keep)
            f.flush()
            os.fsync(f.fileno())


# ------------------------------------------------------------------------------------------------
# executors

class SerialExecutor(cf.Executor):
    """Runs each job at submission, in this process, on all threads: one run at a time."""

    def __init__(self, threads: int):
        self.threads = threads

    def submit(self, fn, *args, **kwargs):
        future = cf.Future()
        try:
            future.set_result(fn(*args, **{**kwargs, "threads": self.threads}))
        except BaseException as exc:
            future.set_exception(exc)
        return future


def make_executor(kind: str = "processes", workers: int | None = None, scheduler: str | None = None,
                  timeout: float = 5.0):
    """``(executor, close)``: a ``concurrent.futures.Executor`` of the given kind and a function that
    shuts it down. ``scheduler`` (a Dask address) wins over ``kind``."""
    if scheduler is not None:
        from distributed import Client
        try:
            client = Client(scheduler, timeout=timeout)
        except (OSError, TimeoutError) as exc:
            raise ConnectionError(f"no Dask scheduler answered at {scheduler} within {timeout:g} s ({exc}); "
                                  f"start one with: dask scheduler") from None
        return client.get_executor(pure=False), client.close
    cores = os.cpu_count() or 1
    if kind == "threads":
        return SerialExecutor(workers or cores), lambda: None
    if kind == "processes":
        import multiprocessing
        pool = cf.ProcessPoolExecutor(max_workers=workers or cores,
                                      mp_context=multiprocessing.get_context("spawn"))
        return pool, lambda: pool.shutdown(cancel_futures=True)
    raise ValueError(f"unknown executor {kind!r}; expected 'processes' or 'threads'")


def run_sweep(specs, out, executor: str = "processes", workers: int | None = None, scheduler: str | None = None,
              reuse=(), progress: bool = True) -> dict:
    """Run every spec not yet in ``out``; append each record as it finishes. Records of the same runs
    in the ``reuse`` files are copied instead of trained again. Returns counts:
    ``{"total", "skipped", "reused", "ran", "diverged"}``."""
    from tqdm.auto import tqdm

    out = Path(out)
    if not specs:
        raise ValueError("the sweep is empty: no runs to do")
    if workers is not None and workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}")
    for path in reuse:
        if not Path(path).is_file():
            raise FileNotFoundError(f"--reuse {path}: no such results file")
    out.parent.mkdir(parents=True, exist_ok=True)
    _cut_torn_line(out)
    done = {r["run_id"] for r in read_records(out)}
    todo = list({s.run_id: s for s in specs if s.run_id not in done}.values())
    counts = {"total": len(specs), "skipped": len(specs) - len(todo), "reused": 0, "ran": 0, "diverged": 0}
    available = {r["run_id"]: r for path in reuse for r in read_records(path)}
    for spec in [s for s in todo if s.run_id in available]:
        append_record(out, available[spec.run_id])
        counts["reused"] += 1
    todo = [s for s in todo if s.run_id not in available]
    if not todo:
        return counts
    best = min((r["final_bpc"] for r in read_records(out) if r.get("final_bpc") is not None), default=math.inf)
    pool, close = make_executor(executor, workers, scheduler)
    bar = tqdm(total=len(todo), desc="sweep", unit="run", disable=not progress)
    try:
        futures = [pool.submit(run_one, asdict(s)) for s in todo]
        for future in cf.as_completed(futures):
            record = future.result()
            append_record(out, record)
            counts["ran"] += 1
            counts["diverged"] += record["status"] == "diverged"
            if record["final_bpc"] is not None:
                best = min(best, record["final_bpc"])
            bar.set_postfix(best_bpc=f"{best:.4f}")
            bar.update()
    finally:
        bar.close()
        close()
    return counts
