"""Aggregating run directories into tables (CSV, Markdown, LaTeX) and figures.

Tables: rows = methods, columns = dataset × bits, cells = mean ± std over seeds (std with
ddof=1; a single seed shows the mean alone); in the Markdown and LaTeX forms the best mean of
each column is bold and the second best underlined (higher is better for every quality metric).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from benchmark.store import load_metrics, variant_string, write_csv_atomic

DEFAULT_MAP_VARIANT = variant_string({"ties": "expected", "denominator": "relevant_retrieved", "empty": "zero"})


def main_rows(frame: pd.DataFrame, metric: str | None = None) -> pd.DataFrame:
    """Rows of ``metric`` in its default variant; ``None`` → each dataset's mAP (default variant)."""
    variant = frame["variant"].fillna("")
    if metric is None:
        return frame[frame["metric"].str.startswith("map@") & (variant == DEFAULT_MAP_VARIANT)]
    rows = frame[frame["metric"] == metric]
    if rows.empty:
        raise ValueError(f"metric {metric!r} not found; available: {', '.join(sorted(frame['metric'].unique()))}")
    first = rows["variant"].fillna("").iloc[0]
    return rows[rows["variant"].fillna("") == first]


def summary(rows: pd.DataFrame) -> pd.DataFrame:
    """mean, std, n over seeds per (method, dataset, metric, bits)."""
    g = rows.groupby(["method", "dataset", "metric", "bits"])["value"]
    return g.agg(mean="mean", std=lambda v: v.std(ddof=1) if len(v) > 1 else np.nan, n="count").reset_index()


def _cell(mean: float, std: float, digits: int = 3) -> str:
    if np.isnan(mean):
        return "—"
    return f"{mean:.{digits}f}" if np.isnan(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def pivot(summ: pd.DataFrame, style: str = "plain") -> pd.DataFrame:
    """Methods × (dataset, metric, bits) table of ``mean ± std`` strings; ``style`` "markdown" or
    "latex" marks each column's best mean bold and the second best underlined."""
    means = summ.pivot_table(index="method", columns=["dataset", "metric", "bits"], values="mean")
    stds = summ.pivot_table(index="method", columns=["dataset", "metric", "bits"], values="std", dropna=False)
    stds = stds.reindex_like(means)
    out = pd.DataFrame(index=means.index, columns=means.columns, dtype=object)
    for col in means.columns:
        order = means[col].dropna().sort_values(ascending=False).index.tolist()
        for m in means.index:
            text = _cell(means.at[m, col], stds.at[m, col])
            if style == "latex":
                text = text.replace("±", r"$\pm$")
            if order and m == order[0] and len(order) > 1:
                text = f"**{text}**" if style == "markdown" else (rf"\textbf{{{text}}}" if style == "latex" else text)
            elif len(order) > 2 and m == order[1]:
                text = f"<u>{text}</u>" if style == "markdown" else (rf"\underline{{{text}}}" if style == "latex" else text)
            out.at[m, col] = text
    out.columns = [f"{d} {metric} {b}b" for d, metric, b in out.columns]
    return out


def comparison_table(frame: pd.DataFrame) -> str:
    """The table ``make bench`` prints: mAP (default variant), P@100, NMI (k-means) and
    wall-clock speed-up per method and code length, mean ± std over seeds, as Markdown."""
    parts = []
    variant = frame["variant"].fillna("")
    picks = [
        ("mAP", frame["metric"].str.startswith("map@") & (variant == DEFAULT_MAP_VARIANT)),
        ("P@100", (frame["metric"] == "precision@100") & (variant == "ties=expected")),
        ("NMI (k-means)", frame["metric"] == "nmi_kmeans"),
        ("speed-up vs float", frame["metric"].str.startswith("speedup_wallclock@")),
        ("recall of exact top-100", frame["metric"].str.startswith("recall_of_exact@")),
    ]
    for title, mask in picks:
        rows = frame[mask]
        if rows.empty:
            continue
        summ = summary(rows)
        table = summ.assign(cell=[_cell(m, s) for m, s in zip(summ["mean"], summ["std"])]).pivot_table(
            index="method", columns="bits", values="cell", aggfunc="first")
        table.columns = [f"{b} bits" for b in table.columns]
        metric_name = rows["metric"].iloc[0]
        parts.append(f"### {title} ({metric_name}; {frame['dataset'].iloc[0]}, {frame['protocol'].iloc[0]})\n\n"
                     + table.fillna("—").to_markdown())
    return "\n\n".join(parts)


def write_report(run_dirs: Iterable[Path], out: Path, metric: str | None = None) -> list[Path]:
    """Write ``table.csv`` (tidy mean/std/n), ``table.md`` and ``table.tex`` (booktabs) and the
    figures of :mod:`benchmark.figures` under ``out``; returns the paths written."""
    from benchmark import figures

    frame = load_metrics(list(run_dirs))
    summ = summary(main_rows(frame, metric))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    write_csv_atomic(summ, out / "table.csv")
    written.append(out / "table.csv")
    (out / "table.md").write_text(pivot(summ, "markdown").to_markdown() + "\n")
    written.append(out / "table.md")
    latex = pivot(summ, "latex").to_latex(escape=False, column_format="l" + "c" * len(summ.groupby(["dataset", "metric", "bits"])))
    latex = latex.replace(r"\toprule", r"\toprule").replace("_", r"\_")
    (out / "table.tex").write_text(latex)
    written.append(out / "table.tex")
    written += figures.all_figures(frame, out)
    return written
