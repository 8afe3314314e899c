"""The BERT encoder: configuration, parameters, and the forward and backward passes.

The model reads token ids ``input_ids`` (B, T), segment ids ``token_type_ids`` (B, T) and an
``attention_mask`` (B, T) that is 1 for real tokens and 0 for padding, and gives a vector for
every token and one for the whole sequence:

    x = LN(word[ids] + type[token_type_ids] + pos[0:T])   embeddings, LayerNorm, dropout   (B, T, C)
    for each of the L layers:                              post-LayerNorm blocks (layer_forward)
        x = LN(x + attn(x))                                every token sees every real token (B, T, C)
        x = LN(x + W_2 gelu(W_1 x + b_1) + b_2)            the feed-forward network, width F
    pooled = tanh(W_p x[:, 0] + b_p)                       the pooler, on the [CLS] token     (B, C)

Unlike GPT (``llm_from_scratch.models.gpt``), attention is not causal, the LayerNorm comes
*after* each residual add (Devlin et al. kept the original Transformer's order), GELU is the
exact erf form, there is a third embedding table for the segment (sentence A or B), and padded
keys are masked out of every softmax. The attention is ``attention.mha_forward``, the one the
GPT uses, called with ``causal=False``, the padding mask and dropout on its weights.

Parameters are a flat ``dict[str, ndarray]`` with Hugging Face BERT's names *and layouts*:
``bert.encoder.layer.0.attention.self.query.weight`` is PyTorch ``nn.Linear``'s (C_out, C_in),
the transpose of what ``ops.linear_forward`` takes, so each dense layer here multiplies by a
transposed view (``x @ w.T``) and transposes its weight gradient back. Query, key and value stay
three separate matrices in the dict; each forward pass stacks them into one (3C, C) matrix whose
transpose is GPT-2's fused ``c_attn`` layout, and the backward pass splits its gradient back.

``kernels="numba"`` swaps the numpy ops for their twins (chosen once by
``kernels.backend.get_ops``): LayerNorm, the exact GELU, cross-entropy, the embedding
scatter-add, and the numba attention kernel with its padding mask; results agree with the numpy
path to float rounding. ``train=True`` applies the config's dropout (embeddings, attention
probabilities, both residual branches), with masks drawn from ``rng``: the same seed gives the
same masks. Dropout on attention probabilities runs the numpy attention (the numba kernel never
holds the probabilities).

``inference=True`` (``bert_forward``, ``encoder_forward``; ``encode_sentences`` uses it) keeps
no cache, so nothing is held for a backward pass. In float32 with the numba kernels each layer
is then ``layer_inference``: the attention reads q, k and v in place from the fused projection
and writes the merged heads in place, skipping the padding after each sequence's last real
token, and the bias, GELU, residual sum and LayerNorm after each product are applied in the
product's pass (``kernels.fused``). Its outputs agree with ``layer_forward``'s to float32
rounding; float64 and the numpy kernels run ``layer_forward`` itself, so their results do not
change.

Deliberate differences from Hugging Face: a sequence whose attention mask is all zeros gets
all-zero attention outputs (Hugging Face averages over the padding). As in Hugging Face, the
padding row of the word embedding (``pad_token_id``) receives no gradient from the lookup
(PyTorch's ``padding_idx``).

Left out: relative position embeddings, decoder use (causal masks, cross-attention, key/value
caches: the encoder-decoder's), ``head_mask``, mixed precision.

References:

- J. Devlin, M.-W. Chang, K. Lee, K. Toutanova, "BERT: Pre-training of Deep Bidirectional
  Transformers for Language Understanding", NAACL 2019, section 3; google-research/bert
  ``modeling.py``.
- A. Vaswani et al., "Attention Is All You Need", NeurIPS 2017, section 3 (post-LN residuals).
- D. Hendrycks, K. Gimpel, "Gaussian Error Linear Units (GELUs)", 2016.
- Hugging Face ``transformers``, ``models/bert/modeling_bert.py`` and ``configuration_bert.py``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import NamedTuple

import numpy as np

from llm_from_scratch.attention import MHACache, _linear_backward, _linear_forward, mha_backward, mha_forward
from llm_from_scratch.kernels.backend import KERNELS, get_ops
from llm_from_scratch.models import common
from llm_from_scratch.models.common import maybe_dropout_backward, maybe_dropout_forward, read_config, write_json
from llm_from_scratch.ops import GELU_APPROXIMATE

# Dimension letters, the same in every shape comment of this package:
#   B  batch size          T  sequence length         C  channels, hidden_size
#   V  vocabulary size     NH heads                   HS head size, C // NH
#   F  feed-forward width, intermediate_size          L  number of layers
#   P  max_position_embeddings                        S  type_vocab_size (segments)
#   K  num_labels, the classes of the classifier head

__all__ = ["BertConfig", "KERNELS", "HEADS", "param_shapes", "heads_of", "num_params", "init_params",
           "check_params", "dense_forward", "dense_backward", "LayerCache", "layer_forward", "layer_backward",
           "layer_inference", "EncoderCache", "encoder_forward", "encoder_backward", "all_grads", "check_train",
           "classifier_dropout", "bert_forward", "bert_backward"]

HEADS = ("pooler", "mlm", "classifier", "qa")  # the optional parts of a parameter dict, in state-dict order


# ----------------------------------------------------------------------------------------
# configuration


@dataclass(frozen=True)
class BertConfig:
    """The shape and hyperparameters of a BERT model, with Hugging Face ``BertConfig``'s field
    names, so ``config.json`` files go both ways. The defaults are BERT-base (110M), dropout
    included (it only acts when a forward pass is given ``train=True``).

    >>> BertConfig(vocab_size=13, hidden_size=8, num_hidden_layers=2, num_attention_heads=2).head_size
    4
    >>> BertConfig(hidden_size=10, num_attention_heads=4)
    Traceback (most recent call last):
    ...
    ValueError: BertConfig: hidden_size = 10 must be divisible by num_attention_heads = 4 (each head gets hidden_size // num_attention_heads channels)
    """

    vocab_size: int = 30522  # V: how many token ids the model reads (and the MLM head predicts)
    hidden_size: int = 768  # C: the width of every token's vector
    num_hidden_layers: int = 12  # L: how many encoder layers are stacked
    num_attention_heads: int = 12  # NH: attention heads per layer; each gets HS = C // NH channels
    intermediate_size: int = 3072  # F: the width of the feed-forward network inside each layer
    hidden_act: str = "gelu"  # the feed-forward and MLM-head activation: "gelu" is the exact erf form
    hidden_dropout_prob: float = 0.1  # dropout on the embeddings and on both residual branches
    attention_probs_dropout_prob: float = 0.1  # dropout on the attention probabilities
    max_position_embeddings: int = 512  # P: the longest sequence, the rows of the position table
    type_vocab_size: int = 2  # S: segment ids, 0 for sentence A and 1 for sentence B
    initializer_range: float = 0.02  # std of the normal initialisation of weights and embeddings
    layer_norm_eps: float = 1e-12  # added to the variance inside every LayerNorm
    pad_token_id: int | None = 0  # the [PAD] id; its word-embedding row gets no gradient from the lookup
    num_labels: int = 2  # K: classes of the classification head (Hugging Face stores id2label)
    classifier_dropout: float | None = None  # dropout before the classifier; None means hidden_dropout_prob

    def __post_init__(self):
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "intermediate_size", "max_position_embeddings", "type_vocab_size", "num_labels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"BertConfig: {name} must be a positive integer, got {value!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"BertConfig: hidden_size = {self.hidden_size} must be divisible by "
                             f"num_attention_heads = {self.num_attention_heads} (each head gets "
                             f"hidden_size // num_attention_heads channels)")
        if self.hidden_act not in GELU_APPROXIMATE:
            raise ValueError(f"BertConfig: hidden_act {self.hidden_act!r} is not supported; expected one of "
                             f"{sorted(GELU_APPROXIMATE)}")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout"):
            p = getattr(self, name)
            if name == "classifier_dropout" and p is None:
                continue
            if isinstance(p, bool) or not (isinstance(p, (int, float)) and 0.0 <= p < 1.0):
                raise ValueError(f"BertConfig: {name} is a dropout probability in [0, 1), got {p!r}")
        if not (isinstance(self.layer_norm_eps, (int, float)) and self.layer_norm_eps > 0):
            raise ValueError(f"BertConfig: layer_norm_eps must be a positive number, got {self.layer_norm_eps!r}")
        if not (isinstance(self.initializer_range, (int, float)) and self.initializer_range >= 0):
            raise ValueError(f"BertConfig: initializer_range must be a non-negative number, got "
                             f"{self.initializer_range!r}")
        if self.pad_token_id is not None and not (isinstance(self.pad_token_id, (int, np.integer))
                                                  and 0 <= self.pad_token_id < self.vocab_size):
            raise ValueError(f"BertConfig: pad_token_id must be None or an id in [0, vocab_size = "
                             f"{self.vocab_size}), got {self.pad_token_id!r}")

    @property
    def head_size(self) -> int:
        """HS = hidden_size // num_attention_heads, the channels of one attention head."""
        return self.hidden_size // self.num_attention_heads

    def to_dict(self, architectures: Sequence[str] = ("BertModel",)) -> dict:
        """The fields as a Hugging Face ``config.json`` dict (``model_type`` "bert").

        ``num_labels`` is written the way Hugging Face writes it, as ``id2label``/``label2id``;
        the options this model implements are stated (absolute positions, an encoder).

        >>> d = BertConfig(num_labels=3).to_dict()
        >>> d["model_type"], d["id2label"], "num_labels" in d
        ('bert', {'0': 'LABEL_0', '1': 'LABEL_1', '2': 'LABEL_2'}, False)
        """
        d = dataclasses.asdict(self)
        K = d.pop("num_labels")
        d.update({"model_type": "bert", "architectures": list(architectures),
                  "position_embedding_type": "absolute", "is_decoder": False, "add_cross_attention": False,
                  "id2label": {str(i): f"LABEL_{i}" for i in range(K)},
                  "label2id": {f"LABEL_{i}": i for i in range(K)}})
        return dict(sorted(d.items()))

    @classmethod
    def from_dict(cls, d: dict) -> "BertConfig":
        """Read a Hugging Face BERT ``config.json`` dict, refusing options this model does not
        implement. Keys that do not change the computation (``use_cache``, ``gradient_checkpointing``,
        ``transformers_version``...) are ignored.

        >>> BertConfig.from_dict({"model_type": "bert", "hidden_size": 8, "num_attention_heads": 2,
        ...                       "id2label": {"0": "neg", "1": "neu", "2": "pos"}}).num_labels
        3
        >>> BertConfig.from_dict({"model_type": "gpt2"})
        Traceback (most recent call last):
        ...
        ValueError: config has model_type 'gpt2', expected 'bert' (a BERT checkpoint)
        """
        if not isinstance(d, dict):
            raise ValueError(f"config must be a JSON object, got {type(d).__name__}")
        if d.get("model_type", "bert") != "bert":
            raise ValueError(f"config has model_type {d['model_type']!r}, expected 'bert' (a BERT checkpoint)")
        unsupported = {
            "position_embedding_type": (d.get("position_embedding_type", "absolute") != "absolute", "'absolute'"),
            "is_decoder": (d.get("is_decoder", False) is not False, "False"),
            "add_cross_attention": (d.get("add_cross_attention", False) is not False, "False"),
            "problem_type": (d.get("problem_type") not in (None, "single_label_classification"),
                             "None or 'single_label_classification'"),
        }
        for key, (bad, expected) in unsupported.items():
            if bad:
                raise ValueError(f"config sets {key} = {d[key]!r}, which this BERT does not implement; "
                                 f"expected {expected}")
        fields = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in d.items() if k in fields}
        if isinstance(d.get("id2label"), dict) and d["id2label"]:
            kwargs["num_labels"] = len(d["id2label"])
        return cls(**kwargs)

    def to_json(self, path, architectures: Sequence[str] = ("BertModel",)) -> None:
        """Write ``to_dict()`` to ``path`` (a Hugging Face ``config.json``), atomically."""
        write_json(Path(path), self.to_dict(architectures))

    @classmethod
    def from_json(cls, path) -> "BertConfig":
        """Read a Hugging Face BERT ``config.json`` (see ``from_dict``)."""
        return read_config(path, cls.from_dict)


