"""Upper bounds on the entropy rate of a real text, for when the floor is unknown.

For StoryWorld the entropy per character is known exactly; for real text (the Python standard
library, chapter 11) it is not. What we can compute are upper bounds: any method that encodes the
text in ``b`` bits proves that the text needs at most ``b`` bits, so ``b / n_chars`` bounds the
entropy rate from above, up to the fluctuation of a finite sample. Two kinds here:

- general-purpose compressors at their strongest settings: gzip (DEFLATE, level 9, a 32 KB
  window), bz2 (Burrows-Wheeler, level 9, 900 KB blocks) and lzma (LZMA2, preset 9 with the
  ``PRESET_EXTREME`` flag, an up-to-64 MB dictionary). ``compressed_bits_per_char`` can compress
  a validation text *after* a training text and count only the extra bytes, which is what a model
  trained on the first and scored on the second is compared with;
- the best interpolated Kneser-Ney n-gram model (``llm_from_scratch.ngram``) over the text's
  UTF-8 bytes, trained on a training text and scored on a validation text. An ideal arithmetic
  coder driven by the model would spend exactly its cross-entropy in bits.

Bytes, not characters, are the n-gram's alphabet so that no character of the validation text can
be missing from its vocabulary; every bound is reported per *character* (total bits divided by the
number of characters), so it can sit beside a character model's bits per character.

Left out: context-mixing compressors (PAQ, cmix), which come much closer to neural models, and any
lower bound (for real text there is none that is useful).

References: Shannon, "Prediction and Entropy of Printed English" (1951); Cover & Thomas,
*Elements of Information Theory*, chapter 13 (universal source coding); Python's ``zlib``, ``bz2``
and ``lzma`` module documentation.
"""

from __future__ import annotations

import bz2
import lzma
import math
import zlib

import numpy as np

from llm_from_scratch.ngram import NGramModel

__all__ = ["COMPRESSORS", "compress", "compressed_bits_per_char", "ngram_bits_per_char", "upper_bounds"]

COMPRESSORS = ("gzip", "bz2", "lzma")


def compress(data: bytes, method: str) -> bytes:
    """``data`` compressed by ``method`` ("gzip", "bz2" or "lzma") at its strongest setting.

    "gzip" is raw DEFLATE (``zlib`` level 9 with ``wbits=-15``): the gzip file format adds an
    18-byte header and trailer, which we leave out; "lzma" is the raw LZMA2 stream with preset
    ``9 | PRESET_EXTREME``, likewise without the .xz container.

    >>> len(compress(b"ab" * 1000, "gzip")) < 20
    True
    """
    if not isinstance(data, (bytes, bytearray)):
        raise TypeError(f"compress takes bytes, got {type(data).__name__}; encode text with .encode('utf-8')")
    if method == "gzip":
        c = zlib.compressobj(9, zlib.DEFLATED, -15, 9)
        return c.compress(bytes(data)) + c.flush()
    if method == "bz2":
        return bz2.compress(bytes(data), compresslevel=9)
    if method == "lzma":
        filters = [dict(id=lzma.FILTER_LZMA2, preset=9 | lzma.PRESET_EXTREME)]
        return lzma.compress(bytes(data), format=lzma.FORMAT_RAW, filters=filters)
    raise ValueError(f"unknown compressor {method!r}; expected one of {COMPRESSORS}")


def compressed_bits_per_char(text: str, method: str, context: str = "") -> float:
    """Bits per character that ``method`` needs for ``text``, after ``context`` if given.

    Without a context: ``8 * len(compress(text)) / len(text)``. With one: the bytes that
    ``text`` adds when compressed after it, ``8 * (len(compress(context + text)) -
    len(compress(context))) / len(text)``, so the compressor may use what it saw in the context
    (within its window: 32 KB for gzip, 900 KB blocks for bz2).

    A text that repeats one short string compresses to almost nothing; random bytes cannot be
    compressed at all:

    >>> compressed_bits_per_char("abc" * 5000, "lzma") < 0.05
    True
    """
    if not isinstance(text, str) or not isinstance(context, str):
        raise TypeError(f"text and context must be str, got {type(text).__name__} and {type(context).__name__}")
    if not text:
        raise ValueError("cannot measure bits per character of an empty text")
    body = len(compress((context + text).encode("utf-8"), method))
    base = len(compress(context.encode("utf-8"), method)) if context else 0
    return 8.0 * (body - base) / len(text)


def ngram_bits_per_char(train_text: str, val_text: str, orders=range(1, 8)) -> dict:
    """Validation bits per character of Kneser-Ney n-gram models over UTF-8 bytes, per order.

    Returns ``{"orders": [...], "bits_per_char": [...], "best_order": k, "best": bpc}``. Each model
    is fitted on ``train_text``'s bytes and scores every byte of ``val_text`` (the first ones with
    the shorter contexts available); the bits are summed and divided by ``len(val_text)``
    characters. Orders up to 7 fit the 64-bit n-gram codes of a 256-byte alphabet.

    >>> r = ngram_bits_per_char("abcd" * 200, "abcd" * 20, orders=(1, 2))
    >>> r["best_order"], r["bits_per_char"][0] > 1.9, r["best"] < 0.1
    (2, True, True)
    """
    if not isinstance(train_text, str) or not isinstance(val_text, str):
        raise TypeError("train_text and val_text must be str")
    if not val_text:
        raise ValueError("the validation text is empty")
    orders = [int(k) for k in orders]
    if not orders or min(orders) < 1 or max(orders) > 7:
        raise ValueError(f"orders must lie in 1..7 for a byte alphabet, got {orders}")
    train = np.frombuffer(train_text.encode("utf-8"), dtype=np.uint8).astype(np.int64)  # (N_train,)
    val = np.frombuffer(val_text.encode("utf-8"), dtype=np.uint8).astype(np.int64)      # (N_val,)
    if len(train) < max(orders):
        raise ValueError(f"the training text has {len(train)} bytes, fewer than the largest order {max(orders)}")
    bpc = []
    for k in orders:
        nats = -NGramModel(k, 256).fit(train).token_logprobs(val).sum()
        bpc.append(float(nats / math.log(2.0) / len(val_text)))
    i = int(np.argmin(bpc))
    return dict(orders=orders, bits_per_char=bpc, best_order=orders[i], best=bpc[i])


def upper_bounds(train_text: str, val_text: str, orders=range(1, 8)) -> dict:
    """Every upper bound on ``val_text``'s bits per character, as a dict name -> bits per character.

    The compressors see ``train_text`` as context (``compressed_bits_per_char(val, m, train)``),
    and also compress ``val_text`` alone (``"<method> alone"``); ``"n-gram"`` is the best order's
    validation bits per character (the order in ``"n-gram order"``).
    """
    out = {}
    for m in COMPRESSORS:
        out[m] = compressed_bits_per_char(val_text, m, context=train_text)
        out[f"{m} alone"] = compressed_bits_per_char(val_text, m)
    ng = ngram_bits_per_char(train_text, val_text, orders)
    out["n-gram"] = ng["best"]
    out["n-gram order"] = ng["best_order"]
    return out
