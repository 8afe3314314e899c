"""Translation from English to Velu: data, two models, their training and their decoding.

StoryWorld writes every story in English and in Velu (``Story.translation``), a language with
fixed rules: subject-object-verb, adjectives after their noun, postpositions. Split into
sentences, the two texts give sentence pairs, one English sentence to one Velu sentence:

    "She found a red ball."  ->  "Sa bolo ruza un trovi."

Two models learn the mapping from those pairs, with the same number of parameters:

- ``"encdec"``: BART (``models.bart``), an encoder-decoder. The encoder reads the source,
  the decoder writes the target and looks at the source through cross-attention:
      source  <s> S h e ... . </s>        -> encoder
      labels  S a   b o l o ... . </s>    decoder input: </s> S a   b o l o ... .
- ``"deconly"``: the GPT of chapter 8, a decoder only, reading both sentences as one sequence
  and trained to predict only what follows the separator:
      tokens  S h e ... . <sep> S a   b o l o ... . </s>
      loss    -100 ...  -100    S a ...             </s>     (the English part is given, not learned)

Tokens are characters with four special tokens in front (ids 0-3: ``<s>``, ``<pad>``, ``</s>``,
``<sep>``, BART's first three ids), one vocabulary shared by both languages: the languages
share their alphabet and every name, which a model copies character by character.

The pairs are the distinct sentences of StoryWorld stories, split by a hash of the English
sentence (``pair_split``), so no test sentence is ever seen in training: the test measures
whether the rules were learned, not whether sentences were memorised.

Training is ``train.train`` (AdamW, warmup + cosine, clipping, ``metrics.jsonl``, atomic and
resumable checkpoints) with batches of padded pairs drawn by ``sample_batch``; each checkpoint
folder also holds a Hugging Face checkpoint of the model (``config.json``, ``model.safetensors``),
``vocab.json`` and ``translation.json`` (which model it is), so ``load_translator`` reads it.
Decoding is ``seq2seq``'s greedy and beam search for both models: for the GPT, the "decoder"
is the GPT over the English prompt followed by what was generated, with its key/value cache.

Left out: dropout and label smoothing (the data are noise-free), subword vocabularies (see
chapter 10 for the measured comparison), batching sources of different lengths for the GPT
(sentences are decoded in groups of equal length instead of left-padding).

References: I. Sutskever, O. Vinyals, Q. V. Le, "Sequence to Sequence Learning with Neural
Networks", NeurIPS 2014; A. Vaswani et al., "Attention Is All You Need", NeurIPS 2017;
M. Lewis et al., "BART", ACL 2020; P. J. Liu et al., "Generating Wikipedia by Summarizing Long
Sequences", ICLR 2018 (a decoder-only model on source <sep> target).
"""

from __future__ import annotations

import json
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from llm_from_scratch import seq2seq
from llm_from_scratch.data.storyworld import StoryWorld
from llm_from_scratch.fileio import atomic_write
from llm_from_scratch.models import bart, gpt
from llm_from_scratch.train import TrainConfig, TrainResult, latest_checkpoint, train

__all__ = ["SPECIALS", "BOS", "PAD", "EOS", "SEP", "ARCHS", "PAIR_SPLITS", "Vocab", "BPEVocab", "load_vocab",
           "split_sentences", "pair_split",
           "sentence_pairs", "encdec_arrays", "deconly_arrays", "model_config", "train_translation",
           "Translator", "load_translator", "cross_attention"]

SPECIALS = ("<s>", "<pad>", "</s>", "<sep>")
BOS, PAD, EOS, SEP = range(4)  # BART's <s>, <pad>, </s> ids, and the decoder-only separator
ARCHS = ("encdec", "deconly")
# pairs go to a split by crc32(English sentence) % 100, as StoryWorld splits stories
PAIR_SPLITS = {"test": (0, 10), "val": (10, 15), "train": (15, 100)}
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


# ------------------------------------------------------------------------------------------------
# vocabulary and data

