"""The HTTP side of ``llm-scratch serve``: FastAPI routes, request checks, OpenAI-shaped answers.

Every route reads its JSON body itself (at most ``max_body_bytes``) and checks every field with
``parse_completion_request`` / ``parse_embedding_request``, so a bad request gets the error
object OpenAI's API returns, naming the field, instead of a framework's default:

    {"error": {"message": "temperature must be a number >= 0, got -1", "type": "invalid_request_error",
               "param": "temperature", "code": null}}

Completions go to the ``Engine`` (its thread does the model work); the engine's events come back
to the request's event loop in an ``asyncio.Queue``, through one ``_Mailbox`` per loop (one
wake-up of the loop per decode step, not one per token).
Embeddings run in a worker thread under the engine's compute lock.

The stream format is server-sent events (WHATWG HTML section 9.2) as OpenAI sends them: one
``data: {json}`` line and a blank line per chunk, and ``data: [DONE]`` at the end. A client that
closes the connection mid-stream ends the generator, which cancels the sequence and frees its row.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from llm_from_scratch.serve.engine import Engine, SamplingParams

__all__ = ["ServerSettings", "ApiError", "Embedder", "parse_completion_request", "parse_embedding_request",
           "create_app", "build_app", "serve"]

STATIC = Path(__file__).with_name("static")


@dataclass(frozen=True)
class ServerSettings:
    """The limits and names of one server (each is a flag of ``llm-scratch serve``)."""

    model_name: str = "gpt"
    max_tokens_cap: int = 512  # the largest max_tokens a request may ask for
    default_max_tokens: int = 16  # OpenAI's default when a request does not say
    max_body_bytes: int = 1_000_000  # larger request bodies are refused (413)
    request_timeout: float = 60.0  # seconds from arrival to the last token
    max_embedding_inputs: int = 256  # strings in one embeddings request


class ApiError(Exception):
    """An error answered as ``{"error": {message, type, param, code}}`` with HTTP ``status``."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


# ------------------------------------------------------------------------------------------
# checking requests


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _type_name(x) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null",
            int: "an integer", float: "a number"}.get(type(x), type(x).__name__)


def _check_model(body: dict, name: str | None, what: str) -> None:
    model = body.get("model")
    if model is None:
        return
    if not isinstance(model, str):
        raise ApiError(400, f"model must be a string, got {_type_name(model)}", "model")
    if name is None or model != name:
        served = f"this server's {what} model is {name!r}" if name else f"this server has no {what} model"
        raise ApiError(404, f"the model {model!r} does not exist: {served} (see GET /v1/models)", "model",
                       "model_not_found")


_UNSUPPORTED = {"n": 1, "best_of": 1, "echo": False, "logprobs": None, "suffix": None, "logit_bias": None,
                "presence_penalty": 0, "frequency_penalty": 0}


