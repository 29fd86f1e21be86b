"""On-disk cache of decoded datasets: one uncompressed ``.npz`` per (dataset, source state).

The key hashes each source file's absolute path, size and mtime (ns), so replacing or touching a
source file invalidates the entry. Entries are written to a temporary file in the same folder and
moved into place with ``os.replace``, so a crashed or concurrent writer never leaves a torn file.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import zipfile
from typing import Callable, Iterable

import numpy as np

from hashbench.datasets import memo
from hashbench.datasets.base import ArrayData
from hashbench.datasets.paths import cache_dir
from hashbench.fileio import write_atomic

CACHE_VERSION = "1"


def source_key(files: Iterable[pathlib.Path]) -> str:
    """First 20 hex digits of sha256 over (CACHE_VERSION, and per file: absolute path, size, mtime_ns)."""
    h = hashlib.sha256(f"hashbench-cache-v{CACHE_VERSION}\n".encode())
    for f in files:
        st = os.stat(f)
        h.update(f"{os.path.abspath(f)}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:20]


def cache_path(dataset: str, key: str) -> pathlib.Path:
    """Path of the cache entry for ``dataset`` and source ``key`` under cache_dir()/<dataset>/."""
    return cache_dir() / dataset / f"{key}.npz"


def save(path: pathlib.Path, data: ArrayData) -> None:
    """Write ``data`` to ``path`` atomically (:func:`hashbench.fileio.write_atomic`)."""
    arrays = {
        "x": data.x,
        "labels": data.labels,
        "class_names": np.asarray(data.class_names, dtype=str),
        "kind": np.asarray(data.kind),
        "source": np.asarray(data.source),
    }
    if data.official_split is not None:
        arrays["official_split"] = data.official_split
    write_atomic(path, lambda tmp: np.savez(tmp, **arrays))


def _read_npz(path: pathlib.Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {name: z[name] for name in z.files}


def load(path: pathlib.Path) -> ArrayData | None:
    """Read a cache entry written by ``save``; None if absent or unreadable. Through
    :func:`hashbench.datasets.memo.read`: a warm sweep worker reads an unchanged entry once."""
    try:
        z = memo.read(path, _read_npz)
        return ArrayData(
            x=z["x"],
            labels=z["labels"],
            class_names=[str(c) for c in z["class_names"]],
            kind=str(z["kind"]),
            official_split=z.get("official_split"),
            source=f"{z['source']} [cached: {path}]",
        )
    except (FileNotFoundError, KeyError, ValueError, OSError, zipfile.BadZipFile):
        return None


def cached(dataset: str, key: str, build: Callable[[], ArrayData]) -> ArrayData:
    """Return the cached ArrayData for (dataset, key), building and saving it on a miss."""
    path = cache_path(dataset, key)
    hit = load(path)
    if hit is not None:
        return hit
    data = build()
    save(path, data)
    return data
