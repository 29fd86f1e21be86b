"""Warm workers of the local executor (benchmark/sweep/worker.py) and the file memo they keep
(datasets/memo.py): a cell run in-process leaves the process as it found it; a warm sweep gives
the codes and metrics of a process-per-cell sweep, with the start-up of a worker's later cells
measured; a worker killed during a cell is replaced and the cell completes on the retry."""
from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from hashbench.benchmark import resume
from hashbench.benchmark.sweep import executors, worker
from hashbench.benchmark.sweep.spec import load_sweep
from hashbench.datasets import cache, memo
from hashbench.datasets.base import ArrayData
from hashbench.tools.compare_stores import startup_seconds

HASHBENCH = str(Path(sys.executable).with_name("hashbench"))


@pytest.fixture
def memo_on():
    memo.enable()
    yield
    memo.disable()


def _entry(path: Path, value: int) -> None:
    x = np.full((4, 3), value, np.float32)
    cache.save(path, ArrayData(x=x, labels=np.eye(4, 2, dtype=np.uint8), class_names=["a", "b"], kind="vector",
                               official_split=None, source="test"))


def test_memo_is_off_by_default(tmp_path):
    path = tmp_path / "a.npz"
    _entry(path, 1)
    assert cache.load(path).x is not cache.load(path).x
    assert cache.load(path).x.flags.writeable


def test_memo_reads_an_unchanged_file_once_and_a_replaced_one_again(tmp_path, memo_on):
    path = tmp_path / "a.npz"
    _entry(path, 1)
    first, second = cache.load(path), cache.load(path)
    assert first is not second and first.x is second.x and first.labels is second.labels
    with pytest.raises(ValueError, match="read-only"):
        first.x[0, 0] = 5  # one cell cannot change what the next one reads
    _entry(path, 2)  # rewritten atomically: a new inode and mtime
    third = cache.load(path)
    assert third.x is not first.x and float(third.x[0, 0]) == 2.0
    assert memo.held_bytes() == sum(a.nbytes for a in cache._read_npz(path).values())  # the old version dropped
    assert cache.load(tmp_path / "missing.npz") is None


def test_memo_drops_the_least_recently_used_beyond_its_budget(tmp_path):
    reads = []
    reader = lambda p: reads.append(p) or np.zeros(1000, np.uint8)  # noqa: E731
    for name in "abc":
        (tmp_path / name).write_bytes(b"x")
    memo.enable(max_bytes=2000)
    try:
        for name in "abab":
            memo.read(tmp_path / name, reader)
        assert len(reads) == 2
        memo.read(tmp_path / "c", reader)  # evicts a (least recently used)
        memo.read(tmp_path / "b", reader)
        assert len(reads) == 3 and memo.held_bytes() == 2000
        memo.read(tmp_path / "a", reader)
        assert len(reads) == 4
    finally:
        memo.disable()
    assert memo.held_bytes() == 0


def test_memo_keeps_derived_values_only_of_arrays_it_holds(tmp_path, memo_on):
    (tmp_path / "f").write_bytes(b"x")
    held = memo.read(tmp_path / "f", lambda p: np.arange(5))
    calls = []
    compute = lambda: calls.append(1) or len(calls)  # noqa: E731
    assert memo.derived("n", (held,), compute) == memo.derived("n", (held,), compute) == 1
    other = np.arange(5)  # same content, not the memo's: computed every time
    assert memo.derived("n", (other,), compute) == 2 and memo.derived("n", (other,), compute) == 3


def test_hashbench_args_recognises_this_installations_command():
    assert worker.hashbench_args([HASHBENCH, "run", "--bits", "8"]) == ["run", "--bits", "8"]
    assert worker.hashbench_args([sys.executable, "-m", "hashbench", "list"]) == ["list"]
    assert worker.hashbench_args([sys.executable, "-c", "print(1)"]) is None
    assert worker.hashbench_args(["/elsewhere/bin/hashbench", "run"]) is None


