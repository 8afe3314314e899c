"""Training throughput of our GPT-2 (numba kernels, float32) against PyTorch eager on the same shapes.

    python benchmarks/bench_gpt_train.py               # both shapes, ~2 minutes
    python benchmarks/bench_gpt_train.py --quick       # fewer steps, ~40 seconds
    python benchmarks/bench_gpt_train.py --threads 1   # one thread for numba, OpenBLAS and PyTorch

One training step is a forward pass with the loss, the backward pass, and an AdamW update
(betas (0.9, 0.95), weight decay 0.1 on matrices and embeddings, as in ``llm_from_scratch.train``);
no gradient clipping on either side. Ours is ``gpt_forward(..., kernels="numba")`` +
``gpt_backward`` + ``optim.AdamW.step`` in float32. PyTorch's is a minimal nanoGPT-style model
written below (``nn.Linear``, ``nn.LayerNorm``, ``F.scaled_dot_product_attention(is_causal=True)``,
tanh GELU, the head tied to ``wte``) with ``torch.optim.AdamW`` at its defaults otherwise, run in
eager mode in float32. It is the same network as ours, parameter for parameter: the script loads
our initial weights into it and checks that the two losses agree before timing anything.
(Hugging Face's ``GPT2LMHeadModel`` computes the same thing but was 7-14% slower here, so the
minimal model is the stricter reference.)

Shapes (B batch, T context, C width, L layers, NH heads, V vocabulary):

- (a) V=512, T=128, C=128, L=4, NH=4, B=16
- (b) V=512, T=256, C=256, L=6, NH=8, B=8

Threads: ``--threads N`` (default: every core) sets numba's thread count, OpenBLAS's (numpy's
matmuls: through ``OPENBLAS_NUM_THREADS``, set before numpy loads) and ``torch.set_num_threads``
to the same N, so both sides get the same cores. Both numba (threading layer "omp") and PyTorch
run their threads on GNU OpenMP, whose idle threads spin for a while before they sleep; on a
machine busy with other work that spinning steals the cores a descheduled thread is waiting for,
and both sides slow down several times over, erratically. ``--passive`` sets
``OMP_WAIT_POLICY=PASSIVE`` (idle threads sleep at once) for both, before either library loads;
by default the environment is left as it is. The header line says which was in force.

What is printed:

- tokens/s of each side: ``B*T`` over the median time of ``--steps`` steps, after warm-up steps
  (numba compiles, buffers are allocated). The two sides' steps alternate, so a burst of load from
  elsewhere on the machine hits both; the ratio ours/PyTorch is the figure to quote.
- MFU, model FLOPs utilisation: tokens/s times ``flops_per_token(config, T)`` (6 N + 12 L C T)
  over the float32 matmul peak of this machine, measured in the same run: the best of several
  2048 x 2048 x 2048 float32 products, before each shape and at the end, each made both by
  ``np.matmul`` (OpenBLAS on its own N threads) and by ``kernels.ops.linear_forward`` (the same
  OpenBLAS gemm on numba's N threads); both figures are printed and the larger is the peak. On a
  busy machine OpenBLAS's own threads can fall far below the other, and an MFU above 1 would
  mean the denominator was measured low.
- a per-op profile of our step: each op of ``llm_from_scratch.ops``, ``kernels.ops``, the
  attention and the optimizer is wrapped with a timer (time inside nested ops is charged to the
  inner op only), and whatever is left of the step is "other" (the residual adds, Python).

On a shared machine absolute figures drift from run to run; ratios measured side by side do less.
"""

from __future__ import annotations

import argparse
import os
import sys

from _bench import add_threads, parser, set_threads, timed


def parse_args(argv=None) -> argparse.Namespace:
    p = parser(__doc__)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    add_threads(p, cores, "threads for numba, OpenBLAS and PyTorch alike (default: every core)")
    p.add_argument("--quick", action="store_true", help="fewer steps and repeats")
    p.add_argument("--steps", type=int, default=None, help="timed steps per side (default 12, quick 5)")
    p.add_argument("--shapes", default="ab", help="which shapes to run: a, b or ab")
    p.add_argument("--passive", action="store_true",
                   help="OMP_WAIT_POLICY=PASSIVE for numba's and PyTorch's OpenMP threads")
    return p.parse_args(argv)


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None:
    # before numpy loads: OpenBLAS reads its thread count once, when it starts
    os.environ["OPENBLAS_NUM_THREADS"] = str(ARGS.threads)
    if ARGS.passive:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from llm_from_scratch.kernels import ops as kops  # noqa: E402
