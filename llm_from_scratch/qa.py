"""Question answering on StoryWorld, two ways: extractive (a BERT points at a span of the story)
and generative (an encoder-decoder writes the answer).

Both models read the same input, the question and the story as one sequence of chapter 9's
WordPiece tokens, cut to ``MAX_LENGTH`` = 96:

    [CLS] where is mia ? [SEP] mia was in the park . ... [SEP]        (S,) source tokens

Extractive (chapter 9, Devlin et al. 2019 section 4.2): the pretrained StoryWorld BERT of
``book/data/bert_storyworld`` with a linear head giving every token a start and an end score;
the answer is the span i <= j < i + 4 of story tokens with the largest ``s_i + e_j``. It can
only copy.

Generative (Lewis et al. 2020, the "BART" encoder-decoder): the encoder reads the source, the
decoder writes the answer's tokens and then ``[SEP]``, which ends it, trained with the
cross-entropy of each answer token given the source and the answer so far (teacher forcing):

    loss = -1/|A| sum_t log p(a_t | a_<t, source)      a = answer tokens + [SEP]

and answers with greedy decoding (``seq2seq.generate``). Nothing forces it to copy: it could
write a word the story never uses. Its encoder and embedding start as the same pretrained BERT
(``encoder_from_bert``, as Rothe et al. 2020 warm-start encoder-decoders), its decoder from
random weights, except that the cross-attention's value and output projections start as the
identity (``identity_cross_attention``, which says why).

``train_qa`` trains both on the questions of the same training stories, scores them on the
questions of the same test stories with SQuAD's exact match and token F1
(``metrics.squad_scores``), and writes a run folder (what ``llm-scratch train-qa`` does and
``book/data/qa`` holds):

    generative/   config.json, model.safetensors    the encoder-decoder (bart.save_pretrained)
    extractive/   config.json, model.safetensors    BERT with its QA head (bert.save_pretrained)
    vocab.txt, tokenizer_config.json                 chapter 9's WordPiece vocabulary
    training.json   the command, its arguments, the first losses of both models, times, machine
    eval.json       exact match and token F1 of both models on the test questions
    predictions.jsonl   every test question with both answers and the gold one

``load_run`` reads such a folder back, ``answer_questions`` answers new (question, context)
pairs with either model (``llm-scratch qa``), and ``compare`` gives chapter 10 its table, the
questions where the two models disagree, and a live re-run of a few test questions.

Left out: a pretrained decoder (only the encoder is pretrained, by masked LM; ``init="random"``
trains the whole encoder-decoder from random weights), beam search
for the answers (one-word answers gain little from it), unanswerable questions (SQuAD 2.0).

References:

- J. Devlin et al., "BERT", NAACL 2019, section 4.2 (span prediction for SQuAD).
- M. Lewis et al., "BART", ACL 2020, section 3 (encoder-decoder fine-tuning for QA and generation).
- S. Rothe, S. Narayan, A. Severyn, "Leveraging Pre-trained Checkpoints for Sequence Generation
  Tasks", TACL 2020 (an encoder-decoder warm-started from BERT).
- C. Raffel et al., "Exploring the Limits of Transfer Learning with a Unified Text-to-Text
  Transformer" (T5), JMLR 2020, section 2.4 (question answering as text generation).
- P. Rajpurkar et al., "SQuAD", EMNLP 2016, section 6 (exact match and token F1).
- J. Weston et al., "Towards AI-Complete Question Answering" (bAbI), 2015 (story questions).
"""

from __future__ import annotations

import dataclasses
import json
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from llm_from_scratch.data.bert import encode_batch
from llm_from_scratch.fileio import atomic_write
from llm_from_scratch.metrics import exact_match, squad_scores, token_f1
from llm_from_scratch.models import bart, bert
from llm_from_scratch.models.bert.pretrain import trim_batch
from llm_from_scratch.models.common import write_json
from llm_from_scratch.optim import AdamW, clip_grad_norm, warmup_cosine

# Dimension letters: N questions, B a batch of them, S source tokens, A answer tokens (with [SEP]),
# C model width, V vocabulary size.

__all__ = ["MAX_LENGTH", "BERT_DIR", "QA_DIR", "QAExample", "QAModels", "storyworld_questions", "encode_sources",
           "answer_labels", "generative_config", "train_generative", "generate_answers", "finetune_extractive",
           "extract_answers", "train_qa", "load_run", "answer_questions", "answer_unchecked", "load_results", "compare",
           "name_swap", "last_place_rule", "Comparison"]

MAX_LENGTH = 96  # tokens the two models read, [CLS] and both [SEP] included (chapter 9's T)
MAX_ANSWER_TOKENS = 4  # the longest answer either model gives, in tokens (chapter 9's span limit)
_BOOK_DATA = Path(__file__).resolve().parents[1] / "book" / "data"
BERT_DIR = _BOOK_DATA / "bert_storyworld"  # chapter 9's pretrained BERT and its vocabulary
QA_DIR = _BOOK_DATA / "qa"  # the committed run of ``llm-scratch train-qa``
TRAINING_FILE, EVAL_FILE, PREDICTIONS_FILE = "training.json", "eval.json", "predictions.jsonl"
MODELS = ("extractive", "generative")


# ----------------------------------------------------------------------------------------
# data


@dataclass(frozen=True)
class QAExample:
    """A question about a story, its gold answer, and where that answer is in the story.

    >>> QAExample("Where is Mia?", "Mia was in the park.\\n", "park", 15, story=0).context[15:19]
    'park'
    """
    question: str
    context: str  # the story, "\\n" at the end
    answer: str
    start: int  # context[start:start + len(answer)] == answer
    story: int = -1  # index of the story in its list


