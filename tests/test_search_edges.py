"""The search backends at their edges: every argument check with its exact message, the result
dtypes the docstrings promise, hand values of the defaults (hash-table bits, bucket order of the
cascade's tree, the index's memory), empty inputs, and the degenerate table shapes."""

import re

import faiss
import numpy as np
import pytest

from hashbench.benchmark.search.additive import (
    FaissAdditiveIndex,
    lookup_tables,
    lut_scores,
    lut_topk,
    pq_as_additive,
    reconstruct,
    reconstruction_sq_norms,
)
from hashbench.benchmark.search.binary import BinaryFlatIndex, BinaryHashIndex, pack_bits
from hashbench.benchmark.search.flat import exact_knn
from hashbench.benchmark.search.sparse import (
    HashTableIndex,
    InvertedHashTable,
    _segments,
    bucket_order,
    candidates,
    search,
)
from hashbench.benchmark.search.sparse_loop import candidates_loop, search_loop
from hashbench.benchmark.search.timing import time_call, time_within

HAND = np.array([[0, 1], [1, 2], [2, 3], [0, 3], [3, 3], [1, -1]])


def raises(message, fn, *args, error=ValueError, **kwargs):
    """``fn(*args, **kwargs)`` raises ``error`` with exactly ``message``."""
    with pytest.raises(error, match="^" + re.escape(message) + "$"):
        fn(*args, **kwargs)


def pm1(rng, n, k):
    return np.where(rng.random((n, k)) < 0.5, -1, 1).astype(np.int8)


# ---------------------------------------------------------------- argument checks, exact messages
def test_sparse_argument_messages():
    t = InvertedHashTable.build(HAND)
    raises("item_buckets must be an integer (N, s) array, got float64 (2, 1)", InvertedHashTable.build,
           np.zeros((2, 1)))
    raises("item_buckets must be an integer (N, s) array, got int64 (1, 1, 1)", InvertedHashTable.build,
           np.zeros((1, 1, 1), np.int64))
    for fn in (candidates, candidates_loop):
        raises("query_bucket_order must be an integer (Q, d) array, got int64 (2,)", fn, t, np.array([0, 1]), 1, 1)
        raises("query_bucket_order must be an integer (Q, d) array, got float64 (1, 2)", fn, t,
               np.array([[0.0, 1.0]]), 1, 1)
        raises("s and k must be >= 1, got s=0, k=1", fn, t, np.array([[0, 1]]), 0, 1)
        raises("s and k must be >= 1, got s=1, k=0", fn, t, np.array([[0, 1]]), 1, 0)
        raises("exclude must have shape (1,), got (2,)", fn, t, np.array([[0, 1]]), 1, 1, np.array([1, 2]))
    order = np.array([[0, 1]])
    for fn in (search, search_loop):
        raises("give both rerank_query and rerank_db, or neither", fn, t, order, 1, 1, rerank_query=np.zeros((1, 2)))
        raises("give both rerank_query and rerank_db, or neither", fn, t, order, 1, 1, rerank_db=np.zeros((6, 2)))
    q, db = np.zeros((1, 2), np.float32), np.zeros((6, 2), np.float32)
    for rq, rdb in ((np.zeros(2), db), (q, np.zeros(6)), (np.zeros((2, 2)), db), (q, np.zeros((5, 2))),
                    (q, np.zeros((6, 3)))):
        raises(f"rerank shapes {rq.shape} / {rdb.shape} do not match Q=1, N=6", search, t, order, 1, 1, rq, rdb)
    for rq, rdb in ((np.zeros((2, 2)), db), (q, np.zeros((5, 2))), (q, np.zeros((6, 3)))):
        raises(f"rerank shapes {rq.shape} / {rdb.shape} do not match Q=1, N=6", search_loop, t, order, 1, 1, rq, rdb)
    raises("rerank_db must be (N=6, D), got (5, 2)", HashTableIndex, t, np.zeros((5, 2)))
    raises("rerank_db must be (N=6, D), got (6,)", HashTableIndex, t, np.zeros(6))
    index = HashTableIndex(t, db)
    raises("topn must be in [1, k=3], got 0", index.search, order, 1, 3, q, topn=0)
    raises("topn must be in [1, k=3], got 4", index.search, order, 1, 3, q, topn=4)
    raises("give rerank_query exactly when the index was built with rerank_db", index.search, order, 1, 1)
    raises("give rerank_query exactly when the index was built with rerank_db", HashTableIndex(t).search, order, 1,
           1, q)
    raises("rerank_query must be (1, 2), got (1, 3)", index.search, order, 1, 1, np.zeros((1, 3)))
    raises("scores must be (Q, d) or (Q, L, d), got shape (1, 1, 1, 2)", bucket_order, np.zeros((1, 1, 1, 2)))


def test_binary_argument_messages():
    rng = np.random.default_rng(0)
    codes = pm1(rng, 20, 16)
    raises("codes must be 2-D (N, K), got shape (16,)", pack_bits, codes[0])
    raises("code length K=12 must be a multiple of 8 (zero-pad it)", pack_bits, codes[:, :12])
    raises("codes must contain only -1 and +1", pack_bits, np.zeros((2, 8)))
    for index in (BinaryFlatIndex(codes), BinaryHashIndex(codes)):
        raises("query has 8 bits, index has 16", index.search, codes[:2, :8], 1)
    raises("nhash must be >= 1", BinaryHashIndex, codes, nhash=0)
    raises("b must be in [1, 63] for nhash=1, got 0", BinaryHashIndex, codes, b=0)
    raises("b must be in [1, 63] for nhash=1, got 64", BinaryHashIndex, pm1(rng, 4, 128), b=64)
    raises("b must be in [1, 57] for nhash=2, got 58", BinaryHashIndex, pm1(rng, 4, 128), b=58, nhash=2)
    raises("nhash * b = 18 exceeds the code length 16", BinaryHashIndex, codes, b=9, nhash=2)
    index = BinaryHashIndex(codes, b=4)
    raises("nflip must be in [0, b=4], got 5", index.search, codes[:1], 1, nflip=5)
    raises("nflip must be in [0, b=4], got -1", index.search, codes[:1], 1, nflip=-1)
    raises("nflip must be in [0, b=4], got 5", index.range_search, codes[:1], 3, nflip=5)


