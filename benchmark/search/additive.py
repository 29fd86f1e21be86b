"""Additive (residual / product) codes: asymmetric search with lookup tables, and faiss.

An item's code is a row of M integer indices b_0..b_{M-1}, one per codebook; codebooks are float32
(M, K, D) and the item's reconstruction is x̂ = Σ_j codebooks[j, b_j]. A shared codebook scaled per
step (DRQ: x̂ = Σ_j w_j C[b_j]) is the special case codebooks[j] = w_j · C; product quantisation
is the special case where codebook j is zero outside its own block of D/M coordinates
(:func:`pq_as_additive`). A prefix m <= M uses codebooks[:m] and codes[:, :m].

Queries stay un-quantised (asymmetric search). Scores are "higher is better":
  - "ip": s(q, n) = <x_q, x̂_n> = Σ_j T[q, j, b_nj] with T[q, j, k] = <x_q, codebooks[j, k]>;
  - "l2": s(q, n) = -||x_q - x̂_n||² = -||x_q||² + 2 <x_q, x̂_n> - ||x̂_n||².
Two implementations: the LUT scorer here (torch gathers, chunked over queries) and
:class:`FaissAdditiveIndex`, a faiss additive-quantizer index whose codebooks are injected and
whose codes are added with ``add_sa_codes`` (faiss never trains or re-encodes).
"""

from __future__ import annotations

import faiss
import numpy as np
import torch

# Rows of scores per chunk are chosen so one chunk holds about this many float32 scores.
_CHUNK_ELEMS = 1 << 23


def _check(codebooks: np.ndarray, codes: np.ndarray, m: int | None):
    """Validate and cut to prefix m: returns (codebooks (m, K, D) float32, codes (N, m) int64)."""
    codebooks = np.asarray(codebooks, dtype=np.float32)
    codes = np.asarray(codes)
    if codebooks.ndim != 3:
        raise ValueError(f"codebooks must be (M, K, D), got shape {codebooks.shape}")
    if codes.ndim != 2 or codes.shape[1] != codebooks.shape[0]:
        raise ValueError(f"codes must be (N, M={codebooks.shape[0]}), got shape {codes.shape}")
    if not np.issubdtype(codes.dtype, np.integer):
        raise ValueError("codes must be integer indices")
    M, K, _ = codebooks.shape
    if m is None:
        m = M
    if not 1 <= m <= M:
        raise ValueError(f"prefix m must be in [1, {M}], got {m}")
    codes = codes[:, :m].astype(np.int64, copy=False)
    if codes.size and (codes.min() < 0 or codes.max() >= K):
        raise ValueError(f"codes must lie in [0, {K})")
    return np.ascontiguousarray(codebooks[:m]), codes


def reconstruct(codebooks: np.ndarray, codes: np.ndarray, m: int | None = None) -> np.ndarray:
    """x̂_n = Σ_{j<m} codebooks[j, codes[n, j]] for every item: float32 (N, D). m=None: all M."""
    codebooks, codes = _check(codebooks, codes, m)
    out = np.zeros((codes.shape[0], codebooks.shape[2]), dtype=np.float32)
    for j in range(codes.shape[1]):
        out += codebooks[j][codes[:, j]]
    return out


def reconstruction_sq_norms(codebooks: np.ndarray, codes: np.ndarray, m: int | None = None) -> np.ndarray:
    """||x̂_n||² of the prefix-m reconstructions, float32 (N,), computed in chunks of items."""
    codebooks, codes = _check(codebooks, codes, m)
    n = codes.shape[0]
    out = np.empty(n, dtype=np.float32)
    step = max(1, _CHUNK_ELEMS // max(1, codebooks.shape[2]))
    for a in range(0, n, step):
        rec = reconstruct(codebooks, codes[a : a + step])
        out[a : a + step] = np.einsum("nd,nd->n", rec, rec)
    return out


def lookup_tables(queries: np.ndarray, codebooks: np.ndarray) -> np.ndarray:
    """T[q, m, k] = <x_q, codebooks[m, k]>: float32 (Q, M, K)."""
    codebooks = np.asarray(codebooks, dtype=np.float32)
    M, K, D = codebooks.shape
    xq = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32))
    flat = torch.from_numpy(np.ascontiguousarray(codebooks.reshape(M * K, D)))
    return (xq @ flat.T).reshape(-1, M, K).numpy()


