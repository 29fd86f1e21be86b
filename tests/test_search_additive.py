"""Additive backends: LUT scorer and faiss index with injected codebooks vs brute force on the
reconstructions; PQ expressed as additive codebooks vs faiss's ProductQuantizer."""

import faiss
import numpy as np
import pytest
from faiss.contrib.inspect_tools import get_pq_centroids

import hashbench.benchmark.search.additive as additive
from hashbench.benchmark.search.additive import (
    FaissAdditiveIndex,
    lookup_tables,
    lut_scores,
    lut_topk,
    pq_as_additive,
    reconstruct,
    reconstruction_sq_norms,
)


def drq_like(rng, M=4, K=256, D=24, N=600):
    """One shared codebook C scaled per step (DRQ): codebooks[m] = w_m * C."""
    C = rng.standard_normal((K, D)).astype(np.float32)
    w = np.array([1.0, 0.6, 0.35, 0.2, 0.1][:M], dtype=np.float32)
    codebooks = w[:, None, None] * C[None]
    codes = rng.integers(0, K, (N, M))
    return C, w, codebooks, codes


def brute(queries, rec, metric):
    if metric == "ip":
        return queries.astype(np.float64) @ rec.astype(np.float64).T
    diff = queries[:, None, :].astype(np.float64) - rec[None].astype(np.float64)
    return -(diff**2).sum(-1)


def assert_topk_matches(scores, ids, full, k, rtol=1e-5, atol=1e-4):
    """Top-k agrees with a brute-force score matrix up to float ties: same sorted scores, and the
    brute-force score of every returned id equals the returned score."""
    expect = -np.sort(-full, axis=1)[:, :k]
    np.testing.assert_allclose(scores, expect, rtol=rtol, atol=atol)
    np.testing.assert_allclose(np.take_along_axis(full, ids, 1), scores, rtol=rtol, atol=atol)
    assert all(len(set(r)) == k for r in ids.tolist())


# ---------------------------------------------------------------- reconstruction and tables


def test_reconstruct_hand_values():
    codebooks = np.array(
        [[[1, 0], [0, 1]],  # codebook 0
         [[10, 10], [-1, 2]]],  # codebook 1
        dtype=np.float32,
    )
    codes = np.array([[0, 0], [1, 1], [1, 0]])
    np.testing.assert_array_equal(reconstruct(codebooks, codes), [[11, 10], [-1, 3], [10, 11]])
    np.testing.assert_array_equal(reconstruct(codebooks, codes, m=1), [[1, 0], [0, 1], [0, 1]])
    np.testing.assert_array_equal(reconstruction_sq_norms(codebooks, codes), [221, 10, 221])
    q = np.array([[1, 2]], dtype=np.float32)
    np.testing.assert_array_equal(lookup_tables(q, codebooks), [[[1, 2], [30, 3]]])
    np.testing.assert_allclose(lut_scores(q, codebooks, codes), [[31, 5, 32]])
    # -||q - x̂||²: (1-11)²+(2-10)² = 164; (1+1)²+(2-3)² = 5; (1-10)²+(2-11)² = 162
    np.testing.assert_allclose(lut_scores(q, codebooks, codes, metric="l2"), [[-164, -5, -162]])


def test_prefix_reconstruction_is_sum_of_scaled_codewords():
    rng = np.random.default_rng(0)
    C, w, codebooks, codes = drq_like(rng)
    for m in range(1, 5):
        expect = np.zeros((len(codes), C.shape[1]), dtype=np.float64)
        for j in range(m):
            expect += w[j] * C[codes[:, j]]
        np.testing.assert_allclose(reconstruct(codebooks, codes, m=m), expect, rtol=1e-5, atol=1e-5)


