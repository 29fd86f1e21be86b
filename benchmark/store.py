"""The result store: one directory per run, written atomically, never overwritten.

A run directory holds ``config.yaml`` (the fully resolved config), ``split.json`` (split sizes
and sha256 of each index array), ``metrics.csv`` (long format, :data:`METRIC_COLUMNS`),
``codes.npz`` (everything needed to recompute any metric without retraining),
``per_query.npz`` (per-query AP for bootstrap intervals and paired tests), curves as CSV, and
the checkpoint and Lightning logs when the method was trained.

Everything is written for a shared filesystem: folders get mode 0755 and files 0644 (less
whatever the umask takes away), also where Python's temporary-file helpers would make them
private (0700/0600).

``settings`` (a metrics.csv column) is how a run departs from its method's shipped config:
``variant=<name>`` and every ``--set``/``--epochs``/``--backbone`` value that differs from what
the shipped config (for that dataset and variant) holds, as comma-joined ``key=value`` pairs;
empty for the shipped config. Runs written before the column existed get it once from their
``config.yaml`` with ``scripts/migrations/add_settings_column.py`` (:func:`add_settings_column`).
"""
from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd
import yaml

from hashbench.fileio import shareable, write_atomic, write_text_atomic  # noqa: F401  (the store's writers)
from hashbench.paths import REPO_ROOT

METRIC_COLUMNS = [
    "method", "dataset", "protocol", "backbone", "bits", "seed", "metric", "variant", "value",
    "git_revision", "config_hash", "settings", "hardware", "timestamp",
]



@functools.lru_cache(maxsize=1)
def git_revision() -> str:
    """The repository's HEAD commit (with ``+dirty`` when the tree has changes), or ``unknown``.

    Read once per process: every run of one invocation ran the code loaded at start-up, even if
    the checkout moves on while it runs."""
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (rev or "unknown") + ("+dirty" if rev and dirty else "")


def hardware_description(device: str = "cpu") -> str:
    """One short line naming the CPU (and GPU when ``device`` is cuda) the numbers came from."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    desc = f"{cpu} x{os.cpu_count()}"
    if device.startswith("cuda"):
        import torch

        desc += f"; {torch.cuda.get_device_name(0)}"
    return desc


def config_hash(config: dict[str, Any]) -> str:
    """First 12 hex digits of the sha256 of the config serialised with sorted keys."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


#: The default mAP variant (the DeepHash/HashNet/DRQ convention, with random-order ties): the one
#: model selection scores and the report's tables show (:mod:`hashbench.benchmark.evaluate`).
DEFAULT_MAP = {"ties": "expected", "denominator": "relevant_retrieved", "empty": "zero"}


def variant_string(options: dict[str, Any]) -> str:
    """Options as comma-joined ``key=value`` pairs in a fixed (sorted) order; '' when none."""
    return ",".join(f"{k}={options[k]}" for k in sorted(options))


def settings_string(variant: str | None, requested: dict[str, Any], shipped: dict[str, Any]) -> str:
    """A run's departures from its shipped config: ``variant=<name>`` first, then each
    ``requested`` key (``--set`` overrides, ``--epochs``, ``--backbone``; None values are "not
    asked") whose value differs from ``shipped`` (the config resolved for that method, dataset
    and variant without overrides), as sorted ``key=value``; "" when there is none."""
    parts = [f"variant={variant}"] if variant else []
    parts += [f"{k}={v}" for k, v in sorted(requested.items())
              if v is not None and (k not in shipped or shipped[k] != v)]
    return ",".join(parts)


def request_settings(request: dict[str, Any]) -> str:
    """:func:`settings_string` of a run request (``RunRequest`` fields, or the ``request``
    block of a run's ``config.yaml``), against the config shipped now for its method and
    dataset. A method that is no longer registered keeps every requested value."""
    from hashbench.benchmark.config import resolve_config

    flags = {k: request[k] for k in ("epochs", "backbone") if request.get(k) is not None}  # win over --set
    requested = {**(request.get("overrides") or {}), **flags}
    try:
        shipped = resolve_config(request["method"], request.get("dataset") or "", request.get("variant"), None)
    except (ValueError, KeyError, FileNotFoundError):
        shipped = {}
    return settings_string(request.get("variant"), requested, shipped)


