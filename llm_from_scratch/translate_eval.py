"""Chapter 10's translation results: test-set scores of trained runs, written as JSON.

``evaluate_runs`` reads translation runs (``llm-scratch train-translation`` folders), translates
the test sentences of ``translate.sentence_pairs`` with greedy search and with beam search, and
scores them with the package's sacreBLEU-equal metrics: exact-match sentence accuracy, corpus
BLEU (13a tokens, exponential smoothing) and chrF. It also decodes the test set with every
checkpoint a run kept (BLEU against training steps), and counts parameters and training
compute (6 N D, D = tokens fed to the model). ``llm-scratch eval-translation`` writes the
result to ``eval.json`` and every output to ``test_outputs.jsonl``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from llm_from_scratch.fileio import atomic_write
from llm_from_scratch.metrics import corpus_bleu, corpus_chrf
from llm_from_scratch.train import read_metrics
from llm_from_scratch.data.storyworld import VELU_LEXICON, StoryWorldConfig
from llm_from_scratch.translate import load_translator, sentence_pairs

# names StoryWorld never uses, written with letters its eight names and words contain
UNSEEN_NAMES = ("Hana", "Tara", "Bob", "Lisa", "Sara", "Mike", "Kate", "Sol")
_TEMPLATES = (("{n} was in the {p}.", "{n} {P} en esti."), ("{n} went to the {p}.", "{n} {P} al iri."),
              ("{n} found a red kite.", "{n} drako ruza un trovi."), ("{n} felt happy.", "{n} gaja senti."),
              ("Mia gave it to {n}.", "Mia lu {n} al doni."))


def unseen_name_pairs() -> list[tuple[str, str]]:
    """Sentence pairs with names the models never saw (5 templates x 8 names), translated by
    Velu's rules (a name is kept).

    >>> unseen_name_pairs()[0]
    ('Hana was in the park.', 'Hana parka en esti.')
    """
    places = ("park", "garden", "school", "forest")
    return [(en.format(n=n, p=places[i % 4]), ve.format(n=n, P=VELU_LEXICON[places[i % 4]]))
            for i, n in enumerate(UNSEEN_NAMES) for en, ve in _TEMPLATES]


def unseen_name_scores(translator) -> dict:
    """How a translator does on ``unseen_name_pairs``: the scores, how many outputs put one of
    StoryWorld's own names in place of the new one (``swapped``), and the outputs."""
    pairs = unseen_name_pairs()
    hyps = translator.translate([en for en, _ in pairs])
    known = {n for n, _ in StoryWorldConfig().names}
    swapped = sum(any(w in known for w in h.replace(".", " ").split()) and not any(n in h for n in UNSEEN_NAMES)
                  for h in hyps)
    return {**scores(hyps, [ve for _, ve in pairs]), "swapped": int(swapped), "n": len(pairs), "outputs": hyps}

__all__ = ["scores", "evaluate_runs", "read_outputs", "ERROR_KINDS", "classify_error", "UNSEEN_NAMES",
           "unseen_name_pairs", "unseen_name_scores"]

ERROR_KINDS = ("correct", "word order", "agreement", "name", "missing or extra word", "wrong word")
_PRONOUNS = {"Sa", "Ko", "Tei", "Lu", "sa", "ko", "tei", "lu"}  # Velu's she, he, they, it


def scores(hypotheses: list[str], references: list[str]) -> dict[str, float]:
    """Exact-match accuracy (a fraction), corpus BLEU and chrF (percent) of one system.

    >>> s = scores(["Mia parka en esti.", "Sa bolo un trovi."], ["Mia parka en esti.", "Sa bolo ruza un trovi."])
    >>> s["exact_match"], round(s["bleu"], 2), round(s["chrf"], 2)
    (0.5, 66.5, 77.9)
    """
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references")
    return {"exact_match": float(np.mean([h == r for h, r in zip(hypotheses, references)])),
            "bleu": float(corpus_bleu(hypotheses, [references]).score),
            "chrf": float(corpus_chrf(hypotheses, [references]))}


def _training_compute(run: Path, translator, train_pairs) -> dict:
    state = json.loads((Path(run) / (Path(run) / "latest").read_text().strip() / "trainer_state.json").read_text())
    tc = state["train_config"]
    extra = 3 if translator.arch == "encdec" else 2  # <s> </s> | </s>, or <sep> | </s>
    encode = translator.vocab.encode
    per_pair = float(np.mean([len(encode(en)) + len(encode(ve)) + extra for en, ve in train_pairs]))
    tokens = per_pair * tc["batch_size"] * tc["steps"]
    n = int(sum(p.size for p in translator.params.values()))
    return {"n_params": n, "steps": tc["steps"], "batch_size": tc["batch_size"], "tokens_per_pair": per_pair,
            "train_tokens": tokens, "flops_6nd": 6.0 * n * tokens}