# ----------------------------------------------------------------------------------------
# parameters: names, shapes, counts, initialisation


def _head_shapes(config: BertConfig, head: str) -> dict[str, tuple[int, ...]]:
    C, V, K = config.hidden_size, config.vocab_size, config.num_labels
    if head == "pooler":
        return {"bert.pooler.dense.weight": (C, C), "bert.pooler.dense.bias": (C,)}
    if head == "mlm":  # the decoder weight is bert.embeddings.word_embeddings.weight (tied)
        return {"cls.predictions.bias": (V,),
                "cls.predictions.transform.dense.weight": (C, C), "cls.predictions.transform.dense.bias": (C,),
                "cls.predictions.transform.LayerNorm.weight": (C,),
                "cls.predictions.transform.LayerNorm.bias": (C,)}
    if head == "classifier":
        return {"classifier.weight": (K, C), "classifier.bias": (K,)}
    if head == "qa":
        return {"qa_outputs.weight": (2, C), "qa_outputs.bias": (2,)}
    raise ValueError(f"unknown head {head!r}; expected one of {HEADS}")


def _check_heads(heads) -> tuple[str, ...]:
    if isinstance(heads, str):
        heads = (heads,)
    unknown = [h for h in heads if h not in HEADS]
    if unknown:
        raise ValueError(f"unknown heads {unknown}; expected a tuple drawn from {HEADS}")
    return tuple(h for h in HEADS if h in heads)