class Vocab:
    """Characters after the four special tokens: id 4 + i is ``chars[i]``.

    >>> v = Vocab("abc")
    >>> v.encode("cab"), v.vocab_size
    ([6, 4, 5], 7)
    >>> v.decode([6, 4, 5, EOS, 5])     # stops at </s>
    'cab'
    >>> v.encode("cat")
    Traceback (most recent call last):
    ...
    ValueError: character 't' at position 2 is not in the vocabulary (3 characters: abc)
    """

    FORMAT = "llm_from_scratch.translate.Vocab"
    unit = "characters"

    def __init__(self, chars):
        self.chars = sorted(set(chars))
        self.stoi = {ch: i + len(SPECIALS) for i, ch in enumerate(self.chars)}  # str -> int

    @property
    def vocab_size(self) -> int:
        return len(SPECIALS) + len(self.chars)

    def encode(self, text: str) -> list[int]:
        try:
            return [self.stoi[ch] for ch in text]
        except KeyError:
            i = next(i for i, ch in enumerate(text) if ch not in self.stoi)
            raise ValueError(f"character {text[i]!r} at position {i} is not in the vocabulary "
                             f"({len(self.chars)} characters: {''.join(self.chars)})") from None

    def decode(self, ids) -> str:
        """The characters of ``ids`` up to the first ``</s>``, special tokens left out."""
        out = []
        for i in ids:
            i = int(i)
            if i == EOS:
                break
            if i >= len(SPECIALS):
                out.append(self.chars[i - len(SPECIALS)])
        return "".join(out)

    def save(self, path) -> None:
        atomic_write(Path(path), json.dumps({"format": self.FORMAT, "specials": list(SPECIALS),
                                             "chars": self.chars}, ensure_ascii=False, indent=1))

    @classmethod
    def load(cls, path) -> "Vocab":
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("format") != cls.FORMAT or data.get("specials") != list(SPECIALS):
            raise ValueError(f"{path} is not a translation vocabulary (expected format {cls.FORMAT!r} with "
                             f"specials {list(SPECIALS)})")
        return cls(data["chars"])


class BPEVocab:
    """A byte-level BPE (``tokenizers.ByteBPETokenizer``) after the four special tokens: id 4 + i
    is BPE token i. The comparison with characters in chapter 10 trains one.

    >>> from llm_from_scratch.tokenizers import ByteBPETokenizer
    >>> v = BPEVocab(ByteBPETokenizer().train("ab ab ab", 258))
    >>> v.encode("ab ab"), v.decode(v.encode("ab ab") + [EOS, 9]), v.vocab_size
    ([260, 261], 'ab ab', 262)
    """

    FORMAT = "llm_from_scratch.translate.BPEVocab"
    unit = "tokens"

    def __init__(self, bpe):
        self.bpe = bpe

    @property
    def vocab_size(self) -> int:
        return len(SPECIALS) + self.bpe.vocab_size

    def encode(self, text: str) -> list[int]:
        return [i + len(SPECIALS) for i in self.bpe.encode(text)]

    def decode(self, ids) -> str:
        """The text of ``ids`` up to the first ``</s>``, special tokens left out."""
        out = []
        for i in ids:
            i = int(i)
            if i == EOS:
                break
            if i >= len(SPECIALS):
                out.append(i - len(SPECIALS))
        return self.bpe.decode(out)

    def save(self, path) -> None:
        atomic_write(Path(path), json.dumps({"format": self.FORMAT, "specials": list(SPECIALS),
                                             "bpe": json.loads(self.bpe.to_json())}, indent=1))

    @classmethod
    def load(cls, path) -> "BPEVocab":
        from llm_from_scratch.tokenizers import ByteBPETokenizer

        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("format") != cls.FORMAT or data.get("specials") != list(SPECIALS):
            raise ValueError(f"{path} is not a translation BPE vocabulary (expected format {cls.FORMAT!r})")
        return cls(ByteBPETokenizer._from_fields(data["bpe"], path))