def storyworld_questions(split: str, n_stories: int, seed: int) -> list[QAExample]:
    """Every question of the first ``n_stories`` StoryWorld stories of ``split`` drawn from stream
    ``seed`` (chapter 9 draws its training stories with seed 0 and its test stories with seed 2).

    >>> qs = storyworld_questions("test", 2, seed=2)
    >>> qs[0].question, qs[0].context[qs[0].start:qs[0].start + len(qs[0].answer)] == qs[0].answer
    ('Where is Lily?', True)
    """
    from llm_from_scratch.data import StoryWorld

    stories = StoryWorld().stories(split, n_stories, seed=seed)
    return [QAExample(p.question, s.text, p.answer, p.start, i) for i, s in enumerate(stories) for p in s.qa]


def encode_sources(tokenizer, questions, contexts, max_length: int = MAX_LENGTH) -> dict[str, np.ndarray]:
    """``[CLS] question [SEP] context [SEP]`` for every pair, cut to ``max_length`` tokens (from
    the end of the context) and padded: a dict of (N, max_length) int64 arrays ``input_ids``,
    ``token_type_ids``, ``attention_mask``. Both models read these."""
    return encode_batch(tokenizer, list(questions), max_length, text_pairs=list(contexts))


def answer_in_source(tokenizer, ex: QAExample, max_length: int = MAX_LENGTH) -> tuple[int, int]:
    """Token indices (first, last) of the answer in the encoded source of ``ex``, or (-1, -1) when
    the cut at ``max_length`` tokens removed it (chapter 9's ``qa_features``)."""
    from llm_from_scratch.data.bert import qa_features

    f = qa_features(tokenizer, ex.question, ex.context, ex.start, ex.answer, max_length)
    return f.start, f.end


def answer_labels(tokenizer, answers, max_tokens: int = MAX_ANSWER_TOKENS) -> np.ndarray:
    """The decoder's targets: each answer's tokens then ``[SEP]``, padded with -100 (no loss), as a
    (N, A) int64 array with A the longest answer plus one.

    >>> tok = bert.load_wordpiece(BERT_DIR)
    >>> answer_labels(tok, ["park", "the red ball"]).tolist() == [
    ...     [tok.vocab["park"], tok.vocab["[SEP]"], -100, -100],
    ...     [tok.vocab["the"], tok.vocab["red"], tok.vocab["ball"], tok.vocab["[SEP]"]]]
    True
    """
    eos = tokenizer.vocab["[SEP]"]
    rows = [tokenizer.convert_tokens_to_ids(tokenizer.tokenize(a))[:max_tokens] + [eos] for a in answers]
    labels = np.full((len(rows), max(len(r) for r in rows)), -100, dtype=np.int64)  # (N, A)
    for i, r in enumerate(rows):
        labels[i, :len(r)] = r
    return labels


# ----------------------------------------------------------------------------------------
# the generative model: an encoder-decoder trained from scratch


def generative_config(tokenizer, d_model: int = 64, layers: int = 2, heads: int = 4,
                      max_length: int = MAX_LENGTH) -> bart.BartConfig:
    """A small BART over chapter 9's vocabulary: ``[PAD]`` pads, ``[CLS]`` begins a source,
    ``[SEP]`` ends one and ends an answer, and is the decoder's first input (BART starts its
    decoder with its end token too). Dropout is off, as for chapter 9's BERT."""
    v = tokenizer.vocab
    return bart.BartConfig(vocab_size=tokenizer.vocab_size, max_position_embeddings=max_length, d_model=d_model,
                           encoder_layers=layers, encoder_attention_heads=heads, encoder_ffn_dim=4 * d_model,
                           decoder_layers=layers, decoder_attention_heads=heads, decoder_ffn_dim=4 * d_model,
                           dropout=0.0, pad_token_id=v["[PAD]"], bos_token_id=v["[CLS]"],
                           eos_token_id=v["[SEP]"], decoder_start_token_id=v["[SEP]"],
                           forced_eos_token_id=v["[SEP]"])


# encoder layer i: BERT's name (after "bert.encoder.layer.{i}.") -> BART's (after "model.encoder.layers.{i}.")
_BERT_TO_BART = {
    "attention.self.query": "self_attn.q_proj", "attention.self.key": "self_attn.k_proj",
    "attention.self.value": "self_attn.v_proj", "attention.output.dense": "self_attn.out_proj",
    "attention.output.LayerNorm": "self_attn_layer_norm", "intermediate.dense": "fc1", "output.dense": "fc2",
    "output.LayerNorm": "final_layer_norm",
}


