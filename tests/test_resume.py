"""`hashbench run --resume`: a training killed with SIGKILL continues from its last checkpoint
and ends with the metrics of an uninterrupted run (CPU, deterministic); a finished identity is
not rerun; a second writer of the same identity backs off."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

from hashbench.benchmark import resume

HASHBENCH = [str(Path(sys.executable).with_name("hashbench"))]
ARGS = ["run", "--method", "hashnet", "--dataset", "digits", "--bits", "16", "--seeds", "0", "--epochs", "6",
        "--device", "cpu", "--no-speed", "--no-progress"]


def _run(out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(HASHBENCH + ARGS + ["--out", str(out), *extra], capture_output=True, text=True, timeout=600)


def _metrics(run_dir: Path) -> pd.Series:
    m = pd.read_csv(run_dir / "metrics.csv", keep_default_na=False)
    m = m[~m["metric"].str.endswith("_seconds")]
    return m.set_index(["bits", "metric", "variant"])["value"].astype(float).sort_index()


def _only_run(out: Path) -> Path:
    runs = list(resume.finished_runs(out).values())
    assert len(runs) == 1, runs
    return runs[0]


def test_killed_training_resumes_to_the_uninterrupted_metrics(tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert _run(whole).returncode == 0
    proc = subprocess.Popen(HASHBENCH + ARGS + ["--out", str(killed), "--resume"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    ckpt = None
    while time.time() < deadline and proc.poll() is None:
        found = list(killed.glob(f"{resume.RESUME_PREFIX}*/{resume.LAST_CHECKPOINT}"))
        if found:
            ckpt = found[0]
            break
        time.sleep(0.05)
    assert ckpt is not None, "no last checkpoint appeared before the run ended"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert resume.finished_runs(killed) == {}, "a killed run must not publish a run directory"
    assert ckpt.parent.parent.is_dir(), "the killed run's hidden directory is kept for the rerun"

    res = _run(killed, "--resume")
    assert res.returncode == 0, res.stderr[-2000:]
    run = _only_run(killed)
    training = yaml.safe_load((run / "config.yaml").read_text())["training"]
    assert training["resumed_from_epoch"] is not None and training["resumed_from_epoch"] < 5
    assert len(training["epochs"]) == 6  # the epochs timed before the kill are kept
    assert not list(killed.glob(f"{resume.RESUME_PREFIX}*")), "the resume directory was published"
    assert not (run / resume.LAST_CHECKPOINT).exists()
    pd.testing.assert_series_equal(_metrics(run), _metrics(_only_run(whole)), check_exact=False, rtol=1e-6)

    again = _run(killed, "--resume")  # a finished identity is not rerun
    assert again.returncode == 0 and "not rerun" in again.stderr
    assert _only_run(killed) == run


def test_a_held_claim_backs_off(tmp_path):
    other = tmp_path / "other"
    args = ["--epochs", "1", "--resume"]
    from hashbench.benchmark.runner import RunRequest, request_identity

    ident = request_identity(RunRequest(method="hashnet", dataset="digits", bits=16, seed=0, epochs=1),
                             "query300-db1497")
    with resume.Claim(other, ident):  # another live writer of the same identity
        assert resume.is_claimed(other, ident)
        busy = _run(other, *args)
    assert busy.returncode == 75, busy.stderr[-2000:]
    assert "another process is running this run" in busy.stderr
    assert resume.finished_runs(other) == {} and not list(other.glob(f"{resume.RESUME_PREFIX}*"))
    assert not resume.is_claimed(other, ident)


def test_two_writers_of_one_identity_never_collide(tmp_path):
    out = tmp_path / "runs"
    argv = HASHBENCH + ["run", "--method", "lsh", "--dataset", "digits", "--bits", "16", "--seeds", "0",
                        "--device", "cpu", "--no-speed", "--no-progress", "--out", str(out), "--resume"]
    procs = [subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    # one wins; the other found the claim held (75) or, started later, the finished run (0, not rerun)
    assert codes in ([0, 0], [0, 75]), results
    assert len(resume.finished_runs(out)) == 1
    assert not [p for p in out.iterdir() if p.name.startswith(".tmp-")]
