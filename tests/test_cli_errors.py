"""Every ``llm-scratch`` subcommand, given bad input, says what was wrong in one line on stderr,
prints no traceback, and exits with status 2.

Each case runs the real command line in a subprocess, as a user meets it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TINY = ["--n-chars", "20000", "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16",
        "--batch-size", "4", "--eval-every", "2", "--checkpoint-every", "2", "--kernels", "numpy"]


def run(*args, cwd=None):
    env = {k: v for k, v in os.environ.items() if k != "LLM_SCRATCH_DEBUG"}
    return subprocess.run([sys.executable, "-m", "llm_from_scratch.cli", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=300)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A trained tiny run, a corrupt copy of it, a mismatched copy, and small text files."""
    root = tmp_path_factory.mktemp("cli")
    done = run("train", "--out", root / "run", "--steps", "2", *TINY)
    assert done.returncode == 0, done.stderr
    ckpt = root / "run" / (root / "run" / "latest").read_text().strip()
    corrupt = root / "corrupt"
    corrupt.mkdir()
    for name in ("model.safetensors", "tokenizer.json"):
        (corrupt / name).write_bytes((ckpt / name).read_bytes())
    (corrupt / "config.json").write_text("{not json", encoding="utf-8")
    mismatched = root / "mismatched"
    mismatched.mkdir()
    for name in ("model.safetensors", "tokenizer.json"):
        (mismatched / name).write_bytes((ckpt / name).read_bytes())
    config = json.loads((ckpt / "config.json").read_text())
    config["n_embd"] = 32  # the tensors are 16 wide
    (mismatched / "config.json").write_text(json.dumps(config), encoding="utf-8")
    (root / "empty.txt").write_text("", encoding="utf-8")
    (root / "blank.txt").write_text("\n  \n", encoding="utf-8")
    (root / "sentences.txt").write_text("Lily went home.\n", encoding="utf-8")
    (root / "binary.txt").write_bytes(b"\xff\xfe\x00bad")
    (root / "adir").mkdir()
    bad_ckpt = root / "bad_bert"
    bad_ckpt.mkdir()
    (bad_ckpt / "config.json").write_text("[]", encoding="utf-8")
    return root