from llm_from_scratch.kernels.backend import get_ops  # noqa: E402
from llm_from_scratch.models import gpt  # noqa: E402
from llm_from_scratch.models.gpt import GPTConfig, flops_per_token, gpt_backward, gpt_forward, init_params  # noqa: E402
from llm_from_scratch.optim import AdamW, decays  # noqa: E402

# name -> (model config, batch size B); T is the config's n_positions
SHAPES = {
    "a": (GPTConfig(vocab_size=512, n_positions=128, n_embd=128, n_layer=4, n_head=4), 16),
    "b": (GPTConfig(vocab_size=512, n_positions=256, n_embd=256, n_layer=6, n_head=8), 8),
}
LR, BETAS, WEIGHT_DECAY = 3e-4, (0.9, 0.95), 0.1


# ----------------------------------------------------------------------------------------
# the machine's peak


def matmul_peak_gflops(repeats: int) -> tuple[float, float]:
    """Best GFLOP/s of a 2048^3 float32 product (2 n^3 FLOPs) over ``repeats`` runs, by
    ``np.matmul`` and by the numba twin ``kernels.ops.linear_forward``, alternating."""
    n = 2048
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)  # (n, n)
    b = rng.standard_normal((n, n), dtype=np.float32)  # (n, n)
    out = np.empty((n, n), dtype=np.float32)  # (n, n)
    np.matmul(a, b, out=out)  # warm-up
    kops.linear_forward(a, b)
    t_np, t_twin = [], []
    for _ in range(repeats):
        t_np.append(timed(lambda: np.matmul(a, b, out=out))[0])
        t_twin.append(timed(lambda: kops.linear_forward(a, b))[0])
    return 2 * n ** 3 / min(t_np) / 1e9, 2 * n ** 3 / min(t_twin) / 1e9


# ----------------------------------------------------------------------------------------
# the two training steps


def our_step(config: GPTConfig, params: dict, idx: np.ndarray, targets: np.ndarray):
    """A closure running one forward + backward + AdamW step of our model; returns the loss."""
    opt = AdamW(lr=LR, betas=BETAS, weight_decay=WEIGHT_DECAY)

    def step():
        _, loss, cache = gpt_forward(params, config, idx, targets, kernels="numba")
        grads = gpt_backward(cache)
        opt.step(params, grads)
        return float(loss)

    return step


def torch_model(torch, config: GPTConfig):
    """A nanoGPT-style GPT-2 with our parameter names (``nn.Linear`` keeps its (OC, C) layout)."""
    nn, F = torch.nn, torch.nn.functional
    C, NH = config.n_embd, config.n_head

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.c_attn = nn.Linear(C, 3 * C)
            self.c_proj = nn.Linear(C, C)

        def forward(self, x):
            B, T, _ = x.shape
            q, k, v = self.c_attn(x).split(C, dim=2)  # 3 x (B, T, C)
            q, k, v = (t.view(B, T, NH, C // NH).transpose(1, 2) for t in (q, k, v))  # 3 x (B, NH, T, HS)
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, NH, T, HS)
            return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))  # (B, T, C)

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.c_fc = nn.Linear(C, 4 * C)
            self.c_proj = nn.Linear(4 * C, C)

        def forward(self, x):
            return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1, self.attn = nn.LayerNorm(C, eps=config.layer_norm_epsilon), Attention()
            self.ln_2, self.mlp = nn.LayerNorm(C, eps=config.layer_norm_epsilon), MLP()

        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            return x + self.mlp(self.ln_2(x))

    class Transformer(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = nn.Embedding(config.vocab_size, C)
            self.wpe = nn.Embedding(config.n_positions, C)
            self.h = nn.ModuleList(Block() for _ in range(config.n_layer))
            self.ln_f = nn.LayerNorm(C, eps=config.layer_norm_epsilon)

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.transformer = Transformer()

        def forward(self, idx, targets):
            t = self.transformer
            x = t.wte(idx) + t.wpe(torch.arange(idx.shape[1]))  # (B, T, C)
            for block in t.h:
                x = block(x)
            logits = t.ln_f(x) @ t.wte.weight.T  # (B, T, V), the head tied to wte
            return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))

    return GPT()