def parse_completion_request(body, settings: ServerSettings) -> tuple[str, SamplingParams, bool, bool]:
    """``(prompt, sampling, stream, include_usage)`` from a ``/v1/completions`` body, or an
    ``ApiError`` naming the first bad field.

    >>> prompt, s, stream, _ = parse_completion_request({"prompt": "Mia", "temperature": 0}, ServerSettings())
    >>> prompt, s.max_tokens, s.temperature, stream
    ('Mia', 16, 0.0, False)
    >>> parse_completion_request({"prompt": "Mia", "top_p": 1.5}, ServerSettings())
    Traceback (most recent call last):
    ...
    llm_from_scratch.serve.app.ApiError: top_p must be a number in (0, 1], got 1.5
    """
    if not isinstance(body, dict):
        raise ApiError(400, f"the request body must be a JSON object, got {_type_name(body)}")
    _check_model(body, settings.model_name, "completion")
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]  # a list of one prompt is the same request
    if prompt is None:
        raise ApiError(400, "prompt is required: the text to continue", "prompt")
    if not isinstance(prompt, str):
        raise ApiError(400, f"prompt must be a string (one prompt per request), got {_type_name(prompt)}", "prompt")
    if not prompt:
        raise ApiError(400, "prompt is empty: give at least one character to continue", "prompt")

    max_tokens = body.get("max_tokens")
    if max_tokens is None:
        max_tokens = min(settings.default_max_tokens, settings.max_tokens_cap)
    elif not _is_int(max_tokens):
        raise ApiError(400, f"max_tokens must be an integer, got {_type_name(max_tokens)}", "max_tokens")
    elif not 1 <= max_tokens <= settings.max_tokens_cap:
        raise ApiError(400, f"max_tokens must be in [1, {settings.max_tokens_cap}] (this server's cap), "
                            f"got {max_tokens}", "max_tokens")

    temperature = body.get("temperature", 1.0)
    if temperature is None:
        temperature = 1.0
    if not _is_number(temperature) or temperature < 0:
        raise ApiError(400, f"temperature must be a number >= 0 (0: always the most likely token), "
                            f"got {json.dumps(temperature)}", "temperature")
    top_p = body.get("top_p", 1.0)
    if top_p is None:
        top_p = 1.0
    if not _is_number(top_p) or not 0 < top_p <= 1:
        raise ApiError(400, f"top_p must be a number in (0, 1], got {json.dumps(top_p)}", "top_p")
    top_k = body.get("top_k")
    if top_k is not None and (not _is_int(top_k) or top_k < -1):
        raise ApiError(400, f"top_k must be an integer >= 1 (or -1 or 0 for no top-k), got {json.dumps(top_k)}",
                       "top_k")
    seed = body.get("seed")
    if seed is not None and (not _is_int(seed) or not 0 <= seed < 2**63):
        raise ApiError(400, f"seed must be an integer in [0, 2^63), got {json.dumps(seed)}", "seed")
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise ApiError(400, f"stream must be true or false, got {_type_name(stream)}", "stream")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict) or not isinstance(options.get("include_usage", False), bool):
        raise ApiError(400, "stream_options must be an object like {\"include_usage\": true}", "stream_options")
    stop = body.get("stop")
    if stop is None:
        stop = []
    elif isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or len(stop) > 4 or not all(isinstance(s, str) and s for s in stop):
        raise ApiError(400, "stop must be a non-empty string or a list of up to 4 non-empty strings", "stop")
    for name, default in _UNSUPPORTED.items():
        if body.get(name) not in (None, default):
            raise ApiError(400, f"{name} = {json.dumps(body[name])} is not supported by this server "
                                f"(leave it out, or {json.dumps(default)})", name)
    sampling = SamplingParams(max_tokens=max_tokens, temperature=float(temperature),
                              top_p=None if top_p == 1 else float(top_p),
                              top_k=None if top_k in (None, -1, 0) else top_k, seed=seed, stop=tuple(stop))
    return prompt, sampling, stream, bool(options.get("include_usage", False))


def parse_embedding_request(body, settings: ServerSettings, model_name: str | None) -> tuple[list[str], str]:
    """``(texts, encoding_format)`` from a ``/v1/embeddings`` body, or an ``ApiError``.

    >>> parse_embedding_request({"input": "a dog"}, ServerSettings(), "all-MiniLM-L6-v2")
    (['a dog'], 'float')
    """
    if not isinstance(body, dict):
        raise ApiError(400, f"the request body must be a JSON object, got {_type_name(body)}")
    _check_model(body, model_name, "embedding")
    if model_name is None:
        raise ApiError(404, "this server has no embedding model: start it with --embeddings-checkpoint DIR",
                       "model", "model_not_found")
    texts = body.get("input")
    if texts is None:
        raise ApiError(400, "input is required: a string or a list of strings", "input")
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, list) or not texts:
        raise ApiError(400, f"input must be a string or a non-empty list of strings, got "
                            f"{'an empty list' if texts == [] else _type_name(texts)}", "input")
    if len(texts) > settings.max_embedding_inputs:
        raise ApiError(400, f"input has {len(texts)} strings; at most {settings.max_embedding_inputs} per request",
                       "input")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ApiError(400, f"input[{i}] must be a string (token arrays are not supported), got "
                                f"{_type_name(text)}", "input")
        if not text.strip():
            raise ApiError(400, f"input[{i}] is empty: every string needs some text to embed", "input")
    encoding = body.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise ApiError(400, f"encoding_format must be 'float' or 'base64', got {json.dumps(encoding)}",
                       "encoding_format")
    if body.get("dimensions") is not None:
        raise ApiError(400, "dimensions is not supported: all-MiniLM-L6-v2 vectors have a fixed size", "dimensions")
    return texts, encoding