def param_shapes(config: BertConfig, heads: Sequence[str] = ("pooler",)) -> dict[str, tuple[int, ...]]:
    """Every parameter's Hugging Face name and (PyTorch) shape, in state-dict order: the encoder,
    then the chosen ``heads`` (a subset of ``HEADS``). The default, the encoder and the pooler, is
    Hugging Face's ``BertModel``; ``BertForMaskedLM`` is ``("mlm",)``,
    ``BertForSequenceClassification`` ``("pooler", "classifier")`` and ``BertForQuestionAnswering``
    ``("qa",)``.

    >>> cfg = BertConfig(vocab_size=13, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
    ...                  intermediate_size=12, max_position_embeddings=10)
    >>> shapes = param_shapes(cfg)
    >>> len(shapes), shapes["bert.encoder.layer.0.intermediate.dense.weight"]  # nn.Linear: (F, C)
    (23, (12, 8))
    >>> list(param_shapes(cfg, heads=("qa",)))[-2:]
    ['qa_outputs.weight', 'qa_outputs.bias']
    """
    heads = _check_heads(heads)
    V, C, F = config.vocab_size, config.hidden_size, config.intermediate_size
    P, S = config.max_position_embeddings, config.type_vocab_size
    shapes = {"bert.embeddings.word_embeddings.weight": (V, C),
              "bert.embeddings.position_embeddings.weight": (P, C),
              "bert.embeddings.token_type_embeddings.weight": (S, C),
              "bert.embeddings.LayerNorm.weight": (C,), "bert.embeddings.LayerNorm.bias": (C,)}
    for i in range(config.num_hidden_layers):
        h = f"bert.encoder.layer.{i}."
        shapes.update({
            h + "attention.self.query.weight": (C, C), h + "attention.self.query.bias": (C,),
            h + "attention.self.key.weight": (C, C), h + "attention.self.key.bias": (C,),
            h + "attention.self.value.weight": (C, C), h + "attention.self.value.bias": (C,),
            h + "attention.output.dense.weight": (C, C), h + "attention.output.dense.bias": (C,),
            h + "attention.output.LayerNorm.weight": (C,), h + "attention.output.LayerNorm.bias": (C,),
            h + "intermediate.dense.weight": (F, C), h + "intermediate.dense.bias": (F,),
            h + "output.dense.weight": (C, F), h + "output.dense.bias": (C,),
            h + "output.LayerNorm.weight": (C,), h + "output.LayerNorm.bias": (C,),
        })
    for head in heads:
        shapes.update(_head_shapes(config, head))
    return shapes