def evaluate_runs(runs, out_dir, n_stories: int = 20000, beam: int = 4, length_penalty: float = 1.0,
                  kernels: str = "numpy", early_step: int | None = None) -> dict:
    """Score each run on the test pairs (greedy and ``beam`` beams), and each kept checkpoint
    the same way; write ``eval.json`` and ``test_outputs.jsonl`` to ``out_dir``; return the
    record. The outputs of the final model are written with decoding "greedy" and "beam{beam}";
    those of the checkpoint at ``early_step``, if given, as "greedy@{early_step}" and so on (a
    model still making mistakes, for the error analysis)."""
    pairs = sentence_pairs(n_stories)
    sources = [en for en, _ in pairs["test"]]
    refs = [ve for _, ve in pairs["test"]]
    record = {"n_stories": n_stories, "n_pairs": {k: len(v) for k, v in pairs.items()}, "beam": beam,
              "length_penalty": length_penalty, "early_step": early_step, "models": {}}
    rows = []
    for run in runs:
        run = Path(run)
        translator = load_translator(run, kernels=kernels)
        name = translator.arch
        entry = {"run": run.name, "tokenizer": type(translator.vocab).__name__, "vocab_size": translator.vocab.vocab_size,
                 "test": {}, "seconds": {}, **_training_compute(run, translator, pairs["train"]),
                 "unseen_names": unseen_name_scores(translator)}
        for how, k in (("greedy", 1), (f"beam{beam}", beam)):
            start = time.perf_counter()
            hyps = translator.translate(sources, beam=k, length_penalty=length_penalty)
            entry["seconds"][how] = time.perf_counter() - start
            entry["test"][how] = scores(hyps, refs)
            rows += [{"model": name, "decoding": how, "source": s, "reference": r, "hypothesis": h}
                     for s, r, h in zip(sources, refs, hyps)]
        curve = []
        for ckpt in sorted(run.glob("step_*")):
            step, t = int(ckpt.name.split("_")[1]), load_translator(ckpt, kernels=kernels)
            greedy = t.translate(sources)
            beamed = t.translate(sources, beam=beam, length_penalty=length_penalty)
            curve.append({"step": step, **scores(greedy, refs), "beam": scores(beamed, refs)})
            if step == early_step:
                for how, hyps in (("greedy", greedy), (f"beam{beam}", beamed)):
                    rows += [{"model": name, "decoding": f"{how}@{step}", "source": s, "reference": r, "hypothesis": h}
                             for s, r, h in zip(sources, refs, hyps)]
        entry["bleu_vs_steps"] = curve
        m = read_metrics(run / "metrics.jsonl")
        entry["val_loss"] = {"step": m["val_step"], "loss": m["val_loss"]}
        record["models"][name] = entry
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "eval.json", json.dumps(record, indent=1))
    atomic_write(out / "test_outputs.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    return record


def read_outputs(path) -> list[dict]:
    """The rows of a ``test_outputs.jsonl``: model, decoding, source, reference, hypothesis."""
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line]


def _words(sentence: str) -> list[str]:
    return sentence.replace(".", " .").replace("!", " !").replace("?", " ?").replace(",", " ,").split()


def classify_error(hypothesis: str, reference: str, names=()) -> str:
    """What is wrong with a translation, as one of ERROR_KINDS, checked in that order:
    "word order" (the same words in another order), "agreement" (the words differ only in
    pronouns: "Sa" for "Ko"), "name" (a differing word is one of ``names`` or a capitalised word
    that is not a pronoun), "missing or extra word" (not as many words), else "wrong word".

    >>> classify_error("Sa bolo ruza un trovi.", "Sa bolo ruza un trovi.")
    'correct'
    >>> classify_error("Sa ruza bolo un trovi.", "Sa bolo ruza un trovi.")
    'word order'
    >>> classify_error("Ko bolo ruza un trovi.", "Sa bolo ruza un trovi.")
    'agreement'
    >>> classify_error("Hanna parka en esti.", "Hana parka en esti.")
    'name'
    """
    if hypothesis == reference:
        return "correct"
    h, r = _words(hypothesis), _words(reference)
    if sorted(h) == sorted(r):
        return "word order"
    if len(h) == len(r):
        diff = [(a, b) for a, b in zip(h, r) if a != b]
        if all(a in _PRONOUNS and b in _PRONOUNS for a, b in diff):
            return "agreement"
    odd = set(h) ^ set(r)
    if any(w in names or (w[:1].isupper() and w not in _PRONOUNS) for w in odd):
        return "name"
    if len(h) != len(r):
        return "missing or extra word"
    return "wrong word"