def encoder_from_bert(params: dict[str, np.ndarray], config: bart.BartConfig, encoder: dict[str, np.ndarray]
                      ) -> dict[str, np.ndarray]:
    """A copy of the encoder-decoder ``params`` whose encoder, and the embedding it shares with
    the decoder and the output head, are chapter 9's pretrained BERT ``encoder``; the decoder's
    layers stay as they were (Rothe et al. 2020 warm-start an encoder-decoder this way).

    The two encoders are the same computation (post-LayerNorm layers, exact GELU) but for three
    details: BART has no segment embedding, so every position gets BERT's segment-A vector added
    to its position vector (the model reads the pair as one text); BART's position table starts
    two rows down (``bart.POSITION_OFFSET``); its LayerNorms use eps 1e-5 instead of 1e-12.

    >>> tok = bert.load_wordpiece(BERT_DIR)
    >>> enc, _ = bert.from_pretrained(BERT_DIR)
    >>> cfg = generative_config(tok)
    >>> p = encoder_from_bert(bart.init_params(cfg, seed=0), cfg, enc)
    >>> bool(np.array_equal(p["model.encoder.layers.1.fc2.weight"], enc["bert.encoder.layer.1.output.dense.weight"]))
    True
    """
    out = {name: value.copy() for name, value in params.items()}
    P, off = config.max_position_embeddings, bart.POSITION_OFFSET
    bert_pos = encoder["bert.embeddings.position_embeddings.weight"]  # (P', C)
    if encoder["bert.embeddings.word_embeddings.weight"].shape != out["model.shared.weight"].shape or \
            bert_pos.shape[0] < P or config.encoder_layers > sum(
                1 for n in encoder if n.endswith(".attention.self.query.weight")):
        raise ValueError("the BERT encoder must have the same vocabulary and width, at least as many positions "
                         f"({P}) and at least as many layers ({config.encoder_layers}) as the encoder-decoder")
    out["model.shared.weight"] = encoder["bert.embeddings.word_embeddings.weight"].copy()  # (V, C)
    pos = out["model.encoder.embed_positions.weight"]  # (P + 2, C)
    pos[off:off + P] = bert_pos[:P] + encoder["bert.embeddings.token_type_embeddings.weight"][0]  # (P, C)
    for part in ("weight", "bias"):
        out[f"model.encoder.layernorm_embedding.{part}"] = encoder[f"bert.embeddings.LayerNorm.{part}"].copy()
        for i in range(config.encoder_layers):
            for b_name, a_name in _BERT_TO_BART.items():
                out[f"model.encoder.layers.{i}.{a_name}.{part}"] = \
                    encoder[f"bert.encoder.layer.{i}.{b_name}.{part}"].copy()
    return out


def identity_cross_attention(params: dict[str, np.ndarray], config: bart.BartConfig) -> dict[str, np.ndarray]:
    """A copy of ``params`` whose cross-attention value and output projections are the identity
    (biases unchanged, 0 at initialisation), so that from the first step every decoder layer adds
    the attention-weighted mean of the encoder's vectors to its residual stream.

    Why: drawn at the usual scale (std 0.02), the two projections shrink the cross-attention's
    output to a few thousandths of the residual it is added to, and the post-LayerNorm decoder
    learns to ignore the source: trained that way, the QA model sat for thousands of steps at
    the loss of answering with the commonest word of the right kind.

    >>> cfg = bart.BartConfig(vocab_size=13, max_position_embeddings=10, d_model=8, encoder_layers=1,
    ...                       encoder_attention_heads=2, decoder_layers=2, decoder_attention_heads=2)
    >>> p = identity_cross_attention(bart.init_params(cfg, seed=0), cfg)
    >>> bool((p["model.decoder.layers.1.encoder_attn.out_proj.weight"] == np.eye(8)).all())
    True
    """
    out = {name: value.copy() for name, value in params.items()}
    for i in range(config.decoder_layers):
        for part in ("v_proj", "out_proj"):
            name = f"model.decoder.layers.{i}.encoder_attn.{part}.weight"
            out[name] = np.eye(config.d_model, dtype=out[name].dtype)  # (C, C)
    return out


def init_generative(config: bart.BartConfig, encoder: dict[str, np.ndarray] | None, seed: int = 0
                    ) -> dict[str, np.ndarray]:
    """The generative model's starting point: ``bart.init_params(config, seed)``, then, given a
    pretrained BERT ``encoder``, its encoder and embedding copied from it (``encoder_from_bert``)
    and the cross-attention's value and output projections set to the identity
    (``identity_cross_attention``); with ``encoder=None`` the random initialisation alone."""
    params = bart.init_params(config, seed=seed)
    if encoder is None:
        return params
    return identity_cross_attention(encoder_from_bert(params, config, encoder), config)


def _batches(n: int, batch_size: int, steps: int, rng: np.random.Generator):
    """The rows of each step: epochs of a fresh permutation, ``n // batch_size`` batches each."""
    per_epoch = n // batch_size
    for step in range(steps):
        if step % per_epoch == 0:
            order = rng.permutation(n)  # (n,) a new epoch
        yield step, order[(step % per_epoch) * batch_size:(step % per_epoch + 1) * batch_size]


def _check_steps(n: int, steps: int, batch_size: int, warmup: int) -> None:
    if steps < 1 or not 1 <= batch_size <= n:
        raise ValueError(f"need steps >= 1 and 1 <= batch_size <= {n} examples, got steps={steps}, "
                         f"batch_size={batch_size}")
    if not 0 <= warmup < steps:
        raise ValueError(f"warmup must be in [0, steps) = [0, {steps}), got {warmup}")


