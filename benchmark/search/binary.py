"""Dense binary codes (±1, K bits): exact Hamming search and hash-table lookup with faiss.

Codes enter as int8 arrays of ±1 with shape (N, K), K a multiple of 8 (zero-pad shorter codes by
appending +1 or -1 columns to *both* database and queries; equal padding does not change Hamming
distances). They are packed with :func:`pack_bits` into faiss's binary layout.

Missing results (fewer than k items found) come back as id -1 with distance
``MISSING_DIST`` (int32 max, faiss's heap sentinel), so they sort last.
"""

from __future__ import annotations

import faiss
import numpy as np

MISSING_DIST = np.iinfo(np.int32).max

# faiss's hash indexes read each hashed substring as one unaligned 8-byte word starting at the
# substring's first byte, which can run past the end of the last code of an array. Arrays handed
# to them therefore carry this many zero bytes of slack after their last row.
_SLACK_BYTES = 8


def pack_bits(codes_pm1: np.ndarray) -> np.ndarray:
    """Pack ±1 codes (N, K) into uint8 (N, K/8): bit = 1 where code = +1 (np.packbits, MSB first).

    Hamming distance between packed rows = number of positions where the ±1 codes differ
    = (K - <a, b>) / 2.
    """
    codes = np.asarray(codes_pm1)
    if codes.ndim != 2:
        raise ValueError(f"codes must be 2-D (N, K), got shape {codes.shape}")
    if codes.shape[1] % 8 != 0:
        raise ValueError(f"code length K={codes.shape[1]} must be a multiple of 8 (zero-pad it)")
    if not np.all((codes == 1) | (codes == -1)):
        raise ValueError("codes must contain only -1 and +1")
    return np.packbits(codes > 0, axis=1)


def _with_slack(packed: np.ndarray) -> np.ndarray:
    """Same rows as `packed`, backed by a buffer with _SLACK_BYTES zero bytes after the last row."""
    n, code_size = packed.shape
    buf = np.zeros(n * code_size + _SLACK_BYTES, dtype=np.uint8)
    buf[: n * code_size] = packed.ravel()
    return buf[: n * code_size].reshape(n, code_size)


def _range_result(lims, dist, ids):
    return np.asarray(lims, dtype=np.int64), np.asarray(dist, dtype=np.int32), np.asarray(ids, dtype=np.int64)


