"""Figures from result tables, one call each (matplotlib; PDF and PNG; black-and-white safe:
every method gets its own marker and line style as well as a colour)."""
from __future__ import annotations

import json
from itertools import cycle
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*", "h", "<", ">"]
LINES = ["-", "--", "-.", ":"]


def _styles(methods: list[str]) -> dict[str, dict]:
    m, line = cycle(MARKERS), cycle(LINES)
    return {name: {"marker": next(m), "linestyle": next(line)} for name in sorted(methods)}


def _save(fig, out: Path, stem: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{stem}.pdf", out / f"{stem}.png"]
    for p in paths:
        fig.savefig(p, bbox_inches="tight", dpi=150)
    plt.close(fig)
    return paths


def map_vs_bits(frame: pd.DataFrame, out: Path, variant: str) -> list[Path]:
    """mAP (default variant) against code length, one line per method, mean ± std over seeds."""
    rows = frame[frame["metric"].str.startswith("map@") & (frame["variant"].fillna("") == variant)]
    if rows.empty:
        return []
    fig, ax = plt.subplots(figsize=(4.5, 3.4))
    styles = _styles(rows["method"].unique().tolist())
    for method, g in rows.groupby("method"):
        s = g.groupby("bits")["value"].agg(["mean", "std"]).reset_index()
        ax.errorbar(s["bits"], s["mean"], yerr=s["std"].fillna(0), label=method, capsize=2, color="black"
                    if len(styles) == 1 else None, **styles[method])
    ax.set_xlabel("code length (bits)")
    ax.set_ylabel(rows["metric"].iloc[0].replace("map", "mAP"))
    ax.set_title(f"{rows['dataset'].iloc[0]} ({rows['protocol'].iloc[0]})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, out, "map_vs_bits")


def precision_at_k(frame: pd.DataFrame, out: Path) -> list[Path]:
    """P@k (expected under ties, exact ranking) against k, one line per (method, bits)."""
    rows = frame[frame["metric"].str.match(r"precision@\d+$") & (frame["variant"].fillna("") == "ties=expected")]
    if rows.empty:
        return []
    rows = rows.assign(k=rows["metric"].str.split("@").str[1].astype(int))
    fig, ax = plt.subplots(figsize=(4.5, 3.4))
    styles = _styles(rows["method"].unique().tolist())
    for (method, bits), g in rows.groupby(["method", "bits"]):
        s = g.groupby("k")["value"].mean()
        ax.plot(s.index, s.values, label=f"{method} {bits}b", **styles[method])
    ax.set_xscale("log")
    ax.set_xlabel("k")
    ax.set_ylabel("precision@k")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, ncol=2)
    return _save(fig, out, "precision_at_k")


def precision_recall(frame: pd.DataFrame, out: Path) -> list[Path]:
    """Precision–recall over rank cut-offs (from each run's ``curves.json``), first seed of each
    (method, bits)."""
    fig, ax = plt.subplots(figsize=(4.5, 3.4))
    runs = frame.drop_duplicates(["method", "bits"])[["method", "bits", "run_dir"]]
    styles = _styles(runs["method"].unique().tolist())
    drawn = 0
    for _, row in runs.iterrows():
        path = Path(row["run_dir"]) / "curves.json"
        if not path.exists():
            continue
        curves = json.loads(path.read_text()).get(str(row["bits"]), {})
        pr = curves.get("pr_rank")
        if not pr:
            continue
        ax.plot(pr["recall"], pr["precision"], label=f"{row['method']} {row['bits']}b", **styles[row["method"]])
        drawn += 1
    if not drawn:
        plt.close(fig)
        return []
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, ncol=2)
    return _save(fig, out, "precision_recall")


def speedup_vs_precision(frame: pd.DataFrame, out: Path) -> list[Path]:
    """Wall-clock speed-up over exhaustive float search (log scale) against the fast search's
    own P@k, one point per (method, bits, seed)."""
    sp = frame[frame["metric"].str.startswith("speedup_wallclock@")]
    pk = frame[frame["metric"].str.match(r"precision@\d+$") & frame["variant"].fillna("").str.startswith("search=")]
    if sp.empty or pk.empty:
        return []
    keys = ["method", "bits", "seed", "dataset"]
    merged = sp.merge(pk, on=keys, suffixes=("_speed", "_p"))
    fig, ax = plt.subplots(figsize=(4.5, 3.4))
    styles = _styles(merged["method"].unique().tolist())
    for method, g in merged.groupby("method"):
        ax.scatter(g["value_p"], g["value_speed"], label=method, marker=styles[method]["marker"],
                   facecolors="none", edgecolors="black")
    ax.set_yscale("log")
    ax.set_xlabel(merged["metric_p"].iloc[0] + " of the fast search")
    ax.set_ylabel("wall-clock speed-up vs float")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    return _save(fig, out, "speedup_vs_precision")


def all_figures(frame: pd.DataFrame, out: Path) -> list[Path]:
    """Every figure above that the frame has data for."""
    from benchmark.report import DEFAULT_MAP_VARIANT

    return (map_vs_bits(frame, out, DEFAULT_MAP_VARIANT) + precision_recall(frame, out)
            + precision_at_k(frame, out) + speedup_vs_precision(frame, out))
