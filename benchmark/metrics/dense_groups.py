"""Tie groups of dense real-valued rankings (LUT scores of additive codes, distances of float
embeddings) from one sort of integer keys: the same ``(n, r)`` as ``ranking.score_tie_groups``.

Each score is mapped to an unsigned integer *rank key*: ascending key order is the ranking order
and equal keys are exactly equal scores (−0.0 and +0.0 are one key, as they compare equal). The
key is shifted left by one bit and the item's relevance put in the freed bit, so one value-only
sort per query (numpy's vectorised sort on CPU, ``torch.sort`` on CUDA; no permutation is kept or
gathered) gives both the groups (runs of equal ``key >> 1``) and their relevant counts (the sum
of the low bits over a run). Group g of query q is its g-th distinct score in rank order; the
result is zero-padded on the right to the largest number of groups of a query, exactly as
``score_tie_groups`` pads a call's table. A query's own database item (``self_exclusion``) keeps
its key in the sort and is then removed from its group (which may become empty), as there.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from hashbench.benchmark.metrics import ranking

# Keys per sort job: ~0.5 M (4 MB of uint64) on the CPU, ~32 M (256 MB) per step on a GPU. On the
# 2-core machine, keys + sort + table of 1000 × 54,000 LUT scores took 6.5 CPU-s in blocks of 38
# queries and 3.0 CPU-s in blocks of 8 (the passes after the sort stay in cache).
_BLOCK_ELEMS = 1 << 19
_DEVICE_BLOCK_ELEMS = 1 << 25


def float32_rank_keys(scores: np.ndarray, higher_is_better: bool = True) -> np.ndarray:
    """uint64 keys < 2³² of float32 scores: ascending key = ranking order (decreasing score if
    ``higher_is_better``), equal keys ⇔ equal scores. NaN is refused."""
    s = np.asarray(scores, dtype=np.float32)
    if np.isnan(s).any():
        raise ValueError("scores contain NaN")
    bits = (s + np.float32(0.0)).view(np.int32)  # −0.0 + 0.0 = +0.0: one key for both zeros
    asc = bits ^ ((bits >> 31) & np.int32(0x7FFFFFFF))  # signed int32 increasing in the score
    if higher_is_better:
        np.invert(asc, out=asc)  # ~x = −x − 1: decreasing in the score
    return (asc.astype(np.int64) + (1 << 31)).view(np.uint64)


def nonnegative_float64_rank_keys(dist: np.ndarray) -> np.ndarray:
    """uint64 keys < 2⁶³ of float64 distances ≥ 0 (lower is better): the IEEE bit patterns of
    non-negative floats are ordered as the floats. NaN and negative values are refused."""
    d = np.asarray(dist, dtype=np.float64)
    if np.isnan(d).any() or (d < 0).any():
        raise ValueError("distances must be non-negative and not NaN")
    return (d + 0.0).view(np.uint64)


def _table_numpy(keys: np.ndarray, rel: np.ndarray, out: tuple[np.ndarray, np.ndarray], top: int) -> int:
    """(n, r) of one block from keys (rows, N) uint64 < 2⁶³ (``top``: their largest) and boolean
    relevance, no exclusion, written into ``out`` (two (rows, N) int64 arrays, zero past the
    block's groups); returns the block's width (its largest number of groups)."""
    if top < 1 << 32:
        return _table_32bit(keys.astype(np.uint32), rel, out)
    rows, n_db = keys.shape
    s = (keys << np.uint64(1)) | rel.astype(np.uint64)
    s.sort(axis=1)
    s = s.ravel()
    v = s >> np.uint64(1)
    starts = _group_starts(v, n_db)
    hits = np.add.reduceat((s & np.uint64(1)).view(np.int64), starts)
    return _scatter_groups(starts, rows, n_db, hits, out)


def _table_32bit(keys: np.ndarray, rel: np.ndarray, out: tuple[np.ndarray, np.ndarray]) -> int:
    """:func:`_table_numpy` for keys < 2³² (float32 scores): one uint32 sort of every key (~20 ns a
    key here, against ~35 for the uint64 key-with-relevance), then the relevant items' keys, tagged
    with their row and sorted (one flat sort of ~R·rows keys), each found in its row's groups."""
    rows, n_db = keys.shape
    s = np.sort(keys, axis=1).ravel()
    starts = _group_starts(s, n_db)
    row = starts // n_db
    group_keys = (row.astype(np.uint64) << np.uint64(32)) | s[starts].astype(np.uint64)
    ri, ci = np.nonzero(rel)
    rel_keys = (ri.astype(np.uint64) << np.uint64(32)) | keys[ri, ci].astype(np.uint64)
    rel_keys.sort()
    hits = np.bincount(np.searchsorted(group_keys, rel_keys), minlength=starts.size)
    return _scatter_groups(starts, rows, n_db, hits, out)


def _group_starts(values: np.ndarray, n_db: int) -> np.ndarray:
    """Flat positions where a group starts in rows of ``n_db`` sorted values (every row starts one)."""
    new = np.empty(values.shape, dtype=bool)
    np.not_equal(values[1:], values[:-1], out=new[1:])
    new[::n_db] = True
    return np.flatnonzero(new)


def _scatter_groups(starts: np.ndarray, rows: int, n_db: int, hits: np.ndarray,
                    out: tuple[np.ndarray, np.ndarray]) -> int:
    """Write the (n, r) tables of flat group starts and relevant counts into ``out`` (rows, n_db),
    zero past each row's groups; return the widest row's number of groups."""
    sizes = np.diff(starts, append=rows * n_db)
    first = np.searchsorted(starts, np.arange(rows) * n_db)
    width = int(np.diff(first, append=starts.size).max())
    row = starts // n_db
    flat = row * n_db + (np.arange(starts.size) - first[row])
    for table, values in zip(out, (sizes, hits)):
        table[:] = 0
        table.reshape(-1)[flat] = values
    return width


def _table_torch(keys: torch.Tensor, rel: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_table_numpy` with torch on the keys' device (int64 keys, order-preserving sign flip)."""
    rows, n_db = keys.shape
    packed = ((keys << 1) | rel.long()) ^ torch.iinfo(torch.int64).min  # unsigned order as signed
    s = torch.sort(packed, dim=1).values
    new = torch.ones_like(s, dtype=torch.bool)
    new[:, 1:] = (s[:, 1:] >> 1) != (s[:, :-1] >> 1)
    gid = new.cumsum(1).sub_(1)
    width = int(gid[:, -1].max()) + 1
    flat = (gid + torch.arange(rows, device=s.device)[:, None] * width).view(-1)
    n = torch.zeros(rows * width, dtype=torch.int64, device=s.device).index_add_(0, flat, torch.ones_like(flat))
    r = torch.zeros(rows * width, dtype=torch.int64, device=s.device).index_add_(0, flat, (s & 1).view(-1))
    return n.view(rows, width).cpu().numpy(), r.view(rows, width).cpu().numpy()


def _exclude(n: np.ndarray, r: np.ndarray, keys: np.ndarray, rel: np.ndarray, excl: np.ndarray) -> None:
    """Remove item ``excl[i]`` (≥ 0) from its group in row i (groups in ascending key order, none
    empty yet): the group after the items with smaller keys."""
    for i in np.nonzero(excl >= 0)[0]:
        e = excl[i]
        before = int((keys[i] < keys[i, e]).sum())
        g = int(np.searchsorted(np.cumsum(n[i]), before, side="right"))
        n[i, g] -= 1
        r[i, g] -= int(rel[i, e])


def dense_tie_groups(scores, q_labels, db_labels, rank_keys=float32_rank_keys, self_exclusion=None,
                     threads: int = 1, device: str | torch.device | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Tie groups ``(n, r)`` (int64, (Q, G); the first G columns of (Q, N) buffers) of the ranking
    of the scores (Q, N) by ascending ``rank_keys(scores)`` (:func:`float32_rank_keys`: decreasing float32 scores;
    :func:`nonnegative_float64_rank_keys`: increasing distances), equal to
    ``ranking.score_tie_groups`` of the same ranking. Labels and ``self_exclusion`` as there.
    ``threads``: CPU jobs (keys and a sort for a block of queries) run at once; ``device="cuda"``
    sorts with torch on the GPU (``"cpu"``: torch on the CPU)."""
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-D (queries × items), got shape {scores.shape}")
    n_q, n_db = scores.shape
    labels = ranking._Labels(q_labels, db_labels, torch.device("cpu"))
    if labels.q.shape[0] != n_q or labels.db.shape[0] != n_db:
        raise ValueError("labels and scores disagree on the number of items")
    excl = ranking._self_exclusion(self_exclusion, n_q, n_db)
    if n_q == 0 or n_db == 0:
        return np.zeros((n_q, 1), dtype=np.int64), np.zeros((n_q, 1), dtype=np.int64)
    step = max(1, (_BLOCK_ELEMS if device is None else _DEVICE_BLOCK_ELEMS) // n_db)

    # Each job writes its rows of full-width buffers (no per-job tables stacked and padded
    # afterwards: that copy was 1.5 of 4.9 s of a LUT evaluation on two threads); the result is
    # the buffers' first G columns, G = the largest number of groups of a query.
    out_n, out_r = np.empty((n_q, n_db), dtype=np.int64), np.empty((n_q, n_db), dtype=np.int64)

    def job(s: int) -> int:
        e = min(n_q, s + step)
        keys = rank_keys(scores[s:e])
        top = int(keys.max())
        if keys.dtype != np.uint64 or top >= 1 << 63:
            raise ValueError("rank keys must be uint64 below 2^63")
        rel = labels.relevance(torch.arange(s, e)).numpy()
        n, r = out_n[s:e], out_r[s:e]
        if device is None:
            width = _table_numpy(keys, rel, (n, r), top)
        else:
            dev = torch.device(device)
            tn, tr = _table_torch(torch.from_numpy(keys.view(np.int64)).to(dev), torch.from_numpy(rel).to(dev))
            width = tn.shape[1]
            n[:], r[:] = 0, 0
            n[:, :width], r[:, :width] = tn, tr
        if excl is not None:
            _exclude(n[:, :width], r[:, :width], keys, rel, excl[s:e])
        return width

    starts = range(0, n_q, step)
    if threads > 1 and device is None and len(starts) > 1:
        with ThreadPoolExecutor(threads) as pool:
            width = max(pool.map(job, starts))
    else:
        width = max(job(s) for s in starts)
    return out_n[:, :width], out_r[:, :width]