def _score_chunks(queries, codebooks, codes, m, metric, sq_norms):
    """Yield (start, scores float32 torch (chunk, N)) over query chunks; see lut_scores."""
    if metric not in ("ip", "l2"):
        raise ValueError(f"metric must be 'ip' or 'l2', got {metric!r}")
    codebooks, codes = _check(codebooks, codes, m)
    mm, K, D = codebooks.shape
    xq = np.ascontiguousarray(queries, dtype=np.float32)
    if xq.ndim != 2 or xq.shape[1] != D:
        raise ValueError(f"queries must be (Q, D={D}), got shape {xq.shape}")
    n = codes.shape[0]
    flat_cb = torch.from_numpy(codebooks.reshape(mm * K, D))
    # column j of `flat_idx` indexes codebook j's block of the flattened (m*K) table.
    flat_idx = torch.from_numpy(codes + np.arange(mm, dtype=np.int64) * K)
    cols = [flat_idx[:, j].contiguous() for j in range(mm)]
    if metric == "l2":
        if sq_norms is None:
            sq_norms = reconstruction_sq_norms(codebooks, codes)
        db_sq = torch.from_numpy(np.ascontiguousarray(sq_norms, dtype=np.float32))
    step = max(1, _CHUNK_ELEMS // max(1, n))
    for a in range(0, xq.shape[0], step):
        xq_c = torch.from_numpy(xq[a : a + step])
        lut = xq_c @ flat_cb.T  # (chunk, m*K)
        scores = lut.index_select(1, cols[0])
        for j in range(1, mm):
            scores += lut.index_select(1, cols[j])
        if metric == "l2":
            q_sq = (xq_c * xq_c).sum(1, keepdim=True)
            scores.mul_(2).sub_(db_sq).sub_(q_sq)
        yield a, scores


def lut_scores(
    queries: np.ndarray,
    codebooks: np.ndarray,
    codes: np.ndarray,
    m: int | None = None,
    metric: str = "ip",
    sq_norms: np.ndarray | None = None,
) -> np.ndarray:
    """Asymmetric scores of every query against every item, float32 (Q, N), higher = better.

    "ip": Σ_{j<m} T[q, j, codes[n, j]] = <x_q, x̂_n>; "l2": -||x_q||² + 2<x_q, x̂_n> - ||x̂_n||²
    = -||x_q - x̂_n||², with ||x̂_n||² = sq_norms if given (it must match the prefix m) or computed
    from the reconstructions. Tables are built and gathered per chunk of queries (torch).
    """
    out = None
    for a, s in _score_chunks(queries, codebooks, codes, m, metric, sq_norms):
        if out is None:
            out = np.empty((len(queries), s.shape[1]), dtype=np.float32)
        out[a : a + s.shape[0]] = s.numpy()
    if out is None:
        out = np.empty((0, np.asarray(codes).shape[0]), dtype=np.float32)
    return out


def lut_topk(
    queries: np.ndarray,
    codebooks: np.ndarray,
    codes: np.ndarray,
    k: int,
    m: int | None = None,
    metric: str = "ip",
    sq_norms: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k items per query by the scores of :func:`lut_scores`, computed chunk by chunk
    (never the full Q×N matrix): (scores float32 (Q, k) descending, ids int64 (Q, k)).
    Order among exactly equal scores is unspecified (torch.topk). k is capped at N.
    """
    n = np.asarray(codes).shape[0]
    k = min(int(k), n)
    nq = len(queries)
    top_s = np.empty((nq, k), dtype=np.float32)
    top_i = np.empty((nq, k), dtype=np.int64)
    for a, s in _score_chunks(queries, codebooks, codes, m, metric, sq_norms):
        v, i = torch.topk(s, k, dim=1, largest=True, sorted=True)
        top_s[a : a + s.shape[0]] = v.numpy()
        top_i[a : a + s.shape[0]] = i.numpy()
    return top_s, top_i


def pq_as_additive(pq_centroids: np.ndarray) -> np.ndarray:
    """Product-quantiser centroids (M, K, dsub) as additive codebooks (M, K, D = M*dsub):
    codebook j equals the PQ centroids in coordinates [j*dsub, (j+1)*dsub) and is zero elsewhere,
    so Σ_j codebooks[j, b_j] is the PQ reconstruction (faiss ``pq.decode``). faiss's centroids come
    from ``faiss.contrib.inspect_tools.get_pq_centroids(pq)``; packed faiss codes unpack to indices
    with ``faiss.unpack_bitstrings(packed, M, nbits)`` (for nbits = 8 they already are the indices).
    """
    c = np.asarray(pq_centroids, dtype=np.float32)
    if c.ndim != 3:
        raise ValueError(f"PQ centroids must be (M, K, dsub), got shape {c.shape}")
    M, K, dsub = c.shape
    out = np.zeros((M, K, M * dsub), dtype=np.float32)
    for j in range(M):
        out[j, :, j * dsub : (j + 1) * dsub] = c[j]
    return out


class FaissAdditiveIndex:
    """faiss ``IndexResidualQuantizer`` holding injected codebooks and codes (no faiss training,
    no faiss encoding), searched with faiss's LUT scan.

    metric "ip": METRIC_INNER_PRODUCT with ``ST_LUT_nonorm``; "l2": METRIC_L2 with
    ``ST_norm_float`` (||x̂||² of each reconstruction stored as float32 next to its code).
    K must be at most 2^16; a K that is not a power of two is padded with zero codewords up to
    the next one (never referenced by the codes). Codes are packed by the quantizer's own
    ``pack_codes`` (faiss bitstring layout, nbits = log2 K per step) and added with
    ``add_sa_codes``. ``search`` returns scores in the convention of :func:`lut_topk`
    (higher is better; for "l2" the negated squared distance).
    """

    def __init__(self, codebooks: np.ndarray, codes: np.ndarray, metric: str = "ip", m: int | None = None):
        if metric not in ("ip", "l2"):
            raise ValueError(f"metric must be 'ip' or 'l2', got {metric!r}")
        codebooks, codes = _check(codebooks, codes, m)
        mm, K, D = codebooks.shape
        nbits = max(1, int(np.ceil(np.log2(K))))
        if nbits > 16:
            raise ValueError(f"K={K} codewords per step is more than 2^16")
        if K < (1 << nbits):
            pad = np.zeros((mm, (1 << nbits) - K, D), dtype=np.float32)
            codebooks = np.concatenate([codebooks, pad], axis=1)
        self.metric = metric
        self.m = mm
        AQ = faiss.AdditiveQuantizer
        if metric == "ip":
            self.index = faiss.IndexResidualQuantizer(D, mm, nbits, faiss.METRIC_INNER_PRODUCT, AQ.ST_LUT_nonorm)
        else:
            self.index = faiss.IndexResidualQuantizer(D, mm, nbits, faiss.METRIC_L2, AQ.ST_norm_float)
        aq = self.index.rq
        faiss.copy_array_to_vector(np.ascontiguousarray(codebooks).ravel(), aq.codebooks)
        aq.is_trained = True
        self.index.is_trained = True
        self.packed_codes = self.pack(codes)
        self.index.add_sa_codes(self.packed_codes)

    def pack(self, codes: np.ndarray) -> np.ndarray:
        """Pack integer codes (N, m) into faiss's code layout for this index: uint8 (N, code_size)."""
        aq = self.index.rq
        codes32 = np.ascontiguousarray(codes, dtype=np.int32)
        n = codes32.shape[0]
        packed = np.zeros((n, aq.code_size), dtype=np.uint8)
        norms = None
        if self.metric == "l2":
            norms = np.ascontiguousarray(self.sa_decode_unpacked(codes32))
            norms = np.ascontiguousarray(np.einsum("nd,nd->n", norms, norms), dtype=np.float32)
        aq.pack_codes(
            n,
            faiss.swig_ptr(codes32),
            faiss.swig_ptr(packed),
            -1,
            faiss.swig_ptr(norms) if norms is not None else None,
            None,
        )
        return packed

    def sa_decode_unpacked(self, codes: np.ndarray) -> np.ndarray:
        """faiss's reconstruction of integer codes (N, m) with the injected codebooks: float32 (N, D)."""
        aq = self.index.rq
        codes32 = np.ascontiguousarray(codes, dtype=np.int32)
        out = np.empty((codes32.shape[0], aq.d), dtype=np.float32)
        aq.decode_unpacked(faiss.swig_ptr(codes32), faiss.swig_ptr(out), codes32.shape[0], -1)
        return out

    def sa_decode(self, packed: np.ndarray) -> np.ndarray:
        """faiss ``sa_decode`` of packed codes: float32 (N, D) reconstructions."""
        return self.index.sa_decode(np.ascontiguousarray(packed, dtype=np.uint8))

    @property
    def ntotal(self) -> int:
        return self.index.ntotal

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k by faiss's LUT scan: (scores float32 (Q, k), higher = better; ids int64 (Q, k))."""
        dist, ids = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        if self.metric == "l2":
            dist = -dist
        return dist, ids
