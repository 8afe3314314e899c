"""Scaling sweeps: determinism, the results file, resuming, killed workers, Dask, the CLI."""

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from llm_from_scratch import cli
from llm_from_scratch.scaling import sweep
from llm_from_scratch.scaling.sweep import RunSpec

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(n_layer=1, n_embd=8, n_head=2, batch_size=4, block_size=16, lr=1e-2, evals=2)


def tiny(tokens=2**12, **kw) -> RunSpec:
    return RunSpec(**{**TINY, "tokens": tokens, **kw})


def assert_same_runs(a: list[dict], b: list[dict]):
    """Records of the same runs agree in every deterministic field (any order)."""
    a = {r["run_id"]: sweep.deterministic_fields(r) for r in a}
    b = {r["run_id"]: sweep.deterministic_fields(r) for r in b}
    assert a.keys() == b.keys(), f"different runs: {sorted(a.keys() ^ b.keys())}"
    for run_id in a:
        diffs = {k: (a[run_id][k], b[run_id].get(k)) for k in a[run_id] if a[run_id][k] != b[run_id].get(k)}
        assert not diffs, f"run {run_id} differs: {diffs}"


def test_run_one_record_and_determinism():
    spec = tiny()
    r1, r2 = sweep.run_one(spec), sweep.run_one(sweep.run_one(spec)["spec"])   # from a record's spec too
    print("final bpc", r1["final_bpc"], r2["final_bpc"])
    assert r1["status"] == "ok" and r1["final_bpc"] == r2["final_bpc"]
    assert sweep.deterministic_fields(r1) == sweep.deterministic_fields(r2)
    assert r1["D"] == r1["steps"] * 4 * 16 == 2**12 and r1["U"] == 2**12 and r1["epochs"] == 1
    assert r1["N"] == 1 * (12 * 64 + 13 * 8) + 2 * 8                       # L (12 C^2 + 13 C) + 2 C
    assert r1["N_embedding"] == (r1["model"]["vocab_size"] + 16) * 8        # (V + T) C
    assert r1["flops_6ND"] == 6 * r1["N"] * r1["D"] and r1["flops"] > r1["flops_6ND"]
    assert [t for t, _ in r1["val_curve"]] == [2**11, 2**12]
    assert r1["best_bpc"] == min(b for _, b in r1["val_curve"])
    # an untrained character model is near log2(V) bits; 64 steps must already be below it
    assert 1.0 < r1["final_bpc"] < math.log2(r1["model"]["vocab_size"])
    assert r1["val_chars"] >= 100_000
    other = sweep.run_one(replace(spec, seed=1))
    assert other["final_bpc"] != r1["final_bpc"] and other["run_id"] != r1["run_id"]


def test_window_order_one_epoch_and_repeats():
    one = tiny(tokens=2**12)
    starts = sweep.window_order(one)
    assert sorted(starts.tolist()) == list(range(0, 2**12, 16)), "one epoch visits every window once"
    rep = tiny(tokens=2**12, unique_chars=2**10)
    starts = sweep.window_order(rep).reshape(4, -1)                     # 4 epochs of 64 windows
    for epoch in starts:
        assert sorted(epoch.tolist()) == list(range(0, 2**10, 16))
    assert not np.array_equal(starts[0], starts[1]), "each epoch is reshuffled"
    _, train_ids, _ = sweep.load_data(rep)
    assert len(train_ids) == 2**10 + 1


def test_spec_validation_and_stable_id():
    s = tiny()
    assert s.run_id == tiny().run_id and len(s.run_id) == 16
    assert s.run_id != tiny(lr=2e-2).run_id
    with pytest.raises(ValueError, match="multiple of batch_size"):
        tiny(tokens=1000)
    with pytest.raises(ValueError, match="divisible by n_head"):
        tiny(n_embd=10, n_head=4)
    with pytest.raises(ValueError, match="unique_chars"):
        tiny(unique_chars=2**13)
    assert sweep.lr_rule(sweep.LR_SMALL[0]) == sweep.LR_SMALL[1]
    assert sweep.lr_rule(sweep.LR_LARGE[0]) == sweep.LR_LARGE[1]
    assert sweep.lr_rule(10**5) < sweep.lr_rule(10**4), "larger models get smaller steps"


def test_results_file_torn_line_ignored_and_cut(tmp_path):
    path = tmp_path / "runs.jsonl"
    sweep.append_record(path, {"run_id": "a", "final_bpc": 1.0})
    sweep.append_record(path, {"run_id": "b", "final_bpc": 2.0})
    with open(path, "ab") as f:
        f.write(b'{"run_id": "c", "final_')                               # a crash mid-write
    with pytest.warns(UserWarning, match="torn last line"):
        records = sweep.read_records(path)
    assert [r["run_id"] for r in records] == ["a", "b"]
    with pytest.warns(UserWarning, match="torn last line"):
        sweep._cut_torn_line(path)
    sweep.append_record(path, {"run_id": "d"})
    assert [r["run_id"] for r in sweep.read_records(path)] == ["a", "b", "d"]
    path.write_text('{"run_id": "a"}\nnot json\n{"run_id": "b"}\n')
    with pytest.raises(ValueError, match="line 2: not a JSON record"):
        sweep.read_records(path)


