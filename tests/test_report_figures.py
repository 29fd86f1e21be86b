"""Figures: every kind is checked on the data frame it is drawn from (which points, which x and
y, which reference), and on what the drawing adds (axis labels naming k, one legend entry per
row, one fixed style per method, no overlapping point labels)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from hashbench import methods
from hashbench.benchmark import figures, report
from runfiles import runs, write_run  # noqa: F401  (runs: a fixture)

FEATURES = "reference=faiss_flat_l2_features"


def _drawn(monkeypatch) -> list:
    """Capture every figure passed to ``figures._save`` (still written as usual)."""
    seen, orig = [], figures._save
    monkeypatch.setattr(figures, "_save", lambda fig, out, stem: seen.append(fig) or orig(fig, out, stem))
    return seen


def _row(method, metric, variant, value, bits=16, seed=0, run=None, settings=""):
    return dict(dataset="cifar10", protocol="p", method=method if not settings else f"{method} [{settings}]",
                method_base=method, settings=settings, bits=bits, seed=seed, metric=metric, variant=variant,
                value=value, run_dir=run or f"{method}-{settings}-{bits}-{seed}")


def speed_frame() -> pd.DataFrame:
    """One run per code type, with every row a wrong pairing could pick up."""
    rows = [
        # binary: the table search's P@100 is 0.61; the exact ranking's P@100 (0.70) is another search
        _row("itq", "precision@100", "ties=expected", 0.70),
        _row("itq", "precision@100", "search=faiss_binary_flat", 0.61),
        _row("itq", "precision@1", "ties=expected", 0.95),
        _row("itq", "speedup_wallclock@100", f"backend=faiss_binary_flat,{FEATURES},threads=1", 40.0),
        # additive
        _row("pq", "precision@100", "search=lut", 0.52, bits=32),
        _row("pq", "speedup_wallclock@100", f"backend=lut,{FEATURES},threads=1", 6.0, bits=32),
        # float reference method
        _row("exhaustive", "precision@100", "search=faiss_flat_l2", 0.30),
        _row("exhaustive", "speedup_wallclock@100", f"backend=faiss_flat_l2,{FEATURES},threads=1", 1.1),
    ]
    for seed, (p100, sp) in enumerate([(0.80, 20.0), (0.84, 30.0)]):
        run = f"dht-{seed}"
        rows += [
            _row("dht", f"precision@{k}", "rerank=embedding,s=1,search=hash_table", v, seed=seed, run=run)
            for k, v in ((1, 0.9), (4, 0.88), (16, 0.86))]
        rows += [
            _row("dht", "precision@100", "rerank=embedding,s=1,search=hash_table", p100, seed=seed, run=run),
            _row("dht", "precision@100", "search=exhaustive_embedding", 0.99, seed=seed, run=run),
            _row("dht", "speedup_wallclock@100", f"backend=hash_table,{FEATURES},rerank=embedding,s=1,threads=1", sp,
                 seed=seed, run=run),
            _row("dht", "speedup_wallclock@100",
                 "backend=hash_table,reference=faiss_flat_l2_embedding,rerank=embedding,s=1,threads=1", 0.5,
                 seed=seed, run=run),
        ]
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- styles


def test_every_registered_method_has_its_own_colour_and_marker():
    names = methods.available()
    styles = [figures.method_style(n) for n in names]
    assert len({s["color"] for s in styles}) == len(names)
    assert len({s["marker"] for s in styles}) == len(names)
    assert set(names) <= set(figures.METHOD_STYLES)


def test_a_plugin_style_depends_on_its_name_alone_and_differs_from_registered_ones():
    a = figures.method_style("my-plugin")
    assert a == figures.method_style("my-plugin")
    assert (a["color"], a["marker"]) not in set(figures.METHOD_STYLES.values())
    assert figures.method_style("itq")["linestyle"] == "-"
    tuned = figures.method_style("itq", "epochs=5")
    assert tuned["color"] == figures.method_style("itq")["color"] and tuned["linestyle"] != "-"


def test_a_method_keeps_its_colour_in_every_figure(runs, tmp_path, monkeypatch):
    seen = _drawn(monkeypatch)
    figures.all_figures([runs], tmp_path)
    for fig in seen:
        for line in fig.axes[0].get_lines():
            name = line.get_label()
            if name in figures.METHOD_STYLES:
                assert line.get_color() == figures.METHOD_STYLES[name][0], (name, fig)
    assert len(seen) == 4


# ----------------------------------------------------------------------------- data frames


def test_map_vs_bits_data_is_the_mean_and_std_over_runs(runs):
    data = figures.map_vs_bits_data(report.load_runs([runs]))
    drq16 = data[(data["method"] == "drq") & (data["bits"] == 16)].iloc[0]
    frame = report.load_runs([runs])
    vals = frame[(frame["method"] == "drq") & (frame["bits"] == 16) & (frame["metric"] == "map@all")
                 & (frame["variant"] == report.DEFAULT_MAP_VARIANT)]["value"]
    assert drq16["n"] == 2 and drq16["mean"] == pytest.approx(vals.mean()) and drq16["std"] == pytest.approx(vals.std())
    assert len(data) == 6 and set(data["metric"]) == {"map@all"}


def test_precision_at_k_data_uses_the_exact_ranking_at_the_length_most_methods_have(runs):
    write_run(runs, "itq", 64, 0, np.full(200, 0.3))          # only one method at 64 bits
    data = figures.precision_at_k_data(report.load_runs([runs]))
    assert set(data["bits"]) == {32} and set(data["method"]) == {"drq", "hashnet", "itq"}
    itq = data[data["method"] == "itq"]
    assert itq["k"].tolist() == [1, 10, 100] and itq["precision"].tolist() == pytest.approx([0.9, 0.8, 0.7])
    assert (itq["n"] == 2).all()
    assert figures.precision_at_k_data(report.load_runs([runs]), bits=16)["bits"].eq(16).all()


def test_precision_recall_data_averages_the_curves_point_by_point(runs):
    data = figures.precision_recall_data(report.load_runs([runs]), bits=16)
    hn = data[data["method"] == "hashnet"]
    assert hn["cutoff"].tolist() == [1, 10, 100]
    assert hn["recall"].tolist() == pytest.approx([0.01, 0.1, 0.5]) and (hn["n"] == 2).all()


def test_speedup_data_pairs_each_speedup_with_the_same_search_at_the_same_k():
    data = figures.speedup_data(speed_frame()).set_index("method")
    assert set(data["k"]) == {100} and set(data["reference"]) == {"faiss_flat_l2_features"}
    # binary: the table search's P@100, not the exact ranking's, not P@1
    assert data.at["itq", "precision"] == 0.61 and data.at["itq", "speedup"] == 40.0
    assert data.at["itq", "search"] == "faiss_binary_flat"
    assert data.at["pq", "precision"] == 0.52 and data.at["pq", "bits"] == 32
    assert data.at["exhaustive", "precision"] == 0.30
    # sparse: the hash table's P@100 (mean over two runs), not exhaustive search in the embedding and
    # not a mean over P@1/4/16/100; the speed-up against the features reference only
    assert data.at["dht", "precision"] == pytest.approx(0.82) and data.at["dht", "search"] == "hash_table"
    assert data.at["dht", "speedup"] == pytest.approx(25.0) and data.at["dht", "n"] == 2
    assert len(data) == 4


def test_speedup_data_leaves_out_a_speed_row_without_its_precision():
    frame = speed_frame()
    frame = frame[~((frame["method"] == "pq") & (frame["metric"] == "precision@100"))]
    assert "pq" not in set(figures.speedup_data(frame)["method"])


def test_suf_data_has_one_point_per_run_and_the_exhaustive_line(tmp_path):
    rows = []
    for method in ("dht", "dht-vq"):
        for s in (1, 2):
            settings = "" if s == 1 else f"sparsity={s}"
            for seed in (0, 1):
                run = f"{method}-{s}-{seed}"
                rows += [_row(method, "suf@16", f"rerank=embedding,s={s}", 10.0 / s, seed=seed, run=run,
                              settings=settings),
                         _row(method, "precision@16", f"rerank=embedding,s={s},search=hash_table", 0.7 + 0.01 * s,
                              seed=seed, run=run, settings=settings),
                         _row(method, "precision@16", "search=exhaustive_embedding", 0.72, seed=seed, run=run,
                              settings=settings)]
    points, exhaustive = figures.suf_data(pd.DataFrame(rows))
    assert len(points) == 8 and set(points["line"]) == {"dht", "dht-vq"}
    dht2 = points[(points["line"] == "dht") & (points["s"] == 2)]
    assert dht2["suf"].tolist() == [5.0, 5.0] and dht2["precision"].tolist() == pytest.approx([0.72, 0.72])
    assert exhaustive["precision"].tolist() == pytest.approx([0.72]) and exhaustive["n"].tolist() == [8]


# ----------------------------------------------------------------------------- drawing


def test_speed_figure_plots_its_frame_and_names_k(tmp_path, monkeypatch):
    seen = _drawn(monkeypatch)
    assert [p.suffix for p in figures.speedup_vs_precision(speed_frame(), tmp_path)] == [".pdf", ".png"]
    ax = seen[0].axes[0]
    assert "P@100" in ax.get_xlabel() and "top 100" in ax.get_ylabel() and "features" in ax.get_ylabel()
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    assert sorted(lines) == ["dht", "exhaustive", "itq", "pq"]
    assert lines["dht"].get_xdata().tolist() == pytest.approx([0.82]) and lines["dht"].get_ydata().tolist() == [25.0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert sorted(legend) == sorted(set(legend)) == ["dht", "exhaustive", "itq", "pq"]


def test_keep_non_overlapping_drops_only_colliding_boxes():
    boxes = [(0, 0, 10, 5), (5, 2, 15, 7), (10, 0, 20, 5), (0, 5, 10, 10)]
    assert figures.keep_non_overlapping(boxes) == [True, False, True, True]


def test_point_labels_never_overlap(tmp_path, monkeypatch):
    # six code lengths of one method at almost the same point: labels "16b", "24b", ... would pile up
    rows = []
    for i, bits in enumerate((16, 24, 32, 48, 64, 128)):
        rows += [_row("lsh", "precision@100", "search=faiss_binary_flat", 0.50 + 0.0005 * i, bits=bits),
                 _row("lsh", "speedup_wallclock@100", f"backend=faiss_binary_flat,{FEATURES},threads=1",
                      30.0 + 0.1 * i, bits=bits)]
    rows += [_row("itq", "precision@100", "search=faiss_binary_flat", 0.9, bits=16),
             _row("itq", "speedup_wallclock@100", f"backend=faiss_binary_flat,{FEATURES},threads=1", 2.0, bits=16)]
    seen = _drawn(monkeypatch)
    figures.speedup_vs_precision(pd.DataFrame(rows), tmp_path)
    fig = seen[0]
    renderer = FigureCanvasAgg(fig).get_renderer()      # the pyplot canvas is gone once the figure is saved
    labels = [t for t in fig.axes[0].texts if t.get_gid() == figures.LABEL_GID]
    boxes = [t.get_window_extent(renderer).extents for t in labels]
    assert 2 <= len(labels) < 7 and "16b" in [t.get_text() for t in labels]
    for i in range(len(boxes)):
        for j in range(i):
            a, b = boxes[i], boxes[j]
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (labels[i], labels[j])


def test_suf_figure_lists_each_method_once(tmp_path, monkeypatch):
    rows = []
    for method in ("dht", "cascade-dht"):
        for s in (1, 2, 3):
            settings = "" if s == 1 else f"sparsity={s}"
            run = f"{method}-{s}"
            rows += [_row(method, "suf@16", f"rerank=embedding,s={s}", 10.0 / s, run=run, settings=settings),
                     _row(method, "precision@16", f"rerank=embedding,s={s},search=hash_table", 0.7 + 0.05 * s,
                          run=run, settings=settings),
                     _row(method, "precision@16", "search=exhaustive_embedding", 0.72, run=run, settings=settings)]
    seen = _drawn(monkeypatch)
    figures.suf_vs_precision(pd.DataFrame(rows), tmp_path)
    ax = seen[0].axes[0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["cascade-dht", "dht", "exhaustive, re-ranking embedding"]
    dht = next(ln for ln in ax.get_lines() if ln.get_label() == "dht")
    assert dht.get_xdata().tolist() == pytest.approx([0.75, 0.80, 0.85])
    assert dht.get_color() == figures.METHOD_STYLES["dht"][0]
    assert figures.suf_vs_precision(pd.DataFrame(rows).query("metric != 'suf@16'"), tmp_path / "none") == []


def test_map_vs_bits_one_panel_per_dataset(runs, tmp_path, monkeypatch):
    write_run(runs, "itq", 16, 0, np.full(20, 0.4), dataset="digits", protocol="query300-db1497", query_sha="d")
    seen = _drawn(monkeypatch)
    figures.map_vs_bits(report.load_runs([runs]), tmp_path)
    assert [ax.get_title() for ax in seen[0].axes[:2]] == ["cifar10 (query1k-train5k-db54k)",
                                                             "digits (query300-db1497)"]
    digits = seen[0].axes[1]
    assert [c.get_label() for c in digits.containers] == ["itq"]
    legend = [t.get_text() for t in seen[0].axes[1].get_legend().get_texts()]
    assert legend == ["drq", "hashnet", "itq"]
