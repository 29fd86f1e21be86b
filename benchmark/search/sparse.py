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


# Temporary arrays are built for chunks of queries holding at most this many elements.
_CHUNK_ELEMS = 1 << 22


def _segments(starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """Concatenation of the index ranges [starts[i], starts[i] + lens[i]) (int64)."""
    total = int(lens.sum())
    if total == 0:
        return np.empty(0, dtype=np.int64)
    first = np.cumsum(lens) - lens
    return np.arange(total, dtype=np.int64) - np.repeat(first - starts, lens)


def _sq_dist(rerank_db: np.ndarray, ids: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances ||rerank_db[ids[i]] - query[i]||² (float32), computed exactly as
    the reference loop does (row-wise einsum of the difference), so both give the same bits."""
    diff = rerank_db[ids] - query
    return np.einsum("ij,ij->i", diff, diff)


class HashTableIndex:
    """The inverted hash table as a search index: vectorised bucket lookup and expansion, and
    bucket-major re-ranking with BLAS.

    Built once from an :class:`InvertedHashTable` (and the re-ranking embedding ``rerank_db``
    (N, D) when re-ranking). The embedding is copied in bucket order (an item with s buckets is
    stored s times, as in an IVF index whose lists are the buckets), so each bucket's vectors are
    contiguous. A search groups the (query, probed bucket) pairs by bucket and scores each
    bucket's vectors against all the queries that probe it in one matrix product
    (‖x‖² − 2⟨q, x⟩ + ‖q‖²), keeping each pair's best k + 1 + m (m = max(4, k/16)). Per query the
    kept items are deduplicated, their distances recomputed exactly as the reference loop
    computes them (row-wise einsum of the difference: the same float32 bits) and sorted by
    (distance, first probe holding the item, id), which is the reference's stable order. The
    result is certified when the k-th exact distance lies below every discarded item's
    approximate distance by more than the float32 error bound of the two formulas
    (``err`` · (D + 3) · 2⁻²⁴ · (max‖x‖ + ‖q‖)²); any other query is re-ranked over its full
    candidate list. Results therefore equal
    :func:`hashbench.benchmark.search.sparse_loop.search_loop`'s exactly (ids, distances, counts).

    |Cand(q)| after r probes is computed without touching items: items are grouped by their set of
    buckets (signature); the union of r buckets holds the items of every signature that meets one
    of them, each signature counted once.
    """

    def __init__(self, table: InvertedHashTable, rerank_db: np.ndarray | None = None):
        self.table = table
        n, n_lists = table.n_items, table.keys.size
        sizes = np.diff(table.offsets)
        entry_list = np.repeat(np.arange(n_lists, dtype=np.int64), sizes)
        by_item = np.argsort(table.items, kind="stable")
        item_of = table.items[by_item]
        per_item = np.bincount(item_of, minlength=n)
        self.max_buckets = max(int(per_item.max()) if n else 1, 1)
        slot = np.arange(item_of.size, dtype=np.int64) - np.repeat(np.cumsum(per_item) - per_item, per_item)
        # item_lists[n]: the list positions of item n's buckets, ascending, -1 padded
        self.item_lists = np.full((n, self.max_buckets), -1, dtype=np.int64)
        self.item_lists[item_of, slot] = entry_list[by_item]
        self._build_signatures(n_lists)
        self.rerank_db = None
        if rerank_db is not None:
            self._build_lists(np.ascontiguousarray(rerank_db, dtype=np.float32))

    def _build_signatures(self, n_lists: int) -> None:
        has = self.item_lists[:, 0] >= 0
        if self.max_buckets == 1:
            rows = np.arange(n_lists, dtype=np.int64)[:, None]
            sig = self.item_lists[:, 0].copy()
        else:
            rows, inverse = np.unique(self.item_lists[has], axis=0, return_inverse=True)
            sig = np.full(self.table.n_items, -1, dtype=np.int64)
            sig[has] = inverse.ravel()
        self.sig_of_item = sig
        self.sig_count = np.bincount(sig[has], minlength=rows.shape[0]).astype(np.int64)
        sig_rep = np.repeat(np.arange(rows.shape[0], dtype=np.int64), rows.shape[1])
        lst = rows.ravel()
        keep = lst >= 0
        sig_rep, lst = sig_rep[keep], lst[keep]
        o = np.lexsort((sig_rep, lst))
        self.sig_ids = sig_rep[o]
        self.sig_offsets = np.zeros(n_lists + 1, dtype=np.int64)
        np.cumsum(np.bincount(lst, minlength=n_lists), out=self.sig_offsets[1:])

    def _build_lists(self, rdb: np.ndarray) -> None:
        if rdb.ndim != 2 or rdb.shape[0] != self.table.n_items:
            raise ValueError(f"rerank_db must be (N={self.table.n_items}, D), got {rdb.shape}")
        self.rerank_db = rdb
        self.list_emb = np.ascontiguousarray(rdb[self.table.items])  # bucket-major copy
        self.list_sqnorm = np.einsum("ij,ij->i", self.list_emb, self.list_emb)
        self.max_norm = float(np.sqrt(self.list_sqnorm.max())) if self.list_sqnorm.size else 0.0

    def memory_bytes(self) -> int:
        """Bytes held by the index's arrays: table, per-item bucket lists, signatures, and the IVF
        copy of the embedding (N·s·D·4 + 8 per stored id); the caller's embedding not counted."""
        arrays = (self.table.keys, self.table.offsets, self.table.items, self.item_lists,
                  self.sig_of_item, self.sig_count, self.sig_ids, self.sig_offsets)
        total = sum(a.nbytes for a in arrays)
        if self.rerank_db is not None:
            total += self.list_emb.nbytes + self.list_sqnorm.nbytes
        return int(total)

    # ------------------------------------------------------------------ lookup and expansion
    def _positions(self, order: np.ndarray) -> np.ndarray:
        """List positions of bucket ids (same shape); -1 for ids absent from the table."""
        keys = self.table.keys
        if keys.size == 0:
            return np.full(order.shape, -1, dtype=np.int64)
        pos = np.searchsorted(keys, order)
        pos_c = np.minimum(pos, keys.size - 1)
        return np.where(keys[pos_c] == order, pos_c, -1)

    def _union_sizes(self, pos: np.ndarray, exclude: np.ndarray) -> np.ndarray:
        """U (t, R) int64: |∪_{j<=r} bucket(pos[q, j])| minus the excluded item, for r = 0..R-1."""
        t, R = pos.shape
        valid = pos >= 0
        pc = np.where(valid, pos, 0)
        starts = self.sig_offsets[pc].ravel()
        # absent buckets read offsets[0] twice (length 0): offsets[pc + 1] would run past the end
        # of a table without any bucket
        lens = (self.sig_offsets[np.where(valid, pos + 1, 0)] - self.sig_offsets[pc]).ravel()
        cell = np.repeat(np.arange(t * R, dtype=np.int64), lens)
        sig = self.sig_ids[_segments(starts, lens)]
        q = cell // R
        G = self.sig_count.size
        key = q * G + sig
        _, first = np.unique(key, return_index=True)  # first occurrence = earliest probe
        cell, sig, q = cell[first], sig[first], q[first]
        gain = np.bincount(cell, weights=self.sig_count[sig], minlength=t * R)
        U = np.cumsum(np.rint(gain).astype(np.int64).reshape(t, R), axis=1)
        has_ex = exclude >= 0
        if has_ex.any():
            ex_sig = np.where(has_ex, self.sig_of_item[np.where(has_ex, exclude, 0)], -1)
            hit = sig == ex_sig[q]
            j_ex = np.full(t, R, dtype=np.int64)
            j_ex[q[hit]] = cell[hit] % R
            U -= np.arange(R)[None, :] >= j_ex[:, None]
        return U

    def probes(self, order: np.ndarray, s: int, k: int, exclude: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The expansion rule, vectorised: r_q = the smallest r >= min(s, d) with |Cand| >= k
        after r probes (d = order.shape[1] if never). Returns (pos (Q, max r_q) list positions,
        -1 beyond r_q and for absent buckets; n_buckets = r_q; counts = |Cand(q)|)."""
        nq, d = order.shape
        s0 = min(s, d)
        n_buckets = np.full(nq, d, dtype=np.int64)
        counts = np.zeros(nq, dtype=np.int64)
        finished = np.zeros(nq, dtype=bool)
        todo = np.arange(nq) if s0 > 0 else np.empty(0, dtype=np.int64)
        R = s0
        while todo.size:
            R = min(R, d)
            for part in np.array_split(todo, 1 + todo.size * R * self.max_buckets // _CHUNK_ELEMS):
                U = self._union_sizes(self._positions(order[part, :R]), exclude[part])
                ok = U[:, s0 - 1 :] >= k
                found = ok.any(1)
                done = found | (R == d)
                r = np.where(found, s0 + ok.argmax(1), d)[done]
                n_buckets[part[done]] = r
                counts[part[done]] = U[np.flatnonzero(done), r - 1]
                finished[part[done]] = True
            todo = todo[~finished[todo]]
            R *= 2
        pos = self._positions(order[:, : int(n_buckets.max()) if nq else 0])
        pos[np.arange(pos.shape[1])[None, :] >= n_buckets[:, None]] = -1
        if pos.shape[1] > 1:  # a bucket probed again adds nothing: keep its first probe only
            o = np.argsort(pos, axis=1, kind="stable")
            srt = np.take_along_axis(pos, o, axis=1)
            again = np.zeros(pos.shape, dtype=bool)
            again[:, 1:] = (srt[:, 1:] == srt[:, :-1]) & (srt[:, 1:] >= 0)
            np.put_along_axis(pos, o, np.where(again, -1, srt), axis=1)
        return pos, n_buckets, counts

    # ------------------------------------------------------------------ candidate lists
    def _gather(self, pos: np.ndarray, exclude: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(query index, item id) of every candidate of the probed lists ``pos`` (t, R), in the
        reference's order: by query, first probe that holds the item, ascending id; each item once
        per query, the excluded item dropped."""
        t, R = pos.shape
        valid = pos >= 0
        pc = np.where(valid, pos, 0)
        offsets = self.table.offsets
        starts = offsets[pc].ravel()
        lens = (offsets[np.where(valid, pos + 1, 0)] - offsets[pc]).ravel()  # absent: 0 (see _union_sizes)
        q = np.repeat(np.arange(t * R, dtype=np.int64), lens) // max(R, 1)
        item = self.table.items[_segments(starts, lens)]
        if self.max_buckets > 1 or R > 1:
            _, first = np.unique(q * self.table.n_items + item, return_index=True)
            first.sort()
            q, item = q[first], item[first]
        keep = item != exclude[q]
        return q[keep], item[keep]

    def _chunks(self, pos: np.ndarray, per_query: int) -> list[np.ndarray]:
        nq = pos.shape[0]
        return np.array_split(np.arange(nq), 1 + nq * max(per_query, 1) // _CHUNK_ELEMS) if nq else []

    def candidates(self, order: np.ndarray, s: int, k: int, exclude: np.ndarray | None = None) -> Candidates:
        """Same definition and result as the module-level :func:`candidates`."""
        order, exclude = _check_order(self.table, order, s, k, exclude)
        pos, n_buckets, counts = self.probes(order, s, k, exclude)
        return self._candidates_of(pos, exclude, n_buckets, counts)

    def _candidates_of(self, pos, exclude, n_buckets, counts) -> Candidates:
        mean_len = int(counts.mean()) * self.max_buckets if counts.size else 0
        ids = [self._gather(pos[c], exclude[c])[1] for c in self._chunks(pos, mean_len)]
        offsets = np.zeros(counts.size + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        ids = np.concatenate(ids) if ids else np.empty(0, np.int64)
        return Candidates(offsets=offsets, ids=ids, counts=counts, n_buckets=n_buckets)

    # ------------------------------------------------------------------ search
    def search(self, order: np.ndarray, s: int, k: int, rerank_query: np.ndarray | None = None,
               exclude: np.ndarray | None = None, keep_candidates: bool = False,
               err: float = 4.0, threads: int = 1, topn: int | None = None) -> SparseSearchResult:
        """Same definition and result as the module-level :func:`search` (re-ranking in the
        embedding given at build time when ``rerank_query`` is given). ``topn`` (<= k): return
        only the first topn of the k results (the expansion still runs to k candidates: the
        speed/recall knob). ``err``: safety factor of the certification bound (class
        docstring); ``threads``: buckets scored in that many threads (BLAS left as set)."""
        order, exclude = _check_order(self.table, order, s, k, exclude)
        topn = k if topn is None else int(topn)
        if not 1 <= topn <= k:
            raise ValueError(f"topn must be in [1, k={k}], got {topn}")
        if (rerank_query is None) != (self.rerank_db is None):
            raise ValueError("give rerank_query exactly when the index was built with rerank_db")
        pos, n_buckets, counts = self.probes(order, s, k, exclude)
        nq = order.shape[0]
        if rerank_query is None:
            cand = self._candidates_of(pos, exclude, n_buckets, counts)
            ids = np.full((nq, topn), -1, dtype=np.int64)
            first = np.minimum(counts, topn)
            qq = np.repeat(np.arange(nq), first)
            ids[qq, _segments(np.zeros(nq, np.int64), first)] = cand.ids[_segments(cand.offsets[:-1], first)]
            return SparseSearchResult(ids, None, counts, n_buckets, cand if keep_candidates else None, None)
        rq = np.ascontiguousarray(rerank_query, dtype=np.float32)
        if rq.shape != (nq, self.rerank_db.shape[1]):
            raise ValueError(f"rerank_query must be ({nq}, {self.rerank_db.shape[1]}), got {rq.shape}")
        if keep_candidates:
            return self._rerank_all(pos, exclude, n_buckets, counts, rq, topn)
        ids, dist = self._rerank_topk(pos, exclude, counts, rq, topn, err, threads)
        return SparseSearchResult(ids, dist, counts, n_buckets)

    def _rerank_all(self, pos, exclude, n_buckets, counts, rq, k) -> SparseSearchResult:
        """Every candidate re-ranked (stable by distance), chunk by chunk of queries."""
        nq = pos.shape[0]
        ids = np.full((nq, k), -1, dtype=np.int64)
        dist = np.full((nq, k), np.inf, dtype=np.float32)
        all_ids, all_d = [], []
        mean_len = int(counts.mean()) * max(self.max_buckets, rq.shape[1]) if nq else 0
        for c in self._chunks(pos, mean_len):
            q, item = self._gather(pos[c], exclude[c])
            d2 = _sq_dist(self.rerank_db, item, rq[c][q])
            o = np.lexsort((d2, q))  # stable: equal distances keep candidate order
            q, item, d2 = q[o], item[o], d2[o]
            all_ids.append(item)
            all_d.append(d2)
            cnt = counts[c]
            first = np.minimum(cnt, k)
            src = _segments(np.cumsum(cnt) - cnt, first)
            row = np.repeat(c, first)
            col = _segments(np.zeros(c.size, np.int64), first)
            ids[row, col], dist[row, col] = item[src], d2[src]
        offsets = np.zeros(nq + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        r_ids = np.concatenate(all_ids) if all_ids else np.empty(0, np.int64)
        r_d = np.concatenate(all_d) if all_d else np.empty(0, np.float32)
        ranked = Candidates(offsets=offsets, ids=r_ids, counts=counts, n_buckets=n_buckets)
        return SparseSearchResult(ids, dist, counts, n_buckets, ranked, r_d)

    def _score_buckets(self, pos: np.ndarray, rq: np.ndarray, kp: int, threads: int):
        """Every (query, probe) pair's kept entries, flat: (query, probe index, position into
        ``list_emb``, exact distance :func:`_sq_dist`) and each query's cut-off. A bucket of at most
        kp entries is kept whole (exact distances of all such pairs in one batch); a larger one is
        scored against all its queries by one matrix product and its kp best kept, the kp-th
        matrix-product distance being the pair's cut-off (every dropped entry's is >= it). A
        query's cut-off is the least over its pairs (+inf if nothing was dropped)."""
        nq, R = pos.shape
        cut = np.full(nq, np.inf, dtype=np.float64)
        qq, jj = np.nonzero(pos >= 0)
        lists = pos[qq, jj]
        offsets = self.table.offsets
        size = offsets[lists + 1] - offsets[lists]
        small = size <= kp
        out = []
        pairs = np.flatnonzero(small)
        for part in np.array_split(pairs, 1 + int(size[small].sum()) * rq.shape[1] // _CHUNK_ELEMS):
            q, j, n = qq[part], jj[part], size[part]
            row = np.repeat(np.arange(q.size), n)
            at = offsets[lists[part]][row] + _segments(np.zeros(q.size, np.int64), n)
            out.append((q[row], j[row], at, _sq_dist(self.list_emb, at, rq[q[row]])))
        qq, jj, lists = qq[~small], jj[~small], lists[~small]
        o = np.argsort(lists, kind="stable")
        qq, jj, lists = qq[o], jj[o], lists[o]
        groups = np.split(np.arange(lists.size), np.flatnonzero(np.diff(lists)) + 1) if lists.size else []
        qn = np.einsum("ij,ij->i", rq, rq)
        rq_m2 = -2.0 * rq  # exact scaling: (-2q)·x == -2(q·x)

        def score(group_ids):
            got = []
            for g in group_ids:
                sel = groups[g]
                lst, q, j = lists[sel[0]], qq[sel], jj[sel]
                lo, hi = offsets[lst], offsets[lst + 1]
                block = self.list_emb[lo:hi]
                dist = rq_m2[q] @ block.T
                dist += self.list_sqnorm[lo:hi]
                dist += qn[q][:, None]
                p = np.argpartition(dist, kp - 1, axis=1)[:, :kp]
                # a query probes a bucket once (probes() drops repeats): plain indexed update
                cut[q] = np.minimum(cut[q], np.take_along_axis(dist, p[:, kp - 1 :], axis=1)[:, 0])
                p = p.ravel()
                rows = np.repeat(np.arange(q.size), kp)
                got.append((q[rows], j[rows], lo + p, _sq_dist(block, p, rq[q[rows]])))
            return got

        parts = np.array_split(np.arange(len(groups)), max(1, min(threads, len(groups))))
        if threads > 1 and len(parts) > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(len(parts)) as pool:
                for got in pool.map(score, parts):
                    out += got
        else:
            out += score(parts[0])
        q, j, at, d2 = (np.concatenate(x) for x in zip(*out))
        return q, j, at, d2, cut

    def _rerank_topk(self, pos, exclude, counts, rq, k, err, threads) -> tuple[np.ndarray, np.ndarray]:
        """Top k by (distance, first probe holding the item, id): bucket-major BLAS scoring with
        exact distances of the kept entries, certification (class docstring), fallback."""
        nq, R = pos.shape
        dim = rq.shape[1]
        ids = np.full((nq, k), -1, dtype=np.int64)
        dist = np.full((nq, k), np.inf, dtype=np.float32)
        if nq == 0 or R == 0:
            return ids, dist
        extra = 1 if (exclude >= 0).any() else 0
        kp = k + extra + max(4, k // 16)
        q, j, at, d2, cut = self._score_buckets(pos, rq, kp, threads)
        item = self.table.items[at]
        keep = item != exclude[q]
        q, j, item, d2 = q[keep], j[keep], item[keep], d2[keep]
        # one entry per (query, item): the copy of the earliest probe, which is the item's rank (in a
        # certified query every copy of an item at distance <= the k-th was kept)
        if self.max_buckets > 1:
            key = q * self.table.n_items + item
            o = np.lexsort((j, key))
            key, q, j, item, d2 = key[o], q[o], j[o], item[o], d2[o]
            first = np.ones(q.size, dtype=bool)
            first[1:] = key[1:] != key[:-1]
            q, j, item, d2 = q[first], j[first], item[first], d2[first]
        o = np.lexsort((d2, q))
        q, j, item, d2 = q[o], j[o], item[o], d2[o]
        tie = (q[1:] == q[:-1]) & (d2[1:] == d2[:-1])
        if tie.any():  # runs of equal distances: by first probe holding the item, then id
            in_run = np.zeros(q.size, dtype=bool)
            in_run[1:] |= tie
            in_run[:-1] |= tie
            at_run = np.flatnonzero(in_run)
            run = np.cumsum(np.concatenate([[True], ~tie]))[at_run]
            src = at_run[np.lexsort((item[at_run], j[at_run], run))]
            item[at_run], d2[at_run] = item[src], d2[src]
        cnt = np.bincount(q, minlength=nq)
        take = np.minimum(cnt, k)
        src = _segments(np.cumsum(cnt) - cnt, take)
        row, col = np.repeat(np.arange(nq), take), _segments(np.zeros(nq, np.int64), take)
        ids[row, col], dist[row, col] = item[src], d2[src]
        bound = err * (dim + 3) * 2.0**-24 * (self.max_norm + np.sqrt(np.einsum("ij,ij->i", rq, rq))) ** 2
        kth = np.where(take == k, dist[:, -1].astype(np.float64), np.inf)
        certified = np.isinf(cut) | (kth < cut - bound)
        fallback = np.flatnonzero(~certified)
        if fallback.size:
            res = self._rerank_all(pos[fallback], exclude[fallback], None, counts[fallback], rq[fallback], k)
            ids[fallback], dist[fallback] = res.ids, res.dist
        return ids, dist


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
    Vectorised over queries (:class:`HashTableIndex`); build the index once to search repeatedly.
    """
    return HashTableIndex(table).candidates(query_bucket_order, s, k, exclude)


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
    that order (for mAP over the re-ranked candidate list). Builds a :class:`HashTableIndex` per
    call (a copy of the embedding per bucket); build it once to search repeatedly.
    """
    if (rerank_query is None) != (rerank_db is None):
        raise ValueError("give both rerank_query and rerank_db, or neither")
    if rerank_db is not None:
        rdb = np.asarray(rerank_db)
        rq = np.asarray(rerank_query)
        nq = np.asarray(query_bucket_order).shape[0]
        if rq.ndim != 2 or rdb.ndim != 2 or rq.shape[0] != nq or rdb.shape[0] != table.n_items or rq.shape[1] != rdb.shape[1]:
            raise ValueError(f"rerank shapes {rq.shape} / {rdb.shape} do not match Q={nq}, N={table.n_items}")
    index = HashTableIndex(table, rerank_db)
    return index.search(query_bucket_order, s, k, rerank_query, exclude, keep_candidates)


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
