"""The continuous-batching engine: one thread that decodes every active request together.

See the package docstring (``llm_from_scratch.serve``) for the idea and its references. This
module is the engine alone, with no HTTP in it: ``Engine.submit`` hands it a prompt (token ids)
and sampling settings and returns a ``Sequence``; the engine calls the sequence's ``on_event``
from its own thread with

    ("text", delta)        new completion text (possibly "" never: empty deltas are not sent)
    ("finish", usage)      {"finish_reason": "stop" | "length", "prompt_tokens", "completion_tokens"}
    ("error", message)     the request timed out, or the forward pass failed

and nothing after "finish" or "error". ``Engine.cancel`` (a client went away) frees the
sequence's row at the next step, with no event.

The batch key/value cache ``kv`` is ``(L, 2, R, NH, P, HS)`` for R = ``max_batch`` rows. The
active sequences always occupy rows ``0 .. n-1`` (row i belongs to ``self.rows[i]``), so a decode
step runs on the view ``kv[:, :, :n]`` without copying the cache: when the sequence of row i
leaves, the last active row is moved into row i (one row copy, only on departure).
"""

from __future__ import annotations

import collections
import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from llm_from_scratch.generate import gpt_forward_cached, init_kv_cache, sample_next
from llm_from_scratch.models.gpt import GPTConfig

# Dimension letters, as in generate.py:
#   R  rows of the batch cache (max_batch)   n  active rows now   V  vocabulary size
#   L  blocks   NH heads   P  n_positions   HS head size

__all__ = ["SamplingParams", "Sequence", "Engine"]


@dataclass(frozen=True)
class SamplingParams:
    """How one request chooses its tokens. ``temperature == 0`` is greedy decoding (the most
    likely token; top-k, top-p and the seed are then irrelevant); ``top_k``/``top_p`` None keep
    every token; ``seed`` None draws a fresh seed; ``stop`` strings end the completion (the
    matched stop string is not part of the text)."""

    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()


@dataclass(eq=False)
class Sequence:
    """One request inside the engine: its prompt, what it has generated, where its text stands."""

    prompt: list[int]
    sampling: SamplingParams
    on_event: Callable[[str, object], None]
    deadline: float  # time.monotonic() after which the request fails with a timeout
    id: int = 0
    tokens: list[int] = field(default_factory=list)  # the completion so far
    sent: int = 0  # characters of the completion text already sent
    last: int = -1  # the newest token, not yet in the cache (fed at the next step)
    cancelled: bool = False
    done: bool = False
    rng: np.random.Generator | None = None