def test_a_cell_in_process_is_logged_and_leaves_the_process_as_it_found_it(tmp_path, monkeypatch):
    defaults = worker.TorchDefaults()
    before = (dict(os.environ), os.getcwd(), list(warnings.filters), list(logging.root.handlers),
              logging.getLogger("hashbench").level, torch.get_num_threads())

    def messy_cell(args):
        print("to stdout", args)
        os.write(2, b"to fd 2\n")
        os.environ["HASHBENCH_LEAK"] = "1"
        os.chdir(tmp_path)
        warnings.filterwarnings("error")
        logging.root.addHandler(logging.StreamHandler())
        logging.getLogger("hashbench").setLevel(logging.CRITICAL)
        torch.set_num_threads(max(1, defaults.threads - 1) if defaults.threads > 1 else 2)
        return 3

    monkeypatch.setattr(worker, "_cli_exit_status", messy_cell)
    monkeypatch.setattr(sys, "stdout", open(1, "w", closefd=False))  # a worker's: on fd 1 (pytest swaps it)
    log = tmp_path / "cell.log"
    assert worker.run_in_process(["run", "--x"], str(log), {"HASHBENCH_CELL": "7"}, defaults) == 3
    # both streams, flushed (stdout block-buffered, as a child process's writing to a file)
    assert sorted(log.read_text().splitlines()) == ["to fd 2", "to stdout ['run', '--x']"]
    after = (dict(os.environ), os.getcwd(), list(warnings.filters), list(logging.root.handlers),
             logging.getLogger("hashbench").level, torch.get_num_threads())
    for name, was, now in zip(("environ", "cwd", "filters", "handlers", "level", "threads"), before, after):
        assert now == was, name


def test_warm_worker_runs_cli_commands_in_one_process(tmp_path):
    ex = executors.LocalExecutor(1, workers="warm")
    tasks = [executors.Task(name, [HASHBENCH, *args], tmp_path / f"{name}.log", {}, 1, False)
             for name, args in (("list", ["list"]), ("bad", ["run", "--method", "nosuch", "--bits", "8"]),
                                ("usage", ["run", "--bits", "x"]))]
    try:
        results = {sub.task.key: res for sub, res, _ in ex.as_completed(ex.submit(tasks))}
    finally:
        ex.close()
    assert {k: r["returncode"] for k, r in results.items()} == {"list": 0, "bad": 2, "usage": 2}
    logs = {k: (tmp_path / f"{k}.log").read_text() for k in results}
    assert "methods:" in logs["list"] and "error: unknown method 'nosuch'" in logs["bad"]
    assert "error: argument --bits" in logs["usage"]
    pids = {re.search(r"^# warm worker pid (\d+)", text, re.M).group(1) for text in logs.values()}
    assert len(pids) == 1  # one worker, three cells
    assert all(text.startswith("# ") and f": {HASHBENCH} " in text.splitlines()[0] for text in logs.values())


def test_workers_setting_reaches_the_local_executor(tmp_path):
    doc = {"methods": ["lsh"], "datasets": ["digits"], "bits": [8]}
    for block, warm in (({}, True), ({"workers": "process"}, False), ({"workers": "warm"}, True)):
        path = tmp_path / "s.yaml"
        path.write_text(yaml.safe_dump({**doc, "executor": {"local": block}}))
        settings = load_sweep(path).executor["local"]
        ex = executors.make_executor("local", settings, tmp_path, "s")
        ex.close()
        assert (ex.warm is not None) is warm, block
    with pytest.raises(ValueError, match="executor.local.workers must be one of warm, process, got 'lukewarm'"):
        executors.make_executor("local", {"jobs": 1, "workers": "lukewarm"}, tmp_path, "s")


GRID = {"methods": ["hashnet", "itq"], "datasets": ["digits"], "bits": [16], "seeds": [0, 1], "epochs": [3],
        "device": "cpu", "speed": False, "retries": 0}


def _sweep(tmp_path: Path, name: str, **changes) -> tuple[Path, Path]:
    store = tmp_path / name
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({**GRID, "name": name, "out": str(store), **changes}))
    return path, store


def _manifest(store: Path, name: str) -> dict:
    return json.loads((store / "_sweeps" / name / "manifest.json").read_text())


