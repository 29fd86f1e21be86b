"""Paper-ready comparisons: bootstrap intervals and paired tests over queries, published
reference rows, the Markdown/LaTeX tables. Runs are written by hand (``runfiles``, no
training), so every expected value below is known exactly. Figures: test_report_figures.py;
which runs a report holds: test_report_selection.py."""
from __future__ import annotations

import itertools
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from hashbench.benchmark import reference, report, stats
from hashbench.benchmark.cli import main
from runfiles import DEFAULT, runs, write_run as _write_run  # noqa: F401  (runs: a fixture)



# ----------------------------------------------------------------------------- stats


def test_bootstrap_ci_of_constant_values_has_zero_width():
    ci = stats.bootstrap_ci(np.full(50, 0.25))
    assert (ci.mean, ci.low, ci.high, ci.n) == (0.25, 0.25, 0.25, 50)


def test_bootstrap_ci_matches_the_normal_approximation_on_a_large_sample():
    # 0/1 values, p = 0.3, n = 2000: the CI of the mean is ~ p ± 1.96·sqrt(p(1−p)/n) = 0.3 ± 0.0201.
    x = np.zeros(2000)
    x[:600] = 1.0
    ci = stats.bootstrap_ci(x, n_resamples=4000, seed=1)
    half = 1.96 * np.sqrt(0.3 * 0.7 / 2000)
    assert ci.mean == pytest.approx(0.3)
    assert ci.low == pytest.approx(0.3 - half, abs=0.003) and ci.high == pytest.approx(0.3 + half, abs=0.003)


def test_bootstrap_ci_drops_nan_and_is_seeded():
    x = np.array([0.1, 0.5, np.nan, 0.9, 0.3])
    a, b = stats.bootstrap_ci(x, seed=3), stats.bootstrap_ci(x, seed=3)
    assert a == b and a.n == 4 and a.mean == pytest.approx(0.45) and a.low < 0.45 < a.high
    with pytest.raises(ValueError):
        stats.bootstrap_ci(np.array([np.nan]))


@pytest.mark.parametrize("test", ["permutation", "wilcoxon"])
def test_paired_test_five_positive_differences_exact_p(test):
    # Every one of 5 differences positive (distinct sizes): of the 2^5 sign patterns only
    # "all +" and "all −" are as extreme, so the exact two-sided p is 2/32 for both tests.
    a = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    b = a - np.array([0.1, 0.2, 0.3, 0.4, 0.5])
    res = stats.paired_test(a, b, test=test)
    assert res.p_value == pytest.approx(2 / 32)
    assert res.mean_diff == pytest.approx(0.3) and res.n == 5
    assert res.test == stats.TEST_NAMES[test]


def test_permutation_test_equals_brute_force_over_all_sign_flips():
    rng = np.random.default_rng(7)
    a, b = rng.random(10), rng.random(10)
    d = a - b
    observed = abs(d.mean())
    flips = np.array(list(itertools.product([1, -1], repeat=10)))
    expected = np.mean(np.abs((flips * d).mean(1)) >= observed - 1e-12)
    assert stats.paired_test(a, b, n_resamples=9999).p_value == pytest.approx(expected)


def test_paired_test_identical_and_bad_inputs():
    x = np.array([0.2, 0.4, 0.6])
    res = stats.paired_test(x, x.copy())
    assert res.p_value == 1.0 and res.mean_diff == 0.0 and res.diff_low == res.diff_high == 0.0
    with pytest.raises(ValueError, match="same length"):
        stats.paired_test(x, x[:2])
    with pytest.raises(ValueError, match="unknown test"):
        stats.paired_test(x, x, test="t")


# ----------------------------------------------------------------------------- tables


def test_load_runs_skips_lightning_logs(runs):
    frame = report.load_runs([runs])
    assert set(frame["method"]) == {"drq", "hashnet", "itq"}
    assert frame["run_dir"].str.contains("logs").sum() == 0 and frame["bits"].dtype.kind == "i"


def test_markdown_marks_best_bold_second_underlined(runs):
    frame = report.load_runs([runs])
    summ = report.summary(report.main_rows(frame))
    md = report.pivot(summ, "markdown")
    col = "cifar10 map@all 16b"
    assert md.at["drq", col].startswith("**") and md.at["hashnet", col].startswith("<u>")
    assert "**" not in md.at["itq", col] and "<u>" not in md.at["itq", col]
    drq = frame[(frame["method"] == "drq") & (frame["bits"] == 16) & (frame["variant"] == DEFAULT)
                & (frame["metric"] == "map@all")]["value"]
    row = summ[(summ["method"] == "drq") & (summ["bits"] == 16)].iloc[0]
    assert row["n"] == 2 and row["mean"] == pytest.approx(drq.mean()) and row["std"] == pytest.approx(drq.std(ddof=1))
    assert md.at["drq", col] == f"**{row['mean']:.3f} ± {row['std']:.3f}**"


