"""hashbench/tools/compare_stores.py: the cell-by-cell agreement of two run stores (hand-computed
tolerances and differences), the per-cell start-up time from a cell log, and the command on two
real digits stores that agree and one that does not."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from hashbench.tools import compare_stores as cmp

HASHBENCH = str(Path(sys.executable).with_name("hashbench"))



def _table(values):
    """rows of (method, bits, seed, value) in one dataset/protocol, no settings"""
    return pd.DataFrame([{"method_base": m, "settings": "", "dataset": "d", "protocol": "p", "bits": b, "seed": s,
                          "value": v} for m, b, s, v in values])


def test_compare_hand_computed():
    ref = _table([("a", 8, 0, 0.50), ("a", 8, 1, 0.52), ("a", 8, 2, 0.54),   # std 0.02 -> tolerance 0.06
                  ("b", 8, 0, 0.30),                                          # one seed -> floor 0.005
                  ("c", 8, 0, 0.10), ("c", 8, 1, 0.10)])                      # std 0 -> floor
    new = _table([("a", 8, 0, 0.55), ("a", 8, 1, 0.52), ("a", 8, 2, 0.54),   # |diff| 0.05 <= 0.06
                  ("b", 8, 0, 0.306),                                         # 0.006 > 0.005
                  ("c", 8, 0, 0.10)])                                         # seed 1 missing
    cells, groups = cmp.compare(ref, new)
    assert len(cells) == 6 and cells["new"].isna().sum() == 1
    g = groups.set_index("method_base")
    assert g.loc["a", "tolerance"] == pytest.approx(0.06)
    assert g.loc["a", "max_abs_diff"] == pytest.approx(0.05)
    assert g.loc["a", "new"] == pytest.approx((0.55 + 0.52 + 0.54) / 3)
    assert g.loc["b", "tolerance"] == pytest.approx(0.005) and g.loc["c", "tolerance"] == pytest.approx(0.005)
    assert g["within"].to_dict() == {"a": True, "b": False, "c": False}
    assert (g.loc["c", "seeds"], g.loc["c", "matched"]) == (2, 1)


def test_startup_seconds_from_the_last_attempt():
    log = ("# 2026-12-04T16:44:10Z on vm: hashbench run ...\nkilled\n"
           "# 2026-12-04T16:50:01Z on vm: hashbench run ...\n# cifar10 / p: ...\n")
    assert cmp.startup_seconds(log, "/s/2026-12-04T165008Z_pq_cifar10_p_8b_s1") == 7.0
    assert math.isnan(cmp.startup_seconds("no header", "/s/2026-12-04T165008Z_pq"))


def _digits_store(tmp_path, name, seeds):
    out = tmp_path / name
    subprocess.run([HASHBENCH, "run", "--method", "lsh", "--dataset", "digits", "--bits", "16", "--seeds", seeds,
                    "--no-speed", "--no-progress", "--out", str(out)], check=True, capture_output=True, timeout=300)
    return out


def test_command_on_real_stores(tmp_path):
    ref = _digits_store(tmp_path, "ref", "0,1")
    same = _digits_store(tmp_path, "same", "0,1")  # LSH is deterministic per seed: identical values
    other = _digits_store(tmp_path, "other", "2,3")  # other seeds: the reference cells are missing
    script = [sys.executable, "-m", "hashbench.tools.compare_stores"]
    ok = subprocess.run([*script, str(ref), str(same)], capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert "1 groups (2 reference cells, 2 matched): 1 within tolerance, 0 not; largest |diff| 0.0000" in ok.stdout
    bad = subprocess.run([*script, str(ref), str(other)], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1 and "2 reference cells, 0 matched): 0 within tolerance, 1 not" in bad.stdout


def test_manifest_times(tmp_path):
    log = tmp_path / "c.log"
    log.write_text("# 2026-12-04T16:44:10Z on vm: x\n")
    manifest = {"cells": {"k": {"state": "done", "method": "pq", "bits": 8, "seed": 0, "seconds": 30.0,
                                "train_seconds": 4.0, "logs": [str(log)],
                                "run_dir": "/s/2026-12-04T164416Z_pq_d_p_8b_s0"},
                          "f": {"state": "failed", "method": "pq", "bits": 8, "seed": 1, "logs": [str(log)]}}}
    times = cmp.cell_times(json.loads(json.dumps(manifest)))
    assert times.to_dict("records") == [{"method": "pq", "bits": 8, "seed": 0, "seconds": 30.0, "startup_seconds": 6.0,
                                         "train_seconds": 4.0, "rest_seconds": 20.0}]
