"""Sparse bucket codes (Deep Hash Table family): inverted table, candidate lookup, re-ranking.

Each database item is stored under its s active bucket ids. Bucket ids are arbitrary int64
(flat buckets 0..d-1, or compound hierarchical leaf ids); only the ids that occur are stored, so
nothing is allocated over the id space. Negative ids mean "no bucket" (padding) and are ignored.

A query supplies its bucket ranking, best first (a row of bucket ids; for flat DHT the argsort of
its hash output in descending order, for the cascade the leaf ids in lexicographic rank order).
Its candidate set is the union of the items of its first s buckets, minus the query itself when
the database is the query set; while it holds fewer than k items the next-ranked bucket is
added (the DHT expansion rule, methods.md §2.7). |Cand(q)| feeds SUF = N / mean_q |Cand(q)|.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class InvertedHashTable:
    """CSR inverted table: bucket ``keys[i]`` holds item ids ``items[offsets[i]:offsets[i+1]]``
    (ascending). ``keys`` is sorted and unique; ``n_items`` = N (rows given to :meth:`build`)."""

    keys: np.ndarray
    offsets: np.ndarray
    items: np.ndarray
    n_items: int

    @classmethod
    def build(cls, item_buckets: np.ndarray) -> "InvertedHashTable":
        """Build from item_buckets (N, s) int64: row n lists the buckets of item n. Negative ids
        are skipped; an id repeated within a row stores the item once."""
        ib = np.asarray(item_buckets)
        if ib.ndim == 1:
            ib = ib[:, None]
        if ib.ndim != 2 or not np.issubdtype(ib.dtype, np.integer):
            raise ValueError(f"item_buckets must be an integer (N, s) array, got {ib.dtype} {ib.shape}")
        n, s = ib.shape
        bucket = ib.astype(np.int64, copy=False).ravel()
        item = np.repeat(np.arange(n, dtype=np.int64), s)
        keep = bucket >= 0
        bucket, item = bucket[keep], item[keep]
        # stable sort on bucket keeps items ascending within a bucket (rows are in item order)
        order = np.argsort(bucket, kind="stable")
        bucket, item = bucket[order], item[order]
        if bucket.size:
            dup = np.zeros(bucket.size, dtype=bool)
            dup[1:] = (bucket[1:] == bucket[:-1]) & (item[1:] == item[:-1])
            bucket, item = bucket[~dup], item[~dup]
        keys, starts = np.unique(bucket, return_index=True)
        offsets = np.append(starts, bucket.size).astype(np.int64)
        return cls(keys=keys, offsets=offsets, items=item, n_items=n)

    def bucket(self, b: int) -> np.ndarray:
        """Item ids stored under bucket b (ascending int64; empty if b is absent)."""
        i = np.searchsorted(self.keys, b)
        if i < self.keys.size and self.keys[i] == b:
            return self.items[self.offsets[i] : self.offsets[i + 1]]
        return self.items[:0]

    def sizes(self) -> tuple[np.ndarray, np.ndarray]:
        """(keys, counts): every non-empty bucket id and its number of items."""
        return self.keys, np.diff(self.offsets)

    def locate(self, bucket_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Slice bounds (start, end) into ``items`` for an array of bucket ids (same shape);
        absent ids get an empty slice."""
        b = np.asarray(bucket_ids, dtype=np.int64)
        pos = np.searchsorted(self.keys, b)
        pos_c = np.minimum(pos, max(self.keys.size - 1, 0))
        found = (pos < self.keys.size) & (self.keys[pos_c] == b) if self.keys.size else np.zeros(b.shape, bool)
        start = np.where(found, self.offsets[pos_c], 0)
        end = np.where(found, self.offsets[np.minimum(pos_c + 1, self.offsets.size - 1)], 0)
        return start, end


@dataclass(frozen=True)
class Candidates:
    """Candidate sets in CSR form: query q's candidates are ``ids[offsets[q]:offsets[q+1]]`` in
    bucket order (items of the best bucket first, ascending id within a bucket, each item at its
    first occurrence). ``counts`` = |Cand(q)|; ``n_buckets`` = buckets probed (s plus expansion)."""

    offsets: np.ndarray
    ids: np.ndarray
    counts: np.ndarray
    n_buckets: np.ndarray

    def __getitem__(self, q: int) -> np.ndarray:
        return self.ids[self.offsets[q] : self.offsets[q + 1]]

    def __len__(self) -> int:
        return self.counts.size