def heads_of(params: dict) -> tuple[str, ...]:
    """Which optional parts a parameter dict holds, read off its names.

    >>> heads_of({"bert.pooler.dense.weight": None, "qa_outputs.bias": None})
    ('pooler', 'qa')
    """
    prefixes = {"pooler": "bert.pooler.", "mlm": "cls.predictions.", "classifier": "classifier.",
                "qa": "qa_outputs."}
    return tuple(h for h in HEADS if any(name.startswith(prefixes[h]) for name in params))


def num_params(config: BertConfig, heads: Sequence[str] = ("pooler",)) -> int:
    """How many numbers the model holds; the tied MLM decoder is counted once (it is the word
    embedding), its bias is counted.

    Per layer: 4 C^2 + 2 C F weights and 9 C + F biases and LayerNorm entries; the embeddings are
    (V + P + S) C + 2 C. BERT-base (``BertModel``, with the pooler):

    >>> num_params(BertConfig())
    109482240
    """
    return sum(math.prod(shape) for shape in param_shapes(config, heads).values())


def init_params(config: BertConfig, heads: Sequence[str] = ("pooler",), seed: int = 0,
                dtype=np.float32) -> dict[str, np.ndarray]:
    """Hugging Face BERT's initialisation: weights and embeddings N(0, initializer_range), the
    ``pad_token_id`` row of the word embedding 0, biases 0, LayerNorm weights 1.

    Draws happen in float64 in ``param_shapes`` order and are then cast, so float32 and float64
    parameters from the same seed agree to float32 rounding.

    >>> cfg = BertConfig(vocab_size=13, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
    ...                  intermediate_size=12, max_position_embeddings=10)
    >>> p = init_params(cfg, heads=("mlm",))
    >>> p["bert.embeddings.word_embeddings.weight"][0], p["cls.predictions.bias"][:3]  # [PAD] = 0
    (array([0., 0., 0., 0., 0., 0., 0., 0.], dtype=float32), array([0., 0., 0.], dtype=float32))
    """
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 (training) or float64 (gradient checks), got {dtype}")
    rng = np.random.default_rng(seed)
    params = {}
    for name, shape in param_shapes(config, heads).items():
        if "LayerNorm" in name:
            value = np.ones(shape) if name.endswith(".weight") else np.zeros(shape)  # (C,)
        elif name.endswith("bias"):
            value = np.zeros(shape)  # (OC,) or (V,)
        else:
            value = rng.standard_normal(shape) * config.initializer_range  # (OC, C), (V, C), (P, C), (S, C)
        if name == "bert.embeddings.word_embeddings.weight" and config.pad_token_id is not None:
            value[config.pad_token_id] = 0.0  # (C,) PyTorch's padding_idx row starts at zero
        params[name] = value.astype(dtype)
    return params


def check_params(params: dict[str, np.ndarray], config: BertConfig) -> np.dtype:
    """Raise a readable error unless ``params`` has exactly the names and shapes of
    ``param_shapes(config, heads_of(params))``, all float32 or all float64; return that dtype."""
    if not isinstance(params, dict):
        raise TypeError(f"params must be a dict of name -> numpy array, got {type(params).__name__}")
    heads = heads_of(params)
    return common.check_params(
        params, param_shapes(config, heads), f"this config with heads {heads}",
        "init_params(config, heads) or from_pretrained(...)",
        lambda extra: (" (the MLM decoder is tied to bert.embeddings.word_embeddings.weight and its bias is "
                       "cls.predictions.bias: drop the cls.predictions.decoder entries)"
                       if any(n.startswith("cls.predictions.decoder") for n in extra) else ""))


# ----------------------------------------------------------------------------------------
# input checks


def _check_inputs(config: BertConfig, input_ids, token_type_ids, attention_mask):
    """Validate the three (B, T) inputs; return ``(token_type_ids, key_mask)`` with defaults filled
    in and ``key_mask`` None when nothing is padded."""
    if not isinstance(input_ids, np.ndarray) or not np.issubdtype(input_ids.dtype, np.integer) or input_ids.ndim != 2:
        got = f"{input_ids.dtype} {input_ids.shape}" if isinstance(input_ids, np.ndarray) else type(input_ids).__name__
        raise ValueError(f"input_ids must be a (B, T) integer numpy array of token ids, got {got}; "
                         f"a single sequence is input_ids[None, :]")
    B, T = input_ids.shape
    P = config.max_position_embeddings
    if not 1 <= T <= P:
        raise ValueError(f"sequence length T = {T} must be in [1, max_position_embeddings = {P}], the number of "
                         f"learned positions; truncate the inputs (tokenizer.encode(..., max_length={P}))")
    if token_type_ids is None:
        token_type_ids = np.zeros((B, T), dtype=np.int64)  # (B, T) every token in segment 0
    elif not isinstance(token_type_ids, np.ndarray) or token_type_ids.shape != (B, T):
        got = token_type_ids.shape if isinstance(token_type_ids, np.ndarray) else type(token_type_ids).__name__
        raise ValueError(f"token_type_ids must have the shape of input_ids {(B, T)}, got {got}")
    key_mask = None
    if attention_mask is not None:
        if not isinstance(attention_mask, np.ndarray) or attention_mask.shape != (B, T):
            got = attention_mask.shape if isinstance(attention_mask, np.ndarray) else type(attention_mask).__name__
            raise ValueError(f"attention_mask must have the shape of input_ids {(B, T)} (1 for real tokens, 0 for "
                             f"padding), got {got}")
        if attention_mask.dtype != np.bool_ and not np.all((attention_mask == 0) | (attention_mask == 1)):
            raise ValueError("attention_mask must hold only 0 (padding) and 1 (real token), got values "
                             f"{sorted(set(np.unique(attention_mask).tolist()))[:5]}")
        key_mask = np.ascontiguousarray(attention_mask, dtype=np.bool_)  # (B, T)
        if key_mask.all():
            key_mask = None  # nothing to hide: skip the masking work
    return token_type_ids, key_mask


