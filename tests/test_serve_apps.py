"""``llm-scratch serve`` with chapter 10's applications: POST /v1/translations (the committed
English -> Velu encoder-decoder) and POST /v1/answers (the committed question-answering run).

The server's answers must equal what the package gives for the same input (``Translator.translate``,
``qa.answer_questions``), and every bad request gets a 4xx error naming its field, after which the
server goes on serving.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from llm_from_scratch import qa
from llm_from_scratch.models.gpt import init_params, save_pretrained
from llm_from_scratch.serve.app import build_app
from llm_from_scratch.tokenizers import CharTokenizer
from llm_from_scratch.translate import load_translator
from tests.test_serve import CHARS, CONFIG, SETTINGS, _free_port, request

DATA = Path(__file__).resolve().parent.parent / "book" / "data"
TRANSLATION_RUN = DATA / "translation" / "encdec"
QA_RUN = DATA / "qa"
STORY = ("Mia was in the park. She found a red ball. Tom was in the house. Mia went to the garden.\n")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import uvicorn

    folder = tmp_path_factory.mktemp("serve-apps") / "tiny-gpt"
    save_pretrained(init_params(CONFIG, seed=0), CONFIG, folder)
    CharTokenizer(CHARS).save(folder / "tokenizer.json")
    app = build_app(folder, None, max_batch=2, kernels="numpy", settings=SETTINGS,
                    translation_run=TRANSLATION_RUN, qa_run=QA_RUN)
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not srv.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start within 60 s"
        time.sleep(0.02)
    yield ("127.0.0.1", port)
    srv.should_exit = True
    thread.join(10)
    assert not thread.is_alive(), "the server did not stop"


def test_translations_equal_the_translator_greedy_and_beam(server):
    sentences = ["Anna dropped the small kite.", "Mia was in the park.", "Tom asked, where is Sam?"]
    translator = load_translator(TRANSLATION_RUN)
    for beam in (1, 3):
        status, body = request(server, "POST", "/v1/translations", {"input": sentences, "beam": beam})
        assert status == 200, body
        assert body["model"] == "encdec"
        got = [d["translation"] for d in sorted(body["data"], key=lambda d: d["index"])]
        assert got == translator.translate(sentences, beam=beam)
    assert got[0] == "Anna drako mala faligi."  # the committed test output for this sentence


def test_answers_equal_the_package_for_both_methods(server):
    models = qa.load_run(QA_RUN)
    questions = ["Who has the ball?", "Where is Tom?"]
    for method in qa.MODELS:
        status, body = request(server, "POST", "/v1/answers",
                               {"question": questions, "context": [STORY, STORY], "method": method})
        assert status == 200, body
        assert body["method"] == method and body["model"] == "qa"
        got = [d["answer"] for d in sorted(body["data"], key=lambda d: d["index"])]
        assert got == qa.answer_questions(models, questions, [STORY, STORY], method, kernels="numpy")
    assert got[0] == "mia"


BAD = [
    ("/v1/translations", {}, 400, "input", "required"),
    ("/v1/translations", {"input": ""}, 400, "input", "input[0] is empty"),
    ("/v1/translations", {"input": ["Mia ran.", 7]}, 400, "input", "input[1] must be a string"),
    ("/v1/translations", {"input": "Mia \u2603 ran."}, 400, "input", "input[0]"),
    ("/v1/translations", {"input": "Mia ran. " * 40}, 400, "input", "input[0]"),
    ("/v1/translations", {"input": "Mia ran.", "beam": 0}, 400, "beam", "[1, 8]"),
    ("/v1/translations", {"input": "Mia ran.", "beam": 2.5}, 400, "beam", "integer"),
    ("/v1/translations", {"input": "Mia ran.", "model": "nope"}, 404, "model", "does not exist"),
    ("/v1/answers", {"question": "Who has the ball?"}, 400, "context", "required"),
    ("/v1/answers", {"question": "", "context": STORY}, 400, "question", "question[0] is empty"),
    ("/v1/answers", {"question": ["a?", "b?"], "context": STORY}, 400, "context", "2 questions but 1"),
    ("/v1/answers", {"question": "Who?", "context": STORY, "method": "guess"}, 400, "method", "one of"),
    ("/v1/answers", {"question": "Who has the ball?", "context": STORY * 8}, 400, "context", "shorten"),
]


@pytest.mark.parametrize("path, body, status, param, words", BAD, ids=[f"{i}-{b[3]}" for i, b in enumerate(BAD)])
def test_bad_request_names_the_field_and_the_server_goes_on(server, path, body, status, param, words):
    got_status, got = request(server, "POST", path, body)
    assert got_status == status, got
    assert got["error"]["param"] == param, got
    assert words in got["error"]["message"], got["error"]["message"]
    ok_status, ok = request(server, "POST", "/v1/translations", {"input": "Mia was in the park."})
    assert ok_status == 200 and len(ok["data"]) == 1  # still serving


def test_readme_curl_examples_for_the_applications_are_answered(server):
    from tests.test_serve import readme_curl_examples

    _, examples = readme_curl_examples()
    apps = [(path, body) for path, body in examples if path in ("/v1/translations", "/v1/answers")]
    assert sorted(path for path, _ in apps) == ["/v1/answers", "/v1/translations"], examples
    for path, body in apps:
        status, answer = request(server, "POST", path, body)
        assert status == 200, answer
        n = len(body["input"]) if "input" in body else 1
        assert len(answer["data"]) == n, answer
    translations = dict(apps)["/v1/translations"]
    status, answer = request(server, "POST", "/v1/translations", translations)
    assert answer["data"][0]["translation"] == "Anna drako mala faligi."
