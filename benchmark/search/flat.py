"""Exhaustive float search (the "no hashing" upper bound and the SUF / wall-clock reference)."""

from __future__ import annotations

import faiss
import numpy as np


def exact_knn(queries: np.ndarray, database: np.ndarray, k: int, metric: str = "l2") -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours with faiss ``IndexFlatL2`` / ``IndexFlatIP``.

    "l2": scores = squared Euclidean distances ||x_q - x_n||², ascending;
    "ip": scores = inner products <x_q, x_n>, descending. Returns (scores float32 (Q, k),
    ids int64 (Q, k)); if k > N the missing entries are id -1 (faiss padding).
    """
    xb = np.ascontiguousarray(database, dtype=np.float32)
    xq = np.ascontiguousarray(queries, dtype=np.float32)
    if xb.ndim != 2 or xq.ndim != 2 or xq.shape[1] != xb.shape[1]:
        raise ValueError(f"queries {xq.shape} and database {xb.shape} must be 2-D with equal D")
    if metric == "l2":
        index = faiss.IndexFlatL2(xb.shape[1])
    elif metric == "ip":
        index = faiss.IndexFlatIP(xb.shape[1])
    else:
        raise ValueError(f"metric must be 'l2' or 'ip', got {metric!r}")
    index.add(xb)
    return index.search(xq, int(k))