def test_reference_rows_are_marked_and_never_ranked(runs):
    frame = report.load_runs([runs])
    summ = report.summary(report.main_rows(frame))
    ref = report.reference_rows(frame, summ)
    # DRQ Table 3 (setting 2 = this protocol) has 16 and 32 bits for 7 methods.
    assert set(ref["bits"]) == {16, 32} and len(ref) == 14
    assert ref.loc[(ref["method"] == "DRQ") & (ref["bits"] == 16), "value"].item() == 0.824
    md = report.pivot(summ, "markdown", ref)
    label = f"DRQ † ({reference.LABEL})"
    assert md.at[label, "cifar10 map@all 32b"] == "0.837"  # plain: the 0.837 beats every computed mean, unranked
    assert md.at["drq", "cifar10 map@all 32b"].startswith("**")
    assert list(md.index[:3]) == ["drq", "hashnet", "itq"]
    only = report.reference_rows(frame, summ, ["drq", "DTQ"])
    assert set(only["method"]) == {"DRQ", "DTQ"}
    # The summary (table.csv) holds computed rows only.
    assert set(summ["method"]) == {"drq", "hashnet", "itq"}


def test_reference_table_only_places_matching_protocols():
    ref = reference.reference_table()
    assert (ref["value"].between(0, 1)).all() and set(ref["confidence"]) <= {"paper", "2nd", "unverified"}
    assert reference.matching("cifar10", "query10k-db50k", "map@all").empty
    hn = reference.matching("imagenet100", "lists", "map@1000", bits=[48], methods=["hashnet"])
    assert hn["value"].tolist() == [0.6633] and hn["confidence"].tolist() == ["2nd"]


def _check_latex_structure(tex: str, n_cols: int) -> None:
    body = [line for line in tex.splitlines() if not line.startswith("%")]
    text = "\n".join(body)
    assert text.count("{") == text.count("}")
    assert body[0].startswith(r"\begin{tabular}{l" + "c" * n_cols + "}") and body[-1] == r"\end{tabular}"
    assert text.index(r"\toprule") < text.index(r"\midrule") < text.index(r"\bottomrule")
    for line in body:
        if line.endswith(r"\\") and "multicolumn" not in line:
            assert line.count(" & ") == n_cols, line


def test_latex_table_structure_and_compiles(runs, tmp_path):
    frame = report.load_runs([runs])
    summ = report.summary(report.main_rows(frame))
    ref = report.reference_rows(frame, summ)
    tex = report.latex_table(summ, ref, caption="test table")
    _check_latex_structure(tex, 2)
    assert r"\textbf{0." in tex and r"\underline{0." in tex and r"$\pm$" in tex and r"DRQ$^\dagger$" in tex
    assert "±" not in tex and "—" not in tex
    refs_at = tex.index(r"DRQ$^\dagger$")
    assert tex.rfind(r"\midrule", 0, refs_at) > tex.index("itq")  # published rows sit below their own rule
    if shutil.which("pdflatex") is None:
        pytest.skip("no TeX engine installed: structural check only")
    (tmp_path / "table.tex").write_text(tex)
    (tmp_path / "doc.tex").write_text("\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n"
                                      "\\input{table.tex}\n\\end{document}\n")
    proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 1000


def test_latex_escapes_method_names():
    summ = pd.DataFrame({"method": ["deep_hash", "a&b"], "dataset": ["d_1", "d_1"], "metric": ["map@all"] * 2,
                         "bits": [16, 16], "mean": [0.5, 0.4], "std": [np.nan, np.nan], "n": [1, 1]})
    tex = report.latex_table(summ)
    assert r"deep\_hash" in tex and r"a\&b" in tex and r"d\_1" in tex
    _check_latex_structure(tex, 1)


def test_map_intervals_from_per_query_ap(runs):
    frame = report.load_runs([runs])
    ci = report.map_intervals(frame, n_resamples=999)
    assert len(ci) == 12 and (ci["queries"] == 200).all()
    assert ((ci["ci_low"] < ci["map"]) & (ci["map"] < ci["ci_high"])).all()
    # mAP in the table is the mean of the per-query AP the interval resamples.
    row = ci[(ci["method"] == "itq") & (ci["bits"] == 16) & (ci["seed"] == 0)].iloc[0]
    assert row["map"] == pytest.approx(np.mean(stats.per_query_ap(row["run_dir"])[16]))