def test_additive_flat_timing_argument_messages():
    rng = np.random.default_rng(1)
    cb = rng.standard_normal((2, 4, 3)).astype(np.float32)
    codes = rng.integers(0, 4, (5, 2))
    raises("codebooks must be (M, K, D), got shape (4, 3)", reconstruct, cb[0], codes)
    raises("codes must be (N, M=2), got shape (5, 3)", reconstruct, cb, rng.integers(0, 4, (5, 3)))
    raises("codes must be (N, M=2), got shape (5,)", reconstruct, cb, codes[:, 0])
    raises("codes must be integer indices", reconstruct, cb, codes.astype(float))
    raises("prefix m must be in [1, 2], got 0", reconstruct, cb, codes, 0)
    raises("prefix m must be in [1, 2], got 3", reconstruct, cb, codes, 3)
    raises("codes must lie in [0, 4)", reconstruct, cb, codes + 4)
    raises("codes must lie in [0, 4)", reconstruct, cb, codes - 4)
    raises("metric must be 'ip' or 'l2', got 'cos'", lut_scores, rng.standard_normal((2, 3)), cb, codes, metric="cos")
    raises("queries must be (Q, D=3), got shape (2, 4)", lut_scores, rng.standard_normal((2, 4)), cb, codes)
    raises("queries must be (Q, D=3), got shape (3,)", lut_scores, rng.standard_normal(3), cb, codes)
    raises("PQ centroids must be (M, K, dsub), got shape (4, 3)", pq_as_additive, cb[0])
    raises("metric must be 'ip' or 'l2', got 'cos'", FaissAdditiveIndex, cb, codes, metric="cos")
    raises("K=65537 codewords per step is more than 2^16", FaissAdditiveIndex, np.zeros((1, 65537, 1)),
           np.zeros((1, 1), np.int64))
    xq, xb = rng.standard_normal((2, 3)), rng.standard_normal((4, 3))
    raises("queries (2, 3) and database (4, 2) must be 2-D with equal D", exact_knn, xq, xb[:, :2], 1)
    raises("queries (3,) and database (4, 3) must be 2-D with equal D", exact_knn, xq[0], xb, 1)
    raises("queries (2, 3) and database (3,) must be 2-D with equal D", exact_knn, xq, xb[0], 1)
    raises("metric must be 'l2' or 'ip', got 'cos'", exact_knn, xq, xb, 1, metric="cos")
    raises("repeats must be >= 1 and warmup >= 0", time_call, lambda: None, repeats=0)
    raises("repeats must be >= 1 and warmup >= 0", time_call, lambda: None, warmup=-1)
    raises("threads must be >= 1 or None", time_call, lambda: None, threads=0)
    raises("max_repeats must be >= 1 and budget_s >= 0", time_within, lambda: None, 1.0, max_repeats=0)
    raises("max_repeats must be >= 1 and budget_s >= 0", time_within, lambda: None, -1.0)