def check_train(config: BertConfig, train: bool, rng, classifier: bool = False) -> None:
    rates = [config.hidden_dropout_prob, config.attention_probs_dropout_prob]
    if classifier:
        rates.append(classifier_dropout(config))
    if train and any(rates) and not isinstance(rng, np.random.Generator):
        raise ValueError("train=True with dropout needs rng=np.random.default_rng(seed) to draw the masks "
                         "(or set the config's dropout probabilities to 0)")


def classifier_dropout(config: BertConfig) -> float:
    return config.hidden_dropout_prob if config.classifier_dropout is None else config.classifier_dropout


# ----------------------------------------------------------------------------------------
# the dense layer in PyTorch's layout


def dense_forward(K: SimpleNamespace, x: np.ndarray, w: np.ndarray, b: np.ndarray):
    """PyTorch's ``nn.Linear``: ``out = x @ w.T + b`` with ``w`` stored (OC, C), as Hugging Face does.
    ``w.T`` is a view: nothing is copied, BLAS reads the matrix transposed; the rows of ``x`` are
    flattened into one matrix first (``attention._linear_forward``)."""
    return _linear_forward(K, x, w.T, b)  # (..., C) @ (C, OC) -> (..., OC)


def dense_backward(K: SimpleNamespace, dout: np.ndarray, cache):
    """Gradients of ``dense_forward``: ``(dx, dw, db)`` with ``dw`` in the (OC, C) layout of ``w``."""
    dx, dw_t, db = _linear_backward(K, dout, cache)  # (..., C), (C, OC), (OC,)
    return dx, np.ascontiguousarray(dw_t.T), db  # dw: (OC, C)


# ----------------------------------------------------------------------------------------
# the encoder: embeddings, L post-LN layers, the pooler


class LayerCache(NamedTuple):
    """What ``layer_backward`` needs from ``layer_forward``."""
    ops: SimpleNamespace  # the ops namespace the forward pass ran with
    prefix: str  # "bert.encoder.layer.{i}."
    attn: MHACache  # a = attn(x)
    drop_a: np.ndarray | None  # dropout on a
    ln_a: tuple  # x_a = LN(x + a)
    fc1: tuple  # u = W_1 x_a + b_1
    gelu: tuple  # g = gelu(u)
    fc2: tuple  # m = W_2 g + b_2
    drop_m: np.ndarray | None  # dropout on m
    ln_m: tuple  # y = LN(x_a + m)


def layer_forward(x: np.ndarray, params: dict[str, np.ndarray], layer: int, config: BertConfig,
                  ops: SimpleNamespace, key_mask: np.ndarray | None = None, train: bool = False,
                  rng: np.random.Generator | None = None):
    """Encoder layer ``layer`` (post-LayerNorm) on ``x`` (B, T, C); ``key_mask`` (B, T) is True
    for real tokens (None: all real). Returns ``(y, cache)``:

        x_a = LN(x + dropout(attn(x)))                 bidirectional self-attention
        y   = LN(x_a + dropout(W_2 gelu(W_1 x_a + b_1) + b_2))
    """
    h, p, K, eps = f"bert.encoder.layer.{layer}.", params, ops, config.layer_norm_eps
    p_hidden = config.hidden_dropout_prob
    s, o = h + "attention.self.", h + "attention.output.dense."
    # the three (C, C) nn.Linear weights stacked into (3C, C); its transpose is GPT-2's fused (C, 3C)
    w_qkv = np.concatenate([p[s + "query.weight"], p[s + "key.weight"], p[s + "value.weight"]])  # (3C, C)
    b_qkv = np.concatenate([p[s + "query.bias"], p[s + "key.bias"], p[s + "value.bias"]])  # (3C,)
    # attention sub-block: x_a = LN(x + dropout(attn(x)))
    a, attn = mha_forward(x, w_qkv.T, b_qkv, p[o + "weight"].T, p[o + "bias"], config.num_attention_heads,
                          causal=False, key_mask=key_mask, ops=K,
                          dropout=config.attention_probs_dropout_prob if train else 0.0, rng=rng)  # (B, T, C)
    a, drop_a = maybe_dropout_forward(K, a, p_hidden, rng, train)  # (B, T, C)
    x, ln_a = K.layernorm_forward(x + a, p[h + "attention.output.LayerNorm.weight"],
                                  p[h + "attention.output.LayerNorm.bias"], eps)  # (B, T, C)
    # feed-forward sub-block: y = LN(x_a + dropout(W_2 gelu(W_1 x_a + b_1) + b_2))
    u, fc1 = dense_forward(K, x, p[h + "intermediate.dense.weight"], p[h + "intermediate.dense.bias"])  # (B, T, F)
    g, gelu = K.gelu_forward(u, approximate=GELU_APPROXIMATE[config.hidden_act])  # (B, T, F)
    m, fc2 = dense_forward(K, g, p[h + "output.dense.weight"], p[h + "output.dense.bias"])  # (B, T, C)
    m, drop_m = maybe_dropout_forward(K, m, p_hidden, rng, train)  # (B, T, C)
    y, ln_m = K.layernorm_forward(x + m, p[h + "output.LayerNorm.weight"], p[h + "output.LayerNorm.bias"],
                                  eps)  # (B, T, C)
    return y, LayerCache(K, h, attn, drop_a, ln_a, fc1, gelu, fc2, drop_m, ln_m)