CASES = {
    # train
    "train: data file missing": ("train", "--out", "{r}/t1", "--data", "{r}/missing.txt", *TINY),
    "train: data is a directory": ("train", "--out", "{r}/t2", "--data", "{r}/adir", *TINY),
    "train: data file empty": ("train", "--out", "{r}/t3", "--data", "{r}/empty.txt", *TINY),
    "train: data file not UTF-8": ("train", "--out", "{r}/t4", "--data", "{r}/binary.txt", *TINY),
    "train: out is a file": ("train", "--out", "{r}/sentences.txt", "--steps", "2", *TINY),
    "train: zero steps": ("train", "--out", "{r}/t5", "--steps", "0", *TINY),
    "train: negative learning rate": ("train", "--out", "{r}/t6", "--lr", "-1", *TINY),
    "train: width not divisible by heads": ("train", "--out", "{r}/t7", *TINY, "--n-embd", "10", "--n-head", "4"),
    "train: zero layers": ("train", "--out", "{r}/t8", *TINY, "--n-layer", "0"),
    "train: not a number": ("train", "--out", "{r}/t9", "--steps", "many"),
    "train: unknown flag": ("train", "--out", "{r}/t10", "--stepz", "3"),
    "train: resume from a corrupt run": ("train", "--out", "{r}/corrupt", "--resume", "--steps", "4", *TINY),
    # generate
    "generate: missing run": ("generate", "{r}/nothing", "--prompt", "Lily"),
    "generate: a file, not a run": ("generate", "{r}/sentences.txt", "--prompt", "Lily"),
    "generate: corrupt config.json": ("generate", "{r}/corrupt", "--prompt", "Lily"),
    "generate: mismatched checkpoint": ("generate", "{r}/mismatched", "--prompt", "Lily"),
    "generate: negative temperature": ("generate", "{r}/run", "--prompt", "Lily", "--temperature", "-1"),
    "generate: top-p above 1": ("generate", "{r}/run", "--prompt", "Lily", "--top-p", "1.5"),
    "generate: top-k zero": ("generate", "{r}/run", "--prompt", "Lily", "--top-k", "0"),
    "generate: zero samples": ("generate", "{r}/run", "--prompt", "Lily", "--num-samples", "0"),
    "generate: negative token count": ("generate", "{r}/run", "--prompt", "Lily", "--max-new-tokens", "-3"),
    "generate: empty prompt": ("generate", "{r}/run", "--prompt", ""),
    "generate: unknown characters": ("generate", "{r}/run", "--prompt", "Лили"),
    # embed
    "embed: input missing": ("embed", "--input", "{r}/missing.txt", "--output", "{r}/e.npy"),
    "embed: input is a directory": ("embed", "--input", "{r}/adir", "--output", "{r}/e.npy"),
    "embed: input empty": ("embed", "--input", "{r}/blank.txt", "--output", "{r}/e.npy"),
    "embed: input not UTF-8": ("embed", "--input", "{r}/binary.txt", "--output", "{r}/e.npy"),
    "embed: zero batch size": ("embed", "--input", "{r}/sentences.txt", "--output", "{r}/e.npy",
                               "--batch-size", "0"),
    "embed: checkpoint missing": ("embed", "--input", "{r}/sentences.txt", "--output", "{r}/e.npy",
                                  "--checkpoint", "{r}/nothing"),
    "embed: corrupt checkpoint": ("embed", "--input", "{r}/sentences.txt", "--output", "{r}/e.npy",
                                  "--checkpoint", "{r}/bad_bert"),
    "embed: a GPT run as checkpoint": ("embed", "--input", "{r}/sentences.txt", "--output", "{r}/e.npy",
                                       "--checkpoint", "{r}/run"),
    "embed: max length too small": ("embed", "--input", "{r}/sentences.txt", "--output", "{r}/e.npy",
                                    "--max-length", "1"),
    "embed: output is a directory": ("embed", "--input", "{r}/sentences.txt", "--output", "{r}/adir"),
    # quantize
    "quantize: bits not 4 or 8": ("quantize", "{r}/run", "--bits", "5", "--out", "{r}/q1"),
    "quantize: group size not dividing C": ("quantize", "{r}/run", "--bits", "4", "--group-size", "6", "--out", "{r}/q2"),
    "quantize: odd group size": ("quantize", "{r}/run", "--bits", "4", "--group-size", "3", "--out", "{r}/q3"),
    "quantize: missing run": ("quantize", "{r}/nothing", "--bits", "8", "--out", "{r}/q4"),
    "quantize: corrupt config.json": ("quantize", "{r}/corrupt", "--bits", "8", "--out", "{r}/q5"),
    "quantize: no --bits": ("quantize", "{r}/run", "--out", "{r}/q6"),
    # baseline and parity: the output path is checked before any training
    "baseline: out is a directory": ("baseline", "gpt-trials", "--out", "{r}/adir"),
    "baseline: unknown model": ("baseline", "transformer", "--out", "{r}/b.json"),
    "parity: out is a directory": ("parity", "--out", "{r}/adir"),
    # exercises
    "exercises: unknown name": ("exercises", "check", "no_such_exercise"),
    "exercises: no solution file": ("exercises", "check", "softmax_backward", "--dir", "{r}/adir"),
    "exercises: unknown action": ("exercises", "solve", "softmax_backward"),
    # no subcommand
    "no subcommand": (),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_gets_one_clear_line_and_status_2(files, name):
    args = [a.replace("{r}", str(files)) if isinstance(a, str) else a for a in CASES[name]]
    result = run(*args)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, f"{name}: exit status {result.returncode}, stderr:\n{result.stderr}"
    assert "Traceback" not in result.stderr, f"{name}: a traceback:\n{result.stderr}"
    assert len(lines) == 1 and lines[0].startswith(("error:", "llm-scratch")), \
        f"{name}: expected one line on stderr, got {len(lines)}:\n{result.stderr}"
    assert len(lines[0]) > 25, f"{name}: the message says too little: {lines[0]!r}"


def test_debug_variable_shows_the_traceback(files):
    env = dict(os.environ, LLM_SCRATCH_DEBUG="1")
    result = subprocess.run([sys.executable, "-m", "llm_from_scratch.cli", "generate", str(files / "corrupt"),
                             "--prompt", "Lily"], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode != 0 and "Traceback" in result.stderr