def train_generative(params: dict[str, np.ndarray], config: bart.BartConfig, src: dict[str, np.ndarray],
                     labels: np.ndarray, steps: int, batch_size: int = 32, lr: float = 2e-3, warmup: int = 50,
                     weight_decay: float = 0.01, seed: int = 0, kernels: str = "numba",
                     stop_after: int | None = None, evaluate=None, eval_every: int = 0) -> list[float]:
    """Train the encoder-decoder ``params`` in place to write ``labels`` (N, A) from the sources
    ``src`` (``encode_sources``); returns every step's loss (mean cross-entropy per answer token).

    Each step takes the next ``batch_size`` examples of a seeded permutation (a new one each
    epoch), cuts the sources to their longest real row, and does one AdamW step (learning rate
    warmed up for ``warmup`` steps to ``lr``, then a cosine to ``lr / 10`` at ``steps``; gradient
    norm clipped at 1). ``stop_after`` stops early without changing the schedule, so the first
    steps of a long run replay exactly. ``evaluate(step)``, if given, is called after every
    ``eval_every`` steps (the learning curve; it must not draw from the training's generator).

    Example: a tiny model learns to answer with the first token of its source.

    >>> tok = bert.load_wordpiece(BERT_DIR)
    >>> cfg = generative_config(tok, d_model=16, layers=1, heads=2)
    >>> params = bart.init_params(cfg, seed=0)
    >>> src = encode_sources(tok, ["where is mia?", "where is tom?"] * 8, ["park", "house"] * 8, 12)
    >>> losses = train_generative(params, cfg, src, answer_labels(tok, ["mia", "tom"] * 8), steps=60,
    ...                           batch_size=8, lr=1e-2, warmup=5, kernels="numpy")
    >>> losses[0] > 4.5, losses[-1] < 0.5   # from about log V = 5.2 to nearly 0
    (True, True)
    """
    n = len(labels)
    _check_steps(n, steps, batch_size, warmup)
    if src["input_ids"].shape[0] != n:
        raise ValueError(f"{src['input_ids'].shape[0]} sources but {n} answers")
    opt, rng = AdamW(lr, weight_decay=weight_decay), np.random.default_rng(seed)
    losses = []
    for step, idx in _batches(n, batch_size, steps if stop_after is None else min(steps, stop_after), rng):
        b = trim_batch(src, idx)  # (B, S') each
        y = labels[idx]  # (B, A)
        y = y[:, :int((y != -100).sum(axis=1).max())]  # (B, A') cut to the longest answer
        _, loss, cache = bart.bart_forward(params, config, b["input_ids"], attention_mask=b["attention_mask"],
                                           labels=y, kernels=kernels)
        grads = bart.bart_backward(cache)
        clip_grad_norm(grads, 1.0)
        opt.lr = warmup_cosine(step, lr, warmup, steps, min_lr=lr / 10)
        opt.step(params, grads)
        losses.append(float(loss))
        if evaluate is not None and eval_every and (step + 1) % eval_every == 0:
            evaluate(step + 1)
    return losses


def generate_answers(params: dict[str, np.ndarray], config: bart.BartConfig, tokenizer,
                     src: dict[str, np.ndarray], batch_size: int = 256, kernels: str = "numba") -> list[str]:
    """The answer the encoder-decoder writes for each source, by greedy decoding: at most
    ``MAX_ANSWER_TOKENS`` tokens, ending at ``[SEP]``, decoded to text."""
    from llm_from_scratch.seq2seq import generate

    answers = []
    n = src["input_ids"].shape[0]
    for start in range(0, n, batch_size):
        b = trim_batch(src, np.arange(start, min(start + batch_size, n)))  # (B, S') each
        out = generate(params, config, b["input_ids"], b["attention_mask"], max_new_tokens=MAX_ANSWER_TOKENS + 1,
                       kernels=kernels)  # (B, L) starting with the decoder start token
        for row in out[:, 1:]:
            ids = [int(t) for t in row]
            ids = ids[:ids.index(config.eos_token_id)] if config.eos_token_id in ids else ids
            answers.append(tokenizer.decode(ids, skip_special_tokens=True))
    return answers


# ----------------------------------------------------------------------------------------
# the extractive model: chapter 9's pretrained BERT with a span head


def finetune_extractive(encoder: dict[str, np.ndarray], config: bert.BertConfig, src: dict[str, np.ndarray],
                        starts: np.ndarray, ends: np.ndarray, steps: int, batch_size: int = 16, lr: float = 1e-3,
                        warmup: int = 10, seed: int = 0, kernels: str = "numba",
                        stop_after: int | None = None) -> tuple[dict[str, np.ndarray], list[float]]:
    """Chapter 9's fine-tuning for span QA: a new QA head (seeded) on a copy of the pretrained
    ``encoder``'s embeddings and layers, trained on every parameter with AdamW (warmup-cosine to
    ``lr``, gradient norm clipped at 1) to put ``starts`` and ``ends`` (N,) (token indices in
    ``src``) first. Returns ``(params, losses)``; ``stop_after`` as in ``train_generative``."""
    n = len(starts)
    _check_steps(n, steps, batch_size, warmup)
    params = bert.init_params(config, heads=("qa",), seed=seed)
    for name in params:
        if name.startswith(("bert.embeddings.", "bert.encoder.")):
            params[name] = encoder[name].copy()
    opt, rng = AdamW(lr, weight_decay=0.01), np.random.default_rng(seed)
    losses = []
    for step, idx in _batches(n, batch_size, steps if stop_after is None else min(steps, stop_after), rng):
        b = trim_batch(src, idx)  # (B, S') each
        _, _, loss, cache = bert.bert_qa_forward(params, config, b["input_ids"], starts[idx], ends[idx],
                                                 token_type_ids=b["token_type_ids"],
                                                 attention_mask=b["attention_mask"], kernels=kernels)
        grads = bert.bert_qa_backward(cache)
        clip_grad_norm(grads, 1.0)
        opt.lr = warmup_cosine(step, lr, warmup, steps)
        opt.step(params, grads)
        losses.append(float(loss))
    return params, losses


