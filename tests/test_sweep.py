"""Sweep files: validation (one `error:` line, nothing submitted), expansion into cells with run
identities, and the local executor: a grid run, then run again (nothing resubmitted), a cell whose
run directory was removed is the only one rerun, the manifest and the report over the store."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hashbench.benchmark import resume
from hashbench.benchmark.sweep import executors
from hashbench.benchmark.sweep.spec import SweepError, load_sweep

HASHBENCH = str(Path(sys.executable).with_name("hashbench"))
GRID = {"methods": ["lsh"], "datasets": ["digits"], "bits": [16, 32], "seeds": [0], "device": "cpu",
        "speed": False, "retries": 0}


def _write(tmp_path: Path, doc: dict, name: str = "grid.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.parametrize("change, message", [
    ({"methods": ["nosuch"]}, "unknown method 'nosuch'"),
    ({"datasets": ["nosuch"]}, "unknown dataset 'nosuch'"),
    ({"protocols": ["nosuch"]}, "unknown protocol 'nosuch'"),
    ({"variants": ["nosuch"]}, "unknown variant 'nosuch'"),
    ({"colour": ["red"]}, "unknown key 'colour'"),
    ({"seeds": []}, "axis 'seeds' is empty"),
    ({"bits": ["x"]}, "axis 'bits' wants integers"),
    ({"device": "tpu"}, "'device' must be auto, cpu or gpu"),
    ({"grids": [{"methods": ["itq"], "sed": [1]}]}, "grids[0]: unknown key 'sed'"),
    ({"executor": {"kubernetes": {}}}, "unknown key 'kubernetes'"),
    ({"executor": {"slurm": {"partitions": "gpu"}}}, "executor.slurm: unknown key 'partitions'"),
])
def test_bad_sweep_files_fail_with_one_line(tmp_path, change, message):
    doc = {**GRID, **change}
    with pytest.raises(SweepError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_sweep(_write(tmp_path, doc))


def test_cli_error_line_and_nothing_submitted(tmp_path):
    path = _write(tmp_path, {**GRID, "methods": ["lsh", "nosuch"], "out": str(tmp_path / "store")})
    res = subprocess.run([HASHBENCH, "sweep", "run", str(path)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 2
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "unknown method 'nosuch'" in lines[0]
    assert not (tmp_path / "store").exists()


def test_missing_engine_package_is_one_error_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the [cluster] extra were not installed
    with pytest.raises(ValueError, match=r"needs the 'ray' package: pip install -e '\.\[cluster\]'"):
        executors.make_executor("ray", {}, tmp_path, "x")


def test_grids_expand_to_unique_identities(tmp_path):
    doc = {**GRID, "grids": [{"methods": ["lsh", "itq"]}, {"methods": ["lsh"], "set": [{}, {"seed_offset": 1}]}]}
    doc.pop("methods")
    sweep = load_sweep(_write(tmp_path, doc))
    # grid 0: 2 methods x 2 bits; grid 1 repeats lsh with {} (same identities) and adds one override
    assert len(sweep.cells) == 4 + 2
    assert len({c.identity for c in sweep.cells}) == 6
    cmd = next(c for c in sweep.cells if c.overrides).command(sweep.out, None)
    assert "--resume" in cmd and cmd[cmd.index("--set") + 1] == "seed_offset=1"


def test_local_sweep_runs_once_and_reruns_only_what_is_missing(tmp_path):
    store = tmp_path / "store"
    path = _write(tmp_path, {**GRID, "name": "lsh-grid", "out": str(store)})
    run = lambda: subprocess.run([HASHBENCH, "sweep", "run", str(path), "--jobs", "2"],  # noqa: E731
                                 capture_output=True, text=True, timeout=600)
    first = run()
    assert first.returncode == 0, first.stderr[-3000:]
    runs = resume.finished_runs(store)
    assert len(runs) == 2
    manifest = json.loads((store / "_sweeps" / "lsh-grid" / "manifest.json").read_text())
    assert {r["state"] for r in manifest["cells"].values()} == {"done"}
    assert all(r["attempts"] == 1 and Path(r["logs"][0]).is_file() for r in manifest["cells"].values())

    again = run()  # idempotent: nothing left to submit
    assert again.returncode == 0 and "to run" not in again.stderr
    assert resume.finished_runs(store) == runs

    gone_id, gone_dir = sorted(runs.items())[0]
    subprocess.run(["rm", "-rf", str(gone_dir)], check=True)
    third = run()
    assert third.returncode == 0 and "1 of 2 cells to run" in third.stderr
    manifest = json.loads((store / "_sweeps" / "lsh-grid" / "manifest.json").read_text())
    assert manifest["cells"][gone_id]["attempts"] == 2
    assert sorted(r["attempts"] for r in manifest["cells"].values()) == [1, 2]

    status = subprocess.run([HASHBENCH, "sweep", "status", str(path)], capture_output=True, text=True, timeout=300)
    assert status.returncode == 0 and "2 done, 0 running, 0 failed, 0 pending" in status.stdout


def _env_task(tmp_path, name, env=None):
    script = "import os; print(os.environ.get('OMP_NUM_THREADS'), os.environ.get('MKL_NUM_THREADS'))"
    return executors.Task(key=name, argv=[sys.executable, "-c", script], log=tmp_path / f"{name}.log",
                          env=env or {}, devices=1, gpu=False)


def test_cell_threads_share_the_cores():
    assert executors.cell_threads(1, cores=2) == 2
    assert executors.cell_threads(2, cores=2) == 1
    assert executors.cell_threads(3, cores=2) == 1
    assert executors.cell_threads(4, cores=16) == 4


def test_local_executor_gives_each_concurrent_cell_its_share_of_threads(tmp_path, monkeypatch):
    for var in executors.THREAD_VARIABLES:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(executors, "cell_threads", lambda jobs, cores=None: 7 if jobs == 2 else 99)
    for jobs, expected in ((2, "7 7"), (1, "None None")):
        ex = executors.LocalExecutor(jobs)
        try:
            done = list(ex.as_completed(ex.submit([_env_task(tmp_path, f"j{jobs}")])))
        finally:
            ex.close()
        assert done[0][1]["returncode"] == 0
        assert (tmp_path / f"j{jobs}.log").read_text().splitlines()[-1] == expected
    # what the user or the task sets wins
    monkeypatch.setenv("MKL_NUM_THREADS", "3")
    ex = executors.LocalExecutor(2)
    try:
        list(ex.as_completed(ex.submit([_env_task(tmp_path, "own", {"OMP_NUM_THREADS": "5"})])))
    finally:
        ex.close()
    assert (tmp_path / "own.log").read_text().splitlines()[-1] == "5 3"
