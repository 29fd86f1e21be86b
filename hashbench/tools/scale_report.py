"""Tables and QPS–recall figures of the scale benchmark (``hashbench/tools/search_scale.py``).

Reads every finished ``<runs>/n*_c*_q*.csv`` (and ``crossover.csv`` / ``map_engine_*.csv`` when
present) and writes, under ``--out``: ``table.md`` (all points, per N and class count; the
hash table against its Python loop; cost per candidate against a flat scan's cost per item; the
crossover; the metric engine) and one figure per (N, classes, code type),
``qps_recall_n<N>_c<C>_<code>.png``: ann-benchmarks style, queries per second at 1 thread (log)
against recall@100 in the backend's own space, one line per backend (its knob swept), the float
references (IndexFlatL2, HNSW, IVF) on every figure, and the Pareto frontier of all points drawn
dashed. Existing outputs are not overwritten (``--force`` replaces them).

Usage: python -m hashbench.tools.scale_report [--runs results/scale/runs] [--out results/scale] [--force]
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

FLOAT = "float"


def pareto(points: pd.DataFrame) -> pd.DataFrame:
    """Points not dominated in (recall ↑, qps_1t ↑), by recall."""
    p = points.sort_values(["recall", "qps_1t"], ascending=[False, False])
    keep, best = [], -np.inf
    for i, row in p.iterrows():
        if row["qps_1t"] > best:
            keep.append(i)
            best = row["qps_1t"]
    return points.loc[keep].sort_values("recall")


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower()


def figure(df: pd.DataFrame, code: str, path: Path) -> None:
    pts = df[(df["code"].isin([code, FLOAT])) & ~df["backend"].str.contains("Python loop")].dropna(subset=["recall"])
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for backend, g in pts.groupby("backend", sort=False):
        g = g.sort_values("recall")
        ax.plot(g["recall"], g["qps_1t"], marker="o", ms=3.5, lw=1.2, label=backend,
                ls="-" if g["code"].iloc[0] == code else ":")
    front = pareto(pts)
    ax.plot(front["recall"], front["qps_1t"], "k--", lw=0.8, alpha=0.6, label="Pareto frontier")
    ax.set_yscale("log")
    ax.set_xlabel("recall@100 (own space)")
    ax.set_ylabel("queries per second, 1 thread")
    n, c = int(df["n"].iloc[0]), int(df["classes"].iloc[0])
    ax.set_title(f"N = {n:,}, {c} classes, {code}: {int(df['queries'].iloc[0])} queries", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=6.5, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def fmt(v, digits=3):
    if isinstance(v, (float, np.floating)):
        if not np.isfinite(v):
            return "–"
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.{digits}g}"
    return str(v)


def md_table(df: pd.DataFrame, cols: list[str]) -> str:
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in df.iterrows():
        lines.append("| " + " | ".join(fmt(row[c]) for c in cols) + " |")
    return "\n".join(lines)


def loop_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Vectorised hash table (k = 100) against its Python loop: 1-thread QPS ratio."""
    out = []
    for _, lp in df[df["backend"].str.endswith("[Python loop]")].iterrows():
        name = lp["backend"].replace(" [Python loop]", "")
        fast = df[(df["code"] == lp["code"]) & (df["backend"] == name) & (df["value"].astype(str) == "100")]
        if len(fast):
            f = fast.iloc[0]
            out.append({"code": lp["code"], "backend": name, "candidates": f["candidates"],
                        "qps_loop_1t": lp["qps_1t"], "qps_vectorised_1t": f["qps_1t"],
                        "speedup": f["qps_1t"] / lp["qps_1t"], "load": f"{lp['load_1t']:.1f} / {f['load_1t']:.1f}"})
    return pd.DataFrame(out)


def cost_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Hash table (k = 100): seconds per candidate against IndexFlatL2's seconds per item (1 thread)."""
    flat = df[df["backend"] == "IndexFlatL2"]
    if flat.empty:
        return pd.DataFrame()
    n = float(df["n"].iloc[0])
    flat_ns = 1e9 / (flat["qps_1t"].iloc[0] * n)
    sel = df[df["code"].str.startswith(("sparse", "cascade")) & (df["value"].astype(str) == "100")
             & ~df["backend"].str.contains("Python loop")]
    out = []
    for _, r in sel.iterrows():
        ns = 1e9 / (r["qps_1t"] * r["candidates"])
        out.append({"code": r["code"], "backend": r["backend"], "candidates": r["candidates"],
                    "SUF": n / r["candidates"], "ns_per_candidate": ns, "flat_ns_per_item": flat_ns,
                    "ratio": ns / flat_ns, "speedup_vs_flat": r["qps_1t"] / flat["qps_1t"].iloc[0],
                    "recall": r["recall"]})
    return pd.DataFrame(out)


def write(path: Path, text: str, force: bool) -> None:
    if path.exists() and not force:
        raise FileExistsError(f"{path} exists (use --force to replace it)")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=Path, default=Path("results/scale/runs"))
    ap.add_argument("--out", type=Path, default=Path("results/scale"))
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    parts = ["# Search at scale: measured tables (generated by hashbench/tools/scale_report.py)\n"]
    for csv in sorted(args.runs.glob("n*_c*_q*.csv"), key=lambda p: (len(p.name), p.name)):
        if csv.name.endswith(".partial.csv"):
            continue
        df = pd.read_csv(csv)
        n, c, q = int(df["n"].iloc[0]), int(df["classes"].iloc[0]), int(df["queries"].iloc[0])
        parts.append(f"\n## N = {n:,}, {c} classes, {q} queries (`{csv.name}`)\n")
        cols = ["code", "backend", "knob", "value", "build_s", "bytes_per_item", "qps_1t", "qps_all",
                "candidates", "recall", "recall_emb", "p_at_100", "load_1t"]
        parts.append(md_table(df, cols))
        lr = loop_rows(df)
        if len(lr):
            parts.append("\n\nVectorised hash table (k = 100) vs the Python loop, 1 thread (load: loop / vectorised):\n")
            parts.append(md_table(lr, list(lr.columns)))
        cr = cost_rows(df)
        if len(cr):
            parts.append("\n\nCost per candidate (hash table, k = 100) vs IndexFlatL2's cost per item, 1 thread:\n")
            parts.append(md_table(cr, list(cr.columns)))
        for code in [x for x in df["code"].unique() if x != FLOAT]:
            path = args.out / f"qps_recall_n{n}_c{c}_{slug(code)}.png"
            if path.exists() and not args.force:
                raise FileExistsError(f"{path} exists (use --force to replace it)")
            figure(df, code, path)
            os.chmod(path, 0o644)
        parts.append("\n")
    for csv in sorted(args.runs.glob("crossover*.csv")):
        parts.append(f"\n## Hash table (k = 100) vs IndexFlatL2 on its embedding and vs the Python loop, 1 thread (`{csv.name}`)\n")
        cx = pd.read_csv(csv)
        parts.append(md_table(cx, list(cx.columns)))
        parts.append("\n")
    for csv in sorted(args.runs.glob("map_engine_*.csv")):
        parts.append(f"\n## Metric engine (`{csv.name}`)\n")
        m = pd.read_csv(csv)
        parts.append(md_table(m, list(m.columns)))
        parts.append("\n")
    write(args.out / "table.md", "\n".join(parts), args.force)
    print(f"wrote {args.out / 'table.md'} and the figures")


if __name__ == "__main__":
    main()