def extract_answers(params: dict[str, np.ndarray], config: bert.BertConfig, tokenizer, src: dict[str, np.ndarray],
                    batch_size: int = 256, kernels: str = "numba") -> list[str]:
    """The span of the context with the largest ``start_i + end_j`` (``i <= j < i + 4``, both in
    the context, the final ``[SEP]`` excluded), decoded to text: chapter 9's ``predict_spans``."""
    answers = []
    n = src["input_ids"].shape[0]
    for begin in range(0, n, batch_size):
        b = trim_batch(src, np.arange(begin, min(begin + batch_size, n)))  # (B, S') each
        s, e, _, _ = bert.bert_qa_forward(params, config, b["input_ids"], token_type_ids=b["token_type_ids"],
                                          attention_mask=b["attention_mask"], kernels=kernels)  # (B, S') each
        S = s.shape[1]
        i, j = np.indices((S, S))  # (S, S): start i, end j
        for r in range(len(s)):
            ok = (b["token_type_ids"][r] == 1) & (b["attention_mask"][r] == 1)  # (S,) context tokens
            ok[np.flatnonzero(ok)[-1]] = False  # the final [SEP] is not part of the story
            score = s[r][:, None] + e[r][None, :]  # (S, S)
            allowed = ok[:, None] & ok[None, :] & (j >= i) & (j < i + MAX_ANSWER_TOKENS)  # (S, S)
            a, z = np.unravel_index(np.argmax(np.where(allowed, score, -np.inf)), score.shape)
            answers.append(tokenizer.decode(b["input_ids"][r, a:z + 1]))
    return answers


# ----------------------------------------------------------------------------------------
# the whole run: train both, score both, write the folder


def checkpoint_sha256(directory) -> str:
    """SHA-256 of a checkpoint folder's ``model.safetensors``: which pretrained BERT a run started from."""
    import hashlib

    return hashlib.sha256((Path(directory) / "model.safetensors").read_bytes()).hexdigest()


def _machine() -> dict:
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "python": sys.version.split()[0], "numpy": np.__version__}


def _prepare(tokenizer, n_train: int, n_test: int, n_val: int = 100):
    """Training and test questions whose answer survives the cut at ``MAX_LENGTH`` tokens (the
    others are counted, as in chapter 9), their encoded sources and answer token indices."""
    out = {}
    for split, n, seed in (("train", n_train, 0), ("val", n_val, 1), ("test", n_test, 2)):
        examples, spans, dropped = [], [], 0
        for ex in storyworld_questions(split, n, seed):
            span = answer_in_source(tokenizer, ex)
            if span[0] < 0:
                dropped += 1
                continue
            examples.append(ex)
            spans.append(span)
        src = encode_sources(tokenizer, [e.question for e in examples], [e.context for e in examples])
        out[split] = (examples, src, np.array(spans, dtype=np.int64).reshape(-1, 2), dropped)
    return out


