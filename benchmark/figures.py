"""Figures from result tables or run directories, one call each (matplotlib; PDF and PNG).

Every figure is two steps: a pure function builds a small data frame of exactly what is
plotted (``*_data``: which points, which x and y, which reference), and a drawing function
plots that frame. Tests assert on the frames; the drawing adds no numbers of its own.

Every figure takes ``runs`` — a long metric table (``benchmark.report.load_runs``, one run per
cell) or an iterable of run directories — and an output folder, and returns the files written
(none when the runs hold no data for it). Several datasets give one panel each.

Style: one fixed colour and marker per method name in every figure and every report
(:func:`method_style`: a hand-set pair for each registered method, all different; any other
name, a plugin's, gets a pair from its name's CRC-32, so it is stable too), solid lines for a
method's shipped config and a dashed pattern per other ``settings``; markers keep the lines
apart when printed in grey. One legend entry per plotted row; point labels that would overlap
another are left out (:func:`keep_non_overlapping`).

- :func:`map_vs_bits`: mAP (default variant) against code length, mean ± std over runs;
- :func:`precision_recall`: precision–recall over rank cut-offs (``curves.json``), per method;
- :func:`precision_at_k`: P@k of the exact code ranking against k (log scale), per method;
- :func:`speedup_vs_precision`: wall-clock speed-up of each method's search over exhaustive
  float search on the reference features (one reference for every method; log scale) against
  the P@k of that same search at the same k (hash-table search for sparse codes);
- :func:`suf_vs_precision`: SUF@k against the hash table's P@k (sparse codes), one point per
  run, joined over the sparsity s.
"""
from __future__ import annotations

import json
import logging
import zlib
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import matplotlib.ticker
import pandas as pd

from hashbench.benchmark.store import write_atomic

logging.getLogger("fontTools").setLevel(logging.WARNING)  # PDF font subsetting chatter

#: 16 colours: Okabe–Ito's 8, then Paul Tol's muted/dark ones, all distinct in hue or grey level.
PALETTE = ["#000000", "#E69F00", "#0072B2", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442",
           "#882255", "#44AA99", "#999933", "#332288", "#AA4499", "#661100", "#6699CC", "#888888"]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*", "h", "<", ">", "p", "8", "d"]