def load_vocab(path):
    """The ``Vocab`` or ``BPEVocab`` saved at ``path``."""
    try:
        fmt = json.loads(Path(path).read_text(encoding="utf-8")).get("format")
    except (json.JSONDecodeError, AttributeError):
        raise ValueError(f"{path} is not a translation vocabulary (not a JSON object)") from None
    return BPEVocab.load(path) if fmt == BPEVocab.FORMAT else Vocab.load(path)


def split_sentences(text: str) -> list[str]:
    """A StoryWorld text cut after each '.', '!' or '?'.

    >>> split_sentences("Mia was in the park. Sa Tom saluti! Ko lu faligi.\\n")
    ['Mia was in the park.', 'Sa Tom saluti!', 'Ko lu faligi.']
    """
    return [s for s in _SENTENCE_END.split(text.strip()) if s]


def pair_split(english: str) -> str:
    """The split of a sentence pair, by ``zlib.crc32`` of its English side (see PAIR_SPLITS).

    >>> pair_split("Mia was in the park.") in PAIR_SPLITS
    True
    """
    bucket = zlib.crc32(english.encode("utf-8")) % 100
    return next(name for name, (lo, hi) in PAIR_SPLITS.items() if lo <= bucket < hi)


def sentence_pairs(n_stories: int = 20000, seed: int = 0, world: StoryWorld | None = None
                   ) -> dict[str, list[tuple[str, str]]]:
    """The distinct (English, Velu) sentence pairs of ``n_stories`` StoryWorld stories (the
    training split's stream ``seed``), grouped by ``pair_split``, each split sorted.

    >>> pairs = sentence_pairs(50)
    >>> sorted(pairs), all(pair_split(en) == "test" for en, _ in pairs["test"])
    (['test', 'train', 'val'], True)
    """
    world = world or StoryWorld()
    seen = set()
    for story in world.stories("train", n_stories, seed=seed):
        en, ve = split_sentences(story.text), split_sentences(story.translation)
        if len(en) != len(ve):
            raise AssertionError(f"a story has {len(en)} English and {len(ve)} Velu sentences: {story.text!r}")
        seen.update(zip(en, ve))
    out = {name: [] for name in PAIR_SPLITS}
    for en, ve in sorted(seen):
        out[pair_split(en)].append((en, ve))
    return out


def encdec_arrays(vocab: Vocab, pairs) -> tuple[np.ndarray, np.ndarray]:
    """Padded arrays for BART: sources ``<s> english </s>`` (B, S), padded with ``<pad>``, and
    labels ``velu </s>`` (B, T), padded with -100 (no loss there).

    >>> x, y = encdec_arrays(Vocab("ab"), [("ab", "b"), ("a", "ba")])
    >>> x.tolist(), y.tolist()
    ([[0, 4, 5, 2], [0, 4, 2, 1]], [[5, 2, -100], [5, 4, 2]])
    """
    src = [[BOS, *vocab.encode(en), EOS] for en, _ in pairs]
    tgt = [[*vocab.encode(ve), EOS] for _, ve in pairs]
    x = np.full((len(pairs), max(map(len, src))), PAD, dtype=np.int64)  # (B, S)
    y = np.full((len(pairs), max(map(len, tgt))), -100, dtype=np.int64)  # (B, T)
    for i, (s, t) in enumerate(zip(src, tgt)):
        x[i, :len(s)] = s
        y[i, :len(t)] = t
    return x, y


def deconly_arrays(vocab: Vocab, pairs) -> tuple[np.ndarray, np.ndarray]:
    """Padded arrays for the GPT: inputs ``english <sep> velu`` (B, T) and next-token targets
    whose English part is -100, so only the Velu side and its ``</s>`` are learned.

    >>> x, y = deconly_arrays(Vocab("ab"), [("ab", "b")])
    >>> x.tolist(), y.tolist()
    ([[4, 5, 3, 5]], [[-100, -100, 5, 2]])
    """
    rows = [([*vocab.encode(en), SEP], [*vocab.encode(ve), EOS]) for en, ve in pairs]
    T = max(len(a) + len(b) for a, b in rows) - 1
    x = np.full((len(pairs), T), PAD, dtype=np.int64)  # (B, T)
    y = np.full((len(pairs), T), -100, dtype=np.int64)  # (B, T)
    for i, (a, b) in enumerate(rows):
        seq = a + b
        x[i, :len(seq) - 1] = seq[:-1]
        y[i, len(a) - 1:len(seq) - 1] = b
    return x, y