def train_qa(out, steps: int = 8000, n_train: int = 10000, n_test: int = 400, d_model: int = 64, layers: int = 2,
             heads: int = 4, batch_size: int = 32, lr: float = 2e-3, warmup: int = 50, init: str = "bert",
             bert_steps: int = 2000, bert_batch_size: int = 16, bert_lr: float = 1e-3, seed: int = 0,
             kernels: str = "numba", eval_every: int = 500, bert_dir=BERT_DIR, stop_after: int | None = None,
             record_steps: int = 5) -> dict:
    """Train the generative model and fine-tune the extractive one from chapter 9's pretrained
    BERT, on the questions of the first ``n_train`` training stories (the first 3,000 are the
    ones chapter 9 pretrained on); score both on the questions of ``n_test`` test stories (chapter 9's 400, seed 2);
    write the run folder ``out`` (see the module docstring). ``init`` is "bert" (the generative
    model's encoder and embedding from the same pretrained BERT, ``init_generative``) or
    "random". Every ``eval_every`` steps the generative model answers the questions of 100
    validation stories (seed 1): its learning curve, in ``val_history``. Returns the record of
    ``training.json``, with the scores of ``eval.json`` under ``"eval"``.

    With ``stop_after`` each model trains only its first ``stop_after`` steps (same schedule),
    nothing is written, and the record (with ``first_losses``) is returned: what the test
    replays.
    """
    if init not in ("bert", "random"):
        raise ValueError(f"init must be 'bert' (encoder from the pretrained BERT) or 'random', got {init!r}")
    if steps < 1 or bert_steps < 1 or record_steps < 0:
        raise ValueError(f"need steps >= 1, bert_steps >= 1 and record_steps >= 0, got {steps}, {bert_steps}, "
                         f"{record_steps}")
    args = dict(steps=steps, n_train=n_train, n_test=n_test, d_model=d_model, layers=layers, heads=heads,
                batch_size=batch_size, lr=lr, warmup=warmup, init=init, bert_steps=bert_steps,
                bert_batch_size=bert_batch_size, bert_lr=bert_lr, seed=seed, kernels=kernels, eval_every=eval_every)
    tok = bert.load_wordpiece(bert_dir)
    encoder, bert_cfg = bert.from_pretrained(bert_dir)
    bert_cfg = dataclasses.replace(bert_cfg, num_labels=2)  # start and end: BertForQuestionAnswering's layout
    data = _prepare(tok, n_train, n_test)
    train, src, spans, dropped_train = data["train"]
    labels = answer_labels(tok, [e.answer for e in train])  # (N, A)

    config = generative_config(tok, d_model, layers, heads)
    gen_params = init_generative(config, encoder if init == "bert" else None, seed)
    val, val_src, _, _ = data["val"]
    val_history, eval_seconds = [], [0.0]

    def evaluate(step):
        start = time.perf_counter()
        scores = squad_scores(generate_answers(gen_params, config, tok, val_src, kernels=kernels),
                              [e.answer for e in val])
        val_history.append({"step": step, **scores})
        eval_seconds[0] += time.perf_counter() - start

    t0 = time.perf_counter()
    gen_losses = train_generative(gen_params, config, src, labels, steps, batch_size, lr, warmup, seed=seed,
                                  kernels=kernels, stop_after=stop_after, evaluate=evaluate, eval_every=eval_every)
    t1 = time.perf_counter()
    ext_params, ext_losses = finetune_extractive(encoder, bert_cfg, src, spans[:, 0], spans[:, 1], bert_steps,
                                                 bert_batch_size, bert_lr, seed=seed, kernels=kernels,
                                                 stop_after=stop_after)
    t2 = time.perf_counter()
    record = {"command": "llm-scratch train-qa --out DIR " + " ".join(
                  f"--{k.replace('_', '-')} {v}" for k, v in args.items()),
              "arguments": args,
              "first_losses": {"generative": gen_losses[:record_steps], "extractive": ext_losses[:record_steps]},
              "seconds": {"generative": round(t1 - t0 - eval_seconds[0], 1), "extractive": round(t2 - t1, 1)},
              "eval_seconds": round(eval_seconds[0], 1),  # the learning curve's evaluations, not counted above
              "bert_checkpoint_sha256": checkpoint_sha256(bert_dir),
              "train_questions": len(train), "train_questions_dropped": dropped_train,
              "generative_params": bart.num_params(config)}
    if stop_after is not None:
        return record
    test, test_src, _, dropped_test = data["test"]
    golds = [e.answer for e in test]
    preds = {"generative": generate_answers(gen_params, config, tok, test_src, kernels=kernels),
             "extractive": extract_answers(ext_params, bert_cfg, tok, test_src, kernels=kernels)}
    scores = {name: squad_scores(p, golds) for name, p in preds.items()}
    evaluation = {"test_questions": len(test), "test_questions_dropped": dropped_test,
                  "test_stories": n_test, "split": "test", **{name: scores[name] for name in MODELS}}
    ext_val = squad_scores(extract_answers(ext_params, bert_cfg, tok, val_src, kernels=kernels),
                           [e.answer for e in val])
    record.update(val_history={"generative": val_history, "extractive": [{"step": bert_steps, **ext_val}]},
                  loss_history={"generative": gen_losses, "extractive": ext_losses}, machine=_machine())
    out = Path(out)
    bart.save_pretrained(gen_params, config, out / "generative")
    bert.save_pretrained(ext_params, bert_cfg, out / "extractive")
    bert.save_wordpiece(tok, out)
    write_json(out / TRAINING_FILE, record)
    write_json(out / EVAL_FILE, evaluation)
    atomic_write(out / PREDICTIONS_FILE, "".join(
        json.dumps({"story": e.story, "question": e.question, "gold": e.answer,
                    **{name: preds[name][k] for name in MODELS}}) + "\n" for k, e in enumerate(test)))
    return {**record, "eval": evaluation}


# ----------------------------------------------------------------------------------------
# using a run folder


@dataclass
class QAModels:
    """Both models of a run folder and their tokenizer (``load_run``)."""
    tokenizer: object
    gen_params: dict
    gen_config: bart.BartConfig
    ext_params: dict
    ext_config: bert.BertConfig
    directory: Path