class Engine:
    """Continuous batching over one GPT: up to ``max_batch`` sequences decode together, one
    forward pass per step; new requests join at the next step, finished ones leave at once.

    ``max_batch=1`` serves one request at a time (the comparison without batching): the same
    code with a single row, so the two differ only in the batching. ``compute_lock`` is held
    around every forward pass; give the same lock to anything else that runs numba or BLAS in
    the process (the embedding model) so they take turns. ``max_waiting`` bounds the queue:
    ``submit`` raises ``OverflowError`` when it is full.

    >>> from llm_from_scratch.models.gpt import init_params
    >>> cfg = GPTConfig(vocab_size=11, n_positions=16, n_embd=8, n_layer=2, n_head=2)
    >>> engine = Engine(init_params(cfg, seed=0), cfg, decode=lambda ids: "".join(map(str, ids)),
    ...                 max_batch=4, kernels="numpy").start()
    >>> events = []
    >>> seq = engine.submit([1, 2, 3], SamplingParams(max_tokens=5, temperature=0), lambda *e: events.append(e))
    >>> engine.wait_idle(timeout=30)
    True
    >>> events[-1]
    ('finish', {'finish_reason': 'length', 'prompt_tokens': 3, 'completion_tokens': 5})
    >>> engine.stop()
    """

    def __init__(self, params: dict[str, np.ndarray], config: GPTConfig, decode: Callable[[list[int]], str],
                 max_batch: int = 16, kernels: str = "numba", max_waiting: int = 256,
                 compute_lock: threading.Lock | None = None):
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise ValueError(f"max_batch must be a positive integer (sequences decoded together), got {max_batch!r}")
        if isinstance(max_waiting, bool) or not isinstance(max_waiting, int) or max_waiting < 0:
            raise ValueError(f"max_waiting must be an integer >= 0 (requests queued for a row), got {max_waiting!r}")
        self.params, self.config, self.decode = params, config, decode
        self.kernels, self.max_batch, self.max_waiting = kernels, max_batch, max_waiting
        dtype = next(iter(params.values())).dtype
        self.kv = init_kv_cache(config, max_batch, dtype=dtype)  # (L, 2, R, NH, P, HS)
        self.positions = np.zeros(max_batch, dtype=np.int64)  # (R,) tokens in each row's cache
        self.rows: list[Sequence] = []  # rows[i] owns row i of kv; len(rows) = n active
        self.waiting: collections.deque[Sequence] = collections.deque()
        self.compute_lock = compute_lock or threading.Lock()
        self._cond = threading.Condition()
        self._ids = itertools.count(1)
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.counts = {"finished": 0, "cancelled": 0, "timed_out": 0, "failed": 0}
        self.steps = 0  # decode steps run (one forward pass each)
        self.stepped_rows = 0  # sum over steps of the rows decoded together
        self.largest_batch = 0  # the most rows one step has decoded together

    # --------------------------------------------------------------------------------------
    # the interface for other threads

    def start(self) -> Engine:
        """Start the engine thread (once); returns the engine."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="llm-scratch-engine", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the engine thread after its current step; requests still in it get an error event."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def submit(self, prompt: list[int], sampling: SamplingParams, on_event: Callable[[str, object], None],
               timeout: float = 60.0) -> Sequence:
        """Queue a request; it joins the batch at the next step with a free row."""
        P = self.config.n_positions
        if not prompt or len(prompt) >= P:
            raise ValueError(f"the prompt must have 1 to n_positions - 1 = {P - 1} tokens, got {len(prompt)}")
        if sampling.max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {sampling.max_tokens}")
        seq = Sequence(list(prompt), sampling, on_event, time.monotonic() + timeout)
        seq.rng = np.random.default_rng(sampling.seed)
        with self._cond:
            if self._stopping:
                raise RuntimeError("the engine has stopped")
            if len(self.waiting) >= self.max_waiting and len(self.rows) + len(self.waiting) >= self.max_batch:
                raise OverflowError(f"the server is busy: {len(self.waiting)} requests are already waiting "
                                    f"for one of {self.max_batch} rows; try again later")
            seq.id = next(self._ids)
            self.waiting.append(seq)
            self._cond.notify_all()
        return seq

    def cancel(self, seq: Sequence) -> None:
        """The client has gone: free the sequence's row (or its place in the queue) at the next step."""
        seq.cancelled = True
        with self._cond:
            self._cond.notify_all()

    def stats(self) -> dict:
        """Rows in use and free, requests waiting, and how requests ended so far."""
        with self._cond:
            active, waiting = len(self.rows), len(self.waiting)
        return {"slots": {"total": self.max_batch, "active": active, "free": self.max_batch - active},
                "waiting": waiting, "requests": dict(self.counts), "decode_steps": self.steps,
                "mean_batch": round(self.stepped_rows / self.steps, 3) if self.steps else 0.0,
                "largest_batch": self.largest_batch}

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until no request is active or waiting (True), or ``timeout`` seconds pass (False)."""
        end = time.monotonic() + timeout
        with self._cond:
            while self.rows or self.waiting:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
        return True

    # --------------------------------------------------------------------------------------
    # the engine thread

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._drop_waiting()
                while not self._stopping and not self.rows and not self.waiting:
                    self._cond.wait()
                    self._drop_waiting()
                if self._stopping:
                    break
                joining = []
                while self.waiting and len(self.rows) + len(joining) < self.max_batch:
                    joining.append(self.waiting.popleft())
            try:
                for seq in joining:
                    self._prefill(seq)  # joins: its own row, its own position
                self._leave()
                if self.rows:
                    self._decode_step()
                    self._leave()
            except Exception as exc:  # a failed forward pass fails the requests in it, not the server
                for seq in self.rows + [s for s in joining if not s.done]:
                    self._finish(seq, "error", f"the forward pass failed: {type(exc).__name__}: {exc}")
                self.rows.clear()
                self.counts["failed"] += 1
            with self._cond:
                self._cond.notify_all()  # wakes wait_idle
        with self._cond:
            for seq in self.rows + list(self.waiting):
                self._finish(seq, "error", "the server is shutting down")
            self.rows.clear()
            self.waiting.clear()

    def _drop_waiting(self) -> None:
        """Forget cancelled waiting requests and fail those past their deadline (holding _cond)."""
        now = time.monotonic()
        keep = collections.deque()
        for seq in self.waiting:
            if seq.cancelled:
                self.counts["cancelled"] += 1
            elif now > seq.deadline:
                self._finish(seq, "timeout")
            else:
                keep.append(seq)
        self.waiting = keep

    def _prefill(self, seq: Sequence) -> None:
        """Run the prompt into the next free row, r = n, and choose the first completion token."""
        if seq.cancelled:
            self.counts["cancelled"] += 1
            return
        r = len(self.rows)
        idx = np.asarray([seq.prompt], dtype=np.int64)  # (1, T)
        with self.compute_lock:
            logits = gpt_forward_cached(self.params, self.config, idx, self.kv[:, :, r:r + 1], 0, self.kernels,
                                        check=False)  # (1, T, V); writes row r's keys and values
        self.positions[r] = len(seq.prompt)
        self.rows.append(seq)
        self._take(seq, logits[0, -1])

    def _decode_step(self) -> None:
        """One forward pass for every active row: each feeds its newest token at its own position."""
        n = len(self.rows)
        idx = np.asarray([[seq.last] for seq in self.rows], dtype=np.int64)  # (n, 1)
        start = self.positions[:n].copy()  # (n,) each row's next position
        with self.compute_lock:
            logits = gpt_forward_cached(self.params, self.config, idx, self.kv[:, :, :n], start, self.kernels,
                                        check=False)  # (n, 1, V)
        self.positions[:n] += 1
        self.steps += 1
        self.stepped_rows += n
        self.largest_batch = max(self.largest_batch, n)
        for i, seq in enumerate(self.rows):
            if not seq.done and not seq.cancelled:
                self._take(seq, logits[i, 0])

    def _take(self, seq: Sequence, logits: np.ndarray) -> None:
        """Choose the next token from its logits (V,), send the new text, finish if it is time."""
        s = seq.sampling
        if s.temperature == 0:
            token = int(np.argmax(logits))
        else:
            token = int(sample_next(logits[None], seq.rng, s.temperature, s.top_k, s.top_p)[0])
        seq.tokens.append(token)
        seq.last = token
        text = self.decode(seq.tokens)
        hits = [i for i in (text.find(stop) for stop in s.stop) if i >= 0]
        if hits:  # a stop string: the text ends just before it
            self._send(seq, text[:min(hits)])
            self._finish(seq, "stop")
            return
        if len(seq.tokens) >= s.max_tokens or len(seq.prompt) + len(seq.tokens) >= self.config.n_positions:
            self._send(seq, text)  # nothing more will come: send what was held back too
            self._finish(seq, "length")
            return
        if time.monotonic() > seq.deadline:
            self._finish(seq, "timeout")
            return
        self._send(seq, text[:_safe_length(text, s.stop)])

    def _send(self, seq: Sequence, text: str) -> None:
        if len(text) > seq.sent:
            self._emit(seq, "text", text[seq.sent:])
            seq.sent = len(text)

    def _finish(self, seq: Sequence, reason: str, message: str | None = None) -> None:
        """End a sequence: a finish event for "stop"/"length", an error event otherwise."""
        if seq.done:
            return
        seq.done = True
        if reason in ("stop", "length"):
            self.counts["finished"] += 1
            self._emit(seq, "finish", {"finish_reason": reason, "prompt_tokens": len(seq.prompt),
                                       "completion_tokens": len(seq.tokens)})
        elif reason == "timeout":
            self.counts["timed_out"] += 1
            self._emit(seq, "error", "the request timed out before it finished; ask for fewer max_tokens "
                                     "or try again when the server is less busy")
        else:
            self._emit(seq, "error", message or reason)

    @staticmethod
    def _emit(seq: Sequence, kind: str, payload) -> None:
        try:
            seq.on_event(kind, payload)
        except RuntimeError:  # the receiving event loop has closed: nobody is listening any more
            pass

    def _leave(self) -> None:
        """Remove finished and cancelled rows; the last active row moves into each freed row."""
        with self._cond:
            for i in range(len(self.rows) - 1, -1, -1):  # from the end: moved rows are never finished ones
                seq = self.rows[i]
                if not (seq.done or seq.cancelled):
                    continue
                if seq.cancelled and not seq.done:
                    self.counts["cancelled"] += 1
                    seq.done = True
                j = len(self.rows) - 1
                if i != j:
                    filled = int(self.positions[j])
                    self.kv[:, :, i, :, :filled] = self.kv[:, :, j, :, :filled]  # (L, 2, NH, filled, HS)
                    self.positions[i] = filled
                    self.rows[i] = self.rows[j]
                self.rows.pop()


def _safe_length(text: str, stops: tuple[str, ...]) -> int:
    """How much of ``text`` can be sent now: not a trailing U+FFFD (a character whose UTF-8
    bytes have not all arrived), nor a suffix that could be the start of a stop string.

    >>> _safe_length("hello wor", ("world",)), _safe_length("abc\\ufffd", ())
    (6, 3)
    """
    n = len(text.rstrip("\ufffd"))
    for stop in stops:
        for k in range(min(len(stop) - 1, n), 0, -1):
            if text[:n].endswith(stop[:k]):
                n = min(n, len(text[:n]) - k)
                break
    return n
