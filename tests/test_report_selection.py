"""Which runs a report holds: one run per cell by a stated policy with every dropped run listed,
settings from the recorded column, regression work and unfinished runs passed over, the one-off
settings migration, and files a colleague on a shared filesystem can read."""
from __future__ import annotations

import os
import stat

import numpy as np
import pandas as pd
import pytest
import yaml

from hashbench.benchmark import regress, report, store
from hashbench.benchmark.cli import main
from runfiles import write_run

AP_OLD, AP_NEW = np.full(50, 0.484), np.full(50, 0.400)


def _two_runs_of_one_cell(root):
    old = write_run(root, "itq", 16, 0, AP_OLD, name="old", timestamp="2026-01-01T00:00:00Z")
    new = write_run(root, "itq", 16, 0, AP_NEW, name="new", timestamp="2026-01-02T00:00:00Z")
    return old, new


def _map(frame) -> float:
    rows = report.main_rows(frame)
    return float(rows["value"].mean())


@pytest.mark.parametrize("policy,expected", [("newest", 0.400), ("oldest", 0.484), ("all", 0.442)])
def test_duplicates_policy(tmp_path, policy, expected):
    _two_runs_of_one_cell(tmp_path / "runs")
    col = report.collect_runs([tmp_path / "runs"], duplicates=policy)
    assert _map(col.frame) == pytest.approx(expected)
    dropped = col.selection[~col.selection["kept"]]
    assert len(dropped) == (0 if policy == "all" else 1)
    if policy == "newest":
        assert dropped["run_dir"].str.endswith("old").all() and "older duplicate of new" in dropped["reason"].item()


def test_duplicates_error_names_both_runs(tmp_path):
    _two_runs_of_one_cell(tmp_path / "runs")
    with pytest.raises(ValueError, match="2 runs of one cell.*old.*new"):
        report.collect_runs([tmp_path / "runs"], duplicates="error")
    with pytest.raises(ValueError, match="unknown duplicates policy"):
        report.collect_runs([tmp_path / "runs"], duplicates="first")


def test_report_lists_the_dropped_run_and_the_runs_it_holds(tmp_path):
    _two_runs_of_one_cell(tmp_path / "runs")
    write_run(tmp_path / "runs", "itq", 16, 1, AP_NEW, name="seed1")
    report.write_report([tmp_path / "runs"], tmp_path / "rep", figures=False, ci=False)
    md = (tmp_path / "rep" / "table.md").read_text()
    assert "0.400 ± 0.000" in md and "0.484" not in md.split("_")[0]
    assert "2 run directories held" in md and "--duplicates newest" in md
    assert f"`{tmp_path / 'runs' / 'old'}` at 16 bits: older duplicate of new" in md
    held = pd.read_csv(tmp_path / "rep" / "runs.csv")
    assert sorted(held.loc[held["kept"], "run_dir"].map(lambda p: p.rsplit("/", 1)[1])) == ["new", "seed1"]


def test_cli_duplicates_flag(tmp_path, capsys):
    _two_runs_of_one_cell(tmp_path / "runs")
    assert main(["report", str(tmp_path / "runs"), "--out", str(tmp_path / "r"), "--no-figures", "--no-ci",
                 "--duplicates", "error"]) == 2
    assert "2 runs of one cell" in capsys.readouterr().err


def test_runs_with_other_settings_are_other_rows_and_seeds_pool_within_settings(tmp_path):
    root = tmp_path / "runs"
    for seed in (0, 1):
        write_run(root, "dht", 16, seed, np.full(10, 0.5 + 0.1 * seed), name=f"plain{seed}")
        write_run(root, "dht", 16, seed, np.full(10, 0.2), name=f"tuned{seed}", settings="epochs=5,sparsity=2")
    col = report.collect_runs([root])
    assert (col.selection["kept"]).all()
    summ = report.summary(report.main_rows(col.frame)).set_index("method")
    assert summ.at["dht", "n"] == 2 and summ.at["dht", "mean"] == pytest.approx(0.55)
    assert summ.at["dht [epochs=5,sparsity=2]", "mean"] == pytest.approx(0.2)
    assert set(col.frame["method_base"]) == {"dht"}


def test_a_prefix_evaluation_gives_way_to_the_run_trained_at_that_length(tmp_path):
    root = tmp_path / "runs"
    d32 = write_run(root, "drq", 32, 0, np.full(10, 0.6), name="drq32")
    m = pd.read_csv(d32 / "metrics.csv")
    pd.concat([m, m[m["metric"] != "train_seconds"].assign(bits=16, value=0.1)]).to_csv(d32 / "metrics.csv",
                                                                                        index=False)
    write_run(root, "drq", 16, 0, np.full(10, 0.5), name="drq16", timestamp="2025-01-01T00:00:00Z")
    col = report.collect_runs([root])
    dropped = col.selection[~col.selection["kept"]]
    assert dropped[["bits", "run_bits"]].values.tolist() == [[16, 32]]
    assert "drq16 trained at this length" in dropped["reason"].item()