#: Dash patterns for settings other than the shipped config (solid).
DASHES = ["--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)), (0, (1, 2))]
#: (colour, marker) of every registered method: a colour and a marker each method alone has.
METHOD_STYLES = {
    "lsh": (PALETTE[0], MARKERS[0]), "itq": (PALETTE[1], MARKERS[1]), "hashnet": (PALETTE[2], MARKERS[2]),
    "drq": (PALETTE[3], MARKERS[3]), "pq": (PALETTE[4], MARKERS[4]), "rq": (PALETTE[5], MARKERS[5]),
    "exhaustive": (PALETTE[15], MARKERS[6]), "dht": (PALETTE[6], MARKERS[7]), "dht-th": (PALETTE[8], MARKERS[8]),
    "dht-vq": (PALETTE[9], MARKERS[9]), "cascade-dht": (PALETTE[11], MARKERS[10]),
}
STYLE = {
    "font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "xtick.labelsize": 7, "ytick.labelsize": 7,
    "legend.fontsize": 6.5, "legend.frameon": False, "lines.linewidth": 1.2, "lines.markersize": 4,
    "axes.grid": True, "grid.alpha": 0.3, "grid.linewidth": 0.5, "axes.spines.top": False,
    "axes.spines.right": False, "savefig.bbox": "tight", "pdf.fonttype": 42,
}
PANEL = (3.2, 2.5)
PANEL_KEYS = ["dataset", "protocol"]
#: The one speed reference of :func:`speedup_vs_precision`: exact float search on the reference features.
SPEED_REFERENCE = "faiss_flat_l2_features"
LABEL_GID = "point-label"


# ----------------------------------------------------------------------------- styles


def method_style(method: str, settings: str = "") -> dict:
    """Colour, marker and line style of a method (its registered name) in every figure:
    :data:`METHOD_STYLES` for registered methods, else a (colour, marker) pair picked by the
    name's CRC-32 among those no registered method uses; solid for the shipped config, a
    dash pattern picked by the settings' CRC-32 otherwise."""
    if method in METHOD_STYLES:
        color, marker = METHOD_STYLES[method]
    else:
        taken = set(METHOD_STYLES.values())
        free = [(c, m) for m in MARKERS for c in PALETTE if (c, m) not in taken]
        color, marker = free[zlib.crc32(method.encode()) % len(free)]
    line = "-" if not settings else DASHES[zlib.crc32(settings.encode()) % len(DASHES)]
    return {"color": color, "marker": marker, "linestyle": line}


def _row_style(rows: pd.DataFrame) -> dict:
    r = rows.iloc[0]
    return method_style(r["method_base"], r["settings"])


# ----------------------------------------------------------------------------- figure data (pure)


def _frame(runs) -> pd.DataFrame:
    if isinstance(runs, pd.DataFrame):
        frame = runs
    else:
        from hashbench.benchmark.report import load_runs

        frame = load_runs(list(runs))
    frame = frame.assign(variant=frame["variant"].fillna("").astype(str))
    if "method_base" not in frame:
        frame = frame.assign(method_base=frame["method"])
    if "settings" not in frame:
        frame = frame.assign(settings="")
    return frame.assign(settings=frame["settings"].fillna("").astype(str))


def options(variant: str) -> dict[str, str]:
    """A variant string ``a=1,b=x`` as a dict (values as strings)."""
    return dict(part.split("=", 1) for part in variant.split(",") if "=" in part) if variant else {}


ROW = PANEL_KEYS + ["method", "method_base", "settings"]


def map_vs_bits_data(runs, variant: str | None = None) -> pd.DataFrame:
    """Points of :func:`map_vs_bits`: per dataset, protocol, method (row label) and code
    length, the mean, std (ddof 1) and count over runs of mAP in ``variant`` (default: the
    default mAP variant); ``metric`` names the mAP cut-off."""
    from hashbench.benchmark.report import DEFAULT_MAP_VARIANT

    frame = _frame(runs)
    variant = DEFAULT_MAP_VARIANT if variant is None else variant
    rows = frame[frame["metric"].str.startswith("map@") & (frame["variant"] == variant)]
    out = rows.groupby(ROW + ["metric", "bits"])["value"].agg(mean="mean", std="std", n="count").reset_index()
    return out.sort_values(ROW + ["bits"]).reset_index(drop=True)


def _pick_bits(rows: pd.DataFrame, bits: int | None) -> int | None:
    """``bits`` when given, else the code length the most methods have rows at (the longest
    among equals), so one figure compares as many methods as the runs allow."""
    if rows.empty:
        return None
    if bits is not None:
        return int(bits)
    counts = rows.groupby("bits")["method"].nunique().reset_index()
    return int(counts.sort_values(["method", "bits"]).iloc[-1]["bits"])


def precision_at_k_data(runs, bits: int | None = None) -> pd.DataFrame:
    """Points of :func:`precision_at_k`: P@k of the exact ranking of the codes (``ties=expected``)
    at code length ``bits`` (default: the one most methods have, :func:`_pick_bits`), mean over
    runs, per dataset, protocol, method and k."""
    frame = _frame(runs)
    rows = frame[frame["metric"].str.match(r"precision@\d+$") & (frame["variant"] == "ties=expected")]
    b = _pick_bits(rows, bits)
    rows = rows[rows["bits"] == b].assign(k=lambda f: f["metric"].str.split("@").str[1].astype(int))
    out = rows.groupby(ROW + ["bits", "k"])["value"].agg(precision="mean", n="count").reset_index()
    return out.sort_values(ROW + ["k"]).reset_index(drop=True)


def precision_recall_data(runs, bits: int | None = None) -> pd.DataFrame:
    """Points of :func:`precision_recall`: each run's precision–recall over rank cut-offs
    (``curves.json``, ``pr_rank``) at ``bits`` (default: the one most methods have), averaged
    point by point over the runs of a method: one row per (dataset, protocol, method, cut-off)."""
    frame = _frame(runs)
    from hashbench.benchmark.report import DEFAULT_MAP_VARIANT

    b = _pick_bits(frame[frame["variant"] == DEFAULT_MAP_VARIANT], bits)  # runs ranked exactly, which keep curves
    runs_ = frame[frame["bits"] == b].drop_duplicates("run_dir") if b is not None else frame.iloc[:0]
    points = []
    for _, row in runs_.iterrows():
        path = Path(row["run_dir"]) / "curves.json"
        pr = json.loads(path.read_text()).get(str(b), {}).get("pr_rank") if path.exists() else None
        if pr:
            points += [{**{k: row[k] for k in ROW}, "bits": b, "cutoff": c, "recall": r, "precision": p}
                       for c, r, p in zip(pr["cutoff"], pr["recall"], pr["precision"])]
    if not points:
        return pd.DataFrame(columns=ROW + ["bits", "cutoff", "recall", "precision", "n"])
    table = pd.DataFrame(points)
    out = table.groupby(ROW + ["bits", "cutoff"]).agg(recall=("recall", "mean"), precision=("precision", "mean"),
                                                      n=("precision", "count")).reset_index()
    return out.sort_values(ROW + ["cutoff"]).reset_index(drop=True)


def _search_key(opts: dict[str, str]) -> str:
    """What identifies one search of a run: its options without the timing reference and
    thread count, with ``backend`` spelled ``search`` (as the precision rows spell it)."""
    keep = {("search" if k == "backend" else k): v for k, v in opts.items() if k not in ("reference", "threads")}
    return ",".join(f"{k}={keep[k]}" for k in sorted(keep))


def speedup_data(runs, reference: str = SPEED_REFERENCE) -> pd.DataFrame:
    """Points of :func:`speedup_vs_precision`, one per (dataset, protocol, method, bits, k,
    search): the wall-clock speed-up (``speedup_wallclock@k`` against ``reference`` only) of a
    search, paired with the P@k of that same search (``precision@k`` whose options name the
    same ``search`` backend and, for sparse codes, the same s and re-ranking) at the same k of
    the same run; means over runs, ``n`` runs. Runs without a matching P@k row are left out."""
    frame = _frame(runs)
    speed = frame[frame["metric"].str.match(r"speedup_wallclock@\d+$")].copy()
    speed["opts"] = speed["variant"].map(options)
    speed = speed[speed["opts"].map(lambda o: o.get("reference") == reference)]
    prec = frame[frame["metric"].str.match(r"precision@\d+$")].copy()
    prec["opts"] = prec["variant"].map(options)
    prec = prec[prec["opts"].map(lambda o: "search" in o)]
    cols = ["dataset", "protocol", "method", "method_base", "settings", "bits", "k", "search", "key"]
    if speed.empty or prec.empty:
        return pd.DataFrame(columns=cols[:-1] + ["precision", "speedup", "n", "reference"])
    for f in (speed, prec):
        f["k"] = f["metric"].str.split("@").str[1].astype(int)
        f["key"] = f["opts"].map(_search_key)
        f["search"] = f["opts"].map(lambda o: o.get("search", o.get("backend")))
    merged = speed.merge(prec[["run_dir", "bits", "k", "key", "value"]], on=["run_dir", "bits", "k", "key"],
                         suffixes=("_speed", "_p"))
    out = merged.groupby(cols, dropna=False).agg(precision=("value_p", "mean"), speedup=("value_speed", "mean"),
                                                 n=("value_p", "count")).reset_index()
    return out.drop(columns="key").assign(reference=reference).sort_values(
        ["dataset", "protocol", "method", "bits"]).reset_index(drop=True)


def suf_data(runs, k: int = 16) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Points of :func:`suf_vs_precision`: (one row per run — SUF@k and the hash-table search's
    P@k at the same k, its sparsity ``s`` and ``line``: the method's row label without the
    sparsity, since s is the x-series; the P@k of exhaustive search in the re-ranking
    embedding per dataset and protocol, mean over those runs)."""
    frame = _frame(runs)
    frame = frame.assign(s=frame["variant"].str.extract(r"(?:^|,)s=(\d+)", expand=False))
    suf = frame[frame["metric"] == f"suf@{k}"]
    pk = frame[(frame["metric"] == f"precision@{k}") & frame["variant"].str.contains("search=hash_table")]
    merged = suf.merge(pk[["run_dir", "bits", "s", "value"]], on=["run_dir", "bits", "s"], suffixes=("_suf", "_p"))
    merged = merged.assign(s=merged["s"].astype(int), line=[
        _without_sparsity(m, st) for m, st in zip(merged["method_base"], merged["settings"])])
    points = merged.rename(columns={"value_suf": "suf", "value_p": "precision"})[
        PANEL_KEYS + ["line", "method_base", "settings", "bits", "s", "seed", "run_dir", "precision", "suf"]]
    points = points.sort_values(PANEL_KEYS + ["line", "bits", "s", "seed"]).reset_index(drop=True)
    ex = frame[(frame["metric"] == f"precision@{k}") & (frame["variant"] == "search=exhaustive_embedding")
               & frame["run_dir"].isin(points["run_dir"])]
    exhaustive = ex.groupby(PANEL_KEYS)["value"].agg(precision="mean", n="count").reset_index()
    return points, exhaustive


def _without_sparsity(method: str, settings: str) -> str:
    rest = ",".join(p for p in settings.split(",") if p and not p.startswith("sparsity="))
    return f"{method} [{rest}]" if rest else method


# ----------------------------------------------------------------------------- drawing


def keep_non_overlapping(boxes: list[tuple[float, float, float, float]]) -> list[bool]:
    """Greedy choice of labels that do not collide: walk the (x0, y0, x1, y1) boxes in order and
    keep one when it overlaps no box kept before it."""
    kept: list[tuple[float, float, float, float]] = []
    mask = []
    for b in boxes:
        ok = all(b[2] <= k[0] or k[2] <= b[0] or b[3] <= k[1] or k[3] <= b[1] for k in kept)
        mask.append(ok)
        if ok:
            kept.append(b)
    return mask


def _label(ax, x: float, y: float, text: str) -> None:
    ax.annotate(text, (x, y), fontsize=5, xytext=(3, 3), textcoords="offset points", gid=LABEL_GID)


def _drop_colliding_labels(fig) -> None:
    """Remove point labels (and only those) that would overlap a label drawn before them."""
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        labels = [t for t in ax.texts if t.get_gid() == LABEL_GID]
        boxes = [tuple(t.get_window_extent(renderer).extents) for t in labels]
        for t, keep in zip(labels, keep_non_overlapping(boxes)):
            if not keep:
                t.remove()


def _panels(rows: pd.DataFrame):
    """(title, rows of one dataset/protocol, axis) triples and their figure."""
    groups = list(rows.groupby(PANEL_KEYS, sort=True))
    n = len(groups)
    fig, axes = plt.subplots(1, n, figsize=(PANEL[0] * n, PANEL[1]), squeeze=False)
    return fig, [(f"{d} ({p})", g, ax) for ((d, p), g), ax in zip(groups, axes[0])]


def _legend(axes_list) -> None:
    """One legend, right of the last panel, with one entry per label across all panels."""
    handles: dict[str, object] = {}
    for ax in axes_list:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    if handles:
        axes_list[-1].legend(list(handles.values()), list(handles.keys()), loc="center left", bbox_to_anchor=(1.02, 0.5))


def _save(fig, out: Path, stem: str) -> list[Path]:
    _drop_colliding_labels(fig)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{stem}.pdf", out / f"{stem}.png"]
    for p in paths:
        meta = {"CreationDate": None} if p.suffix == ".pdf" else None
        write_atomic(p, lambda tmp, p=p, meta=meta: fig.savefig(tmp, dpi=200, format=p.suffix[1:], metadata=meta))
    plt.close(fig)
    return paths


def _log_times_axis(axis) -> None:
    axis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    times = matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:.3g}×")
    axis.set_major_formatter(times)
    axis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def map_vs_bits(runs, out: Path, variant: str | None = None) -> list[Path]:
    """mAP (``variant``, default: the default mAP variant) against code length, one line per
    method, mean ± std over runs (:func:`map_vs_bits_data`); one panel per dataset."""
    data = map_vs_bits_data(runs, variant)
    if data.empty:
        return []
    with plt.rc_context(STYLE):
        fig, panels = _panels(data)
        for title, g, ax in panels:
            for method, m in g.groupby("method"):
                ax.errorbar(m["bits"], m["mean"], yerr=m["std"].fillna(0), label=method, capsize=2, **_row_style(m))
            ax.set_xticks(sorted(g["bits"].unique()))
            ax.set_xlabel("code length (bits)")
            ax.set_ylabel(g["metric"].iloc[0].replace("map", "mAP"))
            ax.set_title(title)
        _legend([p[2] for p in panels])
        return _save(fig, out, "map_vs_bits")


def precision_at_k(runs, out: Path, bits: int | None = None) -> list[Path]:
    """P@k of the exact code ranking against k, one line per method at ``bits`` (default: the
    code length most methods have), mean over runs (:func:`precision_at_k_data`)."""
    data = precision_at_k_data(runs, bits)
    if data.empty:
        return []
    with plt.rc_context(STYLE):
        fig, panels = _panels(data)
        for title, g, ax in panels:
            for method, m in g.groupby("method"):
                ax.plot(m["k"], m["precision"], label=method, **_row_style(m))
            ax.set_xscale("log")
            ax.set_xlabel("k (retrieved items, exact ranking of the codes)")
            ax.set_ylabel("P@k")
            ax.set_title(f"{title}, {int(g['bits'].iloc[0])} bits")
        _legend([p[2] for p in panels])
        return _save(fig, out, "precision_at_k")


def precision_recall(runs, out: Path, bits: int | None = None) -> list[Path]:
    """Precision–recall over rank cut-offs at ``bits`` (default: the one most methods have), averaged
    point-wise over runs (:func:`precision_recall_data`); one panel per dataset."""
    data = precision_recall_data(runs, bits)
    if data.empty:
        return []
    with plt.rc_context(STYLE):
        fig, panels = _panels(data)
        for title, g, ax in panels:
            for method, m in g.groupby("method"):
                ax.plot(m["recall"], m["precision"], label=method, markevery=2, **_row_style(m))
            ax.set_xlabel("recall")
            ax.set_ylabel("precision")
            ax.set_title(f"{title}, {int(g['bits'].iloc[0])} bits")
        _legend([p[2] for p in panels])
        return _save(fig, out, "precision_recall")


def speedup_vs_precision(runs, out: Path, reference: str = SPEED_REFERENCE) -> list[Path]:
    """Wall-clock speed-up over exhaustive float search on the reference features (log scale)
    against the P@k of the same search at the same k (:func:`speedup_data`); one point per
    (method, bits) labelled with the code length, one line per method."""
    data = speedup_data(runs, reference)
    if data.empty:
        return []
    ks = sorted(data["k"].unique())
    k_text = str(ks[0]) if len(ks) == 1 else "k"
    with plt.rc_context(STYLE):
        fig, panels = _panels(data)
        for title, g, ax in panels:
            for method, m in g.groupby("method"):
                m = m.sort_values("bits")
                ax.plot(m["precision"], m["speedup"], label=method, markerfacecolor="white", **_row_style(m))
                for r in m.itertuples():
                    _label(ax, r.precision, r.speedup, f"{int(r.bits)}b")
            ax.set_yscale("log")
            _log_times_axis(ax.yaxis)
            ax.set_xlabel(f"P@{k_text} of the method's own search (top {', '.join(map(str, ks))})")
            if ax is panels[0][2]:
                ax.set_ylabel(f"wall-clock speed-up, top {', '.join(map(str, ks))}\n"
                              "vs exhaustive float search on features")
            ax.set_title(title)
            ax.grid(True, which="both", alpha=0.3)
        _legend([p[2] for p in panels])
        return _save(fig, out, "speedup_vs_precision")


def suf_vs_precision(runs, out: Path, k: int = 16) -> list[Path]:
    """SUF@k (database size / candidates touched, sparse codes; log scale) against the
    hash-table search's P@k at the same k (:func:`suf_data`): one faint point per run, the
    means over seeds per sparsity s joined by one line per method (and code length, when a
    method has several) and labelled ``s``; a dotted vertical line marks exhaustive search in
    the re-ranking embedding."""
    points, exhaustive = suf_data(runs, k)
    if points.empty:
        return []
    with plt.rc_context(STYLE):
        fig, panels = _panels(points)
        for title, g, ax in panels:
            several = g.groupby("line")["bits"].nunique()
            for (line, bits), m in g.groupby(["line", "bits"]):
                st = _row_style(m)
                ax.scatter(m["precision"], m["suf"], marker=st["marker"], color=st["color"], s=10,
                           facecolors="white", linewidths=0.8, alpha=0.8)
                mean = m.groupby("s")[["precision", "suf"]].mean().reset_index().sort_values("s")
                label = f"{line} (d={int(bits)})" if several[line] > 1 else line
                ax.plot(mean["precision"], mean["suf"], label=label, **st)
                for r in mean.itertuples():
                    _label(ax, r.precision, r.suf, f"s={r.s}")
            ex = exhaustive.merge(g[PANEL_KEYS].drop_duplicates(), on=PANEL_KEYS)
            if len(ex):
                ax.axvline(ex["precision"].iloc[0], color="0.4", linestyle=":", linewidth=1,
                           label="exhaustive, re-ranking embedding")
            ax.set_yscale("log")
            _log_times_axis(ax.yaxis)
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(5))
            ax.set_xlabel(f"P@{k} of the hash-table search")
            if ax is panels[0][2]:
                ax.set_ylabel(f"SUF@{k} (database / candidates)")
            ax.set_title(title)
            ax.grid(True, which="both", alpha=0.3)
        _legend([p[2] for p in panels])
        return _save(fig, out, "suf_vs_precision")


def all_figures(runs, out: Path) -> list[Path]:
    """Every figure above that the runs have data for."""
    frame = _frame(runs)
    return (map_vs_bits(frame, out) + precision_recall(frame, out) + precision_at_k(frame, out)
            + speedup_vs_precision(frame, out) + suf_vs_precision(frame, out))