def test_compare_methods_paired_on_the_same_queries(runs, tmp_path):
    frame = report.load_runs([runs])
    out = report.compare_methods(frame, "drq", "itq")
    assert len(out) == 4 and (out["queries"] == 200).all()
    # drq = clip(itq + 0.10 + 0.01·seed): the difference is just under that (clipping at 1).
    assert (out["difference"] > 0.09).all() and (out["p_value"] < 0.001).all()
    assert (out["ci95_low"] <= out["difference"]).all() and (out["difference"] <= out["ci95_high"]).all()
    assert (out["test"] == stats.TEST_NAMES["permutation"]).all()
    with pytest.raises(ValueError, match="no runs of method"):
        report.compare_methods(frame, "drq", "nope")
    other = tmp_path / "other"
    _write_run(other, "lsh", 16, 0, np.zeros(200), query_sha="different")
    with pytest.raises(ValueError, match="same queries"):
        report.compare_methods(report.load_runs([runs, other]), "drq", "lsh")


def test_one_run_per_cell_prefers_the_run_trained_at_that_length(tmp_path):
    root = tmp_path / "runs"
    d32 = _write_run(root, "drq", 32, 0, np.full(10, 0.6))
    # The 32-bit run also evaluated its 16-bit prefix; a 16-bit run of its own exists too.
    m = pd.read_csv(d32 / "metrics.csv")
    extra = m[m["metric"] != "train_seconds"].assign(bits=16, value=0.1)
    pd.concat([m, extra]).to_csv(d32 / "metrics.csv", index=False)
    _write_run(root, "drq", 16, 0, np.full(10, 0.5))
    frame = report.load_runs([root])
    summ = report.summary(report.main_rows(frame)).set_index("bits")
    assert summ.at[16, "mean"] == pytest.approx(0.5) and summ.at[16, "n"] == 1
    assert summ.at[32, "mean"] == pytest.approx(0.6)


def test_cli_report_writes_every_output(runs, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["report", str(runs), "--out", str(out), "--reference", "DRQ", "--compare", "drq", "hashnet",
                 "--test", "wilcoxon"]) == 0
    for name in ("table.csv", "runs.csv", "table.md", "table.tex", "reference.csv", "map_ci.csv", "map_ci.md",
                 "compare_drq_vs_hashnet.csv", "compare_drq_vs_hashnet.md"):
        assert (out / name).stat().st_size > 50, name
    md = (out / "table.md").read_text()
    assert reference.LABEL in md and "test cpu x2" in md
    assert "Wilcoxon signed-rank" in (out / "compare_drq_vs_hashnet.md").read_text()
    for fig in ("map_vs_bits", "precision_recall", "precision_at_k", "speedup_vs_precision"):
        assert (out / f"{fig}.png").exists() and (out / f"{fig}.pdf").exists()   # contents: test_report_figures
    assert "Wilcoxon" in capsys.readouterr().out


def test_markdown_caption_names_the_hardware(runs, tmp_path):
    report.write_report([runs], tmp_path / "r", figures=False, ci=False)
    md = (tmp_path / "r" / "table.md").read_text()
    assert re.search(r"Measured on: test cpu x2", md)


def test_bench_table_shows_sparse_metrics_and_one_speed_reference():
    from hashbench.benchmark.report import comparison_table

    base = dict(dataset="digits", protocol="p", method="dht", bits=16, seed=0)
    rows = [{**base, "metric": "suf@16", "variant": "rerank=embedding,s=1", "value": 10.0},
            {**base, "metric": "precision@16", "variant": "rerank=embedding,s=1,search=hash_table", "value": 0.9},
            {**base, "metric": "speedup_wallclock@100",
             "variant": "backend=hash_table,reference=faiss_flat_l2_features,threads=1", "value": 8.0},
            {**base, "metric": "speedup_wallclock@100",
             "variant": "backend=hash_table,reference=faiss_flat_l2_embedding,threads=1", "value": 0.5}]
    text = comparison_table(pd.DataFrame(rows))
    assert "### SUF@16" in text and "### hash table P@16" in text
    speed = text.split("### speed-up vs float")[1].split("###")[0]
    assert "|         8 |" in speed and "4.25" not in speed            # the features reference alone