def load_run(run_dir=QA_DIR) -> QAModels:
    """Read a folder written by ``train_qa`` (``llm-scratch train-qa``); a missing folder or file
    is named in the error."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: no such run folder (expected the output of llm-scratch train-qa: "
                                "generative/, extractive/ and vocab.txt)")
    for part in ("generative", "extractive"):
        if not (run_dir / part).is_dir():
            raise FileNotFoundError(f"{run_dir}: has no {part}/ folder; is it a run of llm-scratch train-qa?")
    if not (run_dir / "vocab.txt").is_file():
        raise FileNotFoundError(f"{run_dir}: has no vocab.txt; is it a run of llm-scratch train-qa?")
    gen_params, gen_config = bart.from_pretrained(run_dir / "generative")
    ext_params, ext_config = bert.from_pretrained(run_dir / "extractive")
    if "qa_outputs.weight" not in ext_params:
        raise ValueError(f"{run_dir / 'extractive'}: the BERT there has no QA head (qa_outputs.*)")
    return QAModels(bert.load_wordpiece(run_dir), gen_params, gen_config, ext_params, ext_config, run_dir)


def check_pair(tokenizer, question, context, max_length: int = MAX_LENGTH, where: str = "") -> None:
    """Refuse a pair the models cannot answer: a question or context that is not a non-empty
    string, or a pair longer than the ``max_length`` tokens the models read (the models never see
    a cut context: the answer could be in the part cut off)."""
    for name, value in (("question", question), ("context", context)):
        if not isinstance(value, str):
            raise ValueError(f"{where}{name} must be a string, got {type(value).__name__}")
        if not value.strip():
            raise ValueError(f"{where}{name} is empty; expected some text")
    n_q, n_c = len(tokenizer.tokenize(question)), len(tokenizer.tokenize(context))
    if n_q + n_c + 3 > max_length:
        raise ValueError(f"{where}question + context are {n_q} + {n_c} tokens, plus 3 special ones = "
                         f"{n_q + n_c + 3}, but the models read at most {max_length}; shorten the context by "
                         f"{n_q + n_c + 3 - max_length} tokens (nothing was truncated or answered)")


def answer_questions(models: QAModels, questions, contexts, model: str = "generative",
                     kernels: str = "numba") -> list[str]:
    """Answers of ``model`` ("generative" or "extractive") to each (question, context) pair, after
    ``check_pair``.

    >>> m = load_run()
    >>> ctx = "Mia was in the park. She found a red ball. Tom was in the house. Mia went to the garden.\\n"
    >>> [answer_questions(m, ["Who has the ball?"], [ctx], model, kernels="numpy") for model in MODELS]
    [['mia'], ['mia']]
    """
    if model not in MODELS:
        raise ValueError(f"model must be one of {MODELS}, got {model!r}")
    questions, contexts = list(questions), list(contexts)
    if len(questions) != len(contexts):
        raise ValueError(f"{len(questions)} questions but {len(contexts)} contexts")
    for k, (q, c) in enumerate(zip(questions, contexts)):
        check_pair(models.tokenizer, q, c, where=f"pair {k + 1}: ")
    return answer_unchecked(models, questions, contexts, model, kernels)


def answer_unchecked(models: QAModels, questions, contexts, model: str = "generative",
                     kernels: str = "numba") -> list[str]:
    """``answer_questions`` without ``check_pair``: a pair longer than ``MAX_LENGTH`` tokens is cut
    from the end of its context, as in training and evaluation (chapter 9 does the same)."""
    questions, contexts = list(questions), list(contexts)
    if not questions:
        return []
    src = encode_sources(models.tokenizer, questions, contexts)
    if model == "generative":
        return generate_answers(models.gen_params, models.gen_config, models.tokenizer, src, kernels=kernels)
    return extract_answers(models.ext_params, models.ext_config, models.tokenizer, src, kernels=kernels)


def read_pairs(path) -> list[tuple[str, str]]:
    """(question, context) pairs of a JSON-lines file, one ``{"question": ..., "context": ...}``
    object per line (blank lines skipped); every problem is one error naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {'is a folder' if path.is_dir() else 'no such file'} (expected JSON lines, "
                                'one {"question": ..., "context": ...} object per line)')
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    pairs = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}, line {number}: not JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(obj, dict):
            raise ValueError(f"{path}, line {number}: expected a JSON object with \"question\" and \"context\", "
                             f"got {type(obj).__name__}")
        for key in ("question", "context"):
            if key not in obj:
                raise ValueError(f"{path}, line {number}: missing field {key!r} (expected \"question\" and "
                                 "\"context\")")
        pairs.append((obj["question"], obj["context"]))
    if not pairs:
        raise ValueError(f"{path}: no question/context pairs (the file is empty)")
    return pairs


# ----------------------------------------------------------------------------------------
# the comparison chapter 10 shows


def load_results(run_dir=QA_DIR) -> tuple[dict, dict, list[dict]]:
    """``(training, eval, predictions)`` of a run folder: the records of ``training.json`` and
    ``eval.json`` and the rows of ``predictions.jsonl``, as written by ``train_qa``."""
    run_dir = Path(run_dir)
    files = [run_dir / TRAINING_FILE, run_dir / EVAL_FILE, run_dir / PREDICTIONS_FILE]
    for f in files:
        if not f.is_file():
            raise FileNotFoundError(f"{f}: no such file (expected a run folder of llm-scratch train-qa)")
    training = json.loads(files[0].read_text(encoding="utf-8"))
    evaluation = json.loads(files[1].read_text(encoding="utf-8"))
    rows = [json.loads(line) for line in files[2].read_text(encoding="utf-8").splitlines() if line.strip()]
    return training, evaluation, rows


@dataclass
class Comparison:
    """What ``compare`` returns: the scores, the disagreements and the live re-run."""
    scores: dict  # model -> {"exact_match": %, "f1": %} on the test questions (eval.json)
    n_test: int  # test questions scored
    disagreements: list[dict]  # test questions the two models answered differently
    n_disagree: int  # how many there are in all
    live: list[dict]  # re-run test questions: the stored and the fresh answers of both models
    training: dict  # training.json
    not_in_story: dict  # model -> how many of its test answers are not words of the story
    name_swap: dict  # the probe of ``name_swap``: does the answer change with the name asked about?
    last_place: dict  # ``last_place_rule`` on the test's *Where is <name>?* questions

    def table(self) -> str:
        """The scores as a Markdown table."""
        lines = ["| model | how it answers | exact match (%) | token F1 (%) |", "|---|---|---|---|"]
        start = ("encoder from the pretrained BERT, new decoder"
                 if self.training["arguments"].get("init", "bert") == "bert" else "from random weights")
        how = {"extractive": "points at a span (chapter 9's pretrained BERT + span head)",
               "generative": f"writes the answer (encoder-decoder: {start})"}
        for name in MODELS:
            s = self.scores[name]
            lines.append(f"| {name} | {how[name]} | {s['exact_match']:.1f} | {s['f1']:.1f} |")
        return "\n".join(lines)

    def examples_text(self) -> str:
        """The disagreements as aligned lines: question, gold, each model's answer."""
        lines = [f"{'question':<22} {'gold':<8} {'extractive':<12} {'generative':<12}"]
        for r in self.disagreements:
            lines.append(f"{r['question']:<22} {r['gold']:<8} {r['extractive'] or '(empty)':<12} "
                         f"{r['generative'] or '(empty)':<12}")
        return "\n".join(lines)

    @property
    def live_matches(self) -> bool:
        """True when every re-run answer equals the stored one."""
        return all(r[f"{m}_live"] == r[m] for r in self.live for m in MODELS)


