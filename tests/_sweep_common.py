"""Shared by the engine tests (Ray, SLURM): the 4-cell digits sweep, running it, killing one
cell while it runs, and the checks on the store, the manifest and the report."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

from hashbench.benchmark import report, resume

HASHBENCH = str(Path(sys.executable).with_name("hashbench"))
SWEEP = {"name": "digits4", "methods": ["hashnet"], "datasets": ["digits"], "bits": [16, 32], "seeds": [0, 1],
         "epochs": [3], "device": "cpu", "speed": False, "retries": 0,
         "executor": {"ray": {"num_cpus": 1}, "slurm": {"cpus_per_task": 1, "time_min": 15, "array_parallelism": 2}}}


def write_sweep(tmp_path: Path) -> tuple[Path, Path]:
    """(sweep file, store) of the 4-cell digits sweep under ``tmp_path``."""
    store = tmp_path / "store"
    path = tmp_path / "digits4.yaml"
    path.write_text(yaml.safe_dump({**SWEEP, "out": str(store)}))
    return path, store


def manifest(store: Path) -> dict:
    path = store / "_sweeps" / SWEEP["name"] / "manifest.json"
    return json.loads(path.read_text()) if path.exists() else {"cells": {}}


def start_sweep(path: Path, executor: str) -> subprocess.Popen:
    return subprocess.Popen([HASHBENCH, "sweep", "run", str(path), "--executor", executor],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def first_started_cell(store: Path, started, what: str) -> tuple[str, object]:
    """(identity, ``started(record)``) of the first submitted cell, in identity order, for which
    ``started`` returns something truthy (its job running, its processes): a cell of the first wave
    (two of the four run at once), so a test need not wait for a wave to end before it kills one."""
    found: list[tuple[str, object]] = []

    def any_started() -> bool:
        cells = manifest(store)["cells"]
        found[:] = [(i, hit) for i, r in sorted(cells.items()) if r["state"] == "submitted"
                    for hit in [started(r)] if hit][:1]
        return bool(found)

    wait_for(any_started, what=what)
    return found[0]


def wait_for(predicate, timeout: float = 300, what: str = "condition") -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def finish(proc: subprocess.Popen, timeout: float = 900) -> tuple[int, str]:
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def rerun(path: Path, executor: str) -> subprocess.CompletedProcess:
    return subprocess.run([HASHBENCH, "sweep", "run", str(path), "--executor", executor], capture_output=True,
                          text=True, timeout=900)


def check_killed_then_completed(store: Path, killed: str, first: tuple[int, str], path: Path, executor: str) -> dict:
    """The first run ended with the killed cell failed and the three others done; the re-run
    submits only the killed cell and finishes it; four run directories; the report table has
    both code lengths over two seeds. Returns the final manifest."""
    code, err = first
    assert code == 1, err[-3000:]
    after_kill = manifest(store)["cells"]
    assert after_kill[killed]["state"] == "failed" and after_kill[killed]["attempts"] == 1, after_kill[killed]
    assert sorted(r["state"] for i, r in after_kill.items() if i != killed) == ["done"] * 3
    second = rerun(path, executor)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "1 of 4 cells to run" in second.stderr
    final = manifest(store)
    cells = final["cells"]
    assert {r["state"] for r in cells.values()} == {"done"}
    assert cells[killed]["attempts"] == 2 and len(cells[killed]["job_ids"]) == 2
    assert sorted(r["attempts"] for r in cells.values()) == [1, 1, 1, 2]
    runs = resume.finished_runs(store)
    assert set(runs) == set(cells) and len(runs) == 4
    report.write_report([store], store.parent / "report", ci=False, figures=False)
    table = pd.read_csv(store.parent / "report" / "table.csv")
    # the sweep's --epochs 3 departs from the shipped digits config (30 epochs): every run records the
    # settings "epochs=3" and the report names the row by them (benchmark.report.method_label)
    assert sorted(table["bits"]) == [16, 32] and set(table["n"]) == {2}, table
    assert set(table["method"]) == {f"hashnet [epochs={SWEEP['epochs'][0]}]"}, table
    print(json.dumps({"after_kill": after_kill[killed], "after_rerun": cells[killed]}, indent=1))
    return final
