"""The result store: one directory per run, written atomically, never overwritten.

A run directory holds ``config.yaml`` (the fully resolved config), ``split.json`` (split sizes
and sha256 of each index array), ``metrics.csv`` (long format, :data:`METRIC_COLUMNS`),
``codes.npz`` (everything needed to recompute any metric without retraining),
``per_query.npz`` (per-query AP for bootstrap intervals and paired tests), curves as CSV, and
the checkpoint and Lightning logs when the method was trained.
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
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable

import numpy as np
import pandas as pd
import yaml

METRIC_COLUMNS = [
    "method", "dataset", "protocol", "backbone", "bits", "seed", "metric", "variant", "value",
    "git_revision", "config_hash", "hardware", "timestamp",
]

REPO_ROOT = Path(__file__).resolve().parent.parent


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


def variant_string(options: dict[str, Any]) -> str:
    """Options as comma-joined ``key=value`` pairs in a fixed (sorted) order; '' when none."""
    return ",".join(f"{k}={options[k]}" for k in sorted(options))


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
        self.path = Path(tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=self.out_dir))

    def write_yaml(self, rel: str, data: Any) -> None:
        (self.path / rel).write_text(yaml.safe_dump(data, sort_keys=False))

    def write_json(self, rel: str, data: Any) -> None:
        (self.path / rel).write_text(json.dumps(data, indent=2, sort_keys=True, default=str))

    def write_npz(self, rel: str, **arrays: np.ndarray) -> None:
        np.savez_compressed(self.path / rel, **arrays)

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
    (method, dataset, protocol, backbone, seed, git_revision, config_hash, hardware, timestamp)
    repeated on every row."""
    records = [{**context, "bits": bits, "metric": metric, "variant": variant_string(opts), "value": float(value)}
               for bits, metric, opts, value in rows]
    return pd.DataFrame.from_records(records, columns=METRIC_COLUMNS)


def write_csv_atomic(frame: pd.DataFrame, path: Path) -> None:
    """Write ``frame`` to ``path`` through a temporary file and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        frame.to_csv(tmp, index=False)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_file_atomic(path: Path, write: Callable[[BinaryIO], Any]) -> None:
    """Create or replace ``path`` (mode 0644) with what ``write(binary file)`` writes, through a
    temporary file beside it and ``os.replace``: readers see the old file or the whole new one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_metrics(run_dirs: Iterable[Path]) -> pd.DataFrame:
    """Concatenate the ``metrics.csv`` of the given run directories (or of every run found
    below a directory that is not itself a run). Only run directories count — a ``metrics.csv``
    with ``config.yaml`` beside it, not under a hidden ``.tmp-`` directory — so Lightning's own
    ``logs/**/metrics.csv`` are never read."""
    frames = []
    for d in run_dirs:
        d = Path(d)
        files = [d / "metrics.csv"] if (d / "metrics.csv").exists() else sorted(d.rglob("metrics.csv"))
        for f in files:
            if (f.parent / "config.yaml").exists() and not any(part.startswith(".tmp-") for part in f.parts):
                frame = pd.read_csv(f, keep_default_na=False, na_values=["nan", "NaN"])
                frame["run_dir"] = str(f.parent)
                frames.append(frame)
    if not frames:
        raise FileNotFoundError("no metrics.csv found under: " + ", ".join(str(d) for d in run_dirs))
    return pd.concat(frames, ignore_index=True)