MAX_BEAM = 8  # beams per translation request


def _string_list(body: dict, field: str, limit: int) -> list[str]:
    """``body[field]`` as a non-empty list of non-empty strings (a single string is a list of one)."""
    value = body.get(field)
    if value is None:
        raise ApiError(400, f"{field} is required: a string or a list of strings", field)
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise ApiError(400, f"{field} must be a string or a non-empty list of strings, got "
                            f"{'an empty list' if value == [] else _type_name(value)}", field)
    if len(value) > limit:
        raise ApiError(400, f"{field} has {len(value)} strings; at most {limit} per request", field)
    for i, text in enumerate(value):
        if not isinstance(text, str):
            raise ApiError(400, f"{field}[{i}] must be a string, got {_type_name(text)}", field)
        if not text.strip():
            raise ApiError(400, f"{field}[{i}] is empty: every string needs some text", field)
    return value


def parse_translation_request(body, settings: ServerSettings, translator, model_name: str | None
                              ) -> tuple[list[str], int]:
    """``(sentences, beam)`` from a ``/v1/translations`` body, or an ``ApiError``. Every sentence
    is checked before any is translated (``translate.Translator.check``): one the model cannot
    read refuses the request, naming its index.

    >>> parse_translation_request({"input": "Mia was happy."}, ServerSettings(), None, None)
    Traceback (most recent call last):
    ...
    llm_from_scratch.serve.app.ApiError: this server has no translation model: start it with --translation-run DIR
    """
    if not isinstance(body, dict):
        raise ApiError(400, f"the request body must be a JSON object, got {_type_name(body)}")
    if translator is None:
        raise ApiError(404, "this server has no translation model: start it with --translation-run DIR",
                       "model", "model_not_found")
    _check_model(body, model_name, "translation")
    sentences = _string_list(body, "input", settings.max_embedding_inputs)
    beam = body.get("beam", 1)
    if not _is_int(beam) or not 1 <= beam <= MAX_BEAM:
        raise ApiError(400, f"beam must be an integer in [1, {MAX_BEAM}], got {json.dumps(beam)}", "beam")
    for i, sentence in enumerate(sentences):
        try:
            translator.check(sentence)
        except ValueError as exc:
            raise ApiError(400, f"input[{i}]: {exc}", "input") from None
    return sentences, beam


def parse_answer_request(body, settings: ServerSettings, qa_models, model_name: str | None
                         ) -> tuple[list[str], list[str], str]:
    """``(questions, contexts, method)`` from a ``/v1/answers`` body, or an ``ApiError``:
    ``question`` and ``context`` (strings, or lists of the same length) and ``method``,
    "generative" (the default) or "extractive". Each pair is checked with ``qa.check_pair``."""
    from llm_from_scratch import qa

    if not isinstance(body, dict):
        raise ApiError(400, f"the request body must be a JSON object, got {_type_name(body)}")
    if qa_models is None:
        raise ApiError(404, "this server has no question-answering models: start it with --qa-run DIR",
                       "model", "model_not_found")
    _check_model(body, model_name, "question-answering")
    questions = _string_list(body, "question", settings.max_embedding_inputs)
    contexts = _string_list(body, "context", settings.max_embedding_inputs)
    if len(questions) != len(contexts):
        raise ApiError(400, f"{len(questions)} questions but {len(contexts)} contexts: give one context per "
                            "question", "context")
    method = body.get("method", "generative")
    if method not in qa.MODELS:
        raise ApiError(400, f"method must be one of {list(qa.MODELS)}, got {json.dumps(method)}", "method")
    for i, (q, c) in enumerate(zip(questions, contexts)):
        try:
            qa.check_pair(qa_models.tokenizer, q, c)
        except ValueError as exc:
            # an empty or non-string question is the question's fault; too long, the context's
            field = "question" if str(exc).startswith("question ") and "+" not in str(exc) else "context"
            raise ApiError(400, f"pair {i}: {exc}", field) from None
    return questions, contexts, method


