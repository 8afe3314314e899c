"""Time causal attention, forward + backward: the numpy reference, the numba kernel, PyTorch.

On the attention shapes of the book's two GPT configurations, float32, (B, NH, T, HS) =
(16, 4, 128, 32) and (8, 8, 256, 32), this times one ``attention_forward`` +
``attention_backward`` of ``llm_from_scratch.attention`` (numpy) and of
``llm_from_scratch.kernels.attention`` (numba, after a warm-up call so compilation is not
counted), and ``torch.nn.functional.scaled_dot_product_attention(is_causal=True)`` forward +
``backward`` (PyTorch eager, CPU). PyTorch runs with as many threads as numba. The three are
timed in interleaved rounds (so a busy spell on a shared machine hits all of them), and each
figure is the median over rounds. The largest difference between the numba and numpy outputs
and gradients is printed too, so the figures are of a kernel that computes the right thing.

Run: ``python benchmarks/bench_attention.py [--repeats 20] [--threads N]``. Exits with status 1
if the numba kernel is slower than PyTorch on a shape. On a shared machine figures drift
between runs; the ratios, measured side by side, are steadier.
"""

from __future__ import annotations

import sys

import numpy as np
from _bench import TWIN_COLUMNS, TWIN_NOTE, median_seconds, print_header, ratio, report, twin_setup

from llm_from_scratch import attention as ref
from llm_from_scratch.kernels import attention as kattn

SHAPES = [(16, 4, 128, 32), (8, 8, 256, 32)]  # (B, NH, T, HS) of the two GPT configurations
TARGET = 1.0  # minimum speed of the numba kernel relative to PyTorch (torch time / numba time)


def max_difference(a, b) -> float:
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b))


def main() -> int:
    args, torch, threads = twin_setup(__doc__, 20, "timed rounds (median reported); numpy, ~50x slower, runs in a "
                                                   "quarter of them")
    F = torch.nn.functional
    print(f"causal attention forward + backward, float32; {threads} threads for numba and PyTorch "
          f"{torch.__version__}; median of {args.repeats} rounds, times in ms")
    header = f"{'(B, NH, T, HS)':<18}{TWIN_COLUMNS}{'max |numba - numpy|':>22}"
    print_header(header)
    failed = []
    for B, NH, T, HS in SHAPES:
        rng = np.random.default_rng(0)
        q, k, v, dout = (rng.standard_normal((B, NH, T, HS)).astype(np.float32) for _ in range(4))
        qt, kt, vt = (torch.from_numpy(a).requires_grad_(True) for a in (q, k, v))
        dout_t = torch.from_numpy(dout)

        def run(module):
            def fwd_bwd():
                out, cache = module.attention_forward(q, k, v, causal=True)
                return (out, *module.attention_backward(dout, cache))
            return fwd_bwd

        def torch_fwd_bwd():
            qt.grad = kt.grad = vt.grad = None
            F.scaled_dot_product_attention(qt, kt, vt, is_causal=True).backward(dout_t)

        diff = max_difference(run(kattn)(), run(ref)())
        fns = {"numpy": run(ref), "numba": run(kattn), "torch": torch_fwd_bwd}
        repeats = {"numpy": max(3, args.repeats // 4), "numba": args.repeats, "torch": args.repeats}
        t = {name: 1e3 * s for name, (s, _) in median_seconds(fns, repeats).items()}
        vs_torch = t["torch"] / t["numba"]
        print(f"{str((B, NH, T, HS)):<18}{t['numpy']:>10.2f}{t['numba']:>10.2f}{t['torch']:>10.2f}"
              f"{ratio(t['numpy'] / t['numba'], 16, 1)}{ratio(vs_torch, 16)}{diff:>22.1e}")
        if vs_torch < TARGET:
            failed.append(f"{(B, NH, T, HS)}: numba is {vs_torch:.2f}x PyTorch's speed, "
                          f"expected at least {TARGET}x")
    print(TWIN_NOTE)
    return report(failed, "BELOW TARGET")


if __name__ == "__main__":
    sys.exit(main())
