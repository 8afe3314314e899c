"""Time the numba twins against their numpy references and PyTorch CPU.

For each op with a twin in ``llm_from_scratch.kernels.ops`` this times one forward+backward
of the numpy reference (``llm_from_scratch.ops``), the numba twin (after a warm-up call, so
compilation is not counted) and PyTorch eager autograd, on the same float32 inputs: B*T = 2048
rows, C = 128 channels, V = 512 vocabulary, and 4C = 512 for the GELU of the MLP. PyTorch runs
with as many threads as numba. Each figure is the median of ``--repeats`` calls, the three
taking turns (so a busy spell on a shared machine hits all of them).

The embedding row times the backward alone (the scatter-add; the forward is the same numpy
gather for both), and PyTorch's ``embedding_dense_backward`` for it.

Run: ``python benchmarks/bench_ops.py [--repeats 30] [--threads N]``. Exits with status 1 if
the numba LayerNorm forward+backward or embedding backward is less than 3x faster than numpy.
On a shared machine figures drift between runs; ratios measured side by side are steadier.
"""

from __future__ import annotations

import sys

import numpy as np
from _bench import TWIN_COLUMNS, TWIN_NOTE, median_seconds, print_header, ratio, report, twin_setup

from llm_from_scratch import ops
from llm_from_scratch.kernels import ops as kops

BT, C, V = 2048, 128, 512  # rows (B*T), channels, vocabulary
FLOORS = {"layernorm fwd+bwd": 3.0, "embedding bwd": 3.0}  # minimum numba speed-up over numpy


def cases(torch):
    """(name, numpy fn, numba fn, torch fn, repeats scale) for each twin, on shared inputs."""
    F = torch.nn.functional
    rng = np.random.default_rng(0)
    f32 = np.float32

    x = rng.standard_normal((BT, C)).astype(f32)  # (N, C)
    w = (1 + 0.1 * rng.standard_normal(C)).astype(f32)  # (C,)
    b = (0.1 * rng.standard_normal(C)).astype(f32)  # (C,)
    dout_c = rng.standard_normal((BT, C)).astype(f32)  # (N, C)
    logits = (2 * rng.standard_normal((BT, V))).astype(f32)  # (N, V)
    dout_v = rng.standard_normal((BT, V)).astype(f32)  # (N, V)
    targets = rng.integers(0, V, BT)  # (N,)
    idx = rng.integers(0, V, BT)  # (N,)
    h = rng.standard_normal((BT, 4 * C)).astype(f32)  # (N, 4C) MLP hidden activations
    dout_h = rng.standard_normal((BT, 4 * C)).astype(f32)  # (N, 4C)

    def t(a, grad=False):
        return torch.from_numpy(a).requires_grad_(grad)

    xt, wt, bt, dout_ct = t(x, True), t(w, True), t(b, True), t(dout_c)
    logits_t, dout_vt, targets_t = t(logits, True), t(dout_v), torch.from_numpy(targets)
    ht, dout_ht, idx_t = t(h, True), t(dout_h), torch.from_numpy(idx)

    def layernorm(m):
        def run():
            out, cache = m.layernorm_forward(x, w, b)
            return m.layernorm_backward(dout_c, cache)
        return run

    def torch_layernorm():
        xt.grad = wt.grad = bt.grad = None
        F.layer_norm(xt, (C,), wt, bt, 1e-5).backward(dout_ct)

    def softmax(m):
        def run():
            out, cache = m.softmax_forward(logits)
            return m.softmax_backward(dout_v, cache)
        return run

    def torch_softmax():
        logits_t.grad = None
        F.softmax(logits_t, dim=-1).backward(dout_vt)

    def cross_entropy(m):
        def run():
            loss, cache = m.cross_entropy_forward(logits, targets)
            return m.cross_entropy_backward(1.0, cache)
        return run

    def torch_cross_entropy():
        logits_t.grad = None
        F.cross_entropy(logits_t, targets_t).backward()

    def gelu(m, approximate):
        def run():
            out, cache = m.gelu_forward(h, approximate=approximate)
            return m.gelu_backward(dout_h, cache)
        return run

    def torch_gelu(approximate):
        def run():
            ht.grad = None
            F.gelu(ht, approximate=approximate).backward(dout_ht)
        return run

    emb_cache = (idx, V)

    def embedding(m):
        return lambda: m.embedding_backward(dout_c, emb_cache)

    def torch_embedding():
        torch.ops.aten.embedding_dense_backward(dout_ct, idx_t, V, -1, False)

    return [
        ("layernorm fwd+bwd", layernorm(ops), layernorm(kops), torch_layernorm, 1),
        ("softmax fwd+bwd", softmax(ops), softmax(kops), torch_softmax, 1),
        ("cross_entropy fwd+bwd", cross_entropy(ops), cross_entropy(kops), torch_cross_entropy, 1),
        ("gelu tanh fwd+bwd", gelu(ops, "tanh"), gelu(kops, "tanh"), torch_gelu("tanh"), 1),
        ("gelu erf fwd+bwd", gelu(ops, "none"), gelu(kops, "none"), torch_gelu("none"), 0.2),
        ("embedding bwd", embedding(ops), embedding(kops), torch_embedding, 1),
    ]


def main() -> int:
    args, torch, threads = twin_setup(__doc__, 30, "timed calls per figure (median reported)")
    print(f"float32, B*T = {BT} rows, C = {C}, V = {V}, GELU on (B*T, 4C); {threads} threads for numba "
          f"and PyTorch {torch.__version__}; median of {args.repeats} repeats, times in ms")
    header = f"{'op':<24}{TWIN_COLUMNS}"
    print_header(header)
    failed = []
    for name, np_fn, nb_fn, torch_fn, scale in cases(torch):
        repeats = {"numpy": max(3, int(args.repeats * scale)), "numba": args.repeats, "torch": args.repeats}
        t = median_seconds({"numpy": np_fn, "numba": nb_fn, "torch": torch_fn}, repeats)
        t_np, t_nb, t_torch = (1e3 * t[k][0] for k in ("numpy", "numba", "torch"))
        speedup = t_np / t_nb
        print(f"{name:<24}{t_np:>10.3f}{t_nb:>10.3f}{t_torch:>10.3f}{ratio(speedup, 16, 1)}{ratio(t_torch / t_nb, 16)}")
        if name in FLOORS and speedup < FLOORS[name]:
            failed.append(f"{name}: numba is {speedup:.1f}x faster than numpy, expected at least {FLOORS[name]}x")
    print(TWIN_NOTE)
    return report(failed, "BELOW FLOOR")


if __name__ == "__main__":
    sys.exit(main())