def layer_inference(x: np.ndarray, params: dict[str, np.ndarray], layer: int, config: BertConfig,
                    key_mask: np.ndarray | None = None) -> np.ndarray:
    """``layer_forward`` for inference with the numba kernels: the same output ``y`` (B, T, C) to
    float rounding, and no cache. The attention reads q, k, v in place from the fused projection
    and writes the merged heads in place (``kernels.attention.self_attention_packed``), padding
    after a sequence's last real token is left out of the attention products, and the bias,
    GELU, residual and LayerNorm after each product are applied in the product's pass
    (``kernels.fused``)."""
    from llm_from_scratch.kernels import fused  # numba, imported when first used
    from llm_from_scratch.kernels.attention import self_attention_packed

    h, p, K, eps = f"bert.encoder.layer.{layer}.", params, get_ops("numba"), config.layer_norm_eps
    s, o = h + "attention.self.", h + "attention.output.dense."
    B, T, C = x.shape
    w_qkv = np.concatenate([p[s + "query.weight"], p[s + "key.weight"], p[s + "value.weight"]])  # (3C, C)
    b_qkv = np.concatenate([p[s + "query.bias"], p[s + "key.bias"], p[s + "value.bias"]])  # (3C,)
    x2 = x.reshape(B * T, C)  # (N, C), N = B*T rows
    qkv, _ = K.linear_forward(x2, w_qkv.T, b_qkv)  # (N, C) @ (C, 3C) -> (N, 3C)
    y = self_attention_packed(qkv.reshape(B, T, 3 * C), config.num_attention_heads, key_mask)  # (B, T, C)
    # x_a = LN(x + y W_o + b_o)
    x2 = fused.linear_residual_layernorm_forward(y.reshape(B * T, C), p[o + "weight"].T, p[o + "bias"], x2,
                                                 p[h + "attention.output.LayerNorm.weight"],
                                                 p[h + "attention.output.LayerNorm.bias"], eps)  # (N, C)
    # y = LN(x_a + W_2 gelu(W_1 x_a + b_1) + b_2)
    if GELU_APPROXIMATE[config.hidden_act] == "none":  # the exact GELU, fused into the product
        g = fused.linear_gelu_forward(x2, p[h + "intermediate.dense.weight"].T,
                                      p[h + "intermediate.dense.bias"])  # (N, C) -> (N, F)
    else:  # the tanh forms: product, then GELU
        u, _ = K.linear_forward(x2, p[h + "intermediate.dense.weight"].T,
                                p[h + "intermediate.dense.bias"])  # (N, C) -> (N, F)
        g, _ = K.gelu_forward(u, approximate=GELU_APPROXIMATE[config.hidden_act])  # (N, F)
    y = fused.linear_residual_layernorm_forward(g, p[h + "output.dense.weight"].T, p[h + "output.dense.bias"], x2,
                                                p[h + "output.LayerNorm.weight"], p[h + "output.LayerNorm.bias"],
                                                eps)  # (N, C)
    return y.reshape(B, T, C)


def layer_backward(dy: np.ndarray, cache: LayerCache) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Gradients of ``layer_forward``: ``(dx, grads)``, ``grads`` keyed by the layer's names."""
    K, h, c, grads = cache.ops, cache.prefix, cache, {}
    # in the forward pass this was: y = LN(x_a + m): the gradient of the sum reaches x_a and m whole
    ds, grads[h + "output.LayerNorm.weight"], grads[h + "output.LayerNorm.bias"] = \
        K.layernorm_backward(dy, c.ln_m)  # (B, T, C)
    dm = maybe_dropout_backward(K, ds, c.drop_m)  # (B, T, C)
    # m = W_2 g + b_2
    dg, grads[h + "output.dense.weight"], grads[h + "output.dense.bias"] = dense_backward(K, dm, c.fc2)  # (B, T, F)
    # g = gelu(u)
    du = K.gelu_backward(dg, c.gelu)  # (B, T, F)
    # u = W_1 x_a + b_1: x_a fed the residual and the FFN, so their gradients add
    dx_a, grads[h + "intermediate.dense.weight"], grads[h + "intermediate.dense.bias"] = \
        dense_backward(K, du, c.fc1)  # (B, T, C)
    dx_a += ds  # (B, T, C)
    # x_a = LN(x + a)
    ds, grads[h + "attention.output.LayerNorm.weight"], grads[h + "attention.output.LayerNorm.bias"] = \
        K.layernorm_backward(dx_a, c.ln_a)  # (B, T, C)
    da = maybe_dropout_backward(K, ds, c.drop_a)  # (B, T, C)
    # a = attn(x): the fused (C, 3C) weight's gradient, transposed, splits back into query, key, value
    g = mha_backward(da, c.attn)
    C = g.dx.shape[-1]
    dw_qkv = g.dw_attn.T  # (3C, C)
    for j, part in enumerate(("query", "key", "value")):
        grads[h + f"attention.self.{part}.weight"] = np.ascontiguousarray(dw_qkv[j * C:(j + 1) * C])  # (C, C)
        grads[h + f"attention.self.{part}.bias"] = g.db_attn[j * C:(j + 1) * C]  # (C,)
    grads[h + "attention.output.dense.weight"] = np.ascontiguousarray(g.dw_proj.T)  # (C, C), nn.Linear's layout
    grads[h + "attention.output.dense.bias"] = g.db_proj  # (C,)
    dx = g.dx + ds  # (B, T, C): the residual and the attention both read x
    return dx, grads


