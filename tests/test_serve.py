"""``llm-scratch serve``: the HTTP API, continuous batching against decoding alone, limits and
errors, client disconnects, the load generator's bounds, and the playground in a real browser.

One server (uvicorn in a thread, on a free port of 127.0.0.1) serves the whole module: a small
random GPT with a character tokenizer, written as a checkpoint folder, plus all-MiniLM-L6-v2
when it is installed.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import shutil
import socket
import string
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from llm_from_scratch.checkpoints import checkpoint_dir, is_installed
from llm_from_scratch.generate import generate
from llm_from_scratch.models.gpt import GPTConfig, init_params, save_pretrained
from llm_from_scratch.serve.app import ServerSettings, build_app
from llm_from_scratch.serve.engine import Engine, SamplingParams, _safe_length
from llm_from_scratch.serve.loadtest import run_load
from llm_from_scratch.tokenizers import CharTokenizer

CHARS = sorted(set(string.ascii_letters + string.digits + " .,!?'\n"))
CONFIG = GPTConfig(vocab_size=len(CHARS), n_positions=512, n_embd=32, n_layer=2, n_head=2)
MAX_BATCH = 4
SETTINGS = ServerSettings(max_tokens_cap=600, max_body_bytes=20_000, request_timeout=30.0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """(folder, params, tokenizer) of a random GPT saved as a checkpoint folder."""
    folder = tmp_path_factory.mktemp("serve") / "tiny-gpt"
    params = init_params(CONFIG, seed=0)
    # larger weights than the init's, so the model's choices depend clearly on the context
    params = {k: (v * 8 if k.endswith("c_fc.weight") or k.endswith("wte.weight") else v) for k, v in params.items()}
    tok = CharTokenizer(CHARS)
    save_pretrained(params, CONFIG, folder)
    tok.save(folder / "tokenizer.json")
    return folder, params, tok


@pytest.fixture(scope="module")
def server(model):
    """The base URL's (host, port) of a running server; stopped after the module's tests."""
    import uvicorn

    embeddings = checkpoint_dir() if is_installed() else None
    app = build_app(model[0], embeddings, max_batch=MAX_BATCH, kernels="numpy", settings=SETTINGS)
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start within 30 s"
        time.sleep(0.02)
    yield ("127.0.0.1", port)
    srv.should_exit = True
    thread.join(10)
    assert not thread.is_alive(), "the server did not stop"


def request(server, method, path, body=None, raw: bytes | None = None, headers=None, timeout=30):
    """(status, parsed JSON or text) of one request."""
    conn = http.client.HTTPConnection(*server, timeout=timeout)
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    conn.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
    resp = conn.getresponse()
    text = resp.read().decode()
    conn.close()
    try:
        return resp.status, json.loads(text)
    except json.JSONDecodeError:
        return resp.status, text


def health(server) -> dict:
    status, body = request(server, "GET", "/health")
    assert status == 200
    return body


def read_stream(server, body):
    """The parsed ``data:`` events of a streamed completion, with "[DONE]" as a string."""
    conn = http.client.HTTPConnection(*server, timeout=30)
    conn.request("POST", "/v1/completions", body=json.dumps({**body, "stream": True}),
                 headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("content-type").startswith("text/event-stream")
    events = []
    for block in resp.read().decode().split("\n\n"):
        if block.startswith("data: "):
            data = block[len("data: "):]
            events.append(data if data == "[DONE]" else json.loads(data))
    conn.close()
    return events


def reference_completion(params, tok, prompt, max_tokens, **sampling):
    """What ``generate`` gives for the prompt decoded alone (batch of one)."""
    ids = np.array([tok.encode(prompt)])
    out = generate(params, CONFIG, ids, max_tokens, **sampling)
    return tok.decode([int(t) for t in out[0, ids.shape[1]:]])


# ------------------------------------------------------------------------------------------
# the API


def test_completion_has_openai_shape_and_counts_tokens(server):
    status, body = request(server, "POST", "/v1/completions", {"prompt": "Mia was", "max_tokens": 12,
                                                              "temperature": 0, "model": "tiny-gpt"})
    assert status == 200, body
    assert body["object"] == "text_completion" and body["id"].startswith("cmpl-") and body["model"] == "tiny-gpt"
    assert isinstance(body["created"], int) and abs(body["created"] - time.time()) < 60
    (choice,) = body["choices"]
    assert choice["index"] == 0 and choice["finish_reason"] == "length" and choice["logprobs"] is None
    assert len(choice["text"]) == 12  # one character per token
    assert body["usage"] == {"prompt_tokens": 7, "completion_tokens": 12, "total_tokens": 19}


def test_models_and_health(server):
    status, body = request(server, "GET", "/v1/models")
    assert status == 200 and body["object"] == "list"
    ids = [m["id"] for m in body["data"]]
    assert ids[0] == "tiny-gpt" and body["data"][0]["max_model_len"] == CONFIG.n_positions
    assert ("all-MiniLM-L6-v2" in ids) == is_installed()
    h = health(server)
    assert h["status"] == "ok" and h["batching"] is True and h["slots"]["total"] == MAX_BATCH


def test_greedy_and_seeded_sequences_in_a_batch_equal_the_ones_decoded_alone(server, model):
    """Prompts of different lengths and max_tokens, sent at once: they share decode steps (the
    largest batch is > 1), join and leave at different steps (rows move), and each completion
    is token for token what ``generate`` gives for it alone."""
    _, params, tok = model
    jobs = [("Mia", 20, {}), ("Once upon a time, the", 90, {}), ("Tom saw a dog.", 60, {}),
            ("The sun", 120, {}), ("Leo said", 45, {"seed": 7, "temperature": 0.9, "top_k": 20, "top_p": 0.9}),
            ("a", 70, {"seed": 3, "temperature": 1.3})]
    before = health(server)["decode_steps"]

    def ask(job):
        prompt, n, sampling = job
        return request(server, "POST", "/v1/completions",
                       {"prompt": prompt, "max_tokens": n, "temperature": 0, **sampling})

    with ThreadPoolExecutor(len(jobs)) as pool:
        answers = list(pool.map(ask, jobs))
    h = health(server)
    deadline = time.monotonic() + 10
    while (h["slots"]["active"] or h["waiting"]) and time.monotonic() < deadline:
        time.sleep(0.01)  # the engine frees a row just after sending its last token, so the client may be first
        h = health(server)
    assert h["largest_batch"] >= 3, f"the requests never shared a decode step: {h}"
    assert h["slots"]["active"] == 0 and h["waiting"] == 0, h
    steps = h["decode_steps"] - before
    total = sum(n - 1 for _, n, _ in jobs)  # decode steps if every request ran alone (prefill gives one token)
    assert steps < total, f"{steps} decode steps for {total} tokens: nothing was batched"
    for (prompt, n, sampling), (status, body) in zip(jobs, answers):
        assert status == 200, body
        if sampling:
            ref = reference_completion(params, tok, prompt, n, temperature=sampling["temperature"],
                                       top_k=sampling.get("top_k"), top_p=sampling.get("top_p"), seed=sampling["seed"])
        else:
            ref = reference_completion(params, tok, prompt, n, greedy=True)
        got = body["choices"][0]["text"]
        first = next((i for i, (a, b) in enumerate(zip(got, ref)) if a != b), None)
        assert got == ref, f"{prompt!r}: batched and alone differ from token {first}: {got!r} vs {ref!r}"


def test_stream_sends_the_same_text_as_one_response(server):
    body = {"prompt": "Tom saw", "max_tokens": 25, "temperature": 0, "stream_options": {"include_usage": True}}
    events = read_stream(server, body)
    assert events[-1] == "[DONE]"
    chunks, usage = events[:-2], events[-2]
    assert len(chunks) >= 10, f"expected the text in many chunks, got {len(chunks)}"
    assert all(c["object"] == "text_completion" and c["id"] == chunks[0]["id"] for c in chunks)
    assert [c["choices"][0]["finish_reason"] for c in chunks[-1:]] == ["length"]
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 25
    streamed = "".join(c["choices"][0]["text"] for c in chunks)
    status, whole = request(server, "POST", "/v1/completions", {k: v for k, v in body.items()
                                                               if k != "stream_options"})
    assert streamed == whole["choices"][0]["text"]


def test_stop_string_ends_the_completion_before_it(server, model):
    _, params, tok = model
    ref = reference_completion(params, tok, "Mia was", 60, greedy=True)
    stop = ref[10:12]  # a string the greedy completion is known to reach
    cut = ref.find(stop)
    status, body = request(server, "POST", "/v1/completions", {"prompt": "Mia was", "max_tokens": 60,
                                                              "temperature": 0, "stop": [stop, "@@"]})
    assert status == 200
    assert body["choices"][0]["text"] == ref[:cut] and body["choices"][0]["finish_reason"] == "stop"
    events = read_stream(server, {"prompt": "Mia was", "max_tokens": 60, "temperature": 0, "stop": stop})
    assert "".join(e["choices"][0]["text"] for e in events[:-1]) == ref[:cut]


def test_completion_stops_at_the_end_of_the_context(server):
    prompt = "ab" * ((CONFIG.n_positions - 5) // 2)  # 505 tokens: 7 more fill the context
    status, body = request(server, "POST", "/v1/completions", {"prompt": prompt, "max_tokens": 100, "temperature": 0})
    assert status == 200, body
    assert body["usage"]["completion_tokens"] == CONFIG.n_positions - len(prompt)
    assert body["choices"][0]["finish_reason"] == "length"


@pytest.mark.skipif(not is_installed() and not os.environ.get("CI"), reason="all-MiniLM-L6-v2 is not installed")
def test_embeddings_match_encode_sentences(server):
    from llm_from_scratch.models import bert

    texts = ["A dog runs in the park.", "Stocks fell sharply today."]
    status, body = request(server, "POST", "/v1/embeddings", {"input": texts, "model": "all-MiniLM-L6-v2"})
    assert status == 200, body
    assert body["object"] == "list" and body["model"] == "all-MiniLM-L6-v2"
    assert [d["index"] for d in body["data"]] == [0, 1] and all(d["object"] == "embedding" for d in body["data"])
    got = np.array([d["embedding"] for d in body["data"]], dtype=np.float32)  # (2, 384)
    folder = checkpoint_dir()
    params, config = bert.from_pretrained(folder)
    tokenizer = bert.load_wordpiece(folder)
    want = bert.encode_sentences(params, config, tokenizer, texts, kernels="numpy", **bert.read_sentence_options(folder))
    print("max abs difference", np.abs(got - want).max())
    assert got.shape == (2, 384) and np.abs(got - want).max() < 1e-6
    n_tokens = sum(len(tokenizer.encode(t).input_ids) for t in texts)
    assert body["usage"] == {"prompt_tokens": n_tokens, "total_tokens": n_tokens}
    status, one = request(server, "POST", "/v1/embeddings", {"input": texts[0], "encoding_format": "base64"})
    decoded = np.frombuffer(base64.b64decode(one["data"][0]["embedding"]), dtype="<f4")
    assert status == 200 and np.abs(decoded - want[0]).max() < 1e-6


# ------------------------------------------------------------------------------------------
# limits and errors


BAD = [  # (path, body or raw bytes, status, param, words in the message)
    ("/v1/completions", b"{not json", 400, None, "not valid JSON"),
    ("/v1/completions", b"", 400, None, "empty"),
    ("/v1/completions", [1, 2], 400, None, "JSON object"),
    ("/v1/completions", {"prompt": "Mia", "model": "gpt-4"}, 404, "model", "does not exist"),
    ("/v1/completions", {"prompt": "Mia", "max_tokens": -1}, 400, "max_tokens", "[1, 600]"),
    ("/v1/completions", {"prompt": "Mia", "max_tokens": 601}, 400, "max_tokens", "cap"),
    ("/v1/completions", {"prompt": "Mia", "max_tokens": "10"}, 400, "max_tokens", "integer"),
    ("/v1/completions", {"prompt": "Mia", "max_tokens": True}, 400, "max_tokens", "integer"),
    ("/v1/completions", {"prompt": "Mia", "temperature": -0.5}, 400, "temperature", ">= 0"),
    ("/v1/completions", {"prompt": "Mia", "temperature": "hot"}, 400, "temperature", "number"),
    ("/v1/completions", {"prompt": "Mia", "top_p": 0}, 400, "top_p", "(0, 1]"),
    ("/v1/completions", {"prompt": "Mia", "top_p": 1.01}, 400, "top_p", "(0, 1]"),
    ("/v1/completions", {"prompt": "Mia", "top_k": 2.5}, 400, "top_k", "integer"),
    ("/v1/completions", {"prompt": "Mia", "seed": -3}, 400, "seed", "[0, 2^63)"),
    ("/v1/completions", {"prompt": "Mia", "stream": "yes"}, 400, "stream", "true or false"),
    ("/v1/completions", {"prompt": "Mia", "stop": ["a", ""]}, 400, "stop", "non-empty"),
    ("/v1/completions", {"prompt": "Mia", "n": 2}, 400, "n", "not supported"),
    ("/v1/completions", {"prompt": ""}, 400, "prompt", "empty"),
    ("/v1/completions", {"max_tokens": 5}, 400, "prompt", "required"),
    ("/v1/completions", {"prompt": 42}, 400, "prompt", "string"),
    ("/v1/completions", {"prompt": "caf\u00e9 \u2603"}, 400, "prompt", "not in the vocabulary"),
    ("/v1/completions", {"prompt": "a" * 600}, 400, "prompt", "at most 511 tokens"),
    ("/v1/completions", {"prompt": "a" * 30_000}, 413, None, "20000"),
    ("/v1/embeddings", {"input": []}, 400, "input", "empty list"),
    ("/v1/embeddings", {"input": ["fine", ""]}, 400, "input", "input[1] is empty"),
    ("/v1/embeddings", {"input": [[101, 102]]}, 400, "input", "input[0] must be a string"),
    ("/v1/embeddings", {"input": "a dog", "model": "tiny-gpt"}, 404, "model", "does not exist"),
    ("/v1/nothing", {"prompt": "Mia"}, 404, None, "no route"),
]


@pytest.mark.parametrize("path, body, status, param, words", BAD, ids=[f"{i}-{b[3]}" for i, b in enumerate(BAD)])
def test_bad_request_gets_an_openai_error_naming_the_field_and_the_server_goes_on(server, path, body, status,
                                                                                  param, words):
    if path == "/v1/embeddings" and not is_installed() and status != 404:
        status, param, words = 404, "model", "no embedding model"
    raw = body if isinstance(body, bytes) else None
    got_status, got = request(server, "POST", path, body=None if raw is not None else body, raw=raw)
    assert got_status == status, got
    assert set(got) == {"error"} and set(got["error"]) == {"message", "type", "param", "code"}, got
    assert got["error"]["param"] == param, got
    assert words in got["error"]["message"], got["error"]["message"]
    ok_status, ok = request(server, "POST", "/v1/completions", {"prompt": "Mia", "max_tokens": 3})
    assert ok_status == 200 and ok["usage"]["completion_tokens"] == 3  # still serving


def test_client_that_disconnects_mid_stream_frees_its_row(server):
    before = health(server)["requests"]["cancelled"]
    conn = http.client.HTTPConnection(*server, timeout=30)
    conn.request("POST", "/v1/completions", body=json.dumps({"prompt": "Mia", "max_tokens": 500, "stream": True}),
                 headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    received = b""
    while received.count(b"data: ") < 3:  # three streamed events
        received += resp.read1(4096)
    assert received.startswith(b"data: {") and b"[DONE]" not in received, received
    assert health(server)["slots"]["active"] == 1  # still generating
    conn.sock.shutdown(socket.SHUT_RDWR)
    conn.close()
    deadline = time.monotonic() + 10
    while (h := health(server))["slots"]["active"] or h["requests"]["cancelled"] == before:
        assert time.monotonic() < deadline, f"the row was not freed within 10 s: {h}"
        time.sleep(0.05)
    assert h["slots"]["free"] == MAX_BATCH and h["requests"]["cancelled"] == before + 1


def test_engine_timeout_and_cancel_free_their_rows(model):
    _, params, tok = model
    engine = Engine(params, CONFIG, tok.decode, max_batch=2, kernels="numpy").start()
    try:
        events = []
        engine.submit([1, 2], SamplingParams(max_tokens=400), lambda *e: events.append(e), timeout=0.0)
        assert engine.wait_idle(30)
        assert events[-1][0] == "error" and "timed out" in events[-1][1]
        seq = engine.submit([1, 2], SamplingParams(max_tokens=400), lambda *e: None)
        engine.cancel(seq)
        assert engine.wait_idle(30)
        stats = engine.stats()
        assert stats["requests"]["timed_out"] == 1 and stats["requests"]["cancelled"] == 1
        assert stats["slots"]["free"] == 2
    finally:
        engine.stop()


def test_held_back_text():
    assert _safe_length("hello wor", ("world",)) == 6  # "wor" may begin "world"
    assert _safe_length("hello", ("xyz",)) == 5
    assert _safe_length("ab\ufffd", ()) == 2  # an incomplete UTF-8 character waits for its other bytes


def test_load_generator_talks_only_to_this_machine_and_stops_by_itself(server):
    with pytest.raises(ValueError, match="127.0.0.1"):
        run_load("http://example.com:8000", concurrency=1, requests=1)
    with pytest.raises(ValueError, match="requests"):
        run_load(f"http://{server[0]}:{server[1]}", concurrency=1, requests=10**6)
    result = run_load(f"http://{server[0]}:{server[1]}", concurrency=3, requests=6, max_tokens=5, duration=30)
    assert result["requests"] == 6 and result["errors"] == 0 and result["completion_tokens"] == 30
    assert 0 < result["latency_p50"] <= result["latency_p99"] and result["tokens_per_second"] > 0


def readme_curl_examples() -> tuple[str, list[tuple[str, dict]]]:
    """The run folder of README.md's ``llm-scratch serve`` line, and (path, JSON body) of each of
    its curl examples (``curl ... http://127.0.0.1:8000/v1/... \\`` then ``-d '{...}'``)."""
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    run_dir = re.search(r"^llm-scratch serve (\S+)", text, re.M).group(1)
    examples = [(m.group(1), json.loads(m.group(2)))
                for m in re.finditer(r"curl [^\n]*http://127\.0\.0\.1:8000(/v1/\w+)[^\n]*\\\n\s*-d '([^']*)'", text)]
    return run_dir, examples


def test_readme_curl_examples_are_answered_by_the_server(server, model):
    run_dir, examples = readme_curl_examples()
    # chapter 10's two endpoints are checked with their models in tests/test_serve_apps.py
    examples = [(path, body) for path, body in examples if path not in ("/v1/translations", "/v1/answers")]
    assert sorted(path for path, _ in examples) == ["/v1/completions", "/v1/embeddings"], examples
    for path, body in examples:
        if path == "/v1/completions":
            # the server names the model after its run folder: the README's is runs/story -> "story"
            assert body["model"] == Path(run_dir).name, (body, run_dir)
            assert body.get("stream") is True
            events = read_stream(server, {**body, "model": model[0].name})
            assert events[-1] == "[DONE]", events[-3:]
            text = "".join(e["choices"][0]["text"] for e in events[:-1])
            assert len(text) == body["max_tokens"], text  # one character per token, none lost
            assert {e["model"] for e in events[:-1]} == {model[0].name}
        else:
            status, answer = request(server, "POST", path, body)
            assert status == 200, answer
            assert answer["model"] == body["model"] and len(answer["data"]) == len(body["input"])
            assert all(len(d["embedding"]) == 384 for d in answer["data"])


# ------------------------------------------------------------------------------------------
# the playground, in a real browser


def test_playground_streams_text_in_headless_chromium(server):
    """Load the page, type a prompt, press Generate, and see the completion appear piece by piece."""
    try:
        from selenium import webdriver
        from selenium.webdriver.common.by import By
    except ImportError as exc:
        message = f"selenium is not installed ({exc}): pip install -r requirements-reference.txt"
        pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not browser or not driver_path:
        message = "Chromium and chromedriver are not installed: apt-get install chromium chromium-driver"
        pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver_path))
    try:
        driver.set_page_load_timeout(30)
        driver.get(f"http://{server[0]}:{server[1]}/")
        assert "playground" in driver.title
        prompt = driver.find_element(By.ID, "prompt")
        prompt.clear()
        prompt.send_keys("Tom saw")
        driver.execute_script("document.getElementById('temperature').value = 0;"
                              "document.getElementById('max_tokens').value = 400;")
        driver.find_element(By.ID, "generate").click()
        lengths = []  # the completion's length, sampled while it streams in
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            text = driver.execute_script("const c = document.getElementById('completion'); "
                                         "return c ? c.textContent : '';")
            lengths.append(len(text))
            if driver.find_element(By.ID, "status").text.startswith("done"):
                break
            time.sleep(0.01)
        status = driver.find_element(By.ID, "status").text
        assert status.startswith("done (length)"), status
        final = driver.execute_script("return document.getElementById('completion').textContent;")
        assert len(final) == 400, final  # one character per token
        partial = sorted({n for n in lengths if 0 < n < lengths[-1]})
        print(f"completion lengths seen while streaming: {partial[:10]} ... {lengths[-1]}")
        assert partial, "the text appeared all at once, not streamed"
        assert driver.find_element(By.ID, "model").text == "tiny-gpt"
    finally:
        driver.quit()


def test_cli_serve_refuses_bad_settings_in_one_line(model, capsys):
    from llm_from_scratch.cli import main

    assert main(["serve", str(model[0]), "--max-batch", "0", "--no-embeddings"]) == 2
    assert capsys.readouterr().err.strip() == "error: --max-batch must be at least 1, got 0"
    assert main(["serve", str(model[0]), "--request-timeout", "-1", "--no-embeddings"]) == 2
    assert "--request-timeout must be a positive number" in capsys.readouterr().err
    assert main(["serve", str(model[0].parent / "missing"), "--no-embeddings"]) == 2
    assert "missing does not exist" in capsys.readouterr().err