# ---------------------------------------------------------------- hand values and defaults
def test_bucket_order_hand_values():
    # flat: descending score, equal scores keep the lower id first
    np.testing.assert_array_equal(bucket_order(np.array([[0.1, 0.5, 0.5, 0.9]])), [[3, 1, 2, 0]])
    assert bucket_order(np.array([[0.1, 0.5]])).dtype == np.int64
    # cascade, L = 2 levels of d = 3: level ranks (2, 0, 1) then (1, 2, 0) (ties: lower id first);
    # leaf = 3·rank_1[t_1] + rank_2[t_2], t enumerated in base 3 (t_1 most significant)
    sc = np.array([[[0.2, 0.1, 0.9], [0.5, 0.7, 0.5]]])
    first = [3 * a + b for a in (2, 0, 1) for b in (1, 0, 2)]
    np.testing.assert_array_equal(bucket_order(sc), [first])
    np.testing.assert_array_equal(bucket_order(sc, max_buckets=4), [first[:4]])
    np.testing.assert_array_equal(bucket_order(sc, max_buckets=None), [first])
    np.testing.assert_array_equal(bucket_order(sc, max_buckets=100), [first])
    assert bucket_order(sc).dtype == np.int64
    # three levels of d = 2 (8 leaves; the digit of level l is (t // 2^(2-l)) % 2)
    sc3 = np.array([[[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]])
    ranks = [(1, 0), (0, 1), (1, 0)]
    leaves = [4 * ranks[0][(t >> 2) & 1] + 2 * ranks[1][(t >> 1) & 1] + ranks[2][t & 1] for t in range(8)]
    np.testing.assert_array_equal(bucket_order(sc3), [leaves])
    # many queries: each row on its own
    rng = np.random.default_rng(2)
    sc = rng.random((5, 2, 4))
    got = bucket_order(sc)
    for q in range(5):
        np.testing.assert_array_equal(got[q], bucket_order(sc[q : q + 1])[0])
        r1, r2 = np.argsort(-sc[q, 0], kind="stable"), np.argsort(-sc[q, 1], kind="stable")
        np.testing.assert_array_equal(got[q], (4 * r1[:, None] + r2[None, :]).ravel())


def test_build_one_dimensional_and_narrow_integer_buckets():
    t = InvertedHashTable.build(np.array([3, 1, 3], dtype=np.int16))  # one bucket per item
    np.testing.assert_array_equal(t.keys, [1, 3])
    np.testing.assert_array_equal(t.offsets, [0, 1, 3])
    np.testing.assert_array_equal(t.items, [1, 0, 2])
    assert t.keys.dtype == np.int64 and t.items.dtype == np.int64 and t.offsets.dtype == np.int64
    big = InvertedHashTable.build(np.array([[300, 1]], dtype=np.int16))
    np.testing.assert_array_equal(big.keys, [1, 300])


def test_locate_hand_values():
    t = InvertedHashTable.build(HAND)  # keys 0..3, offsets 0, 2, 5, 7, 10
    start, end = t.locate(np.array([[3, 0, 7], [-1, 2, 1]]))
    np.testing.assert_array_equal(start, [[7, 0, 0], [0, 5, 2]])
    np.testing.assert_array_equal(end, [[10, 2, 0], [0, 7, 5]])
    empty = InvertedHashTable.build(np.full((3, 1), -1))
    start, end = empty.locate(np.array([[0, 5]]))
    np.testing.assert_array_equal(start, [[0, 0]])
    np.testing.assert_array_equal(end, [[0, 0]])
    one = InvertedHashTable.build(np.array([[5], [5]]))  # a single key: ids below, at and above it
    start, end = one.locate(np.array([4, 5, 6]))
    np.testing.assert_array_equal(start, [0, 0, 0])
    np.testing.assert_array_equal(end, [0, 2, 0])
    t = InvertedHashTable.build(np.array([[5], [9]]))  # ids beyond the last key, between keys
    start, end = t.locate(np.array([10, 7, 9, 4]))
    np.testing.assert_array_equal(start, [0, 0, 1, 0])
    np.testing.assert_array_equal(end, [0, 0, 2, 0])


def test_segments_hand_values():
    np.testing.assert_array_equal(_segments(np.array([5]), np.array([1])), [5])
    np.testing.assert_array_equal(_segments(np.array([5, 0, 9]), np.array([2, 0, 3])), [5, 6, 9, 10, 11])
    assert _segments(np.array([5]), np.array([0])).size == 0
    assert _segments(np.array([5]), np.array([1])).dtype == np.int64


def test_memory_bytes_is_the_sum_of_the_arrays():
    t = InvertedHashTable.build(HAND)
    plain = HashTableIndex(t)
    arrays = (t.keys, t.offsets, t.items, plain.item_lists, plain.sig_of_item, plain.sig_count, plain.sig_ids,
              plain.sig_offsets)
    assert plain.memory_bytes() == sum(a.nbytes for a in arrays)
    emb = np.zeros((6, 3), np.float32)
    index = HashTableIndex(t, emb)
    # the IVF copy: 10 stored ids × 3 floats, plus 10 squared norms (float32)
    assert index.memory_bytes() == plain.memory_bytes() + 10 * 3 * 4 + 10 * 4
    assert isinstance(index.memory_bytes(), int)


def test_degenerate_tables_and_queries():
    """No queries, no stored bucket at all, a query order without columns, an empty rerank set."""
    t = InvertedHashTable.build(HAND)
    emb = np.arange(12, dtype=np.float32).reshape(6, 2)
    index = HashTableIndex(t, emb)
    for rerank, keep in ((None, False), (np.zeros((0, 2), np.float32), False), (np.zeros((0, 2), np.float32), True)):
        idx = index if rerank is not None else HashTableIndex(t)
        res = idx.search(np.zeros((0, 4), np.int64), 1, 3, rerank, keep_candidates=keep)
        assert res.ids.shape == (0, 3) and res.ids.dtype == np.int64
        assert res.n_candidates.shape == (0,) and res.n_buckets.shape == (0,)
        if keep:
            assert res.ranked.ids.shape == (0,) and res.ranked.ids.dtype == np.int64
    for keep in (False, True):
        res = HashTableIndex(t).search(np.zeros((0, 4), np.int64), 1, 3, keep_candidates=keep)
        assert res.ids.shape == (0, 3) and (res.ranked is not None) == keep
        if keep:
            assert res.ranked.ids.shape == (0,) and res.ranked.ids.dtype == np.int64
    c = candidates(t, np.zeros((0, 4), np.int64), 1, 3)
    assert c.ids.shape == (0,) and c.ids.dtype == np.int64 and c.offsets.tolist() == [0] and len(c) == 0
    none = InvertedHashTable.build(np.full((3, 1), -1))  # every item without a bucket
    assert none.keys.size == 0 and none.n_items == 3
    for keep in (False, True):
        res = HashTableIndex(none, np.ones((3, 2), np.float32)).search(np.array([[0, 1]]), 1, 2,
                                                                       np.zeros((1, 2), np.float32), keep_candidates=keep)
        np.testing.assert_array_equal(res.ids, [[-1, -1]])
        assert np.isinf(res.dist).all() and res.dist.dtype == np.float32
        np.testing.assert_array_equal(res.n_candidates, [0])
        np.testing.assert_array_equal(res.n_buckets, [2])
    assert HashTableIndex(none, np.ones((3, 2), np.float32)).max_norm == 0.0
    c = candidates(none, np.array([[0, 1], [2, 3]]), 1, 1)
    np.testing.assert_array_equal(c.counts, [0, 0])
    assert c.ids.size == 0 and c.ids.dtype == np.int64
    # zero columns: nothing probed
    for keep in (False, True):
        res = index.search(np.zeros((2, 0), np.int64), 1, 2, np.zeros((2, 2), np.float32), keep_candidates=keep)
        np.testing.assert_array_equal(res.ids, [[-1, -1], [-1, -1]])
        np.testing.assert_array_equal(res.n_buckets, [0, 0])
        ref = search_loop(t, np.zeros((2, 0), np.int64), 1, 2, np.zeros((2, 2), np.float32), emb,
                          keep_candidates=keep)
        np.testing.assert_array_equal(res.dist, ref.dist)


def test_search_result_layout_in_every_path():
    """ids int64 and dist float32 (+inf padding) with re-ranking; n_buckets and counts in every
    path; ranked only when asked; topn keeps the expansion to k."""
    t = InvertedHashTable.build(HAND)
    order = np.array([[2, 0, 3, 1], [3, 1, 0, 2]])
    emb = np.arange(6, dtype=np.float32)[:, None]
    rq = np.array([[2.2], [0.0]], np.float32)
    index = HashTableIndex(t, emb)
    for keep in (False, True):
        res = index.search(order, 1, 3, rq, keep_candidates=keep)
        assert res.ids.dtype == np.int64 and res.dist.dtype == np.float32
        np.testing.assert_array_equal(res.n_buckets, [2, 1])
        np.testing.assert_array_equal(res.n_candidates, [4, 3])
        assert (res.ranked is not None) == keep and (res.ranked_dist is not None) == keep
        if keep:
            np.testing.assert_array_equal(res.ranked.n_buckets, [2, 1])
            np.testing.assert_array_equal(res.ranked.counts, [4, 3])
            assert res.ranked.ids.dtype == np.int64 and res.ranked_dist.dtype == np.float32
        # query 0: candidates {1, 2} ∪ {0, 3} at distances 1.2, 0.2, 2.2, 0.8; query 1: {2, 3, 4}
        np.testing.assert_array_equal(res.ids, [[2, 3, 1], [2, 3, 4]])
        np.testing.assert_allclose(res.dist, [[0.04, 0.64, 1.44], [4, 9, 16]], rtol=1e-6)
    plain = HashTableIndex(t).search(order, 1, 3)
    assert plain.ranked is None and plain.dist is None and plain.ids.dtype == np.int64
    np.testing.assert_array_equal(plain.n_buckets, [2, 1])
    kept = HashTableIndex(t).search(order, 1, 3, keep_candidates=True)
    np.testing.assert_array_equal(kept.ranked.n_buckets, [2, 1])
    np.testing.assert_array_equal(kept.ranked[0], [1, 2, 0, 3])
    top = HashTableIndex(t).search(order, 1, 3, topn=1)
    np.testing.assert_array_equal(top.ids, [[1], [2]])
    np.testing.assert_array_equal(top.n_candidates, [4, 3])  # still expanded to k = 3
    res = search(t, order, 1, 8, rq, emb)
    np.testing.assert_array_equal(res.ids[1], [0, 1, 2, 3, 4, 5, -1, -1])  # k > N: every bucket probed
    assert np.isinf(res.dist[1, 6:]).all() and np.isfinite(res.dist[1, :6]).all()


def test_threads_and_error_factor_do_not_change_results():
    rng = np.random.default_rng(4)
    n, d, D = 3000, 6, 5
    ib = rng.integers(0, d, (n, 1))
    emb = rng.standard_normal((n, D)).astype(np.float32)
    order = np.argsort(rng.random((20, d)), axis=1)
    t = InvertedHashTable.build(ib)
    index = HashTableIndex(t, emb)
    ref = search_loop(t, order, 1, 10, emb[:20], emb, exclude=np.arange(20))
    for kwargs in (dict(), dict(threads=3), dict(err=0.0), dict(threads=2, err=1e9)):
        res = index.search(order, 1, 10, emb[:20], exclude=np.arange(20), **kwargs)
        np.testing.assert_array_equal(res.ids, ref.ids)
        np.testing.assert_array_equal(res.dist, ref.dist)


def test_binary_hash_defaults():
    rng = np.random.default_rng(5)
    c16 = pm1(rng, 1000, 16)
    assert BinaryHashIndex(c16).b == 10                        # ceil(log2 1000)
    assert BinaryHashIndex(c16[:2]).b == 1                     # ceil(log2 2)
    assert BinaryHashIndex(c16[:1]).b == 1                     # N = 1 counts as 2
    assert BinaryHashIndex(c16[:3]).b == 2
    assert BinaryHashIndex(pm1(rng, 2000, 8)).b == 8           # capped at K
    two = BinaryHashIndex(c16, nhash=2)
    assert two.b == 8 and isinstance(two.index, faiss.IndexBinaryMultiHash)
    assert BinaryHashIndex(pm1(rng, 4, 64), nhash=3).b == 21   # K // nhash
    assert BinaryHashIndex(pm1(rng, 4, 128), nhash=2).b == 57  # K // 2 = 64, capped at 57
    assert BinaryHashIndex(pm1(rng, 4, 128), b=63).b == 63     # one table: up to 63
    one = BinaryHashIndex(c16)
    assert isinstance(one.index, faiss.IndexBinaryHash) and not isinstance(one.index, faiss.IndexBinaryMultiHash)


def test_binary_results_dtypes_and_per_query_rows():
    rng = np.random.default_rng(6)
    codes = pm1(rng, 300, 16)
    flat = BinaryFlatIndex(codes)
    hashed = BinaryHashIndex(codes, b=6)
    d_flat, i_flat = flat.search(codes[:5], 4)
    d, i, n = hashed.search(codes[:5], 4, nflip=6)            # every bucket probed: exact
    assert d.dtype == np.int32 and i.dtype == np.int64 and n.dtype == np.int64
    np.testing.assert_array_equal(d, d_flat)
    np.testing.assert_array_equal(n, 300)
    d1, i1, n1 = hashed.search(codes[:5], 4, nflip=1)
    for q in range(5):                                        # the same per query alone
        dq, iq, nq = hashed.search(codes[q : q + 1], 4, nflip=1)
        np.testing.assert_array_equal(d1[q], dq[0])
        np.testing.assert_array_equal(i1[q], iq[0])
        assert n1[q] == nq[0]
    d2, i2, n2 = hashed.search(codes[:5], 4, nflip=1, per_query=False)
    assert n2.dtype == np.float64
    np.testing.assert_allclose(n2, n1.mean())
    _, _, n0 = hashed.search(codes[:0], 4, per_query=False)
    assert n0.shape == (0,)
    for index in (flat, hashed):
        lims, dist, ids = index.range_search(codes[:3], 5)
        assert lims.dtype == np.int64 and dist.dtype == np.int32 and ids.dtype == np.int64
        assert lims.shape == (4,)
    np.testing.assert_array_equal(np.unpackbits(pack_bits(np.array([[1, -1, -1, -1, -1, -1, -1, 1]]))),
                                  [1, 0, 0, 0, 0, 0, 0, 1])


def test_additive_hand_values_and_dtypes():
    cb = np.array([[[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]], [[0.5, 0.5], [-1.0, 0.0], [0.0, 0.0]]])
    codes = np.array([[0, 1], [2, 0], [1, 2]], dtype=np.int32)
    rec = reconstruct(cb, codes)
    np.testing.assert_array_equal(rec, [[0.0, 0.0], [1.5, 1.5], [0.0, 2.0]])
    assert rec.dtype == np.float32
    np.testing.assert_array_equal(reconstruct(cb, codes, 1), [[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]])
    sq = reconstruction_sq_norms(cb, codes)
    np.testing.assert_array_equal(sq, [0.0, 4.5, 4.0])
    assert sq.dtype == np.float32
    q = np.array([[1.0, 2.0]])
    lut = lookup_tables(q, cb)
    np.testing.assert_array_equal(lut, [[[1.0, 4.0, 3.0], [1.5, -1.0, 0.0]]])
    assert lut.dtype == np.float32
    ip = lut_scores(q, cb, codes)
    np.testing.assert_array_equal(ip, [[0.0, 4.5, 4.0]])
    l2 = lut_scores(q, cb, codes, metric="l2")
    np.testing.assert_allclose(l2, [[-5.0, -0.5, -1.0]])      # −||q − x̂||²
    assert ip.dtype == np.float32 and l2.dtype == np.float32
    empty = lut_scores(np.zeros((0, 2)), cb, codes)
    assert empty.shape == (0, 3) and empty.dtype == np.float32
    s, i = lut_topk(q, cb, codes, 2, metric="l2")
    np.testing.assert_array_equal(i, [[1, 2]])
    np.testing.assert_allclose(s, [[-0.5, -1.0]])
    s, i = lut_topk(q, cb, codes, 5)                          # k capped at N, descending
    np.testing.assert_array_equal(i, [[1, 2, 0]])
    assert s.dtype == np.float32 and i.dtype == np.int64
    pq = pq_as_additive(np.arange(8, dtype=np.float64).reshape(2, 2, 2))
    np.testing.assert_array_equal(pq, [[[0, 1, 0, 0], [2, 3, 0, 0]], [[0, 0, 4, 5], [0, 0, 6, 7]]])
    assert pq.dtype == np.float32


@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_faiss_additive_index_matches_the_lut_scan(metric):
    rng = np.random.default_rng(7)
    cb = rng.standard_normal((3, 5, 4)).astype(np.float32)   # K = 5: padded to 8 codewords
    codes = rng.integers(0, 5, (200, 3))
    xq = rng.standard_normal((6, 4)).astype(np.float32)
    index = FaissAdditiveIndex(cb, codes, metric=metric)
    assert index.ntotal == 200 and index.m == 3
    np.testing.assert_allclose(index.sa_decode_unpacked(codes), reconstruct(cb, codes), atol=1e-5)
    np.testing.assert_allclose(index.sa_decode(index.packed_codes), reconstruct(cb, codes), atol=1e-5)
    s, i = index.search(xq, 5)
    ref_s, ref_i = lut_topk(xq, cb, codes, 5, metric=metric)
    np.testing.assert_allclose(s, ref_s, rtol=1e-4, atol=1e-4)
    full = lut_scores(xq, cb, codes, metric=metric)
    np.testing.assert_allclose(np.take_along_axis(full, i, axis=1), s, rtol=1e-4, atol=1e-4)
    prefix = FaissAdditiveIndex(cb, codes, metric=metric, m=2)
    s2, _ = prefix.search(xq, 3)
    np.testing.assert_allclose(s2, lut_topk(xq, cb, codes, 3, m=2, metric=metric)[0], rtol=1e-4, atol=1e-4)


def test_exact_knn_casts_to_float32():
    xb = np.array([[0.0, 0.0], [1.0, 1.0], [3.0, 0.0]])
    d, i = exact_knn(np.array([[1.0, 0.0]]), xb, 2)
    np.testing.assert_array_equal(i, [[0, 1]])
    np.testing.assert_array_equal(d, [[1.0, 1.0]])
    d, i = exact_knn(np.array([[1.0, 0.0]]), xb, 2, metric="ip")
    np.testing.assert_array_equal(i, [[2, 1]])
    assert d.dtype == np.float32 and i.dtype == np.int64


def test_time_call_measures_each_call():
    calls = []
    r = time_call(lambda: calls.append(1), repeats=3, warmup=2, threads=None)
    assert len(calls) == 5 and len(r["all_s"]) == 3 and r["threads"] is None
    assert all(0 <= s < 1 for s in r["all_s"]) and r["best_s"] == min(r["all_s"])
    r = time_call(lambda: None, repeats=1, warmup=0, threads=1)
    assert r["threads"] == 1 and len(r["all_s"]) == 1


def test_time_within_counts_against_a_fake_clock(monkeypatch):
    """Each call advances a fake clock by 1 s: timed calls continue while their sum is below the
    budget (strictly), up to max_repeats; the defaults are max_repeats = 3, warmup = 1, threads = 1."""
    from hashbench.benchmark.search import timing

    clock = [0.0]
    calls = []

    def tick():
        calls.append(1)
        clock[0] += 1.0

    monkeypatch.setattr(timing.time, "perf_counter", lambda: clock[0])
    r = timing.time_within(tick, budget_s=2.0, max_repeats=5, warmup=0)
    assert r["all_s"] == [1.0, 1.0] and r["best_s"] == 1.0 and r["median_s"] == 1.0 and r["threads"] == 1
    calls.clear()
    r = timing.time_within(tick, budget_s=2.5, max_repeats=5, warmup=0, threads=None)
    assert r["all_s"] == [1.0, 1.0, 1.0] and len(calls) == 3 and r["threads"] is None
    calls.clear()
    r = timing.time_within(tick, budget_s=100.0)                  # defaults: one warm-up, three timed
    assert len(r["all_s"]) == 3 and len(calls) == 4 and r["threads"] == 1
    calls.clear()
    r = timing.time_within(tick, budget_s=0.0, max_repeats=1, warmup=2, threads=2)
    assert r["all_s"] == [1.0] and len(calls) == 3 and r["threads"] == 2
    r = timing.time_call(tick, threads=3)                         # defaults: five timed after one warm-up
    assert r["all_s"] == [1.0] * 5 and r["median_s"] == 1.0 and r["threads"] == 3


def test_faiss_additive_index_takes_two_to_the_sixteen_codewords():
    """K = 2^16 is the largest codebook (16 bits a step); every codeword is reachable."""
    K = 1 << 16
    cb = np.arange(K, dtype=np.float32).reshape(1, K, 1)
    codes = np.array([[0], [K - 1], [12345]])
    index = FaissAdditiveIndex(cb, codes)
    np.testing.assert_array_equal(index.sa_decode_unpacked(codes)[:, 0], [0, K - 1, 12345])
    s, i = index.search(np.ones((1, 1), np.float32), 1)
    assert i[0, 0] == 1 and s[0, 0] == K - 1


def test_hash_range_search_probes_only_the_own_bucket_by_default():
    rng = np.random.default_rng(8)
    codes = pm1(rng, 400, 16)
    index = BinaryHashIndex(codes, b=8)
    default, own, flip1 = (index.range_search(codes[:10], 17), index.range_search(codes[:10], 17, nflip=0),
                           index.range_search(codes[:10], 17, nflip=1))
    for a, b in zip(default, own):
        np.testing.assert_array_equal(a, b)
    assert flip1[0][-1] > own[0][-1]                          # one flip reaches more items


def test_bucket_order_keeps_the_lower_id_first_among_many_ties():
    """Equal scores keep the lower bucket id first on rows long enough (40 buckets) for numpy's
    default (unstable) sort to reorder them; the same at every level of the cascade's tree."""
    d = 40
    row = (np.arange(d) % 3 == 0).astype(np.float64)               # buckets 0, 3, ..., 39 tie at 1
    ranked = sorted(range(d), key=lambda j: -row[j])                 # Python's sort is stable
    np.testing.assert_array_equal(bucket_order(np.stack([row, row[::-1]])),
                                  [ranked, sorted(range(d), key=lambda j: -row[::-1][j])])
    sc = np.stack([row, row[::-1]])[None]                            # L = 2 levels of d = 40
    r1, r2 = ranked, sorted(range(d), key=lambda j: -row[::-1][j])
    np.testing.assert_array_equal(bucket_order(sc), [[d * r1[t // d] + r2[t % d] for t in range(d * d)]])


def test_time_within_limits_the_threads_of_every_call(monkeypatch):
    """``threads`` reaches the warm-up, the first and every further timed call; threads=None leaves
    the pools as they were in every call. A loop that never ends fails instead of hanging."""
    import torch

    from hashbench.benchmark.search import timing

    clock, seen = [0.0], []

    def fn():
        seen.append((faiss.omp_get_max_threads(), torch.get_num_threads()))
        clock[0] += 1.0
        if len(seen) > 50:
            raise RuntimeError("time_within did not stop")

    monkeypatch.setattr(timing.time, "perf_counter", lambda: clock[0])
    before = faiss.omp_get_max_threads(), torch.get_num_threads()
    try:
        faiss.omp_set_num_threads(3)
        torch.set_num_threads(3)
        r = timing.time_within(fn, budget_s=10.0, max_repeats=3, warmup=1, threads=2)
        assert seen == [(2, 2)] * 4 and r["all_s"] == [1.0] * 3 and r["threads"] == 2
        assert (faiss.omp_get_max_threads(), torch.get_num_threads()) == (3, 3)
        seen.clear()
        r = timing.time_within(fn, budget_s=10.0, max_repeats=3, warmup=1, threads=None)
        assert seen == [(3, 3)] * 4 and r["all_s"] == [1.0] * 3 and r["threads"] is None
        seen.clear()
        r = timing.time_within(fn, budget_s=10.0, max_repeats=4, warmup=0)  # the default: one thread
        assert seen == [(1, 1)] * 4 and r["threads"] == 1
    finally:
        faiss.omp_set_num_threads(before[0])
        torch.set_num_threads(before[1])


def test_faiss_additive_index_layout_and_state():
    """The documented layout: nbits = log2 K bits a step (K = 2 and M = 8: one byte a code), the
    LUT scan for "ip" and stored float norms for "l2", a trained index; ``sa_decode`` takes packed
    codes of any integer dtype and ``sa_decode_unpacked`` one row per given code."""
    rng = np.random.default_rng(9)
    cb = rng.standard_normal((8, 2, 3)).astype(np.float32)
    codes = rng.integers(0, 2, (4, 8))
    index = FaissAdditiveIndex(cb, codes)
    assert index.packed_codes.shape == (4, 1) and index.packed_codes.dtype == np.uint8
    AQ = faiss.AdditiveQuantizer
    assert index.index.rq.search_type == AQ.ST_LUT_nonorm and index.index.is_trained
    assert FaissAdditiveIndex(cb, codes, metric="l2").index.rq.search_type == AQ.ST_norm_float
    np.testing.assert_allclose(index.sa_decode(index.packed_codes.astype(np.int64)), reconstruct(cb, codes),
                               atol=1e-5)
    one = index.sa_decode_unpacked(codes[:1])
    assert one.shape == (1, 3)
    np.testing.assert_allclose(one, reconstruct(cb, codes[:1]), atol=1e-5)


def test_time_call_limits_the_blas_pools_too():
    """``threads`` also caps the BLAS pools threadpoolctl sees (numpy's matrix products), not only
    faiss's and torch's: inside a 3-thread limit, a call timed with threads=1 sees one BLAS thread."""
    import torch
    from threadpoolctl import threadpool_info, threadpool_limits

    seen = []

    def fn():
        seen.append({i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"})

    before = faiss.omp_get_max_threads(), torch.get_num_threads()
    try:
        with threadpool_limits(limits=3, user_api="blas"):
            time_call(fn, repeats=2, warmup=1, threads=1)
            assert seen == [{1}] * 3
            seen.clear()
            time_call(fn, repeats=1, warmup=0, threads=None)
            assert seen == [{3}]
    finally:
        faiss.omp_set_num_threads(before[0])
        torch.set_num_threads(before[1])


def test_lut_topk_uses_the_given_norms():
    """``sq_norms`` reaches the l2 scorer of both lut_scores and lut_topk (norms that differ from
    the reconstructions' change the scores by exactly their difference)."""
    rng = np.random.default_rng(10)
    cb = rng.standard_normal((2, 4, 3)).astype(np.float32)
    codes = rng.integers(0, 4, (6, 2))
    xq = rng.standard_normal((2, 3)).astype(np.float32)
    true = reconstruction_sq_norms(cb, codes)
    shifted = true + np.arange(6, dtype=np.float32) * 10
    full = lut_scores(xq, cb, codes, metric="l2", sq_norms=shifted)
    np.testing.assert_allclose(full, lut_scores(xq, cb, codes, metric="l2") - np.arange(6) * 10, rtol=1e-5, atol=1e-4)
    s, i = lut_topk(xq, cb, codes, 6, metric="l2", sq_norms=shifted)
    np.testing.assert_allclose(s, -np.sort(-full, axis=1), rtol=1e-6)
    np.testing.assert_allclose(np.take_along_axis(full, i, axis=1), s, rtol=1e-6)


def test_module_search_defaults_and_empty_ranked_lists():
    """The module-level search keeps no candidate lists unless asked; a search without queries that
    keeps them returns empty int64 ids and float32 distances."""
    t = InvertedHashTable.build(HAND)
    order = np.array([[2, 0, 3, 1]])
    emb = np.arange(6, dtype=np.float32)[:, None]
    for res in (search(t, order, 1, 2), search(t, order, 1, 2, np.zeros((1, 1), np.float32), emb)):
        assert res.ranked is None and res.ranked_dist is None
    res = HashTableIndex(t, emb).search(np.zeros((0, 4), np.int64), 1, 2, np.zeros((0, 1), np.float32),
                                        keep_candidates=True)
    assert res.ranked_dist.shape == (0,) and res.ranked_dist.dtype == np.float32
    assert res.ranked.ids.shape == (0,) and res.ranked.ids.dtype == np.int64


def test_a_repeated_first_bucket_is_probed_once_in_a_one_bucket_table():
    """One bucket per item (no de-duplication of items downstream): a query whose order lists its
    best bucket (the table's first key) twice within s = 2 probes it once, as the loop does, in
    the re-ranked top k, the kept candidate lists and the plain search."""
    ib = np.array([0, 0, 0, 1, 1, 2, 2, 2, 3])                  # buckets 0..3, one per item
    t = InvertedHashTable.build(ib)
    emb = np.arange(9, dtype=np.float32)[:, None] * 0.5
    order = np.array([[0, 0, 1, 2], [2, 2, 3, 0], [0, 1, 0, 3]])
    rq = np.array([[0.2], [3.1], [0.9]], np.float32)
    index = HashTableIndex(t, emb)
    for s, k in ((2, 3), (2, 4), (1, 5)):
        for keep in (False, True):
            ref = search_loop(t, order, s, k, rq, emb, keep_candidates=keep)
            res = index.search(order, s, k, rq, keep_candidates=keep)
            for a, b in ((res.ids, ref.ids), (res.dist, ref.dist), (res.n_candidates, ref.n_candidates),
                         (res.n_buckets, ref.n_buckets)):
                np.testing.assert_array_equal(a, b)
            ref = search_loop(t, order, s, k, keep_candidates=True)
            res = HashTableIndex(t).search(order, s, k, keep_candidates=True)
            np.testing.assert_array_equal(res.ids, ref.ids)
            np.testing.assert_array_equal(res.ranked.ids, ref.ranked.ids)
    res = index.search(order, 2, 3, rq)
    np.testing.assert_array_equal(res.ids, [[0, 1, 2], [6, 7, 5], [2, 1, 3]])  # by hand
    np.testing.assert_array_equal(res.n_candidates, [3, 3, 5])



def test_certification_bound_by_hand():
    """The certification rule of the class docstring with hand values: one bucket of the items
    0..9 (D = 1, exact float32 arithmetic), a query at 0.5, k = 1, so kp = k + max(4, k/16) = 5
    entries kept. The k-th exact distance is 0.25, the cut-off (5th matrix-product distance)
    12.25, the bound err·(D + 3)·2⁻²⁴·(max‖x‖ + ‖q‖)² = err·4·9.5²·2⁻²⁴: the query is certified
    iff err < 12·2²⁴ / 361 = 557,691.9; otherwise it is re-ranked over its whole list."""
    t = InvertedHashTable.build(np.zeros((10, 1), np.int64))
    index = HashTableIndex(t, np.arange(10, dtype=np.float32)[:, None])
    calls = []
    full = index._rerank_all

    def spy(pos, exclude, n_buckets, counts, rq, k):
        calls.append(rq.shape[0])
        return full(pos, exclude, n_buckets, counts, rq, k)

    index._rerank_all = spy
    q, order = np.array([[0.5]], np.float32), np.array([[0]])
    for err, fallback in ((557_000.0, []), (558_500.0, [1]), (4.0, []), (1e9, [1])):
        calls.clear()
        res = index.search(order, 1, 1, q, err=err)
        assert calls == fallback, err
        np.testing.assert_array_equal(res.ids, [[0]])
        np.testing.assert_array_equal(res.dist, [[0.25]])
    # the rule is strict: items 0..7, a query at 1 (kth 0, cut-off 9, bound err·4·8²·2⁻²⁴, exact in
    # float64): at err = 9·2¹⁶ the bound equals the margin, and the query is not certified
    t = InvertedHashTable.build(np.zeros((8, 1), np.int64))
    index = HashTableIndex(t, np.arange(8, dtype=np.float32)[:, None])
    full = index._rerank_all
    index._rerank_all = spy
    for err, fallback in ((9 * 2.0**16, [1]), (9 * 2.0**16 - 1, [])):
        calls.clear()
        index.search(order, 1, 1, np.array([[1.0]], np.float32), err=err)
        assert calls == fallback, err


def test_more_queries_than_items():
    """Thirteen queries over six items: the per-(query, item) keys of the de-duplication must not
    collide across queries (query 6's item 0 is not query 0's item 1)."""
    t = InvertedHashTable.build(HAND)                             # two buckets per item
    emb = np.arange(12, dtype=np.float32).reshape(6, 2)
    rng = np.random.default_rng(13)
    order = np.argsort(rng.random((13, 4)), axis=1)
    order[::3] = [0, 1, 2, 3]
    rq = rng.standard_normal((13, 2)).astype(np.float32) * 4
    index = HashTableIndex(t, emb)
    for s, k in ((2, 3), (1, 4), (2, 6)):
        ref = candidates_loop(t, order, s, k)
        got = candidates(t, order, s, k)
        np.testing.assert_array_equal(got.ids, ref.ids)
        np.testing.assert_array_equal(got.offsets, ref.offsets)
        for keep in (False, True):
            ref = search_loop(t, order, s, k, rq, emb, keep_candidates=keep)
            res = index.search(order, s, k, rq, keep_candidates=keep)
            np.testing.assert_array_equal(res.ids, ref.ids)
            np.testing.assert_array_equal(res.dist, ref.dist)


def test_time_call_and_hash_search_defaults():
    """time_call's defaults: one warm-up, five timed calls, one thread; the hash index's search
    probes only the query's own bucket (nflip = 0) unless told otherwise."""
    import torch

    calls = []
    before = faiss.omp_get_max_threads(), torch.get_num_threads()
    try:
        faiss.omp_set_num_threads(3)
        torch.set_num_threads(3)
        r = time_call(lambda: calls.append((faiss.omp_get_max_threads(), torch.get_num_threads())))
    finally:
        faiss.omp_set_num_threads(before[0])
        torch.set_num_threads(before[1])
    assert calls == [(1, 1)] * 6 and len(r["all_s"]) == 5 and r["threads"] == 1
    rng = np.random.default_rng(14)
    codes = pm1(rng, 400, 16)
    index = BinaryHashIndex(codes, b=8)
    default, own, flip1 = (index.search(codes[:10], 5), index.search(codes[:10], 5, nflip=0),
                           index.search(codes[:10], 5, nflip=1))
    for a, b in zip(default, own):
        np.testing.assert_array_equal(a, b)
    assert (flip1[2] > own[2]).all()                               # one flip computes more distances


def test_tiny_chunks_give_the_same_results(monkeypatch):
    """Every chunked path (probes, candidate lists, re-ranking, bucket scoring, the LUT scorer and
    the reconstruction norms) with chunks of a few elements gives the unchunked results (the
    hash table's bit for bit; the LUT scores to rounding: BLAS sums a one-row product in another
    order)."""
    from hashbench.benchmark.search import additive, sparse

    rng = np.random.default_rng(15)
    n, d, D, nq = 300, 8, 4, 25
    ib = np.argsort(rng.random((n, d)), axis=1)[:, :2]
    emb = rng.standard_normal((n, D)).astype(np.float32)
    order = np.argsort(rng.random((nq, d)), axis=1)
    t = InvertedHashTable.build(ib)
    cb = rng.standard_normal((3, 4, D)).astype(np.float32)
    codes = rng.integers(0, 4, (n, 3))
    xq = rng.standard_normal((nq, D)).astype(np.float32)

    def run():
        index = HashTableIndex(t, emb)
        out = [candidates(t, order, 2, 40, np.arange(nq)).ids]
        for k, keep in ((20, False), (80, False), (20, True)):  # buckets of ~75: scored by BLAS / whole
            res = index.search(order, 1, k, emb[:nq], exclude=np.arange(nq), keep_candidates=keep)
            out += [res.ids, res.dist, res.n_candidates]
        out += [lut_scores(xq, cb, codes, metric="l2"), reconstruction_sq_norms(cb, codes)]
        return out

    whole = run()
    monkeypatch.setattr(sparse, "_CHUNK_ELEMS", 16)
    monkeypatch.setattr(additive, "_CHUNK_ELEMS", 16)
    got = run()
    for a, b in zip(got[:-2], whole[:-2]):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(got[-2], whole[-2], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(got[-1], whole[-1])


def test_loop_oracle_types_and_defaults():
    """The loop oracle returns what the fast path returns, dtypes included (int64 offsets, ids,
    counts and probes; float32 distances), with and without queries, re-ranking and kept lists,
    and keeps no candidate lists by default."""
    t = InvertedHashTable.build(HAND)
    emb = np.arange(12, dtype=np.float32).reshape(6, 2)
    empty = candidates_loop(t, np.array([[7, 9], [0, 8]]), 1, 1)  # absent buckets: nothing gathered
    np.testing.assert_array_equal(empty.ids, [0, 3])
    np.testing.assert_array_equal(empty.offsets, [0, 0, 2])
    for order in (np.array([[2, 0, 3, 1], [3, 1, 0, 2]]), np.zeros((0, 4), np.int64)):
        nq = order.shape[0]
        rq = np.ones((nq, 2), np.float32)
        c = candidates_loop(t, order, 1, 3)
        for a in (c.offsets, c.ids, c.counts, c.n_buckets):
            assert a.dtype == np.int64
        for rerank in (False, True):
            args = (rq, emb) if rerank else ()
            assert search_loop(t, order, 1, 3, *args).ranked is None
            ref = search_loop(t, order, 1, 3, *args, keep_candidates=True)
            fast = (HashTableIndex(t, emb).search(order, 1, 3, rq, keep_candidates=True) if rerank
                    else HashTableIndex(t).search(order, 1, 3, keep_candidates=True))
            pairs = [(ref.ids, fast.ids), (ref.n_candidates, fast.n_candidates), (ref.n_buckets, fast.n_buckets),
                     (ref.ranked.ids, fast.ranked.ids), (ref.ranked.offsets, fast.ranked.offsets),
                     (ref.ranked.counts, fast.ranked.counts), (ref.ranked.n_buckets, fast.ranked.n_buckets)]
            if rerank:
                pairs += [(ref.dist, fast.dist), (ref.ranked_dist, fast.ranked_dist)]
            for a, b in pairs:
                assert a.dtype == b.dtype and a.dtype in (np.int64, np.float32)
                np.testing.assert_array_equal(a, b)


def test_one_item_table_with_and_without_exclusion():
    """A database of one item, one query excluding it and one not: the excluded query has no
    candidate, the other has the item (the placeholder index of non-excluding queries stays 0)."""
    t = InvertedHashTable.build(np.array([[0, 1]]))
    index = HashTableIndex(t, np.ones((1, 2), np.float32))
    res = index.search(np.array([[0, 1], [1, 0]]), 1, 1, np.zeros((2, 2), np.float32), exclude=np.array([0, -1]))
    np.testing.assert_array_equal(res.ids, [[-1], [0]])
    np.testing.assert_array_equal(res.n_candidates, [0, 1])
    np.testing.assert_array_equal(res.n_buckets, [2, 1])


# --- the hash table's last survivors (session 4, rerun4): hand values for each ---

def test_an_excluded_item_without_buckets_is_not_subtracted_from_the_union():
    """Item 3 is in no bucket: excluding it removes nothing (count 2, one bucket suffices for k = 2)."""
    t = InvertedHashTable.build(np.array([[0, 1], [1, 2], [2, 3], [-1, -1]]))
    order, exclude = np.array([[1, 2, 0, 3]]), np.array([3])
    one = candidates(t, order, 1, 1, exclude)
    assert one.counts.tolist() == [2] and sorted(one[0].tolist()) == [0, 1]
    two = candidates(t, order, 1, 2, exclude)
    assert two.n_buckets.tolist() == [1]
    loop = candidates_loop(t, order, 1, 2, exclude)
    assert two.counts.tolist() == loop.counts.tolist() and two.n_buckets.tolist() == loop.n_buckets.tolist()


def test_empty_database_gives_empty_candidates_and_padded_results():
    t = InvertedHashTable.build(np.zeros((0, 2), np.int64))
    c = candidates(t, np.array([[0, 1]]), 1, 1)
    assert c.counts.tolist() == [0] and c.n_buckets.tolist() == [2] and len(c[0]) == 0
    r = search(t, np.array([[0, 1]]), 1, 2, np.zeros((1, 3), np.float32), np.zeros((0, 3), np.float32))
    assert r.ids.tolist() == [[-1, -1]]


def test_a_bucket_repeated_after_another_is_probed_once_in_first_order():
    t = InvertedHashTable.build(np.array([0, 1, 2]))
    order = np.array([[0, 1, 2, 1, 0]])
    assert candidates(t, order, 5, 1)[0].tolist() == [0, 1, 2]
    assert search(t, order, 5, 3).ids.tolist() == [[0, 1, 2]]


def test_bucket_ids_above_two_to_the_53_stay_exact():
    """Bucket ids are int64 throughout: 2^53 and 2^53 + 1 are different buckets (float64 would merge them)."""
    big = np.int64(2) ** 53
    t = InvertedHashTable.build(np.array([[big], [big + 1]]))
    assert candidates(t, np.array([[big + 1]]), 1, 1)[0].tolist() == [1]
    assert candidates(t, np.array([[big]]), 1, 1)[0].tolist() == [0]


def test_a_float_exclude_array_is_read_as_item_ids():
    t = InvertedHashTable.build(HAND)
    assert candidates(t, np.array([[0, 2, 1, 3]]), 1, 1, np.array([3.0]))[0].tolist() == [0]


def test_a_float64_rerank_embedding_is_stored_and_ranked_in_float32():
    t = InvertedHashTable.build(HAND)
    assert HashTableIndex(t, np.zeros((6, 3))).memory_bytes() == HashTableIndex(t).memory_bytes() + 10 * 3 * 4 + 10 * 4
    r = HashTableIndex(t, np.arange(6.0)[:, None]).search(np.array([[2, 0, 3, 1]]), 1, 3, np.array([[2.2]], np.float32),
                                                          keep_candidates=True)
    assert r.ranked_dist.dtype == np.float32


@pytest.mark.parametrize("item_buckets, nbytes", [([[0, 1]] * 20, 888), ([[0], [1], [1]], 168), ([[0, 1]], 128)])
def test_memory_bytes_hand_values(item_buckets, nbytes):
    """Offsets, item ids, the per-item bucket lists and their signatures, as search_scale reports them."""
    assert HashTableIndex(InvertedHashTable.build(np.array(item_buckets))).memory_bytes() == nbytes


def test_item_lists_keep_each_items_buckets_once_in_order_padded_with_minus_one():
    index = HashTableIndex(InvertedHashTable.build(HAND))
    assert index.item_lists.tolist() == [[0, 1], [1, 2], [2, 3], [0, 3], [3, -1], [1, -1]]


def test_probes_pad_with_minus_one_as_documented():
    index = HashTableIndex(InvertedHashTable.build(HAND))
    assert index.probes(np.array([[2, 0, 3, 1], [3, 1, 0, 2]]), 1, 3, np.array([-1, -1]))[0].tolist() == [[2, 0], [3, -1]]
    assert index.probes(np.array([[0, 0, 1]]), 2, 1, np.array([-1]))[0].tolist() == [[0, -1]]
