"""The metric-table regression: tolerance rule, verdicts, baseline acceptance, the CLI's exit
status, bit-for-bit repeatability of the suite, and the small CIFAR-10 protocol it uses."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from hashbench import datasets as D
from hashbench.benchmark import regress
from hashbench.benchmark.cli import main
from hashbench.datasets.base import ArrayData

MAP_DEFAULT = "denominator=relevant_retrieved,empty=zero,ties=expected"
SPEED = "backend=faiss_binary_flat,reference=faiss_flat_l2_features,threads=1"


def _table(rows) -> pd.DataFrame:
    """Regression rows from (dataset, method, bits, metric, variant, value) tuples."""
    recs = [dict(dataset=d, protocol="p", method=m, run_bits=b, bits=b, metric=metric, variant=v, value=x,
                 kind=regress.kind_of(metric), git_revision="r", hardware="h") for d, m, b, metric, v, x in rows]
    return pd.DataFrame(recs, columns=regress.TABLE_COLUMNS)


# ----------------------------------------------------------------------------- rule


@pytest.mark.parametrize("metric,kind", [("map@all", "quality"), ("precision@100", "quality"),
                                         ("nmi_kmeans", "quality"), ("speedup_wallclock@100", "speed_ratio"),
                                         ("search_seconds@100", None), ("train_seconds", None),
                                         ("feature_seconds", None)])
def test_kind_of(metric, kind):
    assert regress.kind_of(metric) == kind


def test_regression_table_drops_timings_and_other_lengths():
    metrics = pd.DataFrame({
        "method": "drq", "dataset": "digits", "protocol": "p", "backbone": "b", "seed": 0, "git_revision": "r",
        "config_hash": "c", "settings": "", "hardware": "h", "timestamp": "t",
        "bits": [8, 16, 32, 32, 32, 32], "metric": ["map@all", "map@all", "map@all", "train_seconds",
                                                     "search_seconds@100", "speedup_wallclock@100"],
        "variant": [MAP_DEFAULT] * 3 + [np.nan, SPEED, SPEED], "value": [0.1, 0.2, 0.3, 9.0, 0.01, 2.0]})
    t = regress.regression_table(metrics, run_bits=32, keep_bits=(16, 32))
    assert t[["bits", "metric", "kind"]].values.tolist() == [[16, "map@all", "quality"], [32, "map@all", "quality"],
                                                             [32, "speedup_wallclock@100", "speed_ratio"]]
    assert (t["run_bits"] == 32).all() and list(t.columns) == regress.TABLE_COLUMNS


def test_calibrate_follows_the_written_rule():
    seeds = [_table([("digits", "itq", 16, "map@all", MAP_DEFAULT, v), ("digits", "pq", 16, "map@all", MAP_DEFAULT, 0.5),
                     ("digits", "itq", 16, "speedup_wallclock@100", SPEED, s)])
             for v, s in ((0.80, 1.0), (0.82, 2.0), (0.84, 4.0))]
    tol = regress.calibrate(seeds).set_index(["method", "metric"])
    # itq mAP: σ = 0.02 (ddof=1) → 3σ = 0.06; pq: σ = 0 → the floor 0.005.
    assert tol.at[("itq", "map@all"), "std"] == pytest.approx(0.02)
    assert tol.at[("itq", "map@all"), "tolerance"] == pytest.approx(0.06)
    assert tol.at[("pq", "map@all"), "tolerance"] == regress.QUALITY_FLOOR
    # speed ratios 1, 2, 4: ln-values 0, ln2, 2ln2 → σ = ln 2 → tolerance 3 ln 2 (log scale).
    assert tol.at[("itq", "speedup_wallclock@100"), "tolerance"] == pytest.approx(3 * math.log(2))
    assert tol.at[("itq", "speedup_wallclock@100"), "scale"] == "log"
    assert (tol["n_seeds"] == 3).all()
    with pytest.raises(ValueError, match="at least 2"):
        regress.calibrate(seeds[:1])


def test_speed_floor_applies_to_identical_ratios():
    seeds = [_table([("digits", "lsh", 16, "speedup_wallclock@100", SPEED, 2.0)])] * 3
    assert regress.calibrate(seeds)["tolerance"].item() == pytest.approx(math.log(3))


# ----------------------------------------------------------------------------- verdicts


def _base_and_now():
    base = _table([
        ("digits", "itq", 16, "map@all", MAP_DEFAULT, 0.80),
        ("digits", "pq", 16, "map@all", MAP_DEFAULT, 0.70),
        ("digits", "lsh", 16, "map@all", MAP_DEFAULT, 0.50),
        ("digits", "drq", 16, "map@all", MAP_DEFAULT, 0.90),
        ("digits", "rq", 16, "nmi_kmeans", "on=query_embedding", np.nan),
        ("digits", "rq", 16, "precision@1", "ties=expected", 0.6),
        ("digits", "itq", 16, "speedup_wallclock@100", SPEED, 2.0),
        ("digits", "lsh", 16, "speedup_wallclock@100", SPEED, 2.0),
        ("cifar10", "itq", 16, "map@all", MAP_DEFAULT, 0.40),
    ])
    now = _table([
        ("digits", "itq", 16, "map@all", MAP_DEFAULT, 0.70),     # −0.10, tolerance 0.06 → worse
        ("digits", "pq", 16, "map@all", MAP_DEFAULT, 0.698),     # −0.002 within the floor → ok
        ("digits", "lsh", 16, "map@all", MAP_DEFAULT, 0.60),     # +0.10 → better
        # drq row gone → missing
        ("digits", "rq", 16, "nmi_kmeans", "on=query_embedding", np.nan),  # NaN → NaN ok
        ("digits", "rq", 16, "precision@1", "ties=expected", np.nan),      # finite → NaN worse
        ("digits", "itq", 16, "speedup_wallclock@100", SPEED, 0.6),  # ×0.3 < ×0.33 → worse
        ("digits", "lsh", 16, "speedup_wallclock@100", SPEED, 1.5),  # ×0.75 → ok
        ("digits", "hashnet", 16, "map@all", MAP_DEFAULT, 0.85),  # no baseline → new
        # cifar10 skipped in this run → its baseline row is not "missing"
    ])
    tol = _table([("digits", "itq", 16, "map@all", MAP_DEFAULT, np.nan)]).assign(tolerance=0.06)
    return base, now, tol


def test_compare_verdicts_and_worst_first_order():
    base, now, tol = _base_and_now()
    cmp = regress.compare(base, now, tol, skipped={"cifar10": "skipped: no data"})
    v = {(r.method, r.metric): r.verdict for r in cmp.itertuples()}
    assert v == {("itq", "map@all"): "worse", ("pq", "map@all"): "ok", ("lsh", "map@all"): "better",
                 ("drq", "map@all"): "missing", ("rq", "nmi_kmeans"): "ok", ("rq", "precision@1"): "worse",
                 ("itq", "speedup_wallclock@100"): "worse", ("lsh", "speedup_wallclock@100"): "ok",
                 ("hashnet", "map@all"): "new"}
    assert cmp["fails"].sum() == 4 and cmp["fails"].iloc[:4].all()  # failing rows first
    assert cmp.iloc[0]["verdict"] in ("missing", "worse") and cmp.iloc[0]["method"] in ("drq", "rq")
    itq = cmp[(cmp["method"] == "itq") & (cmp["metric"] == "map@all")].iloc[0]
    assert itq["delta"] == pytest.approx(-0.10) and itq["tolerance"] == 0.06 and itq["tolerance_source"] == "calibrated"
    sp = cmp[(cmp["method"] == "itq") & (cmp["kind"] == "speed_ratio")].iloc[0]
    assert sp["delta"] == pytest.approx(math.log(0.3)) and sp["tolerance"] == pytest.approx(math.log(3))
    # passing rows follow, the one closest to failing (most negative delta / tolerance) first
    rest = cmp[~cmp["fails"]]
    scores = (rest["delta"] / rest["tolerance"]).dropna().tolist()
    assert scores == sorted(scores)


def test_cifar10_rows_missing_when_not_skipped():
    base, now, tol = _base_and_now()
    cmp = regress.compare(base, now, tol)
    assert cmp.loc[cmp["dataset"] == "cifar10", "verdict"].tolist() == ["missing"]


def test_format_comparison_prints_failures_first_and_the_verdict():
    base, now, tol = _base_and_now()
    text = regress.format_comparison(regress.compare(base, now, tol, skipped={"cifar10": "x"}), show=2)
    lines = text.splitlines()
    assert lines[0].startswith("| dataset") and ("WORSE" in lines[2] or "MISSING" in lines[2])
    assert "×0.30" in text and "×0.33" in text and "±0.0600" in text
    assert "9 rows: 3 worse, 1 missing, 1 better, 1 new, 3 ok; 3 more rows within tolerance not shown" in text
    assert lines[-1].startswith("regress: FAIL")
    same = regress.compare(base, base, tol)
    assert regress.format_comparison(same).splitlines()[-1] == "regress: PASS"


# ----------------------------------------------------------------------------- files and CLI


def _suite_dir(tmp_path, table, skipped=None, partial=False, name="run1"):
    d = tmp_path / "work" / name
    d.mkdir(parents=True)
    regress.write_table(table, d / "regress.csv", ["a suite run"])
    (d / "suite.json").write_text(json.dumps({"seed": 0, "skipped": skipped or {}, "seconds": {"total": 1.0},
                                              "overrides": {}, "partial": partial}))
    (tmp_path / "work" / "LAST").write_text(str(d) + "\n")
    return d


def test_accept_records_revision_and_keeps_skipped_rows(tmp_path):
    base, now, _ = _base_and_now()
    path = tmp_path / "baseline.csv"
    regress.write_table(base, path)
    run = _suite_dir(tmp_path, now, skipped={"cifar10": "skipped: no data"})
    regress.accept(run / "regress.csv", path, skipped={"cifar10": "skipped: no data"})
    header = [line for line in path.read_text().splitlines() if line.startswith("#")]
    assert any("accepted at git revision" in line for line in header)
    new = regress.read_table(path)
    assert len(new) == len(now) + 1 and new.loc[new["dataset"] == "cifar10", "value"].tolist() == [0.40]
    assert regress.compare(new, now, skipped={"cifar10": "x"})["fails"].sum() == 0


def test_cli_compare_exit_status(tmp_path, capsys):
    base, now, tol = _base_and_now()
    regress.write_table(base, tmp_path / "baseline.csv")
    regress.write_table(tol, tmp_path / "tol.csv", ["rule"])
    _suite_dir(tmp_path, now, skipped={"cifar10": "skipped: no data"})
    args = ["regress", "compare", "--work", str(tmp_path / "work"), "--baseline", str(tmp_path / "baseline.csv"),
            "--tolerances", str(tmp_path / "tol.csv")]
    assert main(args) == 1
    out = capsys.readouterr().out
    assert "regress: FAIL" in out and "notice: cifar10: skipped: no data" in out
    assert (tmp_path / "work" / "run1" / "comparison.csv").exists()
    regress.write_table(now, tmp_path / "baseline.csv")
    assert main(args) == 0 and "regress: PASS" in capsys.readouterr().out


def test_cli_accept_of_a_partial_run_replaces_only_its_pairs(tmp_path, capsys):
    base, _, _ = _base_and_now()
    regress.write_table(base, tmp_path / "b.csv")
    now = _table([("digits", "itq", 16, "map@all", MAP_DEFAULT, 0.75), ("digits", "dht", 16, "map@all", MAP_DEFAULT, 0.6)])
    _suite_dir(tmp_path, now, partial=True)
    args = ["regress", "accept", "--work", str(tmp_path / "work"), "--baseline", str(tmp_path / "b.csv")]
    assert main(args) == 0
    new = regress.read_table(tmp_path / "b.csv")
    value = {(r.dataset, r.method, r.metric): r.value for r in new.itertuples()}
    assert value[("digits", "itq", "map@all")] == 0.75 and value[("digits", "dht", "map@all")] == 0.6
    assert value[("digits", "pq", "map@all")] == 0.70 and value[("cifar10", "itq", "map@all")] == 0.40
    assert ("digits", "itq", "speedup_wallclock@100") not in value      # the itq pair was re-run: replaced whole
    assert len(new) == len(base) - 2 + 2


def test_cli_accept_refuses_overridden_runs(tmp_path, capsys):
    base, now, _ = _base_and_now()
    d = _suite_dir(tmp_path, now)
    info = json.loads((d / "suite.json").read_text())
    (d / "suite.json").write_text(json.dumps({**info, "overrides": {"hashnet": {"epochs": 1}}}))
    args = ["regress", "accept", "--work", str(tmp_path / "work"), "--baseline", str(tmp_path / "b.csv")]
    assert main(args) == 2 and "refusing" in capsys.readouterr().err
    assert main(args + ["--force"]) == 0 and (tmp_path / "b.csv").exists()


def test_missing_baseline_is_one_error_line(tmp_path, capsys):
    _suite_dir(tmp_path, _base_and_now()[1])
    assert main(["regress", "compare", "--work", str(tmp_path / "work"), "--baseline", str(tmp_path / "none.csv")]) == 2
    assert "make regress-accept" in capsys.readouterr().err


def test_overrides_scope_to_a_method():
    ov = regress.parse_overrides(["epochs=1", "hashnet.lr=0.01", "drq.hidden_dims=[8]"])
    assert ov == {None: {"epochs": 1}, "hashnet": {"lr": 0.01}, "drq": {"hidden_dims": [8]}}


def test_committed_baseline_and_tolerances_cover_every_method():
    from hashbench import methods
    if not (regress.BASELINE.exists() and regress.TOLERANCES.exists()):
        pytest.skip("no regression baseline committed yet (make regress-calibrate, then make regress-accept)")

    base = regress.read_table(regress.BASELINE)
    tol = regress.read_table(regress.TOLERANCES)
    digits = base[base["dataset"] == "digits"]
    # Methods added after the last calibration are listed in regress.UNCALIBRATED (compare reports
    # their rows as new, never as failures) until make regress-calibrate covers them.
    assert set(digits["method"]) == set(methods.available()) - regress.UNCALIBRATED
    assert set(digits["bits"]) == {16, 32}
    keys = regress.KEY
    assert not digits[keys].duplicated().any()
    joined = digits.merge(tol, on=keys, how="left")
    assert joined["tolerance"].notna().all()
    header = regress.TOLERANCES.read_text().splitlines()[:3]
    assert any("max(3 * sigma" in line for line in header)


# ----------------------------------------------------------------------------- the suite itself


def test_suite_part_is_bit_for_bit_repeatable(tmp_path):
    """Two runs of the same part of the suite (trained and closed-form methods, fixed seeds,
    CPU) give identical quality rows (the digits entry keeps no speed ratios)."""
    ov = {"hashnet": {"epochs": 2}, "drq": {"epochs": 2}}
    kw = dict(datasets=["digits"], methods=["itq", "hashnet", "drq"], overrides=ov, log=lambda _m: None)
    a = regress.run_suite(tmp_path / "a", **kw)
    b = regress.run_suite(tmp_path / "b", **kw)
    assert a.table[regress.KEY].equals(b.table[regress.KEY])
    q = a.table["kind"] == "quality"
    assert q.sum() > 100
    assert np.array_equal(a.table.loc[q, "value"].to_numpy(), b.table.loc[q, "value"].to_numpy(), equal_nan=True)
    assert (a.table["kind"] == "speed_ratio").sum() == 0     # digits compares quality only
    drq = a.table[a.table["method"] == "drq"]
    assert set(drq["run_bits"]) == {32} and set(drq["bits"]) == {16, 32}
    info = json.loads((tmp_path / "a" / "suite.json").read_text())
    assert info["partial"] and "cifar10" not in info["datasets"]
    assert info["skipped"]["cifar10"] == "not selected (--datasets)" and "digits/lsh" in info["skipped"]
    assert regress.read_table(tmp_path / "a" / "regress.csv")["value"].equals(a.table["value"].astype(float))


def test_cifar10_without_data_root_is_skipped_with_a_notice(tmp_path, monkeypatch):
    monkeypatch.delenv("HASHBENCH_DATA", raising=False)
    notes = []
    res = regress.run_suite(tmp_path / "s", datasets=["cifar10"], log=notes.append)
    assert res.table.empty and "no data root" in res.skipped["cifar10"] and notes


def test_cifar10_without_cached_features_is_skipped(tmp_path, monkeypatch):
    monkeypatch.setenv("HASHBENCH_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("HASHBENCH_CACHE", str(tmp_path / "cache"))
    res = regress.run_suite(tmp_path / "s", datasets=["cifar10"], log=lambda _m: None)
    assert "no cached cifar10 features" in res.skipped["cifar10"]


def _synthetic_cifar(per_class: int) -> ArrayData:
    n = 10 * per_class
    cls = np.repeat(np.arange(10), per_class)
    return ArrayData(np.zeros((n, 2), np.float32), np.eye(10, dtype=np.uint8)[cls], [str(c) for c in range(10)],
                     "vector", None, "synthetic")


def test_cifar10_regression_protocol_sizes_and_disjointness():
    data = _synthetic_cifar(1300)
    proto = D.get_dataset("cifar10").protocol("query500-train2k-db10k")
    s = proto.make_split(data, 0)
    assert s.sizes() == {"query": 500, "train": 1800, "val": 200, "database": 10000}
    cls = data.labels.argmax(1)
    for part, n in ((s.query, 50), (s.train, 180), (s.val, 20), (s.database, 1000)):
        assert (np.bincount(cls[part], minlength=10) == n).all()
    parts = [s.query, s.train, s.val, s.database]
    assert len(np.unique(np.concatenate(parts))) == sum(len(p) for p in parts)
    again = proto.make_split(data, 0)
    assert all(np.array_equal(x, y) for x, y in zip(parts, [again.query, again.train, again.val, again.database]))
    assert not np.array_equal(proto.make_split(data, 1).query, s.query) and proto.map_at is None