# ------------------------------------------------------------------------------------------
# the embedding model


class Embedder:
    """A sentence-transformers folder (all-MiniLM-L6-v2) read with ``models.bert``: texts in,
    unit vectors out, as ``llm-scratch embed`` computes them."""

    def __init__(self, directory, kernels: str = "numba", name: str | None = None):
        from llm_from_scratch.models import bert

        directory = Path(directory)
        if not directory.is_dir():
            raise FileNotFoundError(f"{directory}: no such checkpoint folder (expected config.json, "
                                    "model.safetensors and vocab.txt)")
        self.params, self.config = bert.from_pretrained(directory)
        self.tokenizer = bert.load_wordpiece(directory)
        self.options = bert.read_sentence_options(directory)
        self.kernels = kernels
        self.name = name or directory.name

    def embed(self, texts: list[str]) -> tuple[np.ndarray, int]:
        """``(vectors (N, C) float32, tokens read)``; each text is truncated to the model's
        ``max_length`` (256 word pieces for all-MiniLM-L6-v2), as sentence-transformers does."""
        from llm_from_scratch.models import bert

        vectors = bert.encode_sentences(self.params, self.config, self.tokenizer, texts, kernels=self.kernels,
                                        **self.options)  # (N, C)
        max_length = self.options.get("max_length")
        tokens = sum(len(self.tokenizer.encode(t, max_length=max_length).input_ids) for t in texts)
        return vectors, tokens


# ------------------------------------------------------------------------------------------
# the app


def _error_response(err: ApiError):
    return JSONResponse(err.body(), status_code=err.status)


async def _read_json(request, limit: int):
    """The request body parsed as JSON, refusing more than ``limit`` bytes (413) and bad JSON (400)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"the request body has {int(declared)} bytes; this server takes at most {limit}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ApiError(413, f"the request body is larger than this server's limit of {limit} bytes")
    if not body:
        raise ApiError(400, "the request body is empty: expected a JSON object")
    try:
        return json.loads(body)
    except UnicodeDecodeError:
        raise ApiError(400, "the request body is not UTF-8 text: expected a JSON object") from None
    except json.JSONDecodeError as exc:
        raise ApiError(400, f"the request body is not valid JSON: {exc.msg} at line {exc.lineno} column "
                            f"{exc.colno}") from None


class _Mailbox:
    """Events from the engine thread to the event loop's queues, one wake-up per batch of them.

    ``loop.call_soon_threadsafe`` writes to the loop's wake-up pipe: a system call per call. A
    decode step of 64 rows makes 64 events; the first schedules one ``_deliver`` and the others
    join it, so the loop wakes once per step rather than once per token.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.items: list = []
        self.lock = threading.Lock()
        self.scheduled = False

    def put(self, queue: asyncio.Queue, item) -> None:
        with self.lock:
            self.items.append((queue, item))
            if self.scheduled:
                return
            self.scheduled = True
        self.loop.call_soon_threadsafe(self._deliver)

    def _deliver(self) -> None:
        with self.lock:
            items, self.items, self.scheduled = self.items, [], False
        for queue, item in items:
            queue.put_nowait(item)


def _sse(obj) -> bytes:
    return f"data: {json.dumps(obj, separators=(',', ':'))}\n\n".encode()


