"""Serving the book's models over HTTP, with continuous batching.

``llm-scratch serve RUN_DIR`` starts a web server (FastAPI on uvicorn) with the API that OpenAI
defined and vLLM and llama.cpp's server copy, so any OpenAI client can talk to a GPT trained by
``llm-scratch train``:

    POST /v1/completions    a prompt in, a completion out (``stream: true``: server-sent events)
    POST /v1/embeddings     sentence vectors from all-MiniLM-L6-v2
    GET  /v1/models         the two models
    GET  /health            rows of the batch in use, requests waiting
    GET  /                  a playground page: a prompt box and tokens streaming in

Why batch. A decode step feeds one token per sequence through the model. For one sequence that
is a (1, C) x (C, 4C) matrix-vector product per layer: the weights are read from memory to do
two multiply-adds per number, and the processor mostly waits for memory. Feed 16 sequences
together and the same weights, read once, serve 16 rows; the step costs little more than a
single sequence's, so tokens per second grow almost 16-fold until the arithmetic, not the
memory, is the limit (Pope et al. 2022, section 3).

Why *continuous* batching. The requests of a server do not arrive together and do not finish
together: one wants 5 tokens, another 500. Static batching (collect B requests, generate until
the longest is done, return them all) keeps finished sequences in the batch, doing nothing, and
makes a new request wait for the whole batch. Orca (Yu et al. 2022) schedules at the level of
iterations instead: after every decode step, sequences that finished leave the batch and waiting
ones join it. Here:

- one engine thread owns the model and a batch key/value cache with ``max_batch`` rows,
  ``(L, 2, R, NH, P, HS)``; each active sequence has its own row and its own position;
- every step, the engine first admits waiting requests while rows are free: each new prompt is
  run through the model alone ("prefill") into its row, ``gpt_forward_cached(..., kv[:, :, r:r+1],
  start=0)``, which also gives its first token;
- then one forward pass decodes all n active sequences together: their newest tokens, (n, 1),
  at their own positions, ``start`` a (n,) array, ``gpt_forward_cached(..., kv[:, :, :n], start)``;
  the attention mask of row b lets it see only its own positions 0 .. start_b, so a sequence
  batched with others gets the logits it would get alone (``generate.gpt_forward_cached``);
- each sequence then samples its next token with its own settings and its own random generator,
  and leaves when it reaches ``max_tokens``, a stop string or the end of the context, or when
  its client disconnects or its time runs out; its row is free for the next step.

Active sequences are kept in rows 0 .. n-1 (a leaving sequence's row gets the last active row),
so a step works on a view of the cache and never copies it.

Two simplifications against vLLM. Prefill runs one prompt at a time and is not mixed into the
decode step (Orca's "selective batching" runs both in one pass); a long prompt therefore delays
everyone's next token by its own prefill. And each row reserves room for the full context of
``n_positions`` tokens: most of that memory sits unused for short sequences. vLLM's
PagedAttention (Kwon et al. 2023) stores the cache in fixed-size blocks allocated on demand, as an
operating system pages memory, so many more sequences fit at once; our models are small enough
that contiguous rows cost little (``generate.kv_cache_bytes``).

``--no-batching`` runs the same engine with a single row: one request at a time, the others
queue. The load generator (``serve.loadtest``, ``benchmarks/bench_serve.py``) compares the two.

Limits, all refused with an OpenAI-shaped JSON error (status 4xx) that names the field: a prompt
of n_positions tokens or more (it is refused, not truncated: a silently shortened prompt gives a
completion of a text the client did not send), ``max_tokens`` above the server's cap (``--max-tokens``),
a request body above ``--max-body-bytes``; a completion stops with ``finish_reason: "length"``
when prompt and completion fill the context. A request that runs longer than
``--request-timeout`` seconds ends with an error (504; in a stream, an error event), and its row is
freed.

Left out: chat completions and chat templates, log-probabilities, several prompts per request,
``n > 1``, presence/frequency penalties, authentication, TLS.

References:

- G.-I. Yu, J. S. Jeong, G.-W. Kim, S. Kim, B.-G. Chun, "Orca: A Distributed Serving System for
  Transformer-Based Generative Models", OSDI 2022, sections 3.1 (iteration-level scheduling) and
  3.2 (selective batching).
- W. Kwon, Z. Li, S. Zhuang, Y. Sheng, L. Zheng, C. H. Yu, J. E. Gonzalez, H. Zhang, I. Stoica,
  "Efficient Memory Management for Large Language Model Serving with PagedAttention", SOSP 2023,
  sections 3-4 (the memory waste of contiguous caches; paged KV blocks).
- R. Pope et al., "Efficiently Scaling Transformer Inference", 2022, section 3 (decoding is
  memory-bound at small batch sizes).
- OpenAI API reference, "Completions" and "Embeddings"; vLLM's OpenAI-compatible server;
  llama.cpp ``tools/server`` (the same endpoints).
- WHATWG HTML Living Standard, section 9.2, "Server-sent events" (the ``data:`` stream format).
"""

from llm_from_scratch.serve.engine import Engine, SamplingParams

__all__ = ["Engine", "SamplingParams"]
