"""The `slurm` executor through submitit on a real one-node SLURM cluster of this machine
(munged, MariaDB + slurmdbd, slurmctld, slurmd started by scripts/dev/slurm_localhost.sh on
127.0.0.1, installed with apt-get when missing): the 4-cell digits sweep as a job array, one
cell's job cancelled with scancel while it runs, the re-run completes only that cell."""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from _sweep_common import (HASHBENCH, check_killed_then_completed, finish, first_started_cell, manifest,
                           start_sweep, write_sweep)
from hashbench.benchmark import resume

pytest.importorskip("submitit", reason="the slurm executor needs the [cluster] extra (pip install -e '.[cluster]')")

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "dev" / "slurm_localhost.sh"


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    """A one-node cluster for this module's tests; its daemons are stopped afterwards."""
    state = tmp_path_factory.mktemp("slurm")
    res = subprocess.run(["bash", str(SCRIPT), "start", str(state)], capture_output=True, text=True, timeout=600)
    if res.returncode != 0:
        subprocess.run(["bash", str(SCRIPT), "stop", str(state)], capture_output=True, timeout=120)
        why = (res.stderr.strip().splitlines() or [f"exit status {res.returncode}"])[-1]
        pytest.skip(f"no local SLURM cluster: {why}")
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(state / "slurm.conf")
    try:
        yield state
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop", str(state)], capture_output=True, timeout=120)
        if old is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old


def _job_state(job_id: str) -> str:
    res = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True, timeout=60)
    return res.stdout.strip()


def _running_job(rec: dict) -> str | None:
    """The cell's job id while SLURM runs it, else None."""
    job = rec["job_ids"][0] if rec["job_ids"] else None
    return job if job and _job_state(job) == "RUNNING" else None


def test_slurm_sweep_scancel_one_cell_and_rerun(slurm_cluster, tmp_path):
    path, store = write_sweep(tmp_path)
    proc = start_sweep(path, "slurm")
    try:
        ident, job = first_started_cell(store, _running_job, what="a cell's job to run")
        subprocess.run(["scancel", job], check=True, timeout=60)
        first = finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    final = check_killed_then_completed(store, ident, first, path, "slurm")
    # the first submission was one job array (ids ARRAYID_INDEX); the re-run's single cell a plain job
    assert all("_" in r["job_ids"][0] for r in final["cells"].values())


def test_slurm_two_task_cell_trains_with_ddp(slurm_cluster, tmp_path):
    """A cell with `devices: 2` is one SLURM job of two tasks; Lightning takes the two DDP ranks
    from SLURM's environment (gloo on CPU), rank 0 writes the one run directory."""
    store = tmp_path / "store"
    path = tmp_path / "ddp.yaml"
    path.write_text(yaml.safe_dump({"name": "digits4", "out": str(store), "methods": ["hashnet"], "datasets": ["digits"],
                                    "bits": [32], "seeds": [0], "epochs": [2], "device": "cpu", "devices": 2,
                                    "speed": False, "retries": 0,
                                    "executor": {"slurm": {"cpus_per_task": 1, "time_min": 15}}}))
    done = subprocess.run([HASHBENCH, "sweep", "run", str(path), "--executor", "slurm"], capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    (cell,) = manifest(store)["cells"].values()
    assert cell["state"] == "done", cell
    runs = list(resume.finished_runs(store).values())
    assert len(runs) == 1 and not [p for p in store.iterdir() if p.name.startswith(".tmp-")], list(store.iterdir())
    training = yaml.safe_load((runs[0] / "config.yaml").read_text())["training"]
    assert training["world_size"] == 2, training
    # both tasks ran the cell's command (run_cell writes one header line per start into the log)
    log = Path(cell["logs"][-1]).read_text()
    assert len(re.findall(r"^# \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ on ", log, flags=re.M)) == 2, log[-3000:]