def _check_order(table, query_bucket_order, s, k, exclude):
    order = np.asarray(query_bucket_order)
    if order.ndim != 2 or not np.issubdtype(order.dtype, np.integer):
        raise ValueError(f"query_bucket_order must be an integer (Q, d) array, got {order.dtype} {order.shape}")
    if s < 1 or k < 1:
        raise ValueError(f"s and k must be >= 1, got s={s}, k={k}")
    nq = order.shape[0]
    if exclude is None:
        exclude = np.full(nq, -1, dtype=np.int64)
    exclude = np.asarray(exclude, dtype=np.int64)
    if exclude.shape != (nq,):
        raise ValueError(f"exclude must have shape ({nq},), got {exclude.shape}")
    return order.astype(np.int64, copy=False), exclude


def candidates(
    table: InvertedHashTable,
    query_bucket_order: np.ndarray,
    s: int,
    k: int,
    exclude: np.ndarray | None = None,
) -> Candidates:
    """Cand(q) = (∪_{r<s} table[order[q, r]]) minus {exclude[q]}; while |Cand(q)| < k and buckets
    remain, add table[order[q, s]], table[order[q, s+1]], ... one bucket at a time.

    query_bucket_order (Q, d) int64: each query's bucket ids, best first (negative = padding).
    exclude (Q,) int64: the query's own database index to drop, or -1 (None: nothing dropped).
    """
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


@dataclass(frozen=True)
class SparseSearchResult:
    """ids (Q, k) int64, -1 where fewer than k candidates; dist (Q, k) float32 squared Euclidean
    re-ranking distances (+inf padding), or None without re-ranking; n_candidates (Q,) = |Cand(q)|;
    n_buckets (Q,) buckets probed; ranked (only if asked): the full candidate lists in returned
    order (re-ranked when re-ranking) as :class:`Candidates`, with ranked_dist (float32, same
    layout) when re-ranking."""

    ids: np.ndarray
    dist: np.ndarray | None
    n_candidates: np.ndarray
    n_buckets: np.ndarray
    ranked: Candidates | None = None
    ranked_dist: np.ndarray | None = None


def search(
    table: InvertedHashTable,
    query_bucket_order: np.ndarray,
    s: int,
    k: int,
    rerank_query: np.ndarray | None = None,
    rerank_db: np.ndarray | None = None,
    exclude: np.ndarray | None = None,
    keep_candidates: bool = False,
) -> SparseSearchResult:
    """Bucket lookup (:func:`candidates`, expansion to >= k), then the top k candidates.

    With rerank_query (Q, D) and rerank_db (N, D): candidates sorted by ascending squared
    Euclidean distance ||rerank_query[q] - rerank_db[c]||² (equal distances keep bucket order).
    Without: candidates in bucket order. keep_candidates=True also returns every candidate in
    that order (for mAP over the re-ranked candidate list).
    """
    if (rerank_query is None) != (rerank_db is None):
        raise ValueError("give both rerank_query and rerank_db, or neither")
    cand = candidates(table, query_bucket_order, s, k, exclude)
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


def bucket_order(scores: np.ndarray, max_buckets: int | None = 1 << 16) -> np.ndarray:
    """Each query's bucket ids, best first (Q, T) int64, from its continuous scores.

    ``scores`` (Q, d): flat buckets (Deep Hash Table) → the descending argsort of each row
    (stable, so equal scores keep the lower id first).
    ``scores`` (Q, L, d): the cascade's hash tree (methods.md §3.6) → leaf ids in lexicographic
    order of per-level ranks: entry t, written in base d with L digits (t_1 most significant),
    is the leaf ``Σ_l rank_l[t_l] · d^(L−l)`` where ``rank_l[j]`` is the query's j-th best bucket
    at level l. The first s entries are the query's own s leaves (its argmax path with the top-s
    last-level buckets); after them come the remaining children of the best parent, then the
    second-best parent's, and so on. Only the first ``max_buckets`` of the d^L leaves are listed.
    """
    sc = np.asarray(scores)
    if sc.ndim == 2:
        return np.argsort(-sc, axis=1, kind="stable").astype(np.int64)
    if sc.ndim != 3:
        raise ValueError(f"scores must be (Q, d) or (Q, L, d), got shape {sc.shape}")
    nq, n_levels, d = sc.shape
    ranks = np.argsort(-sc, axis=2, kind="stable").astype(np.int64)
    total = d ** n_levels
    t = np.arange(total if max_buckets is None else min(total, int(max_buckets)), dtype=np.int64)
    leaf = np.zeros((nq, t.size), dtype=np.int64)
    for level in range(n_levels):
        digit = (t // d ** (n_levels - 1 - level)) % d
        leaf = leaf * d + ranks[:, level, digit]
    return leaf
