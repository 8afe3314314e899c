"""``llm-scratch train`` killed with SIGKILL at random moments, then ``--resume``d, must end with
the same weights, bit for bit, as a run that was never interrupted.

The kills land anywhere: in start-up, in a training step, while a checkpoint folder is being
written or renamed, while ``latest`` is switched, while old checkpoints are deleted (a tiny
model with a checkpoint every 2 steps spends much of its time there). After each kill the run is
restarted with ``--resume`` when a checkpoint exists, and from scratch when none does (as a user
would). ``python -m tests.test_kill_resume 12`` prints the tables for 12 kills: 300 steps with a
checkpoint every 2, and 3000 steps with one every 100.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from llm_from_scratch.safetensors import load

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--n-chars", "20000", "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16",
        "--batch-size", "4", "--eval-every", "10", "--kernels", "numpy",
        "--lr", "3e-3", "--warmup", "5"]


def _command(out: Path, steps: int, resume: bool, every: int = 2) -> list[str]:
    return [sys.executable, "-m", "llm_from_scratch.cli", "train", "--out", str(out), "--steps", str(steps),
            *TINY, "--checkpoint-every", str(every), *(["--resume"] if resume else [])]


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _has_checkpoint(out: Path) -> bool:
    return (out / "latest").exists()


def _run(out: Path, steps: int, every: int) -> subprocess.CompletedProcess:
    return subprocess.run(_command(out, steps, _has_checkpoint(out), every), env=_env(), capture_output=True,
                          text=True, timeout=600)


def _final_state(out: Path) -> dict[str, np.ndarray]:
    ckpt = out / (out / "latest").read_text().strip()
    state = {f"params/{k}": v for k, v in load(ckpt / "params.safetensors").items()}
    state.update({f"optimizer/{k}": v for k, v in load(ckpt / "optimizer.safetensors").items()})
    return state


def _latest(out: Path) -> str:
    try:
        return (out / "latest").read_text().strip()
    except OSError:
        return "-"


def _step(name: str) -> int:
    return int(name.split("_")[1]) if name.startswith("step_") else 0


def _leftovers(out: Path) -> list[str]:
    # what a kill left half-done: temporary checkpoint folders and files
    return sorted(p.name for p in out.rglob("*") if p.name.startswith(".") and ".tmp" in p.name)


def kill_and_resume(tmp_path: Path, steps: int, kills: int, seed: int = 0, every: int = 2) -> dict:
    """Run once uninterrupted, then ``kills`` times killed at random moments and resumed; return
    what happened and whether the final weights and optimizer state are bit-identical."""
    ref = tmp_path / "uninterrupted"
    t0 = time.perf_counter()
    done = _run(ref, steps, every)
    assert done.returncode == 0, done.stderr[-2000:]
    full_time = time.perf_counter() - t0
    rng = np.random.default_rng(seed)
    out = tmp_path / "killed"
    rows = []
    for k in range(kills):
        resumed = _has_checkpoint(out)
        before = (out / "latest").read_text().strip() if resumed else "-"
        proc = subprocess.Popen(_command(out, steps, resumed, every), env=_env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        # kill at a random step of what is left: wait until the checkpoint just before it is on
        # disk, then a random 0-150 ms more (a few steps, checkpoint writes included); the first
        # kill and every fourth one land at a random moment of start-up or the first steps instead
        start = _step(before)
        reach = max(2, 2 * (steps - start) // (kills - k + 1))  # spread the kills over the run
        target = min(steps, start + 1 + int(rng.integers(0, reach)))
        early = k % 4 == 0
        t0 = time.perf_counter()
        if every <= 10:
            while proc.poll() is None and not early and _step(_latest(out)) < target - every:
                time.sleep(0.002)
            wait = float(rng.uniform(0.2, 2.0) if early else rng.uniform(0.0, 0.15))
        else:  # checkpoints too rare to aim by: a random moment of what is left of the run
            target, early = "random time", False
            wait = float(rng.uniform(0.3, 0.3 + (full_time - 0.3) * (1 - start / steps)))
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        delay = time.perf_counter() - t0
        err = proc.stderr.read()
        proc.stderr.close()
        after = (out / "latest").read_text().strip() if _has_checkpoint(out) else "-"
        metrics = out / "metrics.jsonl"
        torn = metrics.exists() and metrics.stat().st_size > 0 and not metrics.read_bytes().endswith(b"\n")
        rows.append({"torn metrics line": "yes" if torn else "-", "kill": k, "resumed": resumed, "from": before,
                     "aimed at step": "start-up" if early else target,
                     "killed after": f"{delay:.2f}s", "latest after": after,
                     "exit": proc.returncode, "left half-written": ", ".join(_leftovers(out)) or "-",
                     "error": err.strip().splitlines()[-1] if proc.returncode not in (0, -signal.SIGKILL) and err
                     else ""})
    final = _run(out, steps, every)
    a, b = _final_state(ref), _final_state(out)
    diff = max(float(np.max(np.abs(a[k].astype(np.float64) - b[k]))) if a[k].size else 0.0 for k in a)
    return {"rows": rows, "final_exit": final.returncode, "final_err": final.stderr[-500:],
            "identical": set(a) == set(b) and all(np.array_equal(a[k], b[k]) for k in a), "max_abs_diff": diff,
            "uninterrupted_s": full_time}


def format_report(r: dict) -> str:
    cols = ["kill", "resumed", "from", "aimed at step", "killed after", "latest after", "exit", "left half-written",
            "torn metrics line", "error"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in r["rows"]:
        lines.append("| " + " | ".join(str(row[c]) for c in cols) + " |")
    lines.append(f"final --resume exit {r['final_exit']}; bit-identical weights and optimizer state: "
                 f"{r['identical']} (max abs diff {r['max_abs_diff']:.3g}); uninterrupted run "
                 f"{r['uninterrupted_s']:.1f} s")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# half-written files that --resume used to refuse, made on purpose: half a metrics line (a kill
# inside a write system call, or a full disk) and a half-written tokenizer.json (a kill between
# opening it for writing, which empties it, and closing it; every start rewrote it)

def _tiny_run(out: Path, steps: int, stop_after=None):
    from llm_from_scratch.pretrain import pretrain_gpt
    from llm_from_scratch.train import TrainConfig
    tc = TrainConfig(steps=steps, batch_size=4, block_size=16, lr=3e-3, min_lr=3e-4, warmup_steps=2, eval_every=3,
                     checkpoint_every=4)
    return pretrain_gpt(out, n_chars=20000, n_layer=1, n_head=2, n_embd=16, train_config=tc, kernels="numpy",
                        progress=False, stop_after=stop_after, resume=_has_checkpoint(out))


def test_resume_after_a_kill_tore_the_last_metrics_line_and_the_tokenizer_file(tmp_path):
    from llm_from_scratch.train import read_metrics
    whole = _tiny_run(tmp_path / "whole", 8)
    out = tmp_path / "killed"
    _tiny_run(out, 8, stop_after=6)                        # checkpoint at step 4, metrics up to step 5
    with open(out / "metrics.jsonl", "a", encoding="utf-8") as f:
        f.write('{"step": 6, "lo')                          # metrics.jsonl is buffered: half a line
    text = (out / "tokenizer.json").read_text(encoding="utf-8")
    (out / "tokenizer.json").write_text(text[:len(text) // 2], encoding="utf-8")   # killed mid-write
    assert read_metrics(out / "metrics.jsonl")["step"] == list(range(6))
    resumed = _tiny_run(out, 8)
    assert all(np.array_equal(whole.params[k], resumed.params[k]) for k in whole.params)
    m = read_metrics(out / "metrics.jsonl")
    assert m["step"] == list(range(8)) and m["val_step"] == [3, 6, 8]
    assert read_metrics(tmp_path / "whole" / "metrics.jsonl")["loss"] == m["loss"]


@pytest.mark.slow
def test_killed_and_resumed_training_is_bit_identical(tmp_path):
    r = kill_and_resume(tmp_path, steps=60, kills=3, seed=1)
    print("\n" + format_report(r))
    assert r["final_exit"] == 0, r["final_err"]
    errors = [row for row in r["rows"] if row["error"]]
    assert not errors, f"a restart failed: {errors[0]}"
    assert r["identical"], f"final state differs from the uninterrupted run: max abs diff {r['max_abs_diff']}"


if __name__ == "__main__":
    import tempfile
    kills = int(sys.argv[1]) if len(sys.argv) > 1 else 12
    configs = [(300, 2), (3000, 100)]   # (steps, checkpoint every): checkpoint writes all the time, or
    if len(sys.argv) > 3:               # metrics lines buffered for long (a kill can tear one)
        configs = [(int(sys.argv[2]), int(sys.argv[3]))]
    for steps, every in configs:
        with tempfile.TemporaryDirectory() as d:
            print(f"checkpoint every {every} steps, {steps} steps, {kills} kills")
            print(format_report(kill_and_resume(Path(d), steps, kills, seed=0, every=every)))
