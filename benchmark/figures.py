"""Figures from result tables or run directories, one call each (matplotlib; PDF and PNG).

Every figure takes ``runs`` — a long metric table (``benchmark.report.load_runs``) or an iterable
of run directories — and an output folder, and returns the files written (none when the runs
hold no data for it). One style throughout (:data:`STYLE`): small serif-free type sized for a
column of a paper, and black-and-white safe: each method keeps one marker, line style and
colour in every figure (colours of the Okabe–Ito palette, which also differ in grey level), so
lines stay distinguishable when printed in grey. Several datasets give one panel each.

- :func:`map_vs_bits`: mAP (default variant) against code length, mean ± std over seeds;
- :func:`precision_recall`: precision–recall over rank cut-offs (``curves.json``), per method;
- :func:`precision_at_k`: P@k against k (log scale), per method;
- :func:`speedup_vs_precision`: wall-clock speed-up over exhaustive float search (log scale)
  against the fast search's own P@k; :func:`suf_vs_precision`: SUF@k against the hash table's P@k
  (sparse codes), one point per run, joined over the sparsity s.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Iterable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

logging.getLogger("fontTools").setLevel(logging.WARNING)  # PDF font subsetting chatter

MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*", "h", "<", ">"]
LINES = ["-", "--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1))]
#: Okabe–Ito colours, ordered so neighbours differ in grey level too.
COLORS = ["#000000", "#E69F00", "#0072B2", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442"]
STYLE = {
    "font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "xtick.labelsize": 7, "ytick.labelsize": 7,
    "legend.fontsize": 6.5, "legend.frameon": False, "lines.linewidth": 1.2, "lines.markersize": 4,
    "axes.grid": True, "grid.alpha": 0.3, "grid.linewidth": 0.5, "axes.spines.top": False,
    "axes.spines.right": False, "savefig.bbox": "tight", "pdf.fonttype": 42,
}
PANEL = (3.2, 2.5)


def _frame(runs) -> pd.DataFrame:
    if isinstance(runs, pd.DataFrame):
        return runs
    from hashbench.benchmark.report import load_runs

    return load_runs(list(runs))


def _styles(methods: Iterable[str]) -> dict[str, dict]:
    """One marker, line style and colour per method (by sorted name), the same in every panel."""
    return {name: {"marker": MARKERS[i % len(MARKERS)], "linestyle": LINES[i % len(LINES)],
                   "color": COLORS[i % len(COLORS)]}
            for i, name in enumerate(sorted(set(methods)))}


def _panels(rows: pd.DataFrame):
    """(title, rows of one dataset/protocol) pairs and a figure with one axis per pair."""
    groups = list(rows.groupby(["dataset", "protocol"], sort=True))
    n = len(groups)
    fig, axes = plt.subplots(1, n, figsize=(PANEL[0] * n, PANEL[1]), squeeze=False)
    return fig, [(f"{d} ({p})", g, ax) for ((d, p), g), ax in zip(groups, axes[0])]


def _save(fig, out: Path, stem: str) -> list[Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{stem}.pdf", out / f"{stem}.png"]
    for p in paths:
        fig.savefig(p, dpi=200, metadata={"CreationDate": None} if p.suffix == ".pdf" else None)
    plt.close(fig)
    return paths


def _legend(fig, axes_list) -> None:
    handles, labels = {}, {}
    for ax in axes_list:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    if handles:
        axes_list[-1].legend(list(handles.values()), list(handles.keys()), loc="center left", bbox_to_anchor=(1.02, 0.5))


def _pick_bits(rows: pd.DataFrame, bits: int | None) -> int | None:
    if rows.empty:
        return None
    return int(bits) if bits is not None else int(rows["bits"].max())


def map_vs_bits(runs, out: Path, variant: str | None = None) -> list[Path]:
    """mAP (``variant``, default: the default mAP variant) against code length, one line per
    method, mean ± std over seeds; one panel per dataset."""
    from hashbench.benchmark.report import DEFAULT_MAP_VARIANT

    frame = _frame(runs)
    variant = DEFAULT_MAP_VARIANT if variant is None else variant
    rows = frame[frame["metric"].str.startswith("map@") & (frame["variant"].fillna("") == variant)]
    if rows.empty:
        return []
    styles = _styles(rows["method"])
    with plt.rc_context(STYLE):
        fig, panels = _panels(rows)
        for title, g, ax in panels:
            for method, m in g.groupby("method"):
                s = m.groupby("bits")["value"].agg(["mean", "std"]).reset_index()
                ax.errorbar(s["bits"], s["mean"], yerr=s["std"].fillna(0), label=method, capsize=2, **styles[method])
            ax.set_xticks(sorted(g["bits"].unique()))
            ax.set_xlabel("code length (bits)")
            ax.set_ylabel(g["metric"].iloc[0].replace("map", "mAP"))
            ax.set_title(title)
        _legend(fig, [p[2] for p in panels])
        return _save(fig, out, "map_vs_bits")


def precision_at_k(runs, out: Path, bits: int | None = None) -> list[Path]:
    """P@k (expected under ties, exact ranking) against k, one line per method at ``bits``
    (default: the longest code length present), mean over seeds; one panel per dataset."""
    frame = _frame(runs)
    rows = frame[frame["metric"].str.match(r"precision@\d+$") & (frame["variant"].fillna("") == "ties=expected")]
    b = _pick_bits(rows, bits)
    rows = rows[rows["bits"] == b] if b is not None else rows
    if rows.empty:
        return []
    rows = rows.assign(k=rows["metric"].str.split("@").str[1].astype(int))
    styles = _styles(rows["method"])
    with plt.rc_context(STYLE):
        fig, panels = _panels(rows)
        for title, g, ax in panels:
            for method, m in g.groupby("method"):
                s = m.groupby("k")["value"].mean()
                ax.plot(s.index, s.values, label=method, **styles[method])
            ax.set_xscale("log")
            ax.set_xlabel("k")
            ax.set_ylabel("precision@k")
            ax.set_title(f"{title}, {b} bits")
        _legend(fig, [p[2] for p in panels])
        return _save(fig, out, "precision_at_k")


def precision_recall(runs, out: Path, bits: int | None = None) -> list[Path]:
    """Precision–recall over rank cut-offs (each run's ``curves.json``) at ``bits`` (default:
    the longest present), averaged point-wise over seeds; one panel per dataset."""
    frame = _frame(runs)
    b = _pick_bits(frame, bits)
    runs_ = frame[frame["bits"] == b].drop_duplicates("run_dir")[["dataset", "protocol", "method", "run_dir"]] \
        if b is not None else frame.iloc[:0]
    curves = []
    for _, row in runs_.iterrows():
        path = Path(row["run_dir"]) / "curves.json"
        if not path.exists():
            continue
        pr = json.loads(path.read_text()).get(str(b), {}).get("pr_rank")
        if pr:
            curves.append({**row.to_dict(), "recall": np.asarray(pr["recall"]), "precision": np.asarray(pr["precision"])})
    if not curves:
        return []
    table = pd.DataFrame(curves)
    styles = _styles(table["method"])
    with plt.rc_context(STYLE):
        fig, panels = _panels(table)
        for title, g, ax in panels:
            for method, m in g.groupby("method"):
                ax.plot(np.mean(np.stack(m["recall"]), 0), np.mean(np.stack(m["precision"]), 0), label=method,
                        markevery=2, **styles[method])
            ax.set_xlabel("recall")
            ax.set_ylabel("precision")
            ax.set_title(f"{title}, {b} bits")
        _legend(fig, [p[2] for p in panels])
        return _save(fig, out, "precision_recall")


def _speed_figure(frame: pd.DataFrame, speed_prefix: str, precision_mask: pd.Series, ylabel: str,
                  stem: str, out: Path) -> list[Path]:
    sp = frame[frame["metric"].str.startswith(speed_prefix)]
    pk = frame[precision_mask]
    if sp.empty or pk.empty:
        return []
    keys = ["dataset", "protocol", "method", "bits", "seed"]
    if speed_prefix.startswith("suf@"):  # SUF@k pairs with P@k at the same k
        sp = sp.assign(k=sp["metric"].str.split("@").str[1])
        pk = pk.assign(k=pk["metric"].str.split("@").str[1])
        keys = keys + ["k"]
    merged = sp.merge(pk, on=keys, suffixes=("_speed", "_p"))
    if merged.empty:
        return []
    group = ["dataset", "protocol", "method", "bits"] + (["k"] if "k" in keys else [])
    mean = merged.groupby(group)[["value_p", "value_speed"]].mean().reset_index()
    styles = _styles(mean["method"])
    with plt.rc_context(STYLE):
        fig, panels = _panels(mean)
        for title, g, ax in panels:
            for method, m in g.groupby("method"):
                m = m.sort_values(group[3:])
                st = styles[method]
                ax.plot(m["value_p"], m["value_speed"], label=method, marker=st["marker"], linestyle=st["linestyle"],
                        color=st["color"], markerfacecolor="white")
                for _, r in m.iterrows():
                    label = f"{int(r['bits'])}" + (f" k{r['k']}" if "k" in group else "")
                    ax.annotate(label, (r["value_p"], r["value_speed"]), fontsize=5,
                                xytext=(2, 2), textcoords="offset points")
            ax.set_yscale("log")
            ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}×"))
            ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.set_xlabel(merged["metric_p"].iloc[0] + " of the fast search")
            ax.set_ylabel(ylabel)
            ax.set_title(title)
            ax.grid(True, which="both", alpha=0.3)
        _legend(fig, [p[2] for p in panels])
        return _save(fig, out, stem)


def speedup_vs_precision(runs, out: Path) -> list[Path]:
    """Wall-clock speed-up over exhaustive float search (log scale) against the fast search's
    own P@k, one point per (method, bits) (mean over seeds; labels = bits), one line per method."""
    frame = _frame(runs)
    mask = frame["metric"].str.match(r"precision@\d+$") & frame["variant"].fillna("").str.startswith("search=")
    return _speed_figure(frame, "speedup_wallclock@", mask, "wall-clock speed-up vs float", "speedup_vs_precision",
                         out)


def suf_vs_precision(runs, out: Path, k: int = 16) -> list[Path]:
    """SUF@k (database size / candidates touched, sparse codes; log scale) against the
    hash-table search's P@k at the same k: one point per run (method, bits, sparsity s, seed),
    the seed means per s joined by one line per method and bits and labelled ``s``; a dotted
    vertical line marks exhaustive search in the re-ranking embedding (mean P@k of the runs'
    ``search=exhaustive_embedding`` rows)."""
    frame = _frame(runs)
    variant = frame["variant"].fillna("")
    frame = frame.assign(s=variant.str.extract(r"(?:^|,)s=(\d+)", expand=False))
    suf = frame[frame["metric"] == f"suf@{k}"]
    pk = frame[(frame["metric"] == f"precision@{k}") & variant.str.contains("search=hash_table")]
    keys = ["dataset", "protocol", "method", "bits", "seed", "s"] + (["method_base"] if "method_base" in frame else [])
    merged = suf.merge(pk, on=keys, suffixes=("_speed", "_p"))
    if merged.empty:
        return []
    exhaustive = frame[(frame["metric"] == f"precision@{k}") & (variant == "search=exhaustive_embedding")]
    styles = _styles(merged["method_base"] if "method_base" in merged else merged["method"])
    with plt.rc_context(STYLE):
        fig, panels = _panels(merged)
        for title, g, ax in panels:
            base = "method_base" if "method_base" in g else "method"    # the sparsity s is the x-series
            for (method, bits), m in g.groupby([base, "bits"]):
                st = styles[method]
                ax.scatter(m["value_p"], m["value_speed"], marker=st["marker"], color=st["color"], s=10,
                           facecolors="white", linewidths=0.8, alpha=0.8)
                mean = m.groupby("s")[["value_p", "value_speed"]].mean().reset_index()
                mean = mean.sort_values("s", key=lambda c: c.astype(int))
                ax.plot(mean["value_p"], mean["value_speed"], label=f"{method} (d={int(bits)})", marker=st["marker"],
                        linestyle=st["linestyle"], color=st["color"])
                for _, r in mean.iterrows():
                    ax.annotate(f"s={r['s']}", (r["value_p"], r["value_speed"]), fontsize=5, xytext=(3, 3),
                                textcoords="offset points")
            ex = exhaustive[(exhaustive["dataset"] == g["dataset"].iloc[0]) & (exhaustive["protocol"] == g["protocol"].iloc[0])]
            if len(ex):
                ax.axvline(ex["value"].mean(), color="0.4", linestyle=":", linewidth=1,
                           label="exhaustive, re-ranking embedding")
            ax.set_yscale("log")
            times = matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:.3g}×")
            ax.yaxis.set_major_formatter(times)
            ax.yaxis.set_minor_formatter(times)
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(5))
            ax.set_xlabel(f"P@{k} of the hash-table search")
            ax.set_ylabel(f"SUF@{k} (database / candidates)")
            ax.set_title(title)
            ax.grid(True, which="both", alpha=0.3)
        _legend(fig, [p[2] for p in panels])
        return _save(fig, out, "suf_vs_precision")


def all_figures(runs, out: Path) -> list[Path]:
    """Every figure above that the runs have data for."""
    frame = _frame(runs)
    return (map_vs_bits(frame, out) + precision_recall(frame, out) + precision_at_k(frame, out)
            + speedup_vs_precision(frame, out) + suf_vs_precision(frame, out))