def _run_values(run_dir: Path) -> tuple[pd.Series, dict]:
    frame = pd.read_csv(run_dir / "metrics.csv")
    frame = frame[~frame["metric"].str.contains("seconds")]
    with np.load(run_dir / "codes.npz") as z:
        codes = {k: z[k] for k in z.files}
    return frame.set_index(["metric", "variant", "bits"])["value"].sort_index(), codes


def test_warm_sweep_equals_process_sweep_and_starts_cells_faster(tmp_path):
    # three cells (two trained, one closed-form): one warm worker runs them all (--jobs 1), three
    # processes run them at once (--jobs 3); one thread per cell in both (the environment's wins)
    grids = {"grids": [{"methods": ["hashnet"], "seeds": [0, 1]}, {"methods": ["itq"], "seeds": [0]}]}
    env = {**os.environ, **{var: "1" for var in executors.THREAD_VARIABLES}}
    stores = {}
    for mode, jobs in (("warm", "1"), ("process", "3")):
        path, stores[mode] = _sweep(tmp_path, mode, **grids)
        res = subprocess.run([HASHBENCH, "sweep", "run", str(path), "--jobs", jobs, "--workers", mode],
                             capture_output=True, text=True, timeout=300, env=env)
        assert res.returncode == 0, res.stderr[-3000:]
    warm, process = (resume.finished_runs(stores[m]) for m in ("warm", "process"))
    assert set(warm) == set(process) and len(warm) == 3
    for ident in warm:
        (values_w, codes_w), (values_p, codes_p) = _run_values(warm[ident]), _run_values(process[ident])
        pd.testing.assert_series_equal(values_w, values_p, check_exact=True)
        assert codes_w.keys() == codes_p.keys() and all(np.array_equal(codes_w[k], codes_p[k]) for k in codes_w)
    startup = {}
    for mode in ("warm", "process"):
        for ident, rec in _manifest(stores[mode], mode)["cells"].items():
            text = Path(rec["logs"][-1]).read_text()
            later = mode == "warm" and "its cell 1\n" not in text
            startup.setdefault((mode, later), []).append(startup_seconds(text, rec["run_dir"]))
    print("start-up seconds (mode, a worker's later cell):", startup)
    assert len(startup[("warm", True)]) == 2  # the worker's second and third cells
    assert "# warm worker" not in "".join(Path(r["logs"][-1]).read_text()
                                          for r in _manifest(stores["process"], "process")["cells"].values())
    # whole seconds (the log line and the run directory's stamp): ≤ 1 s, from ≥ 3 s per process
    assert max(startup[("warm", True)]) <= 1 < min(startup[("process", False)]), startup


def _wait(predicate, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_worker_killed_during_a_cell_is_replaced_and_the_cell_completes_on_retry(tmp_path):
    path, store = _sweep(tmp_path, "killed", methods=["hashnet"], seeds=[0, 1], epochs=[20], retries=1)
    proc = subprocess.Popen([HASHBENCH, "sweep", "run", str(path), "--jobs", "1"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        def running_cell():
            for log in sorted((store / "_sweeps" / "killed" / "logs").glob("*.attempt1.log")):
                found = re.search(r"^# warm worker pid (\d+)", log.read_text(), re.M)
                ident = log.name.split("_")[-1].split(".")[0]
                if found and resume.is_claimed(store, ident):  # in the cell: its run is claimed
                    return log, int(found.group(1)), ident
            return None
        log, pid, killed = _wait(running_cell, 240, "a cell running in a warm worker")
        os.kill(pid, signal.SIGKILL)
        _, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 0, err[-3000:]
    assert re.search(rf"failed .*{killed}.*exit status -9", err), err
    cells = _manifest(store, "killed")["cells"]
    assert {r["state"] for r in cells.values()} == {"done"} and len(resume.finished_runs(store)) == 2
    assert cells[killed]["attempts"] == 2 and sorted(r["attempts"] for r in cells.values()) == [1, 2]
    assert f"# warm worker pid {pid} died (exit status -9)" in log.read_text()
    retry = Path(cells[killed]["logs"][-1]).read_text()
    assert re.search(r"^# warm worker pid (\d+)", retry, re.M).group(1) != str(pid)
