"""Translation English -> Velu (``llm_from_scratch.translate``): data, decoding with and without
caches, the committed models and results, and the ``translate`` command's errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import reference
from llm_from_scratch.train import TrainConfig, read_metrics
from llm_from_scratch.translate import (EOS, PAD, SEP, Translator, Vocab, deconly_arrays, encdec_arrays,
                                        load_translator, model_config, pair_split, sentence_pairs, train_translation)
from llm_from_scratch.translate_eval import read_outputs, scores, unseen_name_scores
from llm_from_scratch.models import bart, gpt

DATA = Path(__file__).resolve().parents[1] / "book" / "data" / "translation"
ARCHS = ("encdec", "deconly")


@pytest.fixture(scope="module")
def pairs():
    return sentence_pairs(2000)


def test_pairs_are_split_by_sentence_and_never_shared(pairs):
    splits = {name: {en for en, _ in p} for name, p in pairs.items()}
    assert not (splits["train"] & splits["test"]) and not (splits["train"] & splits["val"])
    assert all(pair_split(en) == name for name, p in pairs.items() for en, _ in p)
    # the Velu side is what StoryWorld writes: verb last, adjective after its noun
    found = [(en, ve) for en, ve in pairs["train"] if " found a " in en]
    assert found and all(ve.endswith(" un trovi.") for _, ve in found)
    print(len(found), "'found a' pairs, e.g.", found[0])


def test_arrays_mask_what_is_not_learned(pairs):
    vocab = Vocab("".join(en + ve for en, ve in pairs["train"]))
    some = pairs["train"][:5]
    x, y = encdec_arrays(vocab, some)
    assert ((x == PAD).sum(axis=1) == x.shape[1] - np.array([len(en) + 2 for en, _ in some])).all()
    assert ((y != -100).sum(axis=1) == np.array([len(ve) + 1 for _, ve in some])).all()
    x, y = deconly_arrays(vocab, some)
    for i, (en, ve) in enumerate(some):
        assert x[i, len(en)] == SEP and (y[i, :len(en)] == -100).all()
        assert vocab.decode(y[i, len(en):]) == ve and y[i, len(en) + len(ve)] == EOS


@pytest.mark.parametrize("arch", ARCHS)
def test_cache_and_no_cache_decode_the_same(arch, pairs):
    """Greedy and beam search, with and without the key/value cache, on a small random model
    (float64): the same outputs, and beam search with one beam is greedy search."""
    vocab = Vocab("".join(en + ve for en, ve in pairs["train"]))
    config = model_config(arch, vocab.vocab_size, d_model=16, layers=1, heads=2, n_embd=16, n_layer=2)
    params = (bart.init_params if arch == "encdec" else gpt.init_params)(config, seed=3, dtype=np.float64)
    t = Translator(arch, params, config, vocab)
    sources = [en for en, _ in pairs["test"][:6]]
    for beam in (1, 3):
        cached = t.translate(sources, beam=beam, max_new_tokens=12)
        plain = t.translate(sources, beam=beam, max_new_tokens=12, use_cache=False)
        print(arch, beam, cached[:2])
        assert cached == plain
    with pytest.raises(ValueError, match="max_new_tokens"):
        t.translate(sources, max_new_tokens=0)


@pytest.mark.parametrize("arch", ARCHS)
def test_interrupted_training_resumes_to_the_same_losses(arch, tmp_path):
    """4 steps in one go, and 2 steps + a resumed run of the rest, give the same losses and
    parameters (the batch sampler's state is in the checkpoint)."""
    tc = TrainConfig(steps=4, batch_size=4, warmup_steps=1, eval_every=2, eval_batches=1, checkpoint_every=2)
    small = dict(n_stories=200, train_config=tc, kernels="numpy", progress=False, d_model=16, layers=1, heads=2,
                 n_embd=16, n_layer=1)
    whole = train_translation(tmp_path / "whole", arch, **small)
    train_translation(tmp_path / "cut", arch, stop_after=2, **small)
    rest = train_translation(tmp_path / "cut", arch, resume=True, **small)
    got = read_metrics(tmp_path / "cut" / "metrics.jsonl")["loss"]
    print(arch, "whole", whole.result.history["loss"], "\n  resumed", got)
    assert got == whole.result.history["loss"] and len(got) == 4
    assert all(np.array_equal(whole.params[k], rest.params[k]) for k in whole.params)
    assert load_translator(tmp_path / "cut").translate(["Mia was in the park."]) == \
        load_translator(tmp_path / "whole").translate(["Mia was in the park."])


RUNS = [(DATA, "encdec"), (DATA, "deconly"), (DATA / "bpe", "encdec"), (DATA / "bpe", "deconly")]


def _committed(data, arch):
    folder = data / arch
    state = json.loads((folder / "trainer_state.json").read_text())
    tc = state["train_config"]
    tc["betas"] = tuple(tc["betas"])
    return folder, TrainConfig(**tc), json.loads((folder / "run.json").read_text())


@pytest.mark.parametrize("data, arch", RUNS, ids=[f"{d.name}-{a}" for d, a in RUNS])
def test_command_reproduces_committed_first_losses(data, arch):
    import numba
    from threadpoolctl import threadpool_limits

    folder, tc, run = _committed(data, arch)
    committed = read_metrics(folder / "metrics.jsonl")["loss"][:3]
    before = numba.get_num_threads()
    numba.set_num_threads(1)  # the command ran on one thread: the order of every sum is then the same
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            replay = train_translation(None, arch, n_stories=run["n_stories"], train_config=tc, kernels=run["kernels"],
                                       seed=run["seed"], progress=False, stop_after=3,
                                       tokenizer=run.get("tokenizer", "char"),
                                       bpe_vocab_size=run.get("bpe_vocab_size", 512))
    finally:
        numba.set_num_threads(before)
    got = replay.result.history["loss"]
    diff = max(abs(a - b) for a, b in zip(got, committed))
    print("committed", committed, "\nreplayed ", got, "\nmax abs difference", diff)
    assert diff <= 1e-6 * max(committed)


@pytest.mark.parametrize("data", [DATA, DATA / "bpe"], ids=["char", "bpe"])
def test_committed_results_match_their_outputs_and_sacrebleu(data):
    """eval.json's scores are those of the committed outputs, and the package's BLEU and chrF of
    every system equal sacreBLEU's."""
    sacrebleu = reference("sacrebleu")
    record = json.loads((data / "eval.json").read_text())
    rows = read_outputs(data / "test_outputs.jsonl")
    worst = 0.0
    for arch in ARCHS:
        for how, expected in record["models"][arch]["test"].items():
            mine = [r for r in rows if r["model"] == arch and r["decoding"] == how]
            assert len(mine) == record["n_pairs"]["test"]
            hyps, refs = [r["hypothesis"] for r in mine], [r["reference"] for r in mine]
            got = scores(hyps, refs)
            assert got == pytest.approx(expected, abs=1e-12)
            theirs_bleu = sacrebleu.corpus_bleu(hyps, [refs]).score
            theirs_chrf = sacrebleu.corpus_chrf(hyps, [refs]).score
            worst = max(worst, abs(got["bleu"] - theirs_bleu), abs(got["chrf"] - theirs_chrf))
        early = record["early_step"]
        entry = next(c for c in record["models"][arch]["bleu_vs_steps"] if c["step"] == early)
        for how, expected in ((f"greedy@{early}", entry), (f"beam{record['beam']}@{early}", entry["beam"])):
            mine = [r for r in rows if r["model"] == arch and r["decoding"] == how]
            hyps, refs = [r["hypothesis"] for r in mine], [r["reference"] for r in mine]
            got = scores(hyps, refs)
            assert got == pytest.approx({k: expected[k] for k in got}, abs=1e-12)
            worst = max(worst, abs(got["bleu"] - sacrebleu.corpus_bleu(hyps, [refs]).score),
                        abs(got["chrf"] - sacrebleu.corpus_chrf(hyps, [refs]).score))
    print("max |ours - sacrebleu| over BLEU and chrF of the 8 systems:", worst)
    assert worst < 1e-9


@pytest.mark.parametrize("arch", ARCHS)
def test_committed_model_translates_as_recorded(arch):
    """The committed character models translate the test sentences and the unseen-name probe as
    eval.json recorded."""
    t = load_translator(DATA / arch, kernels="numba")
    record = json.loads((DATA / "eval.json").read_text())
    assert sum(p.size for p in t.params.values()) == record["models"][arch]["n_params"]
    rows = [r for r in read_outputs(DATA / "test_outputs.jsonl") if r["model"] == arch and r["decoding"] == "greedy"]
    rows = rows[:24]
    got = t.translate([r["source"] for r in rows])
    assert got == [r["hypothesis"] for r in rows]
    probe = unseen_name_scores(t)
    assert probe == record["models"][arch]["unseen_names"]
    print(arch, "unseen names:", {k: v for k, v in probe.items() if k != "outputs"})


# ------------------------------------------------------------------------------------------------
# the command line

def run(*args, stdin=None):
    env = {k: v for k, v in os.environ.items() if k != "LLM_SCRATCH_DEBUG"}
    return subprocess.run([sys.executable, "-m", "llm_from_scratch.cli", *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=300, input=stdin)


def test_translate_command_writes_one_line_per_input(tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("Mia was in the park.\nShe found a red ball.\n", encoding="utf-8")
    done = run("translate", DATA / "encdec", "--input", src, "--output", tmp_path / "out.txt", "--beam", "2")
    assert done.returncode == 0, done.stderr
    lines = (tmp_path / "out.txt").read_text(encoding="utf-8").splitlines()
    print(lines)
    assert len(lines) == 2 and lines[0] == "Mia parka en esti."
    done = run("translate", DATA / "deconly", stdin="Mia was in the park.\n")
    assert done.returncode == 0 and done.stdout == "Mia parka en esti.\n", done.stderr


TRANSLATE_ERRORS = {
    "empty line": ("Mia was in the park.\n\nShe felt happy.\n", [], "line 2: the sentence is empty"),
    "line too long": ("Mia was in the park. " * 4 + "\n", [], "line 1: the sentence has 84 characters"),
    "unknown character": ("Mia was in the park.\nMia was in the café.\n", [], "line 2: character 'é' at position 18"),
    "missing run folder": ("Mia was in the park.\n", ["{missing}"], "no such run folder"),
    "no input lines": ("", [], "no lines to translate"),
    "bad beam": ("Mia was in the park.\n", ["--beam", "0"], "--beam must be at least 1"),
    "bad max-new-tokens": ("Mia was in the park.\n", ["--max-new-tokens", "500"], "--max-new-tokens must be in"),
    "input file missing": (None, ["--input", "{missing}"], "no such file"),
}


@pytest.mark.parametrize("case", sorted(TRANSLATE_ERRORS))
def test_translate_command_bad_input_one_line_exit_2(case, tmp_path):
    stdin, extra, message = TRANSLATE_ERRORS[case]
    extra = [a.replace("{missing}", str(tmp_path / "missing")) for a in extra]
    run_dir = extra.pop(0) if extra and extra[0].endswith("missing") else DATA / "encdec"
    done = run("translate", run_dir, *extra, stdin=stdin or "")
    print(case, "->", done.stderr.strip())
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert message in done.stderr
    assert done.stdout == ""