def compare(run_dir=QA_DIR, n_examples: int = 6, n_live: int = 8, kernels: str = "numba",
            probe: bool = True) -> Comparison:
    """Chapter 10's comparison of the two models of a run folder: their test scores, the first
    ``n_examples`` test questions where they disagree (with their story), a live re-run of the
    first ``n_live`` test questions through both loaded models next to the answers stored in
    ``predictions.jsonl``, how many answers are not words of their story, and (``probe``) the
    ``name_swap`` probe."""
    training, evaluation, rows = load_results(run_dir)
    args = training["arguments"]
    test = [ex for ex in storyworld_questions("test", args["n_test"], seed=2)]
    by_key = {(ex.story, ex.question): ex for ex in test}
    disagree = [r for r in rows if normalize(r["generative"]) != normalize(r["extractive"])]
    shown = []
    for r in disagree[:n_examples]:
        ex = by_key[r["story"], r["question"]]
        shown.append({**r, "context": ex.context,
                      "extractive_right": bool(exact_match(r["extractive"], r["gold"])),
                      "generative_right": bool(exact_match(r["generative"], r["gold"])),
                      "generative_in_story": _in_story(r["generative"], ex.context)})
    live = []
    if n_live:
        models = load_run(run_dir)
        picked = rows[:n_live]
        contexts = [by_key[r["story"], r["question"]].context for r in picked]
        questions = [r["question"] for r in picked]
        fresh = {m: answer_unchecked(models, questions, contexts, m, kernels) for m in MODELS}
        live = [{**r, **{f"{m}_live": fresh[m][k] for m in MODELS},
                 **{f"{m}_f1": token_f1(fresh[m][k], r["gold"]) for m in MODELS}} for k, r in enumerate(picked)]
    not_in_story = {m: sum(not _in_story(r[m], by_key[r["story"], r["question"]].context) for r in rows)
                    for m in MODELS}
    swap = name_swap(load_run(run_dir), test, kernels) if probe else {}
    return Comparison({m: evaluation[m] for m in MODELS}, evaluation["test_questions"], shown, len(disagree), live,
                      training, not_in_story, swap, last_place_rule(rows, by_key))


def _last_place(context: str) -> str:
    """The last place word of a StoryWorld story.

    >>> _last_place("Mia was in the park. Tom went to the house. Mia felt happy.")
    'house'
    """
    from llm_from_scratch.data.storyworld import StoryWorldConfig

    places = set(StoryWorldConfig().places)
    found = [w for w in normalize(context).split() if w in places]
    return found[-1] if found else ""


def last_place_rule(rows: list[dict], by_key: dict) -> dict:
    """A shortcut for *Where is <name>?*: answer the last place the story mentions, whoever is asked
    about. Returns how many such test questions there are, the share the rule gets right, and for
    each model the share of its answers that equal the rule's (``rows`` are ``predictions.jsonl``'s,
    ``by_key`` maps (story, question) to its ``QAExample``)."""
    asked = [r for r in rows if r["question"].startswith("Where is ") and not r["question"].startswith("Where is the ")]
    rule = [_last_place(by_key[r["story"], r["question"]].context) for r in asked]
    n = max(len(asked), 1)
    return {"questions": len(asked), "rule_right": sum(exact_match(x, r["gold"]) for x, r in zip(rule, asked)) / n,
            **{m: sum(exact_match(r[m], x) for x, r in zip(rule, asked)) / n for m in MODELS}}


def name_swap(models: QAModels, examples: list[QAExample], kernels: str = "numba") -> dict:
    """Does a model read the name in *Where is X?*? For every story with two such questions about
    characters in different places, ask both and count how often each model's answer changes
    with the name (it must, to be right both times) and how often both answers are right.

    Returns ``{"pairs": n, model: {"changed": k, "both_right": j}, ...}``.
    """
    by_story = {}
    for ex in examples:
        if ex.question.startswith("Where is ") and not ex.question.startswith("Where is the "):
            by_story.setdefault(ex.story, []).append(ex)
    pairs = []
    for exs in by_story.values():
        other = next((b for b in exs[1:] if normalize(b.answer) != normalize(exs[0].answer)), None)
        if other is not None:
            pairs.append((exs[0], other))
    out = {"pairs": len(pairs)}
    for m in MODELS:
        a = answer_unchecked(models, [p.question for p, _ in pairs], [p.context for p, _ in pairs], m, kernels)
        b = answer_unchecked(models, [q.question for _, q in pairs], [q.context for _, q in pairs], m, kernels)
        out[m] = {"changed": sum(normalize(x) != normalize(y) for x, y in zip(a, b)),
                  "both_right": sum(bool(exact_match(x, p.answer) and exact_match(y, q.answer))
                                    for x, y, (p, q) in zip(a, b, pairs))}
    return out


def _in_story(answer: str, context: str) -> bool:
    """Is the (normalised) answer a word, or a run of words, of the (normalised) story?

    >>> _in_story("the Park", "Mia was in the park."), _in_story("kite", "Mia was in the park."), _in_story("", "a")
    (True, False, False)
    """
    words, story = normalize(answer).split(), normalize(context).split()
    return bool(words) and any(story[i:i + len(words)] == words for i in range(len(story) - len(words) + 1))


def normalize(answer: str) -> str:
    """SQuAD's normalisation (``metrics.normalize_answer``): lower case, no punctuation or articles."""
    from llm_from_scratch.metrics import normalize_answer

    return normalize_answer(answer)