def create_app(engine: Engine, tokenizer, settings: ServerSettings = ServerSettings(),
               embedder: Embedder | None = None, batching: bool = True, translator=None, qa_models=None):
    """The FastAPI application around a started-on-startup ``engine`` (and an optional embedder).

    The app starts the engine when it starts and stops it when it stops (its lifespan).
    """
    import contextlib

    created = int(time.time())
    P = engine.config.n_positions
    mailbox = None  # the event loop's mailbox, made when the app starts


    @contextlib.asynccontextmanager
    async def lifespan(app):
        nonlocal mailbox
        mailbox = _Mailbox(asyncio.get_running_loop())
        engine.start()
        try:
            yield
        finally:
            engine.stop()

    app = FastAPI(title="llm-scratch serve", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(ApiError)
    async def _api_error(request, err: ApiError):
        return _error_response(err)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request, exc):  # unknown paths and methods, in the same error shape
        what = {404: f"no route {request.url.path}: see GET /v1/models, POST /v1/completions, POST /v1/embeddings",
                405: f"{request.method} is not allowed on {request.url.path}"}.get(exc.status_code, str(exc.detail))
        return _error_response(ApiError(exc.status_code, what, code=None))

    @app.exception_handler(Exception)
    async def _unexpected(request, exc):
        return _error_response(ApiError(500, f"internal error: {type(exc).__name__}: {exc}", kind="server_error"))

    @app.get("/", response_class=HTMLResponse)
    async def playground():
        return HTMLResponse((STATIC / "playground.html").read_text(encoding="utf-8"))

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": settings.model_name, "batching": batching,
                "embedding_model": embedder.name if embedder else None, **engine.stats()}

    @app.get("/v1/models")
    async def models():
        data = [{"id": settings.model_name, "object": "model", "created": created, "owned_by": "llm-scratch",
                 "max_model_len": P}]
        if embedder is not None:
            data.append({"id": embedder.name, "object": "model", "created": created, "owned_by": "llm-scratch"})
        return {"object": "list", "data": data}

    @app.post("/v1/completions")
    async def completions(request: Request):
        body = await _read_json(request, settings.max_body_bytes)
        prompt, sampling, stream, include_usage = parse_completion_request(body, settings)
        try:
            ids = tokenizer.encode(prompt)
        except ValueError as exc:
            raise ApiError(400, f"prompt cannot be tokenized: {exc}", "prompt") from None
        if not ids:
            raise ApiError(400, "prompt has no tokens: give at least one character to continue", "prompt")
        if len(ids) >= P:
            raise ApiError(400, f"prompt has {len(ids)} tokens, but this model's context is n_positions = {P} "
                                f"tokens, prompt and completion together: shorten the prompt to at most {P - 1} "
                                f"tokens (it is not truncated for you)", "prompt", "context_length_exceeded")
        events: asyncio.Queue = asyncio.Queue()

        def on_event(kind, payload):  # called from the engine thread
            mailbox.put(events, (kind, payload))

        try:
            seq = engine.submit(ids, sampling, on_event, timeout=settings.request_timeout)
        except OverflowError as exc:
            raise ApiError(429, str(exc), code="server_busy", kind="server_error") from None
        cid = f"cmpl-{uuid.uuid4().hex}"
        head = {"id": cid, "object": "text_completion", "created": int(time.time()), "model": settings.model_name}

        if not stream:
            parts = []
            try:
                while True:
                    try:
                        kind, payload = await asyncio.wait_for(events.get(), timeout=1.0)
                    except asyncio.TimeoutError:
                        if await request.is_disconnected():
                            return JSONResponse({}, status_code=499)  # nobody reads it
                        continue
                    if kind == "text":
                        parts.append(payload)
                    elif kind == "error":
                        raise ApiError(504 if "timed out" in payload else 500, payload,
                                       kind="timeout_error" if "timed out" in payload else "server_error")
                    else:
                        usage = {"prompt_tokens": payload["prompt_tokens"],
                                 "completion_tokens": payload["completion_tokens"],
                                 "total_tokens": payload["prompt_tokens"] + payload["completion_tokens"]}
                        return {**head, "choices": [{"text": "".join(parts), "index": 0,
                                                     "finish_reason": payload["finish_reason"], "logprobs": None}],
                                "usage": usage}
            finally:
                if not seq.done:
                    engine.cancel(seq)

        async def chunks():
            try:
                while True:
                    try:
                        kind, payload = await asyncio.wait_for(events.get(), timeout=1.0)
                    except asyncio.TimeoutError:
                        yield b": waiting\n\n"  # an SSE comment: clients ignore it, a closed socket fails
                        continue
                    if kind == "text":
                        yield _sse({**head, "choices": [{"text": payload, "index": 0, "finish_reason": None,
                                                         "logprobs": None}]})
                    elif kind == "error":
                        err = ApiError(504 if "timed out" in payload else 500, payload,
                                       kind="timeout_error" if "timed out" in payload else "server_error")
                        yield _sse(err.body())
                        yield b"data: [DONE]\n\n"
                        return
                    else:
                        yield _sse({**head, "choices": [{"text": "", "index": 0,
                                                         "finish_reason": payload["finish_reason"],
                                                         "logprobs": None}]})
                        if include_usage:
                            yield _sse({**head, "choices": [], "usage": {
                                "prompt_tokens": payload["prompt_tokens"],
                                "completion_tokens": payload["completion_tokens"],
                                "total_tokens": payload["prompt_tokens"] + payload["completion_tokens"]}})
                        yield b"data: [DONE]\n\n"
                        return
            finally:  # the end, or the client went away (the generator is closed or cancelled)
                if not seq.done:
                    engine.cancel(seq)

        return StreamingResponse(chunks(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.post("/v1/embeddings")
    async def embeddings(request: Request):
        body = await _read_json(request, settings.max_body_bytes)
        texts, encoding = parse_embedding_request(body, settings, embedder.name if embedder else None)

        def work():
            with engine.compute_lock:  # numba's thread pool runs one parallel region at a time
                return embedder.embed(texts)

        vectors, tokens = await run_in_threadpool(work)
        data = []
        for i, v in enumerate(vectors):
            value = (base64.b64encode(v.astype("<f4").tobytes()).decode() if encoding == "base64"
                     else [float(x) for x in v])
            data.append({"object": "embedding", "embedding": value, "index": i})
        return {"object": "list", "data": data, "model": embedder.name,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    translation_name = Path(translator.directory).name if translator is not None else None
    qa_name = Path(qa_models.directory).name if qa_models is not None else None

    @app.post("/v1/translations")
    async def translations(request: Request):
        body = await _read_json(request, settings.max_body_bytes)
        sentences, beam = parse_translation_request(body, settings, translator, translation_name)

        def work():
            with engine.compute_lock:
                return translator.translate(sentences, beam=beam)

        out = await run_in_threadpool(work)
        return {"object": "list", "model": translation_name,
                "data": [{"object": "translation", "index": i, "translation": t} for i, t in enumerate(out)]}

    @app.post("/v1/answers")
    async def answers(request: Request):
        from llm_from_scratch import qa

        body = await _read_json(request, settings.max_body_bytes)
        questions, contexts, method = parse_answer_request(body, settings, qa_models, qa_name)

        def work():
            with engine.compute_lock:
                return qa.answer_unchecked(qa_models, questions, contexts, method, engine.kernels)

        out = await run_in_threadpool(work)
        return {"object": "list", "model": qa_name, "method": method,
                "data": [{"object": "answer", "index": i, "answer": a} for i, a in enumerate(out)]}

    return app


def build_app(run_dir, embeddings_checkpoint=None, max_batch: int = 16, batching: bool = True,
              kernels: str = "numba", max_waiting: int = 256, settings: ServerSettings | None = None,
              model_name: str | None = None, translation_run=None, qa_run=None):
    """Load a run folder (``pretrain.load_run``) and, if given, a sentence-transformers folder, a
    translation run (``llm-scratch train-translation``) and a question-answering run
    (``llm-scratch train-qa``), and return the app (the engine starts with it).
    ``batching=False`` is ``max_batch=1``."""
    from llm_from_scratch.pretrain import load_run

    params, config, tokenizer = load_run(run_dir)
    embedder = None
    if embeddings_checkpoint is not None:
        from llm_from_scratch.checkpoints import DEFAULT_SENTENCE_MODEL, checkpoint_dir, is_installed

        default = is_installed() and Path(embeddings_checkpoint).resolve() == checkpoint_dir().resolve()
        embedder = Embedder(embeddings_checkpoint, kernels=kernels, name=DEFAULT_SENTENCE_MODEL if default else None)
    lock = threading.Lock()
    engine = Engine(params, config, tokenizer.decode, max_batch=max_batch if batching else 1, kernels=kernels,
                    max_waiting=max_waiting, compute_lock=lock)
    name = model_name or Path(run_dir).resolve().name
    settings = settings or ServerSettings()
    settings = ServerSettings(**{**settings.__dict__, "model_name": name})
    translator = qa_models = None
    if translation_run is not None:
        from llm_from_scratch.translate import load_translator

        translator = load_translator(translation_run, kernels=kernels)
        translator.directory = Path(translation_run)
    if qa_run is not None:
        from llm_from_scratch import qa

        qa_models = qa.load_run(qa_run)
    _warm_up(engine)
    return create_app(engine, tokenizer, settings, embedder, batching=batching, translator=translator,
                      qa_models=qa_models)


def _warm_up(engine: Engine) -> None:
    """One prefill and one batched decode step before the first request (numba compiles, or loads
    its cache, on first use)."""
    from llm_from_scratch.generate import gpt_forward_cached, init_kv_cache

    kv = init_kv_cache(engine.config, 2, S=min(8, engine.config.n_positions), dtype=engine.kv.dtype)
    gpt_forward_cached(engine.params, engine.config, np.zeros((2, 1), dtype=np.int64), kv, 0, engine.kernels)
    gpt_forward_cached(engine.params, engine.config, np.zeros((2, 1), dtype=np.int64), kv, np.array([1, 1]),
                       engine.kernels)


def serve(run_dir, host: str = "127.0.0.1", port: int = 8000, embeddings_checkpoint=None, embeddings: bool = True,
          max_batch: int = 16, batching: bool = True, kernels: str = "numba", max_waiting: int = 256,
          settings: ServerSettings | None = None, model_name: str | None = None, translation_run=None,
          qa_run=None) -> None:
    """``llm-scratch serve``: check the settings, load the models, serve until Ctrl-C.

    ``embeddings_checkpoint`` None with ``embeddings`` True uses the installed all-MiniLM-L6-v2
    if it is installed (and serves completions only, saying so, if it is not).
    """
    settings = settings or ServerSettings()
    if not 0 <= port <= 65535:
        raise ValueError(f"--port must be in [0, 65535], got {port}")
    if max_batch < 1:
        raise ValueError(f"--max-batch must be at least 1, got {max_batch}")
    if settings.max_tokens_cap < 1:
        raise ValueError(f"--max-tokens must be at least 1, got {settings.max_tokens_cap}")
    if settings.max_body_bytes < 1:
        raise ValueError(f"--max-body-bytes must be at least 1, got {settings.max_body_bytes}")
    if not settings.request_timeout > 0:
        raise ValueError(f"--request-timeout must be a positive number of seconds, got {settings.request_timeout}")
    if max_waiting < 0:
        raise ValueError(f"--max-waiting must be at least 0, got {max_waiting}")
    if not embeddings:
        embeddings_checkpoint = None
    elif embeddings_checkpoint is None:
        from llm_from_scratch.checkpoints import INSTALL_COMMAND, checkpoint_dir, is_installed

        if is_installed():
            embeddings_checkpoint = checkpoint_dir()
        else:
            print(f"all-MiniLM-L6-v2 is not installed: serving completions only ({INSTALL_COMMAND} adds "
                  "/v1/embeddings)")
    import uvicorn

    app = build_app(run_dir, embeddings_checkpoint, max_batch=max_batch, batching=batching, kernels=kernels,
                    max_waiting=max_waiting, settings=settings, model_name=model_name,
                    translation_run=translation_run, qa_run=qa_run)
    mode = f"continuous batching, up to {max_batch} sequences" if batching else "no batching, one request at a time"
    print(f"serving {run_dir} ({mode}) on http://{host}:{port}/  (playground at /, API at /v1; Ctrl-C stops)")
    uvicorn.run(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=5)