class EncoderCache(NamedTuple):
    """What ``encoder_backward`` needs from ``encoder_forward``."""
    config: BertConfig
    ops: SimpleNamespace  # the ops namespace the forward pass ran with
    dtype: np.dtype  # of the parameters
    names: list  # the parameter names of the dict, in order: the keys of the gradients
    shape: tuple  # (B, T) of the inputs
    word: tuple  # the word embedding lookup's cache
    seg: tuple  # the segment embedding lookup's cache
    ln_e: tuple  # the embedding LayerNorm's cache
    drop_e: np.ndarray | None  # dropout on the embeddings
    layers: list  # a LayerCache per layer
    pool: tuple | None  # (dense, tanh) caches of the pooler, or None


def encoder_forward(params, config, input_ids, token_type_ids=None, attention_mask=None, kernels="numpy",
                    train=False, rng=None, pool=True, inference=False):
    """Hidden states (B, T, C), the pooled [CLS] vector (B, C) or None (``pool=False``), and the
    cache of both, an ``EncoderCache``. The model behind every ``bert_*_forward``.

    ``inference=True`` keeps no cache (the third value is None, so there is no backward pass);
    float32 parameters with ``kernels="numba"`` then run ``layer_inference``, the other cases
    ``layer_forward`` with each layer's cache dropped as soon as it is made."""
    if not isinstance(config, BertConfig):
        raise TypeError(f"config must be a BertConfig, got {type(config).__name__}")
    if inference and train:
        raise ValueError("inference=True keeps no cache for a backward pass, so it cannot train: pass train=False")
    K, dtype = _ops_and_dtype(params, config, kernels)
    token_type_ids, key_mask = _check_inputs(config, input_ids, token_type_ids, attention_mask)
    if pool and "bert.pooler.dense.weight" not in params:
        raise KeyError("params has no pooler (bert.pooler.dense.*); build them with init_params(config, "
                       "heads=('pooler', ...)) or load a checkpoint that has one")
    T, p, e = input_ids.shape[1], params, "bert.embeddings."
    # embeddings: word + segment + position, then LayerNorm and dropout
    word, word_cache = K.embedding_forward(input_ids, p[e + "word_embeddings.weight"])  # (B, T) -> (B, T, C)
    seg, seg_cache = K.embedding_forward(token_type_ids, p[e + "token_type_embeddings.weight"])  # (B, T, C)
    x = word + seg + p[e + "position_embeddings.weight"][:T]  # (B, T, C) + (B, T, C) + (T, C) -> (B, T, C)
    x, ln_e = K.layernorm_forward(x, p[e + "LayerNorm.weight"], p[e + "LayerNorm.bias"],
                                  config.layer_norm_eps)  # (B, T, C)
    x, drop_e = maybe_dropout_forward(K, x, config.hidden_dropout_prob, rng, train)  # (B, T, C)
    layers = []
    fused_layers = inference and K.name == "numba" and dtype == np.float32
    for i in range(config.num_hidden_layers):
        if fused_layers:
            x = layer_inference(x, p, i, config, key_mask)  # (B, T, C)
            continue
        x, layer = layer_forward(x, p, i, config, K, key_mask, train, rng)  # (B, T, C)
        if not inference:
            layers.append(layer)
    pooled, pool_cache = None, None
    if pool:
        # pooler: tanh(W_p x[:, 0] + b_p), the [CLS] token's vector
        z, pool_dense = dense_forward(K, x[:, 0], p["bert.pooler.dense.weight"], p["bert.pooler.dense.bias"])  # (B, C)
        pooled, pool_tanh = K.tanh_forward(z)  # (B, C)
        pool_cache = (pool_dense, pool_tanh)
    if inference:
        return x, pooled, None
    cache = EncoderCache(config, K, dtype, list(param_shapes(config, heads_of(params))), input_ids.shape,
                         word_cache, seg_cache, ln_e, drop_e, layers, pool_cache)
    return x, pooled, cache


def _ops_and_dtype(params, config: BertConfig, kernels: str):
    """``get_ops(kernels)`` and the checked dtype of ``params``; for quantized weights
    (``quantize.quantize_params``, forward only) the ops whose linear layers read them."""
    from llm_from_scratch import quantize

    if quantize.is_quantized(params):
        get_ops(kernels)  # the name is checked as for float weights
        return quantize.quantized_ops(kernels), quantize.check_quantized_params(params, param_shapes(config, heads_of(params)))
    return get_ops(kernels), check_params(params, config)