def torch_step(torch, config: GPTConfig, params: dict, idx: np.ndarray, targets: np.ndarray):
    """PyTorch's step on a copy of ``params``: (closure returning the loss, the initial loss)."""
    model = torch_model(torch, config)
    state = {}
    for name, p in params.items():  # our Conv1D (C, OC) matrices are nn.Linear's (OC, C) transposed
        linear = name.endswith(".weight") and p.ndim == 2 and ".wte." not in name and ".wpe." not in name
        state[name] = torch.from_numpy(np.ascontiguousarray(p.T if linear else p).copy())
    model.load_state_dict(state, strict=True)
    named = dict(model.named_parameters())
    groups = [{"params": [p for n, p in named.items() if decays(n, params[n])], "weight_decay": WEIGHT_DECAY},
              {"params": [p for n, p in named.items() if not decays(n, params[n])], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=LR, betas=BETAS)
    idx_t, targets_t = torch.from_numpy(idx), torch.from_numpy(targets)
    with torch.no_grad():
        first_loss = float(model(idx_t, targets_t))

    def step():
        loss = model(idx_t, targets_t)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    return step, first_loss


# ----------------------------------------------------------------------------------------
# a per-op profile of our step

# category -> the (namespace or module, function name) pairs charged to it. The model calls the ops
# through the namespace of kernels.backend.get_ops, and mha_forward through gpt's own name for it.
K = get_ops("numba")
PROFILED = {
    "matmul (linear)": [(K, "linear_forward"), (K, "linear_backward")],
    "attention": [(K, "attention_forward"), (K, "attention_backward")],
    "attention head split/merge": [(gpt, "mha_forward"), (gpt, "mha_backward")],
    "layernorm": [(K, "layernorm_forward"), (K, "layernorm_backward")],
    "gelu": [(K, "gelu_forward"), (K, "gelu_backward")],
    "softmax / cross-entropy": [(K, "cross_entropy_forward"), (K, "cross_entropy_backward"),
                                (K, "softmax_forward"), (K, "softmax_backward")],
    "embedding": [(K, "embedding_forward"), (K, "embedding_backward")],
    "AdamW": [(AdamW, "step")],
}


def _profiled_functions():
    """PROFILED, plus any fused op of ``kernels.ops`` that exists."""
    table = {category: list(pairs) for category, pairs in PROFILED.items()}
    for name in getattr(kops, "PROFILE_CATEGORIES", {}):
        table.setdefault(kops.PROFILE_CATEGORIES[name], []).append((K, name))
    return table


class Profiler:
    """Wrap functions with timers; time inside a nested profiled call counts for the inner one."""

    def __init__(self, table):
        self.table = table
        self.seconds = {category: 0.0 for category in table}
        self._stack = []  # [category, start, time spent in children]
        self._saved = []

    def __enter__(self):
        for category, pairs in self.table.items():
            for owner, name in pairs:
                if not hasattr(owner, name):
                    continue
                original = getattr(owner, name)
                self._saved.append((owner, name, vars(owner).get(name)))
                setattr(owner, name, self._wrap(category, original))
        return self

    def __exit__(self, *exc):
        for owner, name, original in reversed(self._saved):
            if original is None:  # inherited (AdamW.step is Optimizer.step): drop the wrapper
                delattr(owner, name)
            else:
                setattr(owner, name, original)

    def _wrap(self, category, fn):
        def timed(*args, **kwargs):
            frame = [category, time.perf_counter(), 0.0]
            self._stack.append(frame)
            try:
                return fn(*args, **kwargs)
            finally:
                self._stack.pop()
                elapsed = time.perf_counter() - frame[1]
                self.seconds[category] += elapsed - frame[2]
                if self._stack:
                    self._stack[-1][2] += elapsed
        return timed


def profile(step, n_steps: int) -> tuple[dict[str, float], float]:
    """Seconds per step in each category (with "other"), and the profiled step's total."""
    with Profiler(_profiled_functions()) as prof:
        total = sum(timed(step)[0] for _ in range(n_steps))
    per_step = {category: s / n_steps for category, s in prof.seconds.items()}
    per_step["other"] = max(total / n_steps - sum(per_step.values()), 0.0)
    return per_step, total / n_steps


# ----------------------------------------------------------------------------------------


def run_shape(torch, name: str, config: GPTConfig, B: int, steps: int, warmup: int) -> dict:
    T = config.n_positions
    rng = np.random.default_rng(0)
    idx = rng.integers(0, config.vocab_size, size=(B, T))  # (B, T)
    targets = rng.integers(0, config.vocab_size, size=(B, T))  # (B, T)
    params = init_params(config, seed=0)
    theirs, torch_loss = torch_step(torch, config, params, idx, targets)
    _, our_loss, _ = gpt_forward(params, config, idx, targets, kernels="numba")
    if abs(float(our_loss) - torch_loss) > 1e-4 * max(1.0, abs(torch_loss)):
        raise SystemExit(f"shape {name}: our initial loss {float(our_loss):.6f} differs from PyTorch's "
                         f"{torch_loss:.6f}: the two models are not the same network")
    ours = our_step(config, params, idx, targets)
    for _ in range(warmup):
        ours()
        theirs()
    t_ours, t_torch = [], []
    for i in range(steps):  # alternate which side goes first
        pair = [(ours, t_ours), (theirs, t_torch)]
        for fn, times in (pair if i % 2 == 0 else pair[::-1]):
            times.append(timed(fn)[0])
    prof, prof_total = profile(ours, max(3, steps // 2))
    return {"name": name, "config": config, "B": B, "T": T,
            "ours": B * T / statistics.median(t_ours), "torch": B * T / statistics.median(t_torch),
            "flops": flops_per_token(config, T), "profile": prof, "profile_total": prof_total}


def main(args) -> int:
    import numba
    import torch

    set_threads(args.threads, torch)
    steps = args.steps or (5 if args.quick else 12)
    warmup = 2 if args.quick else 3
    peak_repeats = 3 if args.quick else 5

    peaks, results = [], []
    for name in args.shapes:  # the peak before each shape and at the end: the best counts
        peaks.append(matmul_peak_gflops(peak_repeats))
        results.append(run_shape(torch, name, *SHAPES[name], steps=steps, warmup=warmup))
    peaks.append(matmul_peak_gflops(peak_repeats))
    peak_np, peak_twin = max(p[0] for p in peaks), max(p[1] for p in peaks)
    peak = max(peak_np, peak_twin)
    print(f"threads: {args.threads} (numba {numba.get_num_threads()}, threading layer {numba.threading_layer()}; "
          f"OpenBLAS {os.environ['OPENBLAS_NUM_THREADS']}; torch {torch.get_num_threads()}); "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}; "
          f"numpy {np.__version__}, numba {numba.__version__}, torch {torch.__version__}; "
          f"median of {steps} steps after {warmup} warm-up steps")
    print(f"float32 matmul peak, 2048^3, best of {len(peaks) * peak_repeats}: np.matmul {peak_np:.1f} GFLOP/s, "
          f"OpenBLAS gemm on numba's threads {peak_twin:.1f} GFLOP/s; MFU below is against {peak:.1f}\n")

    print(f"{'shape':<44} {'MFLOP/tok':>9} {'ours tok/s':>11} {'torch tok/s':>12} {'ours/torch':>10} "
          f"{'MFU ours':>9} {'MFU torch':>10}")
    for r in results:
        c = r["config"]
        label = f"({r['name']}) V={c.vocab_size} T={r['T']} C={c.n_embd} L={c.n_layer} NH={c.n_head} B={r['B']}"
        mfu_ours, mfu_torch = r["ours"] * r["flops"] / peak / 1e9, r["torch"] * r["flops"] / peak / 1e9
        print(f"{label:<44} {r['flops'] / 1e6:>9.2f} {r['ours']:>11,.0f} {r['torch']:>12,.0f} "
              f"{r['ours'] / r['torch']:>10.2f} {mfu_ours:>9.2f} {mfu_torch:>10.2f}")

    for r in results:
        print(f"\nper-op profile of our step, shape ({r['name']}): {1e3 * r['profile_total']:.1f} ms per "
              f"profiled step (timers add a little)")
        print(f"  {'op':<28} {'ms/step':>8} {'share':>7}")
        for category, seconds in sorted(r["profile"].items(), key=lambda kv: -kv[1]):
            print(f"  {category:<28} {1e3 * seconds:>8.2f} {seconds / r['profile_total']:>7.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main(ARGS))