def test_unfinished_runs_and_regression_work_are_passed_over_and_said(tmp_path):
    root = tmp_path / "results"
    write_run(root / "runs", "itq", 16, 0, AP_NEW, name="kept")
    write_run(root / "runs", "itq", 16, 0, AP_OLD, name=".tmp-itq-xyz")
    write_run(root / "regress-runs" / "2026_s0" / "runs" / "digits", "itq", 16, 0, AP_OLD, name="r")
    suite = root / "runs" / "regress" / "old_s0"               # a suite run in the old location
    write_run(suite / "runs" / "digits", "itq", 16, 0, AP_OLD, name="r2")
    (suite / "suite.json").write_text("{}")
    col = report.collect_runs([root])
    assert col.selection["run_dir"].tolist() == [str(root / "runs" / "kept")]
    reasons = {p.name: why for p, why in col.skipped}
    assert set(reasons) == {".tmp-itq-xyz", "regress-runs", "old_s0"}
    assert "unfinished" in reasons[".tmp-itq-xyz"] and "regression" in reasons["regress-runs"]
    report.write_report([root], tmp_path / "rep", figures=False, ci=False)
    assert "Passed over (3)" in (tmp_path / "rep" / "table.md").read_text()
    # named explicitly, regression work is reported
    assert len(report.collect_runs([root / "regress-runs"]).selection) == 1


def test_regression_runs_go_outside_the_result_store():
    assert store.REPO_ROOT / "results" / "runs" not in regress.WORK_DIR.parents
    assert regress.WORK_DIR.name in store.REGRESS_FOLDERS


# ----------------------------------------------------------------------------- settings column


def test_settings_string_names_only_departures():
    shipped = {"epochs": 100, "lr": 0.0005, "backbone": None}
    assert store.settings_string(None, {"epochs": None, "backbone": None}, shipped) == ""
    assert store.settings_string(None, {"lr": 5e-4, "epochs": 100}, shipped) == ""
    assert store.settings_string("npairs", {"lr": 0.001, "epochs": 5, "backbone": None}, shipped) == \
        "variant=npairs,epochs=5,lr=0.001"


def test_request_settings_against_the_shipped_config():
    # hashnet's shipped cifar10 block has image_size 160 and epochs 100
    req = {"method": "hashnet", "dataset": "cifar10", "overrides": {"image_size": 160}, "epochs": None}
    assert store.request_settings(req) == ""
    assert store.request_settings({**req, "epochs": 20, "variant": "no-weighting"}) == "variant=no-weighting,epochs=20"
    assert store.request_settings({"method": "gone", "overrides": {"a": 1}}) == "a=1"


def test_migration_adds_settings_and_keeps_every_value(tmp_path):
    d = write_run(tmp_path, "dht", 16, 0, np.full(10, 0.5))
    m = pd.read_csv(d / "metrics.csv", dtype=str, keep_default_na=False).drop(columns="settings")
    m.loc[0, "value"] = "0.12345678901234567"
    m.loc[1, "value"] = "nan"
    m.to_csv(d / "metrics.csv", index=False)
    before = (d / "metrics.csv").read_text().splitlines()
    (d / "config.yaml").write_text(yaml.safe_dump({"request": {"method": "dht", "dataset": "cifar10",
                                                               "overrides": {"sparsity": 2}, "epochs": None}}))
    with pytest.raises(ValueError, match="add_settings_column.py"):
        report.load_runs([tmp_path])
    assert store.add_settings_column(d) is True and store.add_settings_column(d) is False
    after = pd.read_csv(d / "metrics.csv", dtype=str, keep_default_na=False)
    assert list(after.columns) == store.METRIC_COLUMNS and (after["settings"] == "sparsity=2").all()
    assert after.drop(columns="settings").to_csv(index=False).splitlines() == before
    assert report.load_runs([tmp_path])["method"].iloc[0] == "dht [sparsity=2]"


def test_regression_tables_without_settings_get_the_suite_settings(tmp_path):
    old = tmp_path / "old.csv"
    pd.DataFrame({"dataset": ["digits", "cifar10", "cifar10"], "protocol": "p", "method": ["itq", "hashnet", "itq"],
                  "run_bits": 16, "bits": 16, "metric": "map@all", "variant": "v", "value": 0.5,
                  "kind": "quality", "git_revision": "r", "hardware": "h"}).to_csv(old, index=False)
    t = regress.read_table(old)
    assert t["settings"].tolist() == ["", "epochs=20", ""]
    assert list(t.columns[:4]) == ["dataset", "protocol", "method", "settings"]


# ----------------------------------------------------------------------------- shared filesystem


@pytest.mark.parametrize("umask,dir_mode,file_mode", [(0o022, 0o755, 0o644), (0o027, 0o750, 0o640)])
def test_written_files_follow_the_umask(tmp_path, umask, dir_mode, file_mode):
    old = os.umask(umask)
    try:
        writer = store.RunWriter(tmp_path / "runs", "r")
        writer.write_frame("metrics.csv", pd.DataFrame({"a": [1]}))
        run = writer.commit()
        store.write_csv_atomic(pd.DataFrame({"a": [1]}), tmp_path / "t.csv")
        store.write_text_atomic("x", tmp_path / "t.md")
    finally:
        os.umask(old)
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    assert mode(run) == dir_mode
    assert mode(run / "metrics.csv") == mode(tmp_path / "t.csv") == mode(tmp_path / "t.md") == file_mode


def test_notes_name_the_folders_and_count_runs_named_one_by_one(tmp_path):
    a = write_run(tmp_path / "sparse", "dht", 16, 0, AP_NEW, name="a")
    b = write_run(tmp_path / "sparse", "dht", 16, 1, AP_NEW, name="b")
    write_run(tmp_path / "runs", "itq", 16, 0, AP_NEW, name="c")
    text = report._describe_roots([tmp_path / "runs", a, b])
    assert text == f"{tmp_path / 'runs'}, 2 runs of {tmp_path / 'sparse'} named one by one"