# ------------------------------------------------------------------------------------------------
# models

def model_config(arch: str, vocab_size: int, d_model: int = 64, layers: int = 2, heads: int = 4,
                 n_embd: int = 80, n_layer: int = 3, max_length: int = 48):
    """The two models of chapter 10. ``"encdec"``: BART with ``layers`` encoder and ``layers``
    decoder layers of width ``d_model`` (feed-forward 4 x d_model), sources and targets of up to
    ``max_length`` tokens. ``"deconly"``: a GPT of ``n_layer`` layers of width ``n_embd``
    (feed-forward 4 x n_embd) over ``2 * max_length`` positions (source, separator, target).
    With StoryWorld's 42 token ids the defaults give 242,858 and 244,720 parameters: equal
    within 0.8%.

    >>> bart.num_params(model_config("encdec", 42)), gpt.num_params(model_config("deconly", 42))
    (242858, 244720)
    """
    if arch == "encdec":
        return bart.BartConfig(vocab_size=vocab_size, max_position_embeddings=max_length, d_model=d_model,
                               encoder_layers=layers, decoder_layers=layers, encoder_attention_heads=heads,
                               decoder_attention_heads=heads, encoder_ffn_dim=4 * d_model,
                               decoder_ffn_dim=4 * d_model, dropout=0.0, pad_token_id=PAD, bos_token_id=BOS,
                               eos_token_id=EOS, decoder_start_token_id=EOS, forced_eos_token_id=EOS)
    if arch == "deconly":
        return gpt.GPTConfig(vocab_size=vocab_size, n_positions=2 * max_length, n_embd=n_embd, n_layer=n_layer,
                             n_head=heads)
    raise ValueError(f"unknown model {arch!r}; expected one of {ARCHS}")


def _num_params(arch, config) -> int:
    return bart.num_params(config) if arch == "encdec" else gpt.num_params(config)


def _loss_functions(arch, config, kernels):
    if arch == "encdec":
        def loss_and_grads(p, x, y):
            _, loss, cache = bart.bart_forward(p, config, x, attention_mask=(x != PAD).astype(np.int64), labels=y,
                                               kernels=kernels)
            return loss, bart.bart_backward(cache)

        def loss_fn(p, x, y):
            return bart.bart_forward(p, config, x, attention_mask=(x != PAD).astype(np.int64), labels=y,
                                     kernels=kernels)[1]
    else:
        def loss_and_grads(p, x, y):
            _, loss, cache = gpt.gpt_forward(p, config, x, y, kernels=kernels)
            return loss, gpt.gpt_backward(cache)

        def loss_fn(p, x, y):
            return gpt.gpt_forward(p, config, x, y, kernels=kernels)[1]
    return loss_and_grads, loss_fn


def _save_model(arch, params, config, vocab, directory) -> None:
    directory = Path(directory)
    if arch == "encdec":
        bart.save_pretrained(params, config, directory)
    else:
        gpt.save_pretrained(params, config, directory)
    vocab.save(directory / "vocab.json")
    atomic_write(directory / "translation.json", json.dumps({"arch": arch}))


@dataclass
class TranslationRun:
    arch: str
    params: dict
    config: object
    vocab: Vocab
    result: TrainResult
    pairs: dict
    tokens_per_step: float  # mean tokens fed to the model per step (source + target, padding excluded)


