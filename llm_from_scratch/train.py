"""A training loop a reader would want to use, for any model given as functions.

``train`` runs AdamW with a warmup + cosine learning-rate schedule and gradient clipping on
random windows of a token array, and on the side:

- shows a progress bar with the loss and tokens per second;
- measures the validation loss every ``eval_every`` steps (on a fixed set of windows, so the
  numbers are comparable across a run and across runs);
- appends one JSON line per step (and per evaluation) to ``metrics.jsonl``, which
  ``read_metrics`` / ``plot_metrics`` read back;
- writes a checkpoint every ``checkpoint_every`` steps, atomically: everything goes into a fresh
  temporary folder that is renamed into place only when complete, then ``latest`` is switched to
  it, so a crash at any moment leaves the previous checkpoint intact;
- resumes from a checkpoint **bit-identically**: the parameters, the optimizer's moments, the
  step, and the state of the random generator that draws the batches are all saved (as
  safetensors and JSON, never pickle), so a resumed run produces the same losses as one that was
  never interrupted;
- stops with ``TrainingDiverged`` naming the step and the offending tensor as soon as the loss or
  any gradient is NaN or infinite, before the update can spread it into the parameters.

The model is any pair of functions ``loss_and_grads(params, x, y) -> (loss, grads)`` and
``loss_fn(params, x, y) -> loss`` over a flat dict of named float arrays, so the same loop trains
the MLP of chapter 3 and the GPT of chapter 8. ``save_model(params, directory)`` lets a model
write its own files into each checkpoint (the GPT writes a Hugging Face checkpoint there).

Left out: gradient accumulation, mixed precision, data-parallel training, early stopping.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from llm_from_scratch import safetensors
from llm_from_scratch.data.batching import get_batch
from llm_from_scratch.fileio import append_line, atomic_write
from llm_from_scratch.optim import AdamW, clip_grad_norm, warmup_cosine

__all__ = ["TrainConfig", "TrainingDiverged", "train", "read_metrics", "plot_metrics", "load_checkpoint",
           "latest_checkpoint"]


def _setting(default, help: str):
    """A ``TrainConfig`` field whose help (``llm-scratch train --help`` shows it) is in its metadata."""
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class TrainConfig:
    """How to train: every field is also a flag of ``llm-scratch train`` (``--batch-size`` for
    ``batch_size``), with the field's help and default.

    >>> TrainConfig(lr=2e-3).min_lr   # the end of the cosine is a tenth of the peak unless given
    0.0002
    """

    steps: int = _setting(1000, "optimizer steps in the whole run")
    batch_size: int = _setting(16, "B: windows per step")
    block_size: int = _setting(128, "T: tokens per window (the context length)")
    lr: float = _setting(1e-3, "peak learning rate")
    min_lr: float | None = _setting(None, "learning rate at the end of the cosine decay (default: lr / 10)")
    warmup_steps: int = _setting(50, "linear warmup from lr/warmup_steps to lr")
    weight_decay: float = _setting(0.1, "AdamW's decoupled weight decay (matrices only, see optim.decays)")
    betas: tuple = _setting((0.9, 0.95), "AdamW's moment decay rates")
    grad_clip: float = _setting(1.0, "clip the global gradient norm to this (0 = no clipping)")
    eval_every: int = _setting(100, "steps between validation measurements (0 = only at the end)")
    eval_batches: int = _setting(8, "validation windows = eval_batches * batch_size, fixed for the run")
    checkpoint_every: int = _setting(200, "steps between checkpoints (0 = only at the end), if there is an "
                                          "output folder")
    keep_checkpoints: int = _setting(2, "how many step_* folders to keep")
    seed: int = _setting(0, "seeds the batch sampler")

    def __post_init__(self):
        if self.min_lr is None:
            object.__setattr__(self, "min_lr", self.lr / 10)  # frozen: set once, here
        for name in ("steps", "batch_size", "block_size", "eval_batches"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be at least 1, got {getattr(self, name)}")
        for name in ("warmup_steps", "eval_every", "checkpoint_every", "weight_decay", "grad_clip"):
            if getattr(self, name) < 0:
                raise ValueError(f"TrainConfig.{name} must be non-negative, got {getattr(self, name)}")
        if not 0 < self.lr or not 0 <= self.min_lr <= self.lr:
            raise ValueError(f"need 0 < lr and 0 <= min_lr <= lr, got lr={self.lr}, min_lr={self.min_lr}")
        if self.warmup_steps >= self.steps:
            raise ValueError(f"warmup_steps ({self.warmup_steps}) must be smaller than steps ({self.steps})")
        if self.keep_checkpoints < 1:
            raise ValueError(f"keep_checkpoints must be at least 1, got {self.keep_checkpoints}")


class TrainingDiverged(FloatingPointError):
    """The loss or a gradient became NaN or infinite; ``step`` and ``tensor`` say where."""

    def __init__(self, step: int, tensor: str, detail: str):
        super().__init__(f"training diverged at step {step}: {tensor} is {detail}. Lower the learning rate "
                         f"or clip gradients harder; the last checkpoint is unaffected.")
        self.step = step
        self.tensor = tensor


def _check_finite(step: int, loss: float, grads: dict[str, np.ndarray]) -> None:
    if not math.isfinite(loss):
        raise TrainingDiverged(step, "the loss", str(loss))
    for name, g in grads.items():
        if not np.all(np.isfinite(g)):
            bad = np.argwhere(~np.isfinite(g))[0]
            raise TrainingDiverged(step, f"the gradient of {name}",
                                   f"{g[tuple(bad)]} at index {tuple(int(i) for i in bad)}")


# ------------------------------------------------------------------------------------------------
# checkpoints

def latest_checkpoint(out_dir) -> Path | None:
    """The folder ``out_dir/latest`` points to, or None if there is no checkpoint yet."""
    pointer = Path(out_dir) / "latest"
    if not pointer.exists():
        return None
    target = Path(out_dir) / pointer.read_text(encoding="utf-8").strip()
    if not (target / "trainer_state.json").is_file():
        raise FileNotFoundError(f"{pointer} points to {target}, which is not a complete checkpoint")
    return target


def _save_checkpoint(out_dir: Path, step: int, params, opt: AdamW, rng: np.random.Generator, config: TrainConfig,
                     save_model: Callable | None, keep: int) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    name = f"step_{step:07d}"
    final = out_dir / name
    tmp = out_dir / f".{name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    safetensors.save(params, tmp / "params.safetensors")
    state = opt.state_dict()
    arrays = {k: v for k, v in state.items() if isinstance(v, np.ndarray)}
    scalars = {k: v for k, v in state.items() if not isinstance(v, np.ndarray)}
    if arrays:
        safetensors.save(arrays, tmp / "optimizer.safetensors")
    trainer_state = {"step": step, "optimizer_scalars": _jsonable(scalars),
                     "rng_state": _jsonable(rng.bit_generator.state), "train_config": _jsonable(asdict(config))}
    atomic_write(tmp / "trainer_state.json", json.dumps(trainer_state, indent=1))
    if save_model is not None:
        save_model(params, tmp)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    atomic_write(out_dir / "latest", name + "\n")
    for old in sorted(out_dir.glob("step_*"))[:-keep]:
        shutil.rmtree(old)
    for stale in out_dir.glob(".step_*.tmp"):  # half-written by a run that was killed
        shutil.rmtree(stale, ignore_errors=True)
    return final


def _before(row: dict, step: int) -> bool:
    """Whether a metrics line was written before the checkpoint at ``step`` (training lines count
    steps from 0, validation lines the number of steps done)."""
    return row["step"] <= step if "val_loss" in row else row["step"] < step


def _json_line(line: str) -> dict | None:
    """A metrics line, or None for half a line: what a run killed inside a write, or stopped by a
    full disk, leaves at the end of the file."""
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return None


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    return x


def load_checkpoint(path) -> tuple[dict[str, np.ndarray], dict, dict]:
    """Read a checkpoint folder: ``(params, optimizer_state, trainer_state)``. No pickle involved."""
    path = Path(path)
    state_file = path / "trainer_state.json"
    if not state_file.is_file():
        raise FileNotFoundError(f"{path} is not a checkpoint: it has no trainer_state.json")
    trainer_state = json.loads(state_file.read_text(encoding="utf-8"))
    params = safetensors.load(path / "params.safetensors")
    opt_state = dict(trainer_state["optimizer_scalars"])
    if (path / "optimizer.safetensors").exists():
        opt_state.update(safetensors.load(path / "optimizer.safetensors"))
    return params, opt_state, trainer_state


# ------------------------------------------------------------------------------------------------
# metrics

def read_metrics(path) -> dict[str, list]:
    """Read ``metrics.jsonl`` into lists: step, loss, lr, tokens_per_s, val_step, val_loss."""
    out = {"step": [], "loss": [], "lr": [], "tokens_per_s": [], "val_step": [], "val_loss": []}
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    for i, line in enumerate(lines):
        row = _json_line(line)
        if row is None and i == len(lines) - 1:
            break  # half a line: the run was killed while writing it
        if row is None:
            raise ValueError(f"{path}: line {i + 1} is not JSON: {line[:80]!r}")
        if "val_loss" in row:
            out["val_step"].append(row["step"])
            out["val_loss"].append(row["val_loss"])
        else:
            for k in ("step", "loss", "lr", "tokens_per_s"):
                out[k].append(row[k])
    return out


def plot_metrics(path, ax=None, floor: float | None = None, unit_scale: float = 1.0, label: str = ""):
    """Plot training and validation loss from ``metrics.jsonl`` (times ``unit_scale``, e.g. to
    convert nats per token to bits per character), with an optional horizontal floor."""
    import matplotlib.pyplot as plt

    m = read_metrics(path)
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4))
    ax.plot(m["step"], np.array(m["loss"]) * unit_scale, alpha=0.4, label=f"{label} train".strip())
    ax.plot(m["val_step"], np.array(m["val_loss"]) * unit_scale, "o-", label=f"{label} validation".strip())
    if floor is not None:
        ax.axhline(floor, color="k", ls="--", lw=1, label="entropy floor")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    return ax


# ------------------------------------------------------------------------------------------------
# the loop

@dataclass
class TrainResult:
    params: dict
    step: int
    history: dict = field(default_factory=dict)
    seconds: float = 0.0


def _validation_windows(val_tokens: np.ndarray, config: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(config.seed + 1)
    return get_batch(val_tokens, config.batch_size * config.eval_batches, config.block_size, rng)


def evaluate(loss_fn: Callable, params, x: np.ndarray, y: np.ndarray, batch_size: int) -> float:
    """Mean loss over fixed windows, in batches of ``batch_size``."""
    losses = [float(loss_fn(params, x[i:i + batch_size], y[i:i + batch_size])) for i in range(0, len(x), batch_size)]
    return float(np.mean(losses))


def train(loss_and_grads: Callable, loss_fn: Callable, params: dict[str, np.ndarray], train_tokens: np.ndarray,
          val_tokens: np.ndarray | None, config: TrainConfig, out_dir=None, resume: bool = False,
          save_model: Callable | None = None, progress: bool = True, stop_after: int | None = None,
          sample_batch: Callable | None = None) -> TrainResult:
    """Train ``params`` in place; return them with the history of losses.

    ``sample_batch(rng, batch_size) -> (x, y)``, if given, draws each training batch instead of
    random windows of ``train_tokens`` (pairs of padded sentences for translation, say), and
    ``val_tokens`` may then be a fixed pair ``(x, y)`` of validation arrays.

    ``out_dir`` receives ``metrics.jsonl`` and the checkpoints; with ``resume=True`` the run
    continues from ``out_dir/latest`` (parameters, optimizer, step and batch sampler restored).
    ``stop_after`` ends the run early after that many steps (as an interruption would), without
    changing the schedule, which is always computed for ``config.steps``.
    """
    from tqdm.auto import tqdm

    out = Path(out_dir) if out_dir is not None else None
    rng = np.random.default_rng(config.seed)
    opt = AdamW(lr=config.lr, betas=tuple(config.betas), weight_decay=config.weight_decay)
    start_step = 0
    if resume:
        ckpt = latest_checkpoint(out) if out is not None else None
        if ckpt is None:
            raise FileNotFoundError(f"resume=True but there is no checkpoint in {out}")
        saved, opt_state, trainer_state = load_checkpoint(ckpt)
        if set(saved) != set(params):
            raise ValueError(f"checkpoint {ckpt} has parameters {sorted(set(saved) ^ set(params))[:5]} "
                             f"that the model does not (or the other way round)")
        for k in params:
            if saved[k].shape != params[k].shape:
                raise ValueError(f"checkpoint {ckpt}: {k} has shape {saved[k].shape}, the model {params[k].shape}")
            params[k][...] = saved[k]
        opt.load_state_dict(opt_state)
        rng.bit_generator.state = trainer_state["rng_state"]
        start_step = int(trainer_state["step"])
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        metrics_path = out / "metrics.jsonl"
        kept = []  # a fresh run starts an empty file; a resumed one drops lines written after its checkpoint
        if resume and metrics_path.exists():
            kept = [line for line in metrics_path.read_text(encoding="utf-8").splitlines()
                    if line and (row := _json_line(line)) is not None and _before(row, start_step)]
        atomic_write(metrics_path, "".join(line + "\n" for line in kept))
    val_x = val_y = None
    if isinstance(val_tokens, tuple):
        val_x, val_y = val_tokens
    elif val_tokens is not None:
        val_x, val_y = _validation_windows(val_tokens, config)

    history = {"step": [], "loss": [], "val_step": [], "val_loss": []}
    end_step = config.steps if stop_after is None else min(config.steps, start_step + stop_after)
    tokens_per_step = config.batch_size * config.block_size
    t_start = time.perf_counter()
    bar = tqdm(range(start_step, end_step), initial=start_step, total=config.steps, disable=not progress,
               desc="train", mininterval=1.0)
    try:
        for step in bar:
            t0 = time.perf_counter()
            if sample_batch is None:
                x, y = get_batch(train_tokens, config.batch_size, config.block_size, rng)
            else:
                x, y = sample_batch(rng, config.batch_size)
                tokens_per_step = x.size if x.shape == y.shape else x.size + y.size  # a source and a target
            loss, grads = loss_and_grads(params, x, y)
            loss = float(loss)
            _check_finite(step, loss, grads)
            if config.grad_clip > 0:
                try:
                    clip_grad_norm(grads, config.grad_clip)
                except FloatingPointError as exc:  # finite gradients whose squared norm overflows
                    raise TrainingDiverged(step, "the global gradient norm", f"not finite ({exc})") from None
            opt.lr = warmup_cosine(step, config.lr, config.warmup_steps, config.steps, config.min_lr)
            opt.step(params, grads)
            dt = time.perf_counter() - t0
            history["step"].append(step)
            history["loss"].append(loss)
            if out is not None:
                append_line(metrics_path, json.dumps({"step": step, "loss": loss, "lr": opt.lr,
                                                      "tokens_per_s": tokens_per_step / dt}))
            done = step + 1
            postfix = {"loss": f"{loss:.4f}", "tok/s": f"{tokens_per_step / dt:,.0f}"}
            if val_x is not None and ((config.eval_every and done % config.eval_every == 0) or done == config.steps):
                val = evaluate(loss_fn, params, val_x, val_y, config.batch_size)
                history["val_step"].append(done)
                history["val_loss"].append(val)
                postfix["val"] = f"{val:.4f}"
                if out is not None:
                    append_line(metrics_path, json.dumps({"step": done, "val_loss": val}))
            bar.set_postfix(postfix, refresh=False)
            if out is not None and ((config.checkpoint_every and done % config.checkpoint_every == 0)
                                    or done == config.steps):
                _save_checkpoint(out, done, params, opt, rng, config, save_model, config.keep_checkpoints)
    finally:
        bar.close()
    return TrainResult(params=params, step=end_step, history=history, seconds=time.perf_counter() - t_start)
