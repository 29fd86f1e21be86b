"""`hashbench run --devices 2` on CPU: Lightning DDP over gloo in two processes (rank 0 evaluates
and writes the one run directory), with the metrics of a one-process run within the regression
tolerances (results/baselines/tolerances.csv: digits, HashNet, 32 bits, the shipped schedule)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

from hashbench.benchmark import regress, resume

HASHBENCH = str(Path(sys.executable).with_name("hashbench"))
TOLERANCES = Path(__file__).resolve().parent.parent / "results" / "baselines" / "tolerances.csv"
KEY = ["bits", "metric", "variant"]


def _run(out: Path, devices: int) -> Path:
    res = subprocess.run([HASHBENCH, "run", "--method", "hashnet", "--dataset", "digits", "--bits", "32",
                          "--seeds", "0", "--device", "cpu", "--devices", str(devices), "--no-speed",
                          "--no-progress", "--out", str(out)], capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    runs = list(resume.finished_runs(out).values())
    assert len(runs) == 1 and not [p for p in out.iterdir() if p.name.startswith(".tmp-")], list(out.iterdir())
    return runs[0]


def _quality(run: Path) -> pd.DataFrame:
    m = pd.read_csv(run / "metrics.csv", keep_default_na=False)
    m["variant"] = m["variant"].astype(str)
    return m[KEY + ["value"]]


def test_two_process_cpu_ddp_matches_one_process_within_tolerances(tmp_path):
    one, two = _run(tmp_path / "one", 1), _run(tmp_path / "two", 2)
    t1 = yaml.safe_load((one / "config.yaml").read_text())["training"]
    t2 = yaml.safe_load((two / "config.yaml").read_text())["training"]
    assert (t1["world_size"], t2["world_size"]) == (1, 2)
    assert t2["global_step"] == t1["global_step"]  # batch_size is global: same number of optimizer steps

    tol = regress.read_table(TOLERANCES)
    tol = tol[(tol["dataset"] == "digits") & (tol["method"] == "hashnet") & (tol["run_bits"] == 32)
              & (tol["kind"] == "quality")]
    joined = tol[KEY + ["tolerance"]].merge(_quality(one), on=KEY).merge(_quality(two), on=KEY, suffixes=("_1", "_2"))
    assert len(joined) > 10  # the quality rows a run without speed measurements produces
    joined["delta"] = joined["value_2"] - joined["value_1"]
    outside = joined[joined["delta"].abs() > joined["tolerance"]]
    assert outside.empty, outside.to_string()
