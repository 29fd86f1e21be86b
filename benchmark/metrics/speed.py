"""Hardware-free speed metrics of candidate-based search (no search is run here)."""
from __future__ import annotations

import numpy as np


def search_speedup_factor(n_database: int, n_candidates_per_query) -> float:
    """SUF (Deep Hash Table family) = N / mean_q |Cand(q)|: database size over the mean number of
    candidates a query touches. A count ratio, not a wall-clock ratio."""
    cand = np.asarray(n_candidates_per_query, dtype=np.float64).reshape(-1)
    if cand.size == 0 or n_database <= 0:
        raise ValueError("need a positive database size and at least one query")
    if np.any(cand < 0):
        raise ValueError("candidate counts must be non-negative")
    mean = cand.mean()
    return float(n_database / mean) if mean > 0 else float("inf")


def recall_of_exact_topk(approx_ids, exact_ids) -> float:
    """Mean over queries of |A_q ∩ E_q| / |E_q|, with A_q the ids returned by an approximate search
    (Q, k') and E_q the exact top-k ids (Q, k); −1 entries are padding and ignored (so |E_q| = k
    unless the exact search itself returned fewer), duplicates in A_q count once. Queries with an
    empty E_q are left out (NaN if all are)."""
    a = np.asarray(approx_ids, dtype=np.int64)
    e = np.asarray(exact_ids, dtype=np.int64)
    if a.ndim != 2 or e.ndim != 2 or a.shape[0] != e.shape[0]:
        raise ValueError(f"need (Q, k) id arrays for the same queries, got {a.shape} and {e.shape}")
    span = max(int(a.max(initial=-1)), int(e.max(initial=-1))) + 2
    rows = np.arange(a.shape[0])[:, None]
    key_a = np.unique((rows * span + a)[a >= 0])
    key_e = np.unique((rows * span + e)[e >= 0])
    hits = np.bincount(key_a[np.isin(key_a, key_e)] // span, minlength=a.shape[0])
    size = np.bincount(key_e // span, minlength=a.shape[0])
    ok = size > 0
    return float(np.mean(hits[ok] / size[ok])) if ok.any() else float("nan")