def train_translation(out_dir, arch: str = "encdec", n_stories: int = 20000, train_config: TrainConfig | None = None,
                      kernels: str = "numba", seed: int = 0, resume: bool = False, progress: bool = True,
                      stop_after: int | None = None, tokenizer: str = "char", bpe_vocab_size: int = 512,
                      **model_options) -> TranslationRun:
    """Train one of the two translation models (``arch`` in ARCHS) on StoryWorld's sentence pairs,
    writing ``metrics.jsonl`` and checkpoints to ``out_dir`` (see the module docstring). The
    training batches are ``batch_size`` pairs drawn uniformly with replacement; validation is the
    first ``eval_batches * batch_size`` validation pairs, fixed. ``model_options`` go to
    ``model_config``. ``tokenizer`` is "char" (the default, one shared vocabulary of characters)
    or "bpe" (a byte-level BPE of ``bpe_vocab_size`` tokens trained on the training pairs)."""
    if tokenizer not in ("char", "bpe"):
        raise ValueError(f"unknown tokenizer {tokenizer!r}; expected 'char' or 'bpe'")
    if arch not in ARCHS:
        raise ValueError(f"unknown model {arch!r}; expected one of {ARCHS}")
    tc = train_config or TrainConfig()
    out = Path(out_dir) if out_dir is not None else None
    if out is not None and out.exists() and not out.is_dir():
        raise ValueError(f"{out} is a file: the output of a run is a folder; choose another path")
    pairs = sentence_pairs(n_stories, seed=seed)
    if tokenizer == "char":
        vocab = Vocab("".join(en + ve for en, ve in pairs["train"]))
    else:
        from llm_from_scratch.tokenizers import ByteBPETokenizer

        text = "\n".join(en + "\n" + ve for en, ve in pairs["train"])
        vocab = BPEVocab(ByteBPETokenizer().train(text, bpe_vocab_size, impl="numba"))
    config = model_config(arch, vocab.vocab_size, **model_options)
    arrays = encdec_arrays if arch == "encdec" else deconly_arrays
    for split in ("train", "val"):  # refuse sentences that do not fit, before any training
        for en, ve in pairs[split]:
            _check_fits(arch, config, max(len(vocab.encode(en)), len(vocab.encode(ve))), vocab.unit)
    train_pairs = pairs["train"]
    val = arrays(vocab, pairs["val"][:tc.batch_size * tc.eval_batches])

    def sample_batch(rng, batch_size):
        return arrays(vocab, [train_pairs[i] for i in rng.integers(0, len(train_pairs), batch_size)])

    params = (bart.init_params if arch == "encdec" else gpt.init_params)(config, seed=seed)
    if out is not None and not resume:
        out.mkdir(parents=True, exist_ok=True)
        vocab.save(out / "vocab.json")
        atomic_write(out / "run.json", json.dumps({"arch": arch, "n_stories": n_stories, "seed": seed,
                                                   "tokenizer": tokenizer, "bpe_vocab_size": bpe_vocab_size,
                                                   "kernels": kernels, "n_params": _num_params(arch, config),
                                                   "pairs": {k: len(v) for k, v in pairs.items()}}, indent=1))
    loss_and_grads, loss_fn = _loss_functions(arch, config, kernels)
    result = train(loss_and_grads, loss_fn, params, None, val, tc, out_dir=out, resume=resume,
                   save_model=lambda p, d: _save_model(arch, p, config, vocab, d), progress=progress,
                   stop_after=stop_after, sample_batch=sample_batch)
    extra = 3 if arch == "encdec" else 2  # <s> </s> and </s>, or <sep> and </s>
    tokens = np.mean([len(vocab.encode(en)) + len(vocab.encode(ve)) + extra for en, ve in train_pairs]) * tc.batch_size
    return TranslationRun(arch, params, config, vocab, result, pairs, float(tokens))