def now_stamp() -> str:
    """UTC timestamp used in run names and rows (ISO 8601, seconds)."""
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def name_part(text: str) -> str:
    """``text`` made safe inside a run directory's name: a dataset given as ``kind:<path>`` keeps
    its kind and the path's last component; anything outside ``[A-Za-z0-9._-]`` becomes ``-``."""
    if ":" in text:
        kind, path = text.split(":", 1)
        text = f"{kind}-{Path(path.rstrip('/')).name}"
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "unnamed"


class RunWriter:
    """Builds a run in a hidden temporary directory and publishes it with one ``rename``.

    Nothing half-written is ever visible under the final name: :meth:`commit` renames the
    finished directory into place (choosing a fresh name if one exists, never overwriting);
    :meth:`abort` deletes it.
    """

    def __init__(self, out_dir: Path, name: str) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.path = shareable(Path(tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=self.out_dir)))

    def write_yaml(self, rel: str, data: Any) -> None:
        (self.path / rel).write_text(yaml.safe_dump(data, sort_keys=False))

    def write_json(self, rel: str, data: Any) -> None:
        (self.path / rel).write_text(json.dumps(data, indent=2, sort_keys=True, default=str))

    def write_npz(self, rel: str, **arrays: np.ndarray) -> None:
        """``np.savez_compressed`` at deflate level 1: a run's 54,000 × 1,280 float32 embedding in
        4.6 CPU-s instead of 11.3 (level 6), 5 % larger (float features barely compress);
        ``np.load`` reads it as any ``.npz``."""
        with zipfile.ZipFile(self.path / rel, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
            for name, value in arrays.items():
                with zf.open(f"{name}.npy", "w", force_zip64=True) as f:
                    np.lib.format.write_array(f, np.asanyarray(value), allow_pickle=False)

    def write_frame(self, rel: str, frame: pd.DataFrame) -> None:
        frame.to_csv(self.path / rel, index=False)

    def commit(self) -> Path:
        """Publish the run under ``out_dir/name`` (``name-2``, ``-3``… if taken); return its path."""
        final = self.out_dir / self.name
        i = 1
        while True:
            try:
                os.rename(self.path, final)  # atomic; fails if ``final`` is a non-empty directory
                break
            except OSError:
                if not final.exists():
                    raise
                i += 1
                final = self.out_dir / f"{self.name}-{i}"
        self.path = final
        return final

    def abort(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def metric_rows(context: dict[str, Any], rows: Iterable[tuple[int, str, dict[str, Any], float]]) -> pd.DataFrame:
    """Long-format metric table: one row per (bits, metric, variant, value) with ``context``
    (method, dataset, protocol, backbone, seed, git_revision, config_hash, settings, hardware, timestamp)
    repeated on every row."""
    records = [{**context, "bits": bits, "metric": metric, "variant": variant_string(opts), "value": float(value)}
               for bits, metric, opts, value in rows]
    return pd.DataFrame.from_records(records, columns=METRIC_COLUMNS)


def write_csv_atomic(frame: pd.DataFrame, path: Path) -> None:
    """Write ``frame`` to ``path`` through a temporary file and ``os.replace``."""
    write_atomic(path, lambda tmp: frame.to_csv(tmp, index=False))


#: Folder names whose runs are regression work, never results: skipped below a report's roots.
REGRESS_FOLDERS = ("regress-runs",)


@dataclass
class FoundRuns:
    """Run directories found below some roots, and the folders passed over with the reason."""

    runs: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)


def find_runs(roots: Iterable[Path]) -> FoundRuns:
    """The run directories in or below ``roots`` (a run = a folder with ``metrics.csv`` and
    ``config.yaml``; Lightning's ``logs/**/metrics.csv`` have no config and are not runs).
    Passed over and reported in ``skipped``: unfinished runs (``.tmp-*`` folders) and, below a
    root, regression work (a ``regress-runs`` folder or a suite folder holding ``suite.json``)
    unless the root itself is inside it."""
    found = FoundRuns()
    for root in roots:
        root = Path(root)
        if not root.exists():
            raise FileNotFoundError(f"no such run folder: {root}")
        for here, dirs, files in os.walk(root):
            here_p = Path(here)
            if "metrics.csv" in files and "config.yaml" in files:
                found.runs.append(here_p)
                dirs[:] = []          # a run's own subfolders (logs, checkpoints) hold no runs
                continue
            keep = []
            for d in sorted(dirs):
                sub = here_p / d
                if d.startswith(".tmp-"):
                    found.skipped.append((sub, "unfinished run (.tmp-* folder)"))
                elif d in REGRESS_FOLDERS or (sub / "suite.json").exists():
                    found.skipped.append((sub, "regression-suite work (report it by naming the folder)"))
                else:
                    keep.append(d)
            dirs[:] = keep
    found.runs = sorted(set(found.runs))
    return found


class UnreadableRunError(ValueError):
    """A run's ``metrics.csv`` cannot be read as a metric table; the message names the file."""


#: Columns every run's ``metrics.csv`` has (:func:`metric_rows`), checked when a run is read.
REQUIRED_METRIC_COLUMNS = ("method", "dataset", "bits", "metric", "value", "seed")


def read_run_metrics(run_dir: Path) -> pd.DataFrame:
    """One run's ``metrics.csv`` with a ``run_dir`` column. A file that does not parse, is empty,
    is not UTF-8 or lacks a column of :data:`REQUIRED_METRIC_COLUMNS` is an
    :class:`UnreadableRunError` naming the file and the run; one written before the ``settings``
    column existed is a ValueError naming the one-off migration."""
    path = Path(run_dir) / "metrics.csv"
    try:
        frame = pd.read_csv(path, keep_default_na=False, na_values=["nan", "NaN"])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise UnreadableRunError(f"{path} (run {Path(run_dir).name}) is unreadable: "
                                 f"{str(err).strip().splitlines()[0]}") from err
    missing = [c for c in REQUIRED_METRIC_COLUMNS if c not in frame]
    if missing:
        raise UnreadableRunError(f"{path} (run {Path(run_dir).name}) is unreadable: no column "
                                 f"{', '.join(missing)}")
    if "settings" not in frame:
        raise ValueError(f"{run_dir}/metrics.csv has no settings column (written before it existed); record it "
                         f"once with: python scripts/migrations/add_settings_column.py {run_dir}")
    frame["settings"] = frame["settings"].astype(str)
    frame["run_dir"] = str(run_dir)
    return frame



def load_metrics(run_dirs: Iterable[Path]) -> pd.DataFrame:
    """Concatenate the ``metrics.csv`` of the runs in or below ``run_dirs`` (:func:`find_runs`)."""
    run_dirs = list(run_dirs)
    found = find_runs(run_dirs)
    if not found.runs:
        raise FileNotFoundError("no metrics.csv found under: " + ", ".join(str(d) for d in run_dirs))
    return pd.concat([read_run_metrics(d) for d in found.runs], ignore_index=True)


def add_settings_column(run_dir: Path) -> bool:
    """One-off migration of a run written before ``metrics.csv`` had a ``settings`` column:
    derive it from the ``request`` block of the run's ``config.yaml`` (:func:`request_settings`:
    ``--variant``, ``--set``, ``--epochs``, ``--backbone`` against the config shipped now) and
    insert it after ``config_hash``, rewriting the file atomically. Every other value is kept
    as written. Returns False (nothing written) when the column is already there."""
    path = Path(run_dir) / "metrics.csv"
    frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)  # every value verbatim
    if "settings" in frame:
        return False
    request = (yaml.safe_load((Path(run_dir) / "config.yaml").read_text()) or {}).get("request") or {}
    frame.insert(frame.columns.get_loc("config_hash") + 1, "settings", request_settings(request))
    write_atomic(path, lambda tmp: frame.to_csv(tmp, index=False))
    return True
