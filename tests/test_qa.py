"""Question answering (llm_from_scratch/qa.py): the committed run of ``llm-scratch train-qa`` in
book/data/qa reproduces, the two models answer as stored, and the ``qa`` command refuses bad
input in one line with exit status 2."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from llm_from_scratch import qa
from llm_from_scratch.metrics import squad_scores
from llm_from_scratch.models import bart, bert

RUN = Path(__file__).resolve().parents[1] / "book" / "data" / "qa"


def one_thread():
    """numba and BLAS on one thread, as the command ran: every sum is then in the same order."""
    import contextlib

    import numba
    from threadpoolctl import threadpool_limits

    @contextlib.contextmanager
    def limits():
        before = numba.get_num_threads()
        numba.set_num_threads(1)
        try:
            with threadpool_limits(limits=1, user_api="blas"):
                yield
        finally:
            numba.set_num_threads(before)
    return limits()


def run_cli(*args):
    env = {k: v for k, v in os.environ.items() if k != "LLM_SCRATCH_DEBUG"}
    return subprocess.run([sys.executable, "-m", "llm_from_scratch.cli", *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def committed():
    return qa.load_results(RUN)


# ----------------------------------------------------------------------------------------
# pieces


def test_answer_labels_end_with_sep_and_pad_with_ignore():
    tok = bert.load_wordpiece(qa.BERT_DIR)
    labels = qa.answer_labels(tok, ["Mia", "the red ball", "kitchen"])
    sep = tok.vocab["[SEP]"]
    assert labels.shape == (3, 4)
    assert labels[0].tolist() == [tok.vocab["mia"], sep, -100, -100]
    assert labels[2].tolist() == [tok.vocab["kitchen"], sep, -100, -100]
    assert labels[1, -1] == sep


def test_encoder_from_bert_gives_bert_encoder_outputs():
    """BART's encoder warm-started from the BERT computes BERT's hidden states when every token
    is in segment A (up to the LayerNorm eps, 1e-5 vs 1e-12)."""
    tok = bert.load_wordpiece(qa.BERT_DIR)
    enc, bert_cfg = bert.from_pretrained(qa.BERT_DIR, dtype=np.float64)
    cfg = qa.generative_config(tok)
    params = qa.encoder_from_bert(bart.init_params(cfg, seed=1, dtype=np.float64), cfg, enc)
    src = qa.encode_sources(tok, ["Where is Mia?"], ["Mia was in the park. She went to the house.\n"], 40)
    n = int(src["attention_mask"].sum())
    ids = src["input_ids"][:, :n]
    ours = bart.encode(params, cfg, ids)  # (1, n, C)
    theirs, _, _ = bert.bert_forward(enc, bert_cfg, ids, token_type_ids=np.zeros_like(ids))  # (1, n, C)
    diff = float(np.abs(ours - theirs).max())
    print("max abs difference between the two encoders:", diff)
    assert diff < 1e-3
    # the decoder was left as it was
    fresh = bart.init_params(cfg, seed=1, dtype=np.float64)
    assert np.array_equal(params["model.decoder.layers.0.fc1.weight"], fresh["model.decoder.layers.0.fc1.weight"])


def test_extract_answers_picks_best_span_inside_context(monkeypatch):
    """The best start + end among spans of at most 4 context tokens: never in the question, never
    the final [SEP], never backwards or longer than 4 tokens, however high those score."""
    tok = bert.load_wordpiece(qa.BERT_DIR)
    src = qa.encode_sources(tok, ["Where is Mia?"], ["Mia went to the red garden. Tom was in the big park.\n"])
    tokens = tok.convert_ids_to_tokens(src["input_ids"][0])
    where = {t: tokens.index(t) for t in ("where", "went", "red", "garden", "tom", "park")}
    last_sep = int(src["attention_mask"][0].sum()) - 1
    start, end = np.zeros((1, len(tokens))), np.zeros((1, len(tokens)))
    start[0, where["where"]] = end[0, where["where"]] = 50.0  # in the question: not allowed
    start[0, last_sep] = end[0, last_sep] = 50.0  # the final [SEP]: not allowed
    start[0, where["red"]], end[0, where["park"]] = 20.0, 20.0  # "red ... park" is 9 tokens: too long
    start[0, where["tom"]], end[0, where["went"]] = 15.0, 15.0  # "tom" ... "went": backwards
    end[0, where["garden"]] = 5.0  # the best allowed span: "red garden", 20 + 5

    def fake(params, config, input_ids, **kwargs):
        T = input_ids.shape[1]
        return start[:, :T], end[:, :T], None, None

    monkeypatch.setattr(qa.bert, "bert_qa_forward", fake)
    assert qa.extract_answers({}, None, tok, src) == ["red garden"]


# ----------------------------------------------------------------------------------------
# the committed run


def test_committed_run_loads_and_matches_its_record(committed):
    training, evaluation, rows = committed
    models = qa.load_run(RUN)
    a = training["arguments"]
    assert (models.gen_config.d_model, models.gen_config.encoder_layers) == (a["d_model"], a["layers"])
    assert 64 <= a["d_model"] <= 128 and 2 <= a["layers"] <= 3
    assert "qa_outputs.weight" in models.ext_params
    assert len(rows) == evaluation["test_questions"] > 1000
    # eval.json is the SQuAD score of the stored answers
    golds = [r["gold"] for r in rows]
    for name in qa.MODELS:
        again = squad_scores([r[name] for r in rows], golds)
        print(name, "stored", evaluation[name], "recomputed", again)
        assert again == evaluation[name]


def test_command_reproduces_committed_first_losses(committed):
    """The generative model's first losses replay bit for bit; the extractive model's to float32
    rounding (its BERT forward pass may be reorganised for speed without changing its values)."""
    training, _, _ = committed
    assert training["bert_checkpoint_sha256"] == qa.checkpoint_sha256(qa.BERT_DIR), (
        "book/data/bert_storyworld changed since book/data/qa was made: re-run the command in book/data/qa/README.md")
    first = training["first_losses"]
    n = len(first["generative"])
    assert n >= 3 and len(first["extractive"]) == n
    with one_thread():
        replay = qa.train_qa(None, **training["arguments"], stop_after=n, record_steps=n)
    for name in qa.MODELS:
        diff = max(abs(x - y) for x, y in zip(replay["first_losses"][name], first[name]))
        print(name, "committed", first[name], "\nreplayed ", replay["first_losses"][name], "\nmax abs difference", diff)
        if name == "generative":
            assert replay["first_losses"][name] == first[name]
        else:
            assert diff <= 1e-5 * max(abs(x) for x in first[name])
    assert replay["train_questions"] == training["train_questions"]


def test_committed_models_reproduce_stored_answers(committed):
    """The loaded checkpoints answer the first 200 test questions exactly as predictions.jsonl says
    (long stories cut at 96 tokens, as in the evaluation)."""
    training, _, rows = committed
    models = qa.load_run(RUN)
    test = {(e.story, e.question): e for e in qa.storyworld_questions("test", training["arguments"]["n_test"], 2)}
    rows = rows[:200]
    contexts = [test[r["story"], r["question"]].context for r in rows]
    with one_thread():
        for name in qa.MODELS:
            fresh = qa.answer_unchecked(models, [r["question"] for r in rows], contexts, name)
            wrong = [(r["question"], r[name], f) for r, f in zip(rows, fresh) if f != r[name]]
            print(name, len(wrong), "of", len(rows), "differ", wrong[:3])
            assert not wrong


def test_compare_shows_disagreements_and_live_answers():
    c = qa.compare(RUN, n_examples=4, n_live=5)
    assert set(c.scores) == set(qa.MODELS) and c.n_test > 1000
    assert "exact match" in c.table() and len(c.live) == 5 and c.live_matches
    assert len(c.disagreements) == min(4, c.n_disagree)
    for r in c.disagreements:
        assert qa.normalize(r["generative"]) != qa.normalize(r["extractive"])
        assert r["question"] in c.examples_text()
    assert c.not_in_story["extractive"] == 0  # a span is always words of the story
    assert c.name_swap["pairs"] > 100 and c.last_place["questions"] > 500
    for name in qa.MODELS:
        assert 0 <= c.name_swap[name]["both_right"] <= c.name_swap[name]["changed"] <= c.name_swap["pairs"]
        assert 0.0 <= c.last_place[name] <= 1.0
    print("name swap", c.name_swap, "\nlast-place rule", c.last_place)


def test_last_place_rule_counts_agreement():
    ex = qa.QAExample("Where is Mia?", "Mia was in the park. Tom went to the house.\n", "park", 15, story=0)
    rows = [{"story": 0, "question": "Where is Mia?", "gold": "park", "extractive": "house", "generative": "park"},
            {"story": 0, "question": "Where is the ball?", "gold": "park", "extractive": "x", "generative": "y"}]
    out = qa.last_place_rule(rows, {(0, "Where is Mia?"): ex})
    assert out == {"questions": 1, "rule_right": 0.0, "extractive": 1.0, "generative": 0.0}


# ----------------------------------------------------------------------------------------
# the qa command


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("qa")
    story = "Mia was in the park. Tom was in the house. Mia went to the garden. Tom found a red ball.\n"
    lines = {
        "good": [{"question": "Where is Mia?", "context": story}, {"question": "Who has the ball?", "context": story}],
        "no_context": [{"question": "Where is Mia?"}],
        "no_question": [{"context": story}],
        "empty_question": [{"question": "  ", "context": story}],
        "empty_context": [{"question": "Where is Mia?", "context": ""}],
        "long": [{"question": "Where is Mia?", "context": story * 6}],
        "not_object": [["Where is Mia?", story]],
        "number": [{"question": 3, "context": story}],
    }
    for name, objs in lines.items():
        (root / f"{name}.jsonl").write_text("".join(json.dumps(o) + "\n" for o in objs), encoding="utf-8")
    (root / "not_json.jsonl").write_text(json.dumps(lines["good"][0]) + "\n{question: oops}\n", encoding="utf-8")
    (root / "empty.jsonl").write_text("\n", encoding="utf-8")
    return root


def test_qa_command_answers(files, tmp_path):
    out = tmp_path / "sub" / "answers.jsonl"
    for model in qa.MODELS:
        done = run_cli("qa", RUN, "--input", files / "good.jsonl", "--output", out, "--model", model)
        assert done.returncode == 0, done.stderr
        answers = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
        print(model, answers)
        assert [a["question"] for a in answers] == ["Where is Mia?", "Who has the ball?"]
        assert all(isinstance(a["answer"], str) for a in answers)
    done = run_cli("qa", RUN, "--input", files / "good.jsonl")  # to standard output
    assert done.returncode == 0 and len(done.stdout.splitlines()) == 2


@pytest.mark.parametrize("case, message", [
    ("missing.jsonl", "no such file"),
    ("not_json.jsonl", "line 2: not JSON"),
    ("no_context.jsonl", "line 1: missing field 'context'"),
    ("no_question.jsonl", "line 1: missing field 'question'"),
    ("empty_question.jsonl", "pair 1: question is empty"),
    ("empty_context.jsonl", "pair 1: context is empty"),
    ("long.jsonl", "the models read at most 96; shorten the context"),
    ("not_object.jsonl", "expected a JSON object"),
    ("number.jsonl", "question must be a string"),
    ("empty.jsonl", "no question/context pairs"),
])
def test_qa_command_refuses_bad_input(files, case, message):
    done = run_cli("qa", RUN, "--input", files / case)
    print(done.stderr)
    assert done.returncode == 2
    assert message in done.stderr and done.stderr.startswith("error: ")
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert done.stdout == ""


def test_qa_command_refuses_missing_run_dir(files, tmp_path):
    done = run_cli("qa", tmp_path / "no_run", "--input", files / "good.jsonl")
    assert done.returncode == 2 and "no such run folder" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    (tmp_path / "half").mkdir()
    done = run_cli("qa", tmp_path / "half", "--input", files / "good.jsonl")
    assert done.returncode == 2 and "has no generative/ folder" in done.stderr