def test_lookup_tables_are_inner_products():
    rng = np.random.default_rng(1)
    _, _, codebooks, _ = drq_like(rng)
    q = rng.standard_normal((7, codebooks.shape[2])).astype(np.float32)
    np.testing.assert_allclose(
        lookup_tables(q, codebooks), np.einsum("qd,mkd->qmk", q, codebooks), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_lut_scores_and_topk_equal_brute_force(metric, monkeypatch):
    rng = np.random.default_rng(2)
    _, _, codebooks, codes = drq_like(rng, N=900)
    q = rng.standard_normal((33, codebooks.shape[2])).astype(np.float32)
    monkeypatch.setattr(additive, "_CHUNK_ELEMS", 900 * 8)  # 8 queries per chunk: uneven last chunk
    for m in range(1, 5):
        full = brute(q, reconstruct(codebooks, codes, m=m), metric)
        scores = lut_scores(q, codebooks, codes, m=m, metric=metric)
        np.testing.assert_allclose(scores, full, rtol=1e-5, atol=1e-4)
        top_s, top_i = lut_topk(q, codebooks, codes, 20, m=m, metric=metric)
        assert top_i.dtype == np.int64 and top_s.shape == (33, 20)
        assert_topk_matches(top_s, top_i, full, 20)


def test_lut_l2_uses_given_norms_and_k_is_capped():
    rng = np.random.default_rng(3)
    _, _, codebooks, codes = drq_like(rng, N=50)
    q = rng.standard_normal((4, codebooks.shape[2])).astype(np.float32)
    norms = reconstruction_sq_norms(codebooks, codes, m=2)
    a = lut_scores(q, codebooks, codes, m=2, metric="l2", sq_norms=norms)
    np.testing.assert_allclose(a, lut_scores(q, codebooks, codes, m=2, metric="l2"), rtol=1e-6)
    # deliberately wrong norms change the scores by exactly their offset
    b = lut_scores(q, codebooks, codes, m=2, metric="l2", sq_norms=norms + 1)
    np.testing.assert_allclose(a - b, 1, rtol=1e-4)
    s, i = lut_topk(q, codebooks, codes, 80, m=2)
    assert s.shape == (4, 50) and sorted(i[0].tolist()) == list(range(50))


def test_bad_inputs_rejected():
    codebooks = np.zeros((2, 4, 3), dtype=np.float32)
    with pytest.raises(ValueError):
        reconstruct(codebooks, np.array([[0, 4]]))  # index out of range
    with pytest.raises(ValueError):
        reconstruct(codebooks, np.array([[0, 1, 2]]))  # wrong M
    with pytest.raises(ValueError):
        lut_scores(np.zeros((1, 3)), codebooks, np.array([[0, 1]]), metric="cos")
    with pytest.raises(ValueError):
        reconstruct(codebooks, np.array([[0, 1]]), m=3)


# ---------------------------------------------------------------- faiss index with injected codebooks


@pytest.mark.parametrize("K", [256, 16, 12])  # 8 bits, 4 bits (codes straddle bytes), padded to 16
def test_faiss_round_trip_and_code_layout(K):
    rng = np.random.default_rng(K)
    M, D, N = 3, 16, 300
    codebooks = rng.standard_normal((M, K, D)).astype(np.float32)
    codes = rng.integers(0, K, (N, M))
    for metric in ("ip", "l2"):
        index = FaissAdditiveIndex(codebooks, codes, metric=metric)
        assert index.ntotal == N
        np.testing.assert_allclose(index.sa_decode(index.packed_codes), reconstruct(codebooks, codes), rtol=1e-6, atol=1e-6)
        nbits = int(np.ceil(np.log2(K)))
        np.testing.assert_array_equal(faiss.unpack_bitstrings(index.packed_codes, M, nbits), codes)
        if metric == "l2":  # the float32 squared norm follows the M*nbits code bits
            fields = faiss.unpack_bitstrings(index.packed_codes, [nbits] * M + [32])
            stored = np.ascontiguousarray(fields[:, M]).view(np.float32)
            np.testing.assert_allclose(stored, reconstruction_sq_norms(codebooks, codes), rtol=1e-6)


@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_faiss_topk_equals_lut_topk(metric):
    rng = np.random.default_rng(5)
    _, _, codebooks, codes = drq_like(rng, N=2000)
    q = rng.standard_normal((40, codebooks.shape[2])).astype(np.float32)
    for m in (1, 2, 4):
        f_s, f_i = FaissAdditiveIndex(codebooks, codes, metric=metric, m=m).search(q, 15)
        l_s, l_i = lut_topk(q, codebooks, codes, 15, m=m, metric=metric)
        np.testing.assert_allclose(f_s, l_s, rtol=1e-5, atol=1e-4)
        full = brute(q, reconstruct(codebooks, codes, m=m), metric)
        assert_topk_matches(f_s, f_i, full, 15)


# ---------------------------------------------------------------- PQ as additive codebooks


@pytest.mark.parametrize("nbits", [8, 4])
def test_pq_as_additive_matches_faiss_pq(nbits):
    rng = np.random.default_rng(nbits)
    D, M, N = 16, 4, 3000
    x = rng.standard_normal((N, D)).astype(np.float32)
    pq = faiss.ProductQuantizer(D, M, nbits)
    pq.cp.niter = 5
    pq.train(x)
    packed = pq.compute_codes(x)
    codes = faiss.unpack_bitstrings(packed, M, nbits)
    if nbits == 8:
        np.testing.assert_array_equal(codes, packed)
    codebooks = pq_as_additive(get_pq_centroids(pq))
    assert codebooks.shape == (M, 1 << nbits, D)
    np.testing.assert_allclose(reconstruct(codebooks, codes), pq.decode(packed), rtol=1e-6, atol=1e-6)
    # and PQ codes search through the LUT path exactly like faiss IndexPQ (ADC, L2)
    index = faiss.IndexPQ(D, M, nbits)
    index.pq = pq
    index.is_trained = True
    index.add_sa_codes(packed)
    q = rng.standard_normal((20, D)).astype(np.float32)
    dist, ids = index.search(q, 10)
    l_s, l_i = lut_topk(q, codebooks, codes, 10, metric="l2")
    np.testing.assert_allclose(-l_s, dist, rtol=1e-4, atol=1e-4)
    full = brute(q, reconstruct(codebooks, codes), "l2")
    assert_topk_matches(-dist, ids, full, 10)


def test_pq_as_additive_hand_layout():
    cen = np.arange(2 * 2 * 3, dtype=np.float32).reshape(2, 2, 3) + 1
    cb = pq_as_additive(cen)
    np.testing.assert_array_equal(cb[0, 1], [4, 5, 6, 0, 0, 0])
    np.testing.assert_array_equal(cb[1, 0], [0, 0, 0, 7, 8, 9])
    np.testing.assert_array_equal(reconstruct(cb, np.array([[1, 0]])), [[4, 5, 6, 7, 8, 9]])
