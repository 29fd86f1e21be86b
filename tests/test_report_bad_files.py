"""A result store with broken files: a corrupt ``metrics.csv`` stops a report with a message naming
the file and the run, and ``--skip-unreadable`` reports the other runs and lists the broken ones;
Ctrl-C during a run ends with one line, exit status 130 and nothing written."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hashbench.benchmark import report, store
from hashbench.benchmark.cli import main
from runfiles import write_run

AP = np.full(20, 0.5)
BROKEN = {
    "open quote": 'method,dataset\n"itq,cifar10\n',        # pandas: EOF inside string
    "empty file": "",
    "no metric columns": "a,b\n1,2\n",
    "not utf-8": b"\xff\xfe\x00m\x00e".decode("latin-1"),
}


def _store_with_broken(root: Path, content: str) -> Path:
    write_run(root, "itq", 16, 0, AP, name="good")
    bad = write_run(root, "lsh", 16, 0, AP, name="bad")
    (bad / "metrics.csv").write_bytes(content.encode("latin-1"))
    return bad


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_a_broken_metrics_file_is_named_with_its_run(tmp_path, kind):
    bad = _store_with_broken(tmp_path / "runs", BROKEN[kind])
    with pytest.raises(store.UnreadableRunError) as err:
        report.collect_runs([tmp_path / "runs"])
    assert str(bad / "metrics.csv") in str(err.value) and "run bad" in str(err.value)
    assert "--skip-unreadable" in str(err.value)


def test_skip_unreadable_reports_the_others_and_lists_the_broken_run(tmp_path):
    bad = _store_with_broken(tmp_path / "runs", BROKEN["open quote"])
    col = report.collect_runs([tmp_path / "runs"], skip_unreadable=True)
    assert set(col.frame["method"]) == {"itq"}
    assert [(p, why.split(":")[0]) for p, why in col.skipped] == [(bad, "unreadable metrics.csv")]
    report.write_report([tmp_path / "runs"], tmp_path / "rep", figures=False, ci=False, skip_unreadable=True)
    md = (tmp_path / "rep" / "table.md").read_text()
    assert "Passed over (1)" in md and f"`{bad}`: unreadable metrics.csv" in md
    assert "| itq |                   0.5 |" in md


def test_nothing_readable_is_an_error(tmp_path):
    bad = write_run(tmp_path / "runs", "lsh", 16, 0, AP, name="bad")
    (bad / "metrics.csv").write_text("")
    with pytest.raises(FileNotFoundError, match="no readable run"):
        report.collect_runs([tmp_path / "runs"], skip_unreadable=True)


def test_cli_report_names_the_file_then_skips_it(tmp_path, capsys, caplog):
    bad = _store_with_broken(tmp_path / "runs", BROKEN["open quote"])
    argv = ["report", str(tmp_path / "runs"), "--out", str(tmp_path / "rep"), "--no-figures", "--no-ci"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {bad / 'metrics.csv'} (run bad) is unreadable")
    assert main(argv + ["--skip-unreadable"]) == 0
    assert f"skipped: {bad / 'metrics.csv'}" in caplog.text  # the hashbench logger's line on stderr
    assert pd.read_csv(tmp_path / "rep" / "table.csv")["method"].tolist() == ["itq"]


def test_ctrl_c_during_training_is_one_line_status_130_and_no_run(tmp_path):
    hashbench = str(Path(sys.executable).with_name("hashbench"))
    out = tmp_path / "runs"
    argv = [hashbench, "run", "--method", "hashnet", "--dataset", "digits", "--bits", "16", "--seeds", "0",
            "--epochs", "5000", "--device", "cpu", "--no-speed", "--no-progress", "--out", str(out)]  # never ends first
    # SIGINT's default action restored in the child: a shell starts background jobs with SIGINT
    # ignored, and Python then installs no KeyboardInterrupt handler (the run would ignore Ctrl-C, as under nohup)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:   # the first epoch logged: training runs
        if list(out.glob(".tmp-*/logs/metrics.csv")):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    os.kill(proc.pid, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-2000:]
    lines = [line for line in stderr.strip().splitlines() if not line.startswith("# digits")]  # the split line
    assert lines == ["error: interrupted"], stderr[-2000:]
    assert list(out.iterdir()) == [], "an interrupted run must leave nothing in the store"