def _check_fits(arch, config, n_source: int, unit: str = "characters") -> None:
    """Refuse a sentence of ``n_source`` characters the model cannot read (the decoder-only model
    keeps half its context for the translation)."""
    if arch == "encdec":
        room = config.max_position_embeddings - 2  # <s> ... </s>
    else:
        room = config.n_positions // 2 - 1  # half the context for the source and <sep>
    if n_source > room:
        raise ValueError(f"the sentence has {n_source} {unit}; this model reads at most {room} "
                         f"(its context holds {config.max_position_embeddings if arch == 'encdec' else config.n_positions} tokens)")


# ------------------------------------------------------------------------------------------------
# decoding

class _GPTDecoder:
    """What ``seq2seq``'s search loops need from a decoder, for a GPT over ``prompt <sep> ...``:
    ``logits(seqs)`` of the last position, where ``seqs`` (N, t) starts with ``<sep>``, and
    ``reorder(index)`` for beams. With the cache, the prompt is fed once and then one token per
    step."""

    def __init__(self, params, config, prompts: np.ndarray, max_length: int, use_cache: bool, kernels: str):
        from llm_from_scratch.generate import init_kv_cache

        self.params, self.config, self.kernels, self.use_cache = params, config, kernels, use_cache
        self.prompts = prompts  # (N, P) the English sentences, all of one length P
        self.seen = 0  # tokens of prompt + seqs already in the cache
        if use_cache:
            self.cache = init_kv_cache(config, prompts.shape[0], prompts.shape[1] + max_length,
                                       dtype=params["transformer.wte.weight"].dtype)

    def logits(self, seqs: np.ndarray) -> np.ndarray:
        from llm_from_scratch.generate import gpt_forward_cached
        from llm_from_scratch.kernels.backend import get_ops

        full = np.concatenate([self.prompts, seqs], axis=1)  # (N, P + t)
        if not self.use_cache:
            return gpt.gpt_logits(self.params, self.config, full, get_ops(self.kernels))[0][:, -1]  # (N, V)
        new = full[:, self.seen:]  # (N, t') what the cache has not seen
        logits = gpt_forward_cached(self.params, self.config, new, self.cache, self.seen, self.kernels,
                                    check=False)  # (N, t', V)
        self.seen = full.shape[1]
        return logits[:, -1]  # (N, V)

    def reorder(self, index: np.ndarray) -> None:
        self.prompts = self.prompts[index]  # (N, P)
        if self.use_cache:
            self.cache = self.cache[:, :, index]  # (L, 2, N, NH, S, HS)


def _search_ids(start: int):
    return {"eos_token_id": EOS, "pad_token_id": PAD, "decoder_start_token_id": start, "forced_bos_token_id": None,
            "forced_eos_token_id": EOS}


