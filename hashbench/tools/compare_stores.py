"""Do two run stores agree? A sweep's store against the committed runs it reproduces.

    python -m hashbench.tools.compare_stores REFERENCE_RUNS NEW_RUNS [--metric map@all] [--manifest M]

Both stores are read as ``hashbench report`` reads them (one run per cell, ``--duplicates
newest``), and each dataset's mAP in its default variant (or ``--metric``) is matched cell by
cell (the report's cell: method, dataset, protocol, bits, seed, settings). Per cell without the
seed it prints the reference and new means over seeds, the largest per-seed
difference, and the tolerance of the regression rule (:mod:`hashbench.benchmark.regress`):
``max(3 * sigma, 0.005)``, sigma the sample standard deviation of the reference over seeds (the
floor alone for a single seed). A group is within tolerance when every seed's difference is.
With ``--manifest`` (a sweep's ``manifest.json``) it adds each cell's wall time against its
training time. Exit status 1 when a group is out of tolerance or a reference cell is missing.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from hashbench.benchmark.regress import QUALITY_FLOOR, SIGMAS
from hashbench.benchmark.report import CELL, load_runs, main_rows

GROUP = [c for c in CELL if c != "seed"]


def compare(reference: pd.DataFrame, new: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Cell-by-cell comparison of two metric tables (one ``value`` per :data:`CELL`).

    Returns (cells, groups): ``cells`` has ``reference``, ``new`` and ``diff`` = new − reference
    for every reference cell (``new`` NaN where the new table lacks it); ``groups`` has per
    :data:`GROUP` the seeds matched, both means, ``max_abs_diff`` over seeds, ``tolerance`` =
    max(SIGMAS · std(reference, ddof=1), QUALITY_FLOOR) and ``within`` (every matched seed's
    |diff| ≤ tolerance and no seed missing)."""
    ref = reference[CELL + ["value"]].rename(columns={"value": "reference"})
    cells = ref.merge(new[CELL + ["value"]].rename(columns={"value": "new"}), on=CELL, how="left")
    cells["diff"] = cells["new"] - cells["reference"]
    g = cells.groupby(GROUP, dropna=False)
    groups = g.agg(seeds=("seed", "count"), matched=("new", "count"), reference=("reference", "mean"),
                   new=("new", "mean"), max_abs_diff=("diff", lambda d: d.abs().max()),
                   sigma=("reference", lambda v: v.std(ddof=1) if len(v) > 1 else 0.0)).reset_index()
    groups["tolerance"] = np.fmax(SIGMAS * groups["sigma"].to_numpy(), QUALITY_FLOOR)
    groups["within"] = (groups["matched"] == groups["seeds"]) & (groups["max_abs_diff"] <= groups["tolerance"])
    return cells, groups.drop(columns="sigma")


def _stamp(text: str) -> pd.Timestamp:
    return pd.Timestamp(datetime.strptime(text, "%Y-%m-%dT%H%M%SZ" if ":" not in text else "%Y-%m-%dT%H:%M:%SZ"))


def startup_seconds(log_text: str, run_dir: str) -> float:
    """Seconds from the last attempt's start (the ``# <UTC time> on <host>: <command>`` line
    :func:`~hashbench.benchmark.sweep.cell.run_cell` writes) to the run directory's name stamp,
    which the harness takes after the process started, imported, and loaded the data and
    features, just before training (both to the whole second)."""
    starts = re.findall(r"^# (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ) on ", log_text, flags=re.M)
    made = re.match(r"(\d{4}-\d\d-\d\dT\d{6}Z)_", Path(run_dir).name)
    if not starts or not made:
        return float("nan")
    return (_stamp(made.group(1)) - _stamp(starts[-1])).total_seconds()


def cell_times(manifest: dict) -> pd.DataFrame:
    """Per done cell of a sweep manifest: wall ``seconds`` of its process; ``startup_seconds``
    (:func:`startup_seconds`: process start, imports, data and feature loading);
    ``train_seconds`` as the run recorded it; ``rest_seconds`` = seconds − startup − train
    (encoding, evaluation, writing the run)."""
    rows = []
    for c in manifest["cells"].values():
        if c.get("state") != "done":
            continue
        log = Path(c["logs"][-1])
        start = startup_seconds(log.read_text(errors="replace"), c["run_dir"]) if log.is_file() else float("nan")
        rows.append({"method": c["method"], "bits": c["bits"], "seed": c["seed"], "seconds": c.get("seconds"),
                     "startup_seconds": start, "train_seconds": c.get("train_seconds")})
    frame = pd.DataFrame(rows)
    frame["rest_seconds"] = frame["seconds"] - frame["startup_seconds"] - frame["train_seconds"]
    return frame


def _rows(store: Path, metric: str | None) -> pd.DataFrame:
    frame = main_rows(load_runs([store]), metric)
    return frame.assign(settings=frame["settings"].fillna("").astype(str), bits=frame["bits"].astype(int))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("reference", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--metric", default=None, help="default: each dataset's mAP, default variant")
    parser.add_argument("--manifest", type=Path, help="a sweep's manifest.json: add per-cell times")
    args = parser.parse_args(argv)
    _, groups = compare(_rows(args.reference, args.metric), _rows(args.new, args.metric))
    shown = groups.assign(reference=groups["reference"].round(4), new=groups["new"].round(4),
                          max_abs_diff=groups["max_abs_diff"].round(4), tolerance=groups["tolerance"].round(4))
    print(shown.to_markdown(index=False))
    bad = groups[~groups["within"]]
    print(f"\n{len(groups)} groups ({int(groups['seeds'].sum())} reference cells, {int(groups['matched'].sum())} matched): "
          f"{len(groups) - len(bad)} within tolerance, {len(bad)} not; largest |diff| {groups['max_abs_diff'].max():.4f}")
    if args.manifest:
        times = cell_times(json.loads(args.manifest.read_text()))
        cols = ["seconds", "startup_seconds", "train_seconds", "rest_seconds"]
        by = times.groupby("method")[cols].median().round(1).assign(cells=times.groupby("method").size())
        print("\nMedian per cell (seconds):\n" + by.to_markdown())
        total = times[cols].sum()
        print(f"\nall {len(times)} cells, summed: {total['seconds']:.0f} s in cells = startup {total['startup_seconds']:.0f} s"
              f" + training {total['train_seconds']:.0f} s + rest {total['rest_seconds']:.0f} s; median startup "
              f"{times['startup_seconds'].median():.0f} s")
    return 1 if len(bad) else 0


if __name__ == "__main__":
    sys.exit(main())