def test_resume_redoes_nothing_and_diverged_is_recorded(tmp_path, monkeypatch):
    calls = []
    real = sweep.run_one
    monkeypatch.setattr(sweep, "run_one", lambda spec, threads=1: calls.append(spec) or real(spec, threads))
    specs = [tiny(), tiny(lr=1e3)]                                     # the second one diverges
    out = tmp_path / "runs.jsonl"
    counts = sweep.run_sweep(specs, out, executor="threads", workers=1, progress=False)
    assert counts == {"total": 2, "skipped": 0, "reused": 0, "ran": 2, "diverged": 1} and len(calls) == 2
    records = {r["run_id"]: r for r in sweep.read_records(out)}
    bad = records[specs[1].run_id]
    print("diverged record:", bad["status"], bad["diverged_step"])
    assert bad["status"] == "diverged" and isinstance(bad["diverged_step"], int) and bad["final_bpc"] is None
    assert records[specs[0].run_id]["status"] == "ok"
    counts = sweep.run_sweep(specs + [specs[0]], out, executor="threads", workers=1, progress=False)
    assert counts["ran"] == 0 and counts["skipped"] == 3 and len(calls) == 2, "a resumed sweep redoes nothing"
    # --reuse copies finished runs from another file instead of training them again
    other = tmp_path / "other.jsonl"
    counts = sweep.run_sweep(specs, other, executor="threads", workers=1, reuse=[out], progress=False)
    assert counts["reused"] == 2 and counts["ran"] == 0 and len(calls) == 2
    assert sorted(other.read_text().splitlines()) == sorted(out.read_text().splitlines())  # the same records


def test_killed_sweep_loses_no_finished_run(tmp_path):
    out = tmp_path / "runs.jsonl"
    args = [sys.executable, "-m", "llm_from_scratch.cli", "sweep", "--out", str(out), "--sizes", "1:8:2",
            "--tokens", "8K,12K,16K,20K", "--batch-size", "4", "--block-size", "16", "--workers", "1"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(args, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not (out.exists() and out.read_bytes().count(b"\n") >= 1):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)                               # the sweep and its worker process
    proc.wait()
    before = sweep.read_records(out)
    print("records before the kill:", len(before))
    assert 1 <= len(before) < 4, "kill the sweep while runs remain"
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    after = sweep.read_records(out)
    assert after[:len(before)] == before, "finished runs are kept as they were"
    assert len(after) == 4 and len({r["run_id"] for r in after}) == 4
    assert f"{4 - len(before)} runs done" in done.stdout


@pytest.fixture(scope="module")
def dask_cluster():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    yield cluster
    cluster.close()


def test_dask_gives_the_local_records_and_survives_a_killed_worker(tmp_path, dask_cluster):
    from distributed import Client

    specs = [tiny(tokens=2**13, seed=s) for s in range(4)]
    local, remote = tmp_path / "local.jsonl", tmp_path / "dask.jsonl"
    sweep.run_sweep(specs[:2], local, executor="processes", workers=2, progress=False)
    sweep.run_sweep(specs[:2], remote, scheduler=dask_cluster.scheduler_address, progress=False)
    assert_same_runs(sweep.read_records(local), sweep.read_records(remote))

    # kill one worker process while the other two runs are under way; Dask redoes its run elsewhere
    with Client(dask_cluster.scheduler_address) as client:
        pids = list(client.run(os.getpid).values())
    result = {}
    thread = threading.Thread(target=lambda: result.update(
        sweep.run_sweep(specs, remote, scheduler=dask_cluster.scheduler_address, progress=False)))
    thread.start()
    time.sleep(1.0)
    os.kill(pids[0], signal.SIGKILL)
    thread.join(timeout=300)
    assert result.get("ran") == 2, result
    records = sweep.read_records(remote)
    assert sorted(r["run_id"] for r in records) == sorted(s.run_id for s in specs)
    sweep.run_sweep(specs[2:], local, executor="processes", workers=2, progress=False)
    assert_same_runs(sweep.read_records(local), records)


@pytest.mark.parametrize("argv, message", [
    (["--sizes", "2:32", "--tokens", ","], "the grid is empty"),
    (["--sizes", "", "--tokens", "1M"], "give --preset NAME, or both --sizes and --tokens"),
    (["--sizes", "2:30:4", "--tokens", "1M"], "width 30 must divide by its 4 heads"),
    (["--sizes", "2:32", "--tokens", "1M", "--data", "stdlib", "--block-size", "64", "--unique-chars", "2M"],
     "unique_chars must be 0"),
    (["--preset", "nope"], "unknown preset 'nope'"),
    (["--sizes", "2:32", "--tokens", "64K", "--scheduler", "tcp://127.0.0.1:9"], "no Dask scheduler answered"),
])
def test_cli_bad_arguments_one_line_exit_2(tmp_path, capsys, argv, message):
    code = cli.main(["sweep", "--out", str(tmp_path / "x.jsonl"), *argv])
    err = capsys.readouterr().err
    print(repr(err))
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert message in err
    assert not (tmp_path / "x.jsonl").exists()


def test_cli_dry_run_lists_the_preset(capsys):
    assert cli.main(["sweep", "--out", "unused.jsonl", "--preset", "storyworld", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.count("N=") == len(sweep.preset("storyworld")) == 25
    assert "25 runs" in out


def test_committed_record_reruns_identically():
    path = ROOT / "book" / "data" / "scaling" / "storyworld.jsonl"
    records = [r for r in sweep.read_records(path) if r["status"] == "ok"]
    assert len(records) == 25, f"{path} should hold the 25 runs of the main grid, has {len(records)}"
    committed = min(records, key=lambda r: r["flops"])
    again = sweep.run_one(committed["spec"], threads=committed["threads"])
    print("committed", committed["final_bpc"], "now", again["final_bpc"], "in", again["wall_seconds"], "s")
    assert again["wall_seconds"] < 30
    if committed["machine"]["cpu"] == sweep.machine()["cpu"]:
        assert sweep.deterministic_fields(again) == sweep.deterministic_fields(committed)
    else:   # another CPU may round differently; the numbers must still agree closely
        assert abs(again["final_bpc"] - committed["final_bpc"]) < 1e-3
