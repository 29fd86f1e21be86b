"""Sparse-code hash-table search as a Python loop over queries: the reference implementation.

This is the original implementation of :func:`hashbench.benchmark.search.sparse.candidates` and
:func:`~hashbench.benchmark.search.sparse.search` (one query at a time: a ``seen`` mask for the
union, numpy re-ranking per query). It is kept as the test oracle of the vectorised / faiss path
and as the "Python loop" speed baseline of the scale benchmark; nothing else should call it.
"""

from __future__ import annotations

import numpy as np

from hashbench.benchmark.search.sparse import Candidates, InvertedHashTable, SparseSearchResult, _check_order


def candidates_loop(table: InvertedHashTable, query_bucket_order: np.ndarray, s: int, k: int,
                    exclude: np.ndarray | None = None) -> Candidates:
    """:func:`hashbench.benchmark.search.sparse.candidates` (same definition), one query at a time."""
    order, exclude = _check_order(table, query_bucket_order, s, k, exclude)
    nq, d = order.shape
    start, end = table.locate(order)
    items = table.items
    seen = np.zeros(table.n_items, dtype=bool)
    parts, counts, n_buckets = [], np.zeros(nq, np.int64), np.zeros(nq, np.int64)
    for q in range(nq):
        ex = exclude[q]
        if ex >= 0:
            seen[ex] = True
        got, count, r = [], 0, 0
        while r < d and (r < s or count < k):
            block = items[start[q, r] : end[q, r]]
            if block.size:
                block = block[~seen[block]]
                seen[block] = True
                got.append(block)
                count += block.size
            r += 1
        cand = np.concatenate(got) if got else items[:0]
        seen[cand] = False
        if ex >= 0:
            seen[ex] = False
        parts.append(cand)
        counts[q], n_buckets[q] = count, r
    offsets = np.zeros(nq + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    ids = np.concatenate(parts) if parts else np.empty(0, np.int64)
    return Candidates(offsets=offsets, ids=ids.astype(np.int64, copy=False), counts=counts, n_buckets=n_buckets)


def search_loop(table: InvertedHashTable, query_bucket_order: np.ndarray, s: int, k: int,
                rerank_query: np.ndarray | None = None, rerank_db: np.ndarray | None = None,
                exclude: np.ndarray | None = None, keep_candidates: bool = False) -> SparseSearchResult:
    """:func:`hashbench.benchmark.search.sparse.search` (same definition), one query at a time:
    re-ranking by a stable argsort of each query's einsum distances."""
    if (rerank_query is None) != (rerank_db is None):
        raise ValueError("give both rerank_query and rerank_db, or neither")
    cand = candidates_loop(table, query_bucket_order, s, k, exclude)
    nq = len(cand)
    ids = np.full((nq, k), -1, dtype=np.int64)
    if rerank_db is None:
        for q in range(nq):
            c = cand[q][:k]
            ids[q, : c.size] = c
        ranked = cand if keep_candidates else None
        return SparseSearchResult(ids, None, cand.counts, cand.n_buckets, ranked, None)

    rq = np.asarray(rerank_query)
    rdb = np.asarray(rerank_db)
    if rq.shape[0] != nq or rdb.shape[0] != table.n_items or rq.shape[1] != rdb.shape[1]:
        raise ValueError(f"rerank shapes {rq.shape} / {rdb.shape} do not match Q={nq}, N={table.n_items}")
    dist = np.full((nq, k), np.inf, dtype=np.float32)
    r_ids = np.empty_like(cand.ids) if keep_candidates else None
    r_dist = np.empty(cand.ids.size, dtype=np.float32) if keep_candidates else None
    for q in range(nq):
        c = cand[q]
        diff = rdb[c] - rq[q]
        d2 = np.einsum("ij,ij->i", diff, diff)
        o = np.argsort(d2, kind="stable")
        kk = min(k, c.size)
        ids[q, :kk] = c[o[:kk]]
        dist[q, :kk] = d2[o[:kk]]
        if keep_candidates:
            a, b = cand.offsets[q], cand.offsets[q + 1]
            r_ids[a:b] = c[o]
            r_dist[a:b] = d2[o]
    ranked = None
    if keep_candidates:
        ranked = Candidates(offsets=cand.offsets, ids=r_ids, counts=cand.counts, n_buckets=cand.n_buckets)
    return SparseSearchResult(ids, dist, cand.counts, cand.n_buckets, ranked, r_dist)