class Translator:
    """A trained translation model: ``translate(sentences)`` gives their Velu."""

    def __init__(self, arch: str, params: dict, config, vocab: Vocab, kernels: str = "numpy"):
        self.arch, self.params, self.config, self.vocab, self.kernels = arch, params, config, vocab, kernels

    @property
    def max_source_tokens(self) -> int:
        """The longest sentence, in tokens (characters with ``Vocab``), the model reads."""
        if self.arch == "encdec":
            return self.config.max_position_embeddings - 2
        return self.config.n_positions // 2 - 1

    def check(self, sentence: str) -> list[int]:
        """The token ids of ``sentence``, or a ValueError saying why it cannot be translated."""
        if not sentence.strip():
            raise ValueError("the sentence is empty")
        ids = self.vocab.encode(sentence)
        _check_fits(self.arch, self.config, len(ids), self.vocab.unit)
        return ids

    def translate(self, sentences: list[str], beam: int = 1, max_new_tokens: int | None = None,
                  length_penalty: float = 1.0, use_cache: bool = True, batch_size: int = 64) -> list[str]:
        """The Velu of each sentence: greedy search (``beam=1``) or beam search with ``beam`` beams
        and ``length_penalty`` (``seq2seq.beam_search``; early_stopping False). ``max_new_tokens``
        defaults to the longest target the model was built for."""
        ids = [self.check(s) for s in sentences]
        limit = self.max_source_tokens + 1  # a target as long as the longest source, and </s>
        new = limit if max_new_tokens is None else int(max_new_tokens)
        if not 1 <= new <= limit:
            raise ValueError(f"max_new_tokens must be in [1, {limit}] for this model, got {max_new_tokens}")
        out = [None] * len(ids)
        if self.arch == "encdec":
            order = list(range(len(ids)))
            groups = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
        else:  # the GPT reads sentences of one length together (no left padding)
            by_len = {}
            for i, s in enumerate(ids):
                by_len.setdefault(len(s), []).append(i)
            groups = [g[i:i + batch_size] for g in by_len.values() for i in range(0, len(g), batch_size)]
        for group in groups:
            for i, row in zip(group, self._decode([ids[i] for i in group], beam, new, length_penalty, use_cache)):
                out[i] = self.vocab.decode(row[1:])
        return out

    def _decode(self, ids: list[list[int]], beam: int, new: int, length_penalty: float, use_cache: bool):
        max_length = 1 + new
        if self.arch == "encdec":
            x = np.full((len(ids), max(map(len, ids)) + 2), PAD, dtype=np.int64)  # (B, S)
            for i, s in enumerate(ids):
                x[i, :len(s) + 2] = [BOS, *s, EOS]
            return seq2seq.generate(self.params, self.config, x, (x != PAD).astype(np.int64), num_beams=beam,
                                    max_new_tokens=new, length_penalty=length_penalty, use_cache=use_cache,
                                    kernels=self.kernels)
        prompts = np.repeat(np.array(ids, dtype=np.int64), beam, axis=0)  # (B * NB, P)
        decoder = _GPTDecoder(self.params, self.config, prompts, max_length, use_cache, self.kernels)
        if beam == 1:
            return seq2seq._greedy_loop(decoder, len(ids), _search_ids(SEP), max_length)
        return seq2seq._beam_loop(decoder, len(ids), _search_ids(SEP), max_length, beam, float(length_penalty),
                                  False, 1, self.params["transformer.wte.weight"].dtype)


def load_translator(path, kernels: str = "numpy") -> Translator:
    """The ``Translator`` in a run folder (its latest checkpoint) or a checkpoint folder."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such run folder (expected the --out folder of "
                                "llm-scratch train-translation, or one of its checkpoints)")
    ckpt = path if (path / "translation.json").is_file() else latest_checkpoint(path)
    if ckpt is None or not (ckpt / "translation.json").is_file():
        raise FileNotFoundError(f"{path} holds no translation checkpoint: expected translation.json, config.json, "
                                "model.safetensors and vocab.json, or a run folder with a 'latest' checkpoint")
    arch = json.loads((ckpt / "translation.json").read_text(encoding="utf-8")).get("arch")
    if arch not in ARCHS:
        raise ValueError(f"{ckpt / 'translation.json'}: unknown model {arch!r}; expected one of {ARCHS}")
    params, config = (bart if arch == "encdec" else gpt).from_pretrained(ckpt)
    return Translator(arch, params, config, load_vocab(ckpt / "vocab.json"), kernels)


def cross_attention(translator: Translator, english: str, velu: str) -> np.ndarray:
    """The encoder-decoder's cross-attention weights while it reads ``velu`` as the target of
    ``english`` (teacher forcing): (L_dec, NH, T, S), for the T = len(velu) + 1 decoder positions
    (each predicting a character of ``velu``, then ``</s>``) over the S = len(english) + 2 source
    tokens (``<s>``, the characters, ``</s>``); each row sums to 1."""
    if translator.arch != "encdec":
        raise ValueError(f"cross-attention belongs to the encoder-decoder; this model is {translator.arch!r}")
    x, y = encdec_arrays(translator.vocab, [(english, velu)])  # (1, S), (1, T)
    _, _, cache = bart.bart_forward(translator.params, translator.config, x, labels=y, kernels="numpy")
    return np.stack([layer.cross_attn[0].attention.p[0] for layer in cache.dec_layers])  # (L, NH, T, S)