def encoder_backward(cache: EncoderCache, dx: np.ndarray | None, dpooled: np.ndarray | None
                     ) -> dict[str, np.ndarray]:
    """Gradients of the encoder (and pooler) parameters from ``dx`` (B, T, C) and ``dpooled`` (B, C)."""
    config, K, c, grads = cache.config, cache.ops, cache, {}
    B, T = c.shape
    dx = np.zeros((B, T, config.hidden_size), dtype=c.dtype) if dx is None else dx.astype(c.dtype, copy=True)  # (B, T, C)
    if dpooled is not None:
        if c.pool is None:
            raise ValueError("dpooled given, but the forward pass computed no pooled output (params without a pooler)")
        pool_dense, pool_tanh = c.pool
        # in the forward pass this was: pooled = tanh(z), z = W_p x[:, 0] + b_p, so now
        dz = K.tanh_backward(dpooled, pool_tanh)  # (B, C)
        dcls, grads["bert.pooler.dense.weight"], grads["bert.pooler.dense.bias"] = dense_backward(K, dz, pool_dense)
        dx[:, 0] += dcls  # (B, C): only the [CLS] position fed the pooler
    for layer in reversed(c.layers):
        dx, layer_grads = layer_backward(dx, layer)  # (B, T, C)
        grads.update(layer_grads)
    # x = dropout(LN(word[ids] + type[tt] + pos[:T]))
    e = "bert.embeddings."
    dx = maybe_dropout_backward(K, dx, c.drop_e)  # (B, T, C)
    dsum, grads[e + "LayerNorm.weight"], grads[e + "LayerNorm.bias"] = K.layernorm_backward(dx, c.ln_e)  # (B, T, C)
    dpos = np.zeros((config.max_position_embeddings, config.hidden_size), dtype=c.dtype)  # (P, C)
    dpos[:T] = dsum.sum(axis=0)  # (B, T, C) -> (T, C): every sequence used the same positions
    grads[e + "position_embeddings.weight"] = dpos
    grads[e + "token_type_embeddings.weight"] = K.embedding_backward(dsum, c.seg)  # (S, C)
    dword = K.embedding_backward(dsum, c.word)  # (V, C)
    if config.pad_token_id is not None:
        dword[config.pad_token_id] = 0  # (C,) PyTorch's padding_idx: the [PAD] row is not trained by the lookup
    grads[e + "word_embeddings.weight"] = dword
    return grads


def all_grads(grads: dict, cache: EncoderCache) -> dict[str, np.ndarray]:
    """``grads`` in the order of the parameter dict, with zeros for the parameters no path reached."""
    shapes = param_shapes(cache.config, HEADS)
    return {name: grads[name] if name in grads else np.zeros(shapes[name], dtype=cache.dtype) for name in cache.names}


def bert_forward(params: dict[str, np.ndarray], config: BertConfig, input_ids: np.ndarray,
                 token_type_ids: np.ndarray | None = None, attention_mask: np.ndarray | None = None,
                 kernels: str = "numpy", train: bool = False, rng: np.random.Generator | None = None,
                 inference: bool = False):
    """The encoder, as Hugging Face's ``BertModel``: hidden states (B, T, C) of ``input_ids``
    (B, T), and the pooled [CLS] vector (B, C) when ``params`` has the pooler (else None).

    ``token_type_ids`` (B, T) default to 0; ``attention_mask`` (B, T) is 1 for real tokens and 0
    for padding (default: all real). Returns ``(hidden, pooled, cache)``. ``train=True`` applies
    the config's dropout with masks drawn from ``rng``; ``kernels`` is "numpy" or "numba".
    ``inference=True`` keeps no cache (the third value is None) and, in float32 with
    ``kernels="numba"``, runs the fused inference kernels (``layer_inference``).

    Example: a sequence padded with two [PAD] tokens gives, at its real tokens, the same vectors
    as the sequence alone: the padding is masked out of every attention.

    >>> cfg = BertConfig(vocab_size=13, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
    ...                  intermediate_size=12, max_position_embeddings=10)
    >>> params = init_params(cfg, seed=0, dtype=np.float64)
    >>> hidden, pooled, cache = bert_forward(params, cfg, np.array([[2, 5, 6, 3]]))
    >>> padded, _, _ = bert_forward(params, cfg, np.array([[2, 5, 6, 3, 0, 0]]),
    ...                             attention_mask=np.array([[1, 1, 1, 1, 0, 0]]))
    >>> hidden.shape, pooled.shape, bool(np.allclose(padded[:, :4], hidden))
    ((1, 4, 8), (1, 8), True)
    >>> grads = bert_backward(cache, dhidden=np.ones_like(hidden))
    >>> list(grads) == list(params), bool(grads["bert.pooler.dense.weight"].any())  # the pooler was not used
    (True, False)
    """
    check_train(config, train, rng)
    pool = isinstance(params, dict) and "bert.pooler.dense.weight" in params
    return encoder_forward(params, config, input_ids, token_type_ids, attention_mask, kernels, train, rng, pool,
                           inference)


def bert_backward(cache: EncoderCache, dhidden: np.ndarray | None = None, dpooled: np.ndarray | None = None
                  ) -> dict[str, np.ndarray]:
    """Gradients of every parameter given the gradients of the hidden states ``dhidden`` (B, T, C)
    and of the pooled output ``dpooled`` (B, C) (either may be None: zero). A dict with the keys
    and order of ``params``; heads get zeros.

    Example: see ``bert_forward``.
    """
    return all_grads(encoder_backward(cache, dhidden, dpooled), cache)