class BinaryFlatIndex:
    """Exhaustive Hamming search over packed codes (faiss ``IndexBinaryFlat``, popcount scan).

    Results are sorted by ascending Hamming distance; equal distances come back in ascending
    database id (faiss heap tie-break).
    """

    def __init__(self, codes_pm1: np.ndarray):
        packed = pack_bits(codes_pm1)
        self.n_bits = packed.shape[1] * 8
        self.index = faiss.IndexBinaryFlat(self.n_bits)
        self.index.add(packed)

    @property
    def ntotal(self) -> int:
        return self.index.ntotal

    def search(self, query_pm1: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """k nearest database items by Hamming distance: (dist int32 (Q, k), ids int64 (Q, k))."""
        dist, ids = self.index.search(self._pack_query(query_pm1), k)
        return dist, ids

    def range_search(self, query_pm1: np.ndarray, radius: int):
        """All items with Hamming distance < radius (strict, faiss convention), as CSR:
        (lims (Q+1,), dist int32, ids int64); query q's results are [lims[q], lims[q+1])."""
        return _range_result(*self.index.range_search(self._pack_query(query_pm1), radius))

    def _pack_query(self, query_pm1):
        packed = pack_bits(query_pm1)
        if packed.shape[1] * 8 != self.n_bits:
            raise ValueError(f"query has {packed.shape[1] * 8} bits, index has {self.n_bits}")
        return packed


class BinaryHashIndex:
    """Hash-table lookup on b-bit substrings of the codes, verified by full Hamming distance.

    nhash = 1: faiss ``IndexBinaryHash`` (one table keyed on b bits of the code).
    nhash > 1: faiss ``IndexBinaryMultiHash`` (multi-index hashing: nhash tables on disjoint
    b-bit substrings, nhash * b <= K; a candidate is any item colliding in at least one table).
    At search time every bucket within ``nflip`` bit flips of the query's key is probed in each
    table, and the union of the probed buckets' items is ranked by exact Hamming distance.

    The key of table h is taken from bits [h*b, (h+1)*b) of faiss's little-endian reading of the
    packed bytes (for b a multiple of 8: whole bytes h*b/8 ...); any fixed set of b code bits
    per table is an equally valid hash, and search results only depend on which items collide.

    Defaults: nhash = 1; b = K // nhash when nhash > 1, else min(K, ceil(log2 N)) (about one item
    per bucket), capped at 63 (one table) or 57 (several tables) by faiss's 64-bit key words.
    """

    def __init__(self, codes_pm1: np.ndarray, b: int | None = None, nhash: int | None = None):
        packed = pack_bits(codes_pm1)
        n, code_size = packed.shape
        self.n_bits = code_size * 8
        self.nhash = 1 if nhash is None else int(nhash)
        if self.nhash < 1:
            raise ValueError("nhash must be >= 1")
        max_b = 63 if self.nhash == 1 else 57
        if b is None:
            if self.nhash > 1:
                b = self.n_bits // self.nhash
            else:
                b = min(self.n_bits, max(1, int(np.ceil(np.log2(max(n, 2))))))
            b = min(b, max_b)
        self.b = int(b)
        if not 1 <= self.b <= max_b:
            raise ValueError(f"b must be in [1, {max_b}] for nhash={self.nhash}, got {self.b}")
        if self.nhash * self.b > self.n_bits:
            raise ValueError(f"nhash * b = {self.nhash * self.b} exceeds the code length {self.n_bits}")
        if self.nhash == 1:
            self.index = faiss.IndexBinaryHash(self.n_bits, self.b)
        else:
            self.index = faiss.IndexBinaryMultiHash(self.n_bits, self.nhash, self.b)
        self.index.add(_with_slack(packed))

    @property
    def ntotal(self) -> int:
        return self.index.ntotal

    def _pack_query(self, query_pm1):
        packed = pack_bits(query_pm1)
        if packed.shape[1] * 8 != self.n_bits:
            raise ValueError(f"query has {packed.shape[1] * 8} bits, index has {self.n_bits}")
        return _with_slack(packed)

    def search(self, query_pm1: np.ndarray, k: int, nflip: int = 0, per_query: bool = True):
        """k nearest items among the hash candidates probed within ``nflip`` flips of each key.

        Returns (dist int32 (Q, k), ids int64 (Q, k), n_candidates (Q,)). Items not found are id -1
        with distance MISSING_DIST. n_candidates[q] = number of database items whose Hamming
        distance was computed for query q (faiss ``indexBinaryHash_stats.ndis``; for several
        tables, the size of the de-duplicated candidate union). With per_query=True (default) the
        queries are searched one by one to read the counter per query (int64); with
        per_query=False they go to faiss as one batch (the form to time) and n_candidates holds
        the batch mean for every query (float64).
        """
        if not 0 <= nflip <= self.b:
            raise ValueError(f"nflip must be in [0, b={self.b}], got {nflip}")
        xq = self._pack_query(query_pm1)
        self.index.nflip = int(nflip)
        stats = faiss.cvar.indexBinaryHash_stats
        nq = xq.shape[0]
        if not per_query:
            stats.reset()
            dist, ids = self.index.search(xq, k)
            mean = stats.ndis / nq if nq else 0.0
            return dist, ids, np.full(nq, mean, dtype=np.float64)
        dist = np.empty((nq, k), dtype=np.int32)
        ids = np.empty((nq, k), dtype=np.int64)
        n_cand = np.empty(nq, dtype=np.int64)
        for q in range(nq):
            stats.reset()
            dist[q : q + 1], ids[q : q + 1] = self.index.search(xq[q : q + 1], k)
            n_cand[q] = stats.ndis
        return dist, ids, n_cand

    def range_search(self, query_pm1: np.ndarray, radius: int, nflip: int = 0):
        """Items with Hamming distance < radius (strict) among the hash candidates within
        ``nflip`` flips; CSR (lims (Q+1,), dist int32, ids int64) as BinaryFlatIndex.range_search."""
        if not 0 <= nflip <= self.b:
            raise ValueError(f"nflip must be in [0, b={self.b}], got {nflip}")
        self.index.nflip = int(nflip)
        return _range_result(*self.index.range_search(self._pack_query(query_pm1), radius))
