"""Aggregating run directories into tables (CSV, Markdown, LaTeX) and figures.

Tables: rows = methods, columns = dataset × bits, cells = mean ± std over seeds (std with
ddof=1; a single seed shows the mean alone); in the Markdown and LaTeX forms the best mean of
each column is bold and the second best underlined (higher is better for every quality metric).
The LaTeX form is a booktabs ``tabular`` (``\\pm``), compiling as-is with ``\\usepackage{booktabs}``.

Optional parts: rows the papers report for the same protocol (``benchmark.reference``), set
apart below a rule, marked "reported by the paper" (†) and never ranked or averaged; the
bootstrap confidence interval over queries of every run's mAP (``map_ci.*``); a paired test of
two methods over the same queries (``compare_<A>_vs_<B>.*``), naming the test (``benchmark.stats``).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from hashbench.benchmark import reference as reference_mod
from hashbench.benchmark import stats, store
from hashbench.benchmark.store import DEFAULT_MAP, variant_string, write_csv_atomic, write_text_atomic

DEFAULT_MAP_VARIANT = variant_string(DEFAULT_MAP)


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


#: How runs of the same cell are resolved (``--duplicates``): see :func:`select_runs`.
DUPLICATE_POLICIES = ("newest", "oldest", "error", "all")
#: A table cell's identity: runs that agree on all of it are duplicates of each other.
CELL = ["method_base", "dataset", "protocol", "bits", "seed", "settings"]


@dataclass
class Collection:
    """What a report holds: the kept metric rows, the decision about every (run, code length)
    read (``selection``: :data:`CELL`, ``run_dir``, ``run_bits``, ``timestamp``,
    ``git_revision``, ``config_hash``, ``kept``, ``reason``), the folders passed over with the
    reason, and the duplicates policy applied."""

    frame: pd.DataFrame
    selection: pd.DataFrame
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    duplicates: str = "newest"


def method_label(method: str, settings: str) -> str:
    """A table row's name: the method, with its settings in brackets when it departs from the
    shipped config (``"dht [sparsity=2]"``)."""
    return f"{method} [{settings}]" if settings else method


def _read_all(runs: list[Path], skip_unreadable: bool, skipped: list[tuple[Path, str]]) -> list[pd.DataFrame]:
    """Every run's metric rows; with ``skip_unreadable`` a run whose ``metrics.csv`` cannot be
    read is appended to ``skipped`` with the reason instead of stopping the report."""
    frames = []
    for run in runs:
        try:
            frames.append(store.read_run_metrics(run))
        except store.UnreadableRunError as err:
            if not skip_unreadable:
                raise store.UnreadableRunError(f"{err} (--skip-unreadable reports the other runs and lists it)") from err
            skipped.append((run, f"unreadable metrics.csv: {err}"))
            logging.getLogger("hashbench").warning("skipped: %s", err)
    return frames


def collect_runs(run_dirs: Iterable[Path], duplicates: str = "newest", skip_unreadable: bool = False) -> Collection:
    """Read the runs in or below ``run_dirs`` (:func:`benchmark.store.find_runs`: unfinished
    ``.tmp-*`` runs and regression-suite work are passed over and listed) and keep one run per
    cell (:func:`select_runs`).

    Columns added to the metric rows: ``method_base`` (the registered name), ``settings`` (the
    recorded departures from the shipped config), and ``method`` becomes :func:`method_label`,
    so runs that differ in settings are different rows of every table and figure, and seeds are
    pooled only across runs with identical settings. An unreadable ``metrics.csv`` stops the
    report with its path; with ``skip_unreadable`` it is listed among the folders passed over."""
    run_dirs = list(run_dirs)
    found = store.find_runs(run_dirs)
    if not found.runs:
        raise FileNotFoundError("no run (metrics.csv beside config.yaml) under: " + ", ".join(map(str, run_dirs)))
    frames = _read_all(found.runs, skip_unreadable, found.skipped)
    if not frames:
        raise FileNotFoundError("no readable run under: " + ", ".join(map(str, run_dirs)))
    frame = pd.concat(frames, ignore_index=True)
    frame["variant"] = frame["variant"].fillna("").astype(str)
    frame["settings"] = frame["settings"].fillna("").astype(str)
    frame["bits"] = frame["bits"].astype(int)
    frame["seed"] = frame["seed"].astype(int)
    frame["method_base"] = frame["method"]
    frame["method"] = [method_label(m, st) for m, st in zip(frame["method_base"], frame["settings"])]
    kept, selection = select_runs(frame, duplicates)
    return Collection(kept.reset_index(drop=True), selection, found.skipped, duplicates)


def load_runs(run_dirs: Iterable[Path], duplicates: str = "newest", skip_unreadable: bool = False) -> pd.DataFrame:
    """The kept metric rows of the runs in or below ``run_dirs`` (:func:`collect_runs`)."""
    return collect_runs(run_dirs, duplicates, skip_unreadable).frame


def select_runs(frame: pd.DataFrame, duplicates: str = "newest") -> tuple[pd.DataFrame, pd.DataFrame]:
    """One run per cell (:data:`CELL`: method, dataset, protocol, bits, seed, settings), by a
    fixed policy; returns (the kept rows, the decision about every (run, bits) read).

    1. Prefixes: a method that evaluates shorter codes from one training (DRQ's prefixes) may
       have runs trained at several lengths: the run trained at that length wins, else the one
       trained at the longest code (a run's own length is the ``bits`` of its
       ``train_seconds`` row).
    2. Duplicates, among the runs left: ``newest`` (default) keeps the run with the latest
       recorded ``timestamp``, ``oldest`` the earliest, ``all`` keeps every one (the cell then
       averages over runs, not just seeds), ``error`` raises a ValueError listing them.

    Every (run, bits) not kept has its ``reason`` in the returned selection."""
    if duplicates not in DUPLICATE_POLICIES:
        raise ValueError(f"unknown duplicates policy {duplicates!r}; valid: {', '.join(DUPLICATE_POLICIES)}")
    own = frame[frame["metric"] == "train_seconds"].groupby("run_dir")["bits"].max()
    info = frame.groupby("run_dir").agg(timestamp=("timestamp", "max"), git_revision=("git_revision", "first"),
                                        config_hash=("config_hash", "first"))
    cand = frame.drop_duplicates(["run_dir", "bits"])[CELL + ["run_dir"]].copy()
    cand["run_bits"] = cand["run_dir"].map(own).fillna(cand["bits"]).astype(int)
    cand = cand.join(info, on="run_dir")
    # exact length first, then the longest training
    cand["_rank"] = (cand["run_bits"] == cand["bits"]).astype(int) * 1_000_000 + cand["run_bits"]
    cand = cand.sort_values(CELL + ["timestamp", "run_dir"], kind="stable").reset_index(drop=True)
    cand["kept"], cand["reason"] = True, "kept"
    for _, g in cand.groupby(CELL, sort=False):
        if len(g) == 1:
            continue
        best = g["_rank"].max()
        for i in g.index[g["_rank"] != best]:
            winner = g.loc[g["_rank"] == best, "run_dir"].iloc[-1]
            cand.loc[i, ["kept", "reason"]] = False, f"prefix of a {cand.at[i, 'run_bits']}-bit training; " \
                f"{Path(winner).name} trained at {'this' if best >= 1_000_000 else 'a longer'} length"
        tied = g.index[g["_rank"] == best]
        if len(tied) == 1 or duplicates == "all":
            continue
        if duplicates == "error":
            raise ValueError(f"{len(tied)} runs of one cell ({', '.join(f'{k}={g.iloc[0][k]}' for k in CELL)}): "
                             + ", ".join(cand.loc[tied, "run_dir"]) + "; choose --duplicates newest|oldest|all")
        keep = tied[-1] if duplicates == "newest" else tied[0]
        for i in tied.drop(keep):
            cand.loc[i, ["kept", "reason"]] = False, f"{'older' if duplicates == 'newest' else 'newer'} duplicate " \
                f"of {Path(cand.at[keep, 'run_dir']).name} (--duplicates {duplicates})"
    selection = cand.drop(columns="_rank")
    chosen = selection.loc[selection["kept"], ["run_dir", "bits"]]
    return frame.merge(chosen, on=["run_dir", "bits"], how="inner"), selection.reset_index(drop=True)


def reference_rows(frame: pd.DataFrame, summ: pd.DataFrame, methods: list[str] | None = None) -> pd.DataFrame:
    """Published rows (``benchmark.reference``) for the table's columns: same dataset, protocol
    (of the runs), metric and code length, of ``methods`` (published names, any case; None: all).
    Columns: :data:`benchmark.reference.COLUMNS`."""
    parts = []
    for (dataset, metric), g in summ.groupby(["dataset", "metric"]):
        for protocol in frame.loc[frame["dataset"] == dataset, "protocol"].unique():
            parts.append(reference_mod.matching(dataset, protocol, metric, bits=g["bits"].unique().tolist(),
                                                methods=methods))
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame(columns=reference_mod.COLUMNS)
    return pd.concat(parts, ignore_index=True)


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(text: str) -> str:
    """``text`` with LaTeX's special characters escaped."""
    return "".join(_LATEX_SPECIAL.get(c, c) for c in str(text))


def reference_label(method: str, style: str) -> str:
    """Row label of a published row: the method with a dagger, "reported by the paper"."""
    if style == "latex":
        return rf"{latex_escape(method)}$^\dagger$"
    if style == "markdown":
        return f"{method} † ({reference_mod.LABEL})"
    return f"{method} [{reference_mod.LABEL}]"


def _cells(summ: pd.DataFrame, style: str = "plain", reference: pd.DataFrame | None = None) -> pd.DataFrame:
    """Methods × (dataset, metric, bits) cells; computed rows ranked (bold best, underlined
    second), published rows appended after them, formatted alone and never ranked."""
    means = summ.pivot_table(index="method", columns=["dataset", "metric", "bits"], values="mean")
    stds = summ.pivot_table(index="method", columns=["dataset", "metric", "bits"], values="std", dropna=False)
    stds = stds.reindex_like(means)
    out = pd.DataFrame(index=means.index, columns=means.columns, dtype=object)
    for col in means.columns:
        order = means[col].dropna().sort_values(ascending=False).index.tolist()
        for m in means.index:
            text = _cell(means.at[m, col], stds.at[m, col])
            if style == "latex":
                text = text.replace("±", r"$\pm$").replace("—", "--")
            if order and m == order[0] and len(order) > 1:
                text = f"**{text}**" if style == "markdown" else (rf"\textbf{{{text}}}" if style == "latex" else text)
            elif len(order) > 2 and m == order[1]:
                text = f"<u>{text}</u>" if style == "markdown" else (rf"\underline{{{text}}}" if style == "latex" else text)
            out.at[m, col] = text
    if style == "latex":
        out.index = [latex_escape(m) for m in out.index]
    if reference is not None and len(reference):
        ref = pd.DataFrame(index=pd.unique(reference["method"]), columns=out.columns, dtype=object)
        for _, r in reference.iterrows():
            key = (r["dataset"], r["metric"], int(r["bits"]))
            if key in ref.columns:
                ref.at[r["method"], key] = f"{r['value']:.3f}"
        ref = ref.dropna(how="all").fillna("--" if style == "latex" else "—")
        ref.index = [reference_label(m, style) for m in ref.index]
        out = pd.concat([out, ref])
    out.index.name = None
    return out


def pivot(summ: pd.DataFrame, style: str = "plain", reference: pd.DataFrame | None = None) -> pd.DataFrame:
    """Methods × (dataset, metric, bits) table of ``mean ± std`` strings; ``style`` "markdown" or
    "latex" marks each column's best mean bold and the second best underlined; ``reference``
    rows (published numbers) are appended, labelled, unranked."""
    out = _cells(summ, style, reference)
    out.columns = [f"{d} {metric} {b}b" for d, metric, b in out.columns]
    return out


def latex_table(summ: pd.DataFrame, reference: pd.DataFrame | None = None, caption: str = "") -> str:
    """The table as a booktabs ``tabular`` (pandas Styler): a header row per dataset (metric)
    spanning its code lengths, ``$\\pm$`` cells, published rows below a ``\\midrule`` with a
    dagger and a note under the table. Needs only ``\\usepackage{booktabs}``."""
    cells = _cells(summ, "latex", reference)
    cells.columns = pd.MultiIndex.from_tuples([(f"{latex_escape(d)} ({latex_escape(m).replace('map', 'mAP')})",
                                                f"{b} bits") for d, m, b in cells.columns])
    body = cells.fillna("--").style.hide(axis="index", names=True).to_latex(
        hrules=True, column_format="l" + "c" * cells.shape[1], multicol_align="c")
    lines = body.splitlines()
    n_ref = 0 if reference is None or not len(reference) else sum(1 for i in cells.index if "dagger" in i)
    if n_ref:
        first_ref = next(i for i, line in enumerate(lines) if line.split(" & ")[0].endswith(r"$^\dagger$"))
        lines.insert(first_ref, r"\midrule")
        sources = "; ".join(sorted(set(reference["source"])))
        note = (rf"\multicolumn{{{cells.shape[1] + 1}}}{{l}}{{\footnotesize $^\dagger$ {reference_mod.LABEL}"
                rf" ({latex_escape(sources)}), not measured here.}} \\")
        lines.insert(len(lines) - 1, note)
    head = [f"% {line}" for line in caption.splitlines()] + ["% Needs \\usepackage{booktabs}."]
    return "\n".join(head + lines) + "\n"


def map_intervals(frame: pd.DataFrame, level: float = 0.95, n_resamples: int = 9999, seed: int = 0) -> pd.DataFrame:
    """Bootstrap CI over queries of every run's mAP (default variant) and code length, from
    ``per_query.npz`` (``benchmark.stats.bootstrap_ci``, percentile method)."""
    rows = main_rows(frame)
    records = []
    for (run_dir, bits), g in rows.groupby(["run_dir", "bits"], sort=True):
        try:
            ap = stats.per_query_ap(Path(run_dir)).get(int(bits))
        except FileNotFoundError:
            continue
        if ap is None:
            continue
        ci = stats.bootstrap_ci(ap, level=level, n_resamples=n_resamples, seed=seed)
        r = g.iloc[0]
        records.append(dict(method=r["method"], dataset=r["dataset"], protocol=r["protocol"], metric=r["metric"],
                            bits=int(bits), seed=int(r["seed"]), map=float(r["value"]), ci_low=ci.low, ci_high=ci.high,
                            level=level, queries=ci.n, interval=ci.method, run_dir=run_dir))
    cols = ["method", "dataset", "protocol", "metric", "bits", "seed", "map", "ci_low", "ci_high", "level", "queries",
            "interval", "run_dir"]
    return pd.DataFrame.from_records(records, columns=cols).sort_values(["dataset", "method", "bits", "seed"]) \
        .reset_index(drop=True)


def compare_methods(frame: pd.DataFrame, a: str, b: str, test: str = "permutation", seed: int = 0) -> pd.DataFrame:
    """Paired test of methods ``a`` and ``b`` on per-query AP (default mAP variant) for every
    (dataset, protocol, bits, seed) both have, on the same queries (checked through the query
    indices' sha256): mAP of each, mean difference a − b with its bootstrap 95% CI, p-value, test name."""
    rows = main_rows(frame)
    for name in (a, b):
        if name not in set(rows["method"]):
            raise ValueError(f"no runs of method {name!r}; have: {', '.join(sorted(rows['method'].unique()))}")
    records = []
    keys = ["dataset", "protocol", "bits", "seed"]
    ra = rows[rows["method"] == a].drop_duplicates(keys)
    rb = rows[rows["method"] == b].drop_duplicates(keys)
    for _, x in ra.merge(rb, on=keys, suffixes=("_a", "_b")).iterrows():
        if stats.query_fingerprint(Path(x["run_dir_a"])) != stats.query_fingerprint(Path(x["run_dir_b"])):
            continue
        pa = stats.per_query_ap(Path(x["run_dir_a"])).get(int(x["bits"]))
        pb = stats.per_query_ap(Path(x["run_dir_b"])).get(int(x["bits"]))
        if pa is None or pb is None:
            continue
        res = stats.paired_test(pa, pb, test=test, seed=seed)
        records.append({**{k: x[k] for k in keys}, "queries": res.n, f"mAP {a}": res.mean_a, f"mAP {b}": res.mean_b,
                        "difference": res.mean_diff, "ci95_low": res.diff_low, "ci95_high": res.diff_high,
                        "p_value": res.p_value, "test": res.test})
    if not records:
        raise ValueError(f"no runs of {a} and {b} on the same queries (same dataset, protocol, bits and seed)")
    return pd.DataFrame.from_records(records).sort_values(keys).reset_index(drop=True)


def _caption(frame: pd.DataFrame, summ: pd.DataFrame) -> str:
    metrics = ", ".join(sorted(summ["metric"].unique()))
    counts = sorted(summ["n"].unique())
    hw = "; ".join(sorted(frame["hardware"].dropna().astype(str).unique()))
    revs = ", ".join(sorted({r[:7] + ("+dirty" if r.endswith("+dirty") else "")
                             for r in frame["git_revision"].dropna().astype(str)}))
    return (f"{metrics} ({DEFAULT_MAP_VARIANT if metrics.startswith('map@') else 'first variant'}), mean ± std over "
            f"runs ({'/'.join(str(int(n)) for n in counts)} per cell: one per seed unless --duplicates all); "
            "best in bold, second underlined.\n"
            f"Measured on: {hw}; git {revs}.")


def comparison_table(frame: pd.DataFrame) -> str:
    """The table ``make bench`` prints: mAP (default variant), P@100, NMI (k-means) and
    wall-clock speed-up per method and code length, mean ± std over seeds, as Markdown; for
    sparse codes (hash tables) also P@1 and P@16 of the table search, SUF@16 and bucket NMI.
    Speed-up and recall are those against exhaustive float search on the reference features."""
    parts = []
    variant = frame["variant"].fillna("")
    on_features = variant.str.contains("reference=faiss_flat_l2_features", regex=False)
    table_search = variant.str.contains("search=hash_table", regex=False)
    picks = [
        ("mAP", frame["metric"].str.startswith("map@") & (variant == DEFAULT_MAP_VARIANT)),
        ("P@100", (frame["metric"] == "precision@100") & (variant == "ties=expected")),
        ("NMI (k-means)", frame["metric"] == "nmi_kmeans"),
        ("speed-up vs float", frame["metric"].str.startswith("speedup_wallclock@") & on_features),
        ("recall of exact top-100", frame["metric"].str.startswith("recall_of_exact@") & on_features),
        ("hash table P@1", (frame["metric"] == "precision@1") & table_search),
        ("hash table P@16", (frame["metric"] == "precision@16") & table_search),
        ("SUF@16 (database / candidates)", frame["metric"] == "suf@16"),
        ("NMI (buckets)", frame["metric"] == "nmi_buckets"),
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


def _describe_roots(roots: Iterable[Path]) -> str:
    """The folders a report was given, in words: folders by name, run directories named one by
    one counted per parent folder."""
    folders, named = [], {}
    for r in map(Path, roots):
        if (r / "metrics.csv").exists():
            named[str(r.parent)] = named.get(str(r.parent), 0) + 1
        else:
            folders.append(str(r))
    parts = folders + [f"{n} run{'s' if n > 1 else ''} of {parent} named one by one" for parent, n in named.items()]
    return ", ".join(parts)


def selection_notes(col: Collection, roots: Iterable[Path]) -> str:
    """The report's account of its runs, as Markdown: how many runs it holds from where, the
    duplicates policy, every dropped (run, bits) with the reason and every folder passed over."""
    sel = col.selection
    held = sel.loc[sel["kept"], "run_dir"].nunique()
    dropped = sel[~sel["kept"]]
    lines = [f"_Runs: {held} run directories held (listed in runs.csv) of {sel['run_dir'].nunique()} read from "
             f"{_describe_roots(roots)}; runs of one cell (method, dataset, protocol, bits, seed, settings) "
             f"resolved by `--duplicates {col.duplicates}`; seeds pooled only across runs with the same settings._"]
    if len(dropped):
        lines.append(f"\nDropped ({len(dropped)}):\n")
        lines += [f"- `{r.run_dir}` at {r.bits} bits: {r.reason}" for r in dropped.itertuples()]
    if col.skipped:
        lines.append(f"\nPassed over ({len(col.skipped)}):\n")
        lines += [f"- `{path}`: {why}" for path, why in col.skipped]
    return "\n".join(lines)


def write_report(run_dirs: Iterable[Path], out: Path, metric: str | None = None,
                 reference: bool | list[str] = False, ci: bool = True, figures: bool = True,
                 duplicates: str = "newest", skip_unreadable: bool = False) -> list[Path]:
    """Write ``table.csv`` (tidy mean/std/n), ``table.md`` and ``table.tex`` (booktabs), and
    ``runs.csv`` (every run and code length read: kept or dropped, and why); with
    ``reference`` (True, or a list of published method names): ``reference.csv`` and the
    published rows in the tables; with ``ci``:
    ``map_ci.csv``/``map_ci.md`` (bootstrap CI over queries of each run's mAP); with ``figures``:
    the figures of :mod:`benchmark.figures`, all under ``out``; returns the paths written.
    ``duplicates``: how runs of one cell are resolved (:func:`select_runs`); table.md's notes
    list every dropped run and every folder passed over (with ``skip_unreadable``, the runs whose
    ``metrics.csv`` could not be read, each with the reason)."""
    from hashbench.benchmark import figures as figures_mod

    run_dirs = list(run_dirs)
    col = collect_runs(run_dirs, duplicates, skip_unreadable)
    frame = col.frame
    summ = summary(main_rows(frame, metric))
    ref = reference_rows(frame, summ, None if reference is True else list(reference)) if reference else None
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "table.csv", out / "runs.csv"]
    caption = _caption(frame, summ)
    write_csv_atomic(summ, out / "table.csv")
    write_csv_atomic(col.selection, out / "runs.csv")
    md = pivot(summ, "markdown", ref).to_markdown()
    notes = "\n".join(f"_{line}_" for line in caption.splitlines())
    if ref is not None and len(ref):
        notes += (f"\n_† {reference_mod.LABEL} ({'; '.join(sorted(set(ref['source'])))}); not measured here, "
                  "not ranked._")
        write_csv_atomic(ref, out / "reference.csv")
        written.append(out / "reference.csv")
    notes += "\n\n" + selection_notes(col, run_dirs)
    written.append(write_text_atomic(md + "\n\n" + notes + "\n", out / "table.md"))
    written.append(write_text_atomic(latex_table(summ, ref, caption), out / "table.tex"))
    if ci and metric is None:
        intervals = map_intervals(frame)
        if len(intervals):
            write_csv_atomic(intervals, out / "map_ci.csv")
            show = intervals.assign(**{"95% CI": [f"[{lo:.3f}, {hi:.3f}]" for lo, hi in
                                                  zip(intervals["ci_low"], intervals["ci_high"])]})
            show = show[["method", "dataset", "bits", "seed", "map", "95% CI", "queries"]]
            text = show.to_markdown(index=False, floatfmt=".3f") + ("\n\n_Percentile bootstrap over queries "
                                                                     "(9,999 resamples) of each run's per-query AP._\n")
            written += [out / "map_ci.csv", write_text_atomic(text, out / "map_ci.md")]
    if figures:
        written += figures_mod.all_figures(frame, out)
    return written


def write_comparison(run_dirs: Iterable[Path], out: Path, a: str, b: str, test: str = "permutation",
                     duplicates: str = "newest", skip_unreadable: bool = False) -> tuple[str, list[Path]]:
    """Write ``compare_<a>_vs_<b>.csv``/``.md`` under ``out`` (see :func:`compare_methods`) from
    the runs :func:`load_runs` keeps under ``duplicates``; returns the Markdown text and the paths."""
    table = compare_methods(load_runs(list(run_dirs), duplicates, skip_unreadable), a, b, test=test)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"compare_{a}_vs_{b}"
    write_csv_atomic(table, out / f"{stem}.csv")
    show = table.drop(columns=["test"]).copy()
    show["95% CI"] = [f"[{lo:+.4f}, {hi:+.4f}]" for lo, hi in zip(table["ci95_low"], table["ci95_high"])]
    show = show.drop(columns=["ci95_low", "ci95_high"])
    text = (show.to_markdown(index=False, floatfmt=".4f") + f"\n\n_difference = mAP {a} − mAP {b} over the same "
            f"queries; 95% CI by percentile bootstrap over query pairs; p: {table['test'].iloc[0]}._")
    write_text_atomic(text + "\n", out / f"{stem}.md")
    return text, [out / f"{stem}.csv", out / f"{stem}.md"]
