"""The vectorised / faiss hash-table search (sparse.HashTableIndex) against the reference Python
loop (sparse_loop) and brute force: same candidates, counts, probes and re-ranked order, s = 1..3,
expansion, self-exclusion, exact distance ties, the cascade's hash-tree order."""

import numpy as np
import pytest

from hashbench.benchmark.search.sparse import HashTableIndex, InvertedHashTable, bucket_order, candidates, search
from hashbench.benchmark.search.sparse_loop import candidates_loop, search_loop


def random_codes(rng, n, d, s, n_classes=5, noise=0.3, ragged=False):
    """Item buckets with class structure: each class owns s buckets; a fraction ``noise`` of the
    items take s random distinct buckets instead. ragged: some items hold fewer buckets (-1 pad)."""
    home = np.stack([rng.choice(d, s, replace=False) for _ in range(n_classes)])
    y = rng.integers(0, n_classes, n)
    ib = home[y].copy()
    noisy = rng.random(n) < noise
    ib[noisy] = np.argsort(rng.random((noisy.sum(), d)), axis=1)[:, :s]
    if ragged and s > 1:
        ib[rng.random(n) < 0.2, -1] = -1
    return ib, y, home


def query_orders(rng, nq, d, home, y_q):
    scores = rng.random((nq, d))
    scores[np.arange(nq)[:, None], home[y_q]] += 1.0
    return bucket_order(scores)


def assert_same(fast, ref, rerank):
    np.testing.assert_array_equal(fast.n_candidates, ref.n_candidates)
    np.testing.assert_array_equal(fast.n_buckets, ref.n_buckets)
    np.testing.assert_array_equal(fast.ids, ref.ids)
    if rerank:
        np.testing.assert_array_equal(fast.dist, ref.dist)  # bit for bit
    if ref.ranked is not None:
        np.testing.assert_array_equal(fast.ranked.offsets, ref.ranked.offsets)
        np.testing.assert_array_equal(fast.ranked.ids, ref.ranked.ids)
        if rerank:
            np.testing.assert_array_equal(fast.ranked_dist, ref.ranked_dist)


@pytest.mark.parametrize("s", [1, 2, 3])
@pytest.mark.parametrize("k", [1, 16, 100])
@pytest.mark.parametrize("ties", [False, True])
def test_search_equals_loop(s, k, ties):
    rng = np.random.default_rng(100 * s + k + ties)
    n, d, D, nq = 900, 24, 8, 60
    ib, y, home = random_codes(rng, n, d, s, ragged=(k == 16))
    emb = rng.standard_normal((n, D)).astype(np.float32)
    if ties:  # small integers: exact distances, many exact ties (order decided by bucket rank, then id)
        emb = rng.integers(-1, 2, (n, D)).astype(np.float32)
    qi = rng.choice(n, nq, replace=False)  # queries are database items: self-exclusion
    order = query_orders(rng, nq, d, home, y[qi])
    table = InvertedHashTable.build(ib)
    index = HashTableIndex(table, emb)
    for s_q in (s, 1):
        for exclude in (None, qi):
            ref = search_loop(table, order, s_q, k, emb[qi], emb, exclude=exclude)
            assert_same(index.search(order, s_q, k, emb[qi], exclude=exclude), ref, True)
            assert_same(search(table, order, s_q, k, emb[qi], emb, exclude=exclude), ref, True)
            top = index.search(order, s_q, k, emb[qi], exclude=exclude, topn=min(k, 3))  # expansion to k
            np.testing.assert_array_equal(top.ids, ref.ids[:, : min(k, 3)])
            np.testing.assert_array_equal(top.dist, ref.dist[:, : min(k, 3)])
            ref = search_loop(table, order, s_q, k, emb[qi], emb, exclude=exclude, keep_candidates=True)
            assert_same(index.search(order, s_q, k, emb[qi], exclude=exclude, keep_candidates=True), ref, True)


@pytest.mark.parametrize("s", [1, 2, 3])
def test_candidates_and_plain_search_equal_loop(s):
    rng = np.random.default_rng(s)
    n, d, nq = 500, 12, 40
    ib, y, home = random_codes(rng, n, d, s, noise=0.5, ragged=True)
    qi = rng.choice(n, nq, replace=False)
    order = query_orders(rng, nq, d, home, y[qi])
    order[::7, 2] = 10**9  # a bucket absent from the table: an empty probe
    order[::5, 3] = -1  # padding
    table = InvertedHashTable.build(ib)
    for k in (1, 50, 499, 2000):  # 2000 > N: every bucket probed
        for exclude in (None, qi):
            ref = candidates_loop(table, order, s, k, exclude)
            got = candidates(table, order, s, k, exclude)
            np.testing.assert_array_equal(got.offsets, ref.offsets)
            np.testing.assert_array_equal(got.ids, ref.ids)
            np.testing.assert_array_equal(got.n_buckets, ref.n_buckets)
            assert_same(search(table, order, s, k, exclude=exclude, keep_candidates=True),
                        search_loop(table, order, s, k, exclude=exclude, keep_candidates=True), False)


def test_cascade_tree_order_equals_loop():
    rng = np.random.default_rng(7)
    n, d, L, D, nq = 800, 6, 2, 5, 50
    path = rng.integers(0, d, (n, L))
    leaf = path[:, 0] * d + path[:, 1]
    ib = np.stack([leaf, path[:, 0] * d + (path[:, 1] + 1) % d], 1)  # s = 2 leaves under one parent
    emb = rng.standard_normal((n, D)).astype(np.float32)
    qi = rng.choice(n, nq, replace=False)
    order = bucket_order(rng.random((nq, L, d)))
    table = InvertedHashTable.build(ib)
    index = HashTableIndex(table, emb)
    for s, k in ((1, 1), (2, 30), (1, 300)):
        ref = search_loop(table, order, s, k, emb[qi], emb, exclude=qi)
        assert_same(index.search(order, s, k, emb[qi], exclude=qi), ref, True)


def test_repeated_probes_equal_loop():
    """A bucket listed twice in a query's order is a probe that adds nothing (the loop's seen mask)."""
    rng = np.random.default_rng(13)
    n, d, D, nq = 400, 10, 4, 30
    for s in (1, 2):
        ib, y, home = random_codes(rng, n, d, s)
        emb = rng.standard_normal((n, D)).astype(np.float32)
        order = query_orders(rng, nq, d, home, y[:nq])
        order[:, 1] = order[:, 0]  # the best bucket again
        order[::3, 3] = order[::3, 2]
        table = InvertedHashTable.build(ib)
        for k in (5, 120):
            ref = search_loop(table, order, s, k, emb[:nq], emb, exclude=np.arange(nq))
            assert_same(HashTableIndex(table, emb).search(order, s, k, emb[:nq], exclude=np.arange(nq)), ref, True)
            ref = search_loop(table, order, s, k, exclude=np.arange(nq), keep_candidates=True)
            assert_same(search(table, order, s, k, exclude=np.arange(nq), keep_candidates=True), ref, False)


def test_uncertified_queries_fall_back_exactly():
    """A huge error bound certifies no query whose buckets were truncated: each is re-ranked over
    its full candidate list, and the result is still the reference's."""
    rng = np.random.default_rng(11)
    n, d, D, nq = 600, 8, 4, 30
    ib, y, home = random_codes(rng, n, d, 2)
    emb = rng.standard_normal((n, D)).astype(np.float32)
    qi = rng.choice(n, nq, replace=False)
    order = query_orders(rng, nq, d, home, y[qi])
    table = InvertedHashTable.build(ib)
    index = HashTableIndex(table, emb)
    ref = search_loop(table, order, 2, 10, emb[qi], emb, exclude=qi)
    assert_same(index.search(order, 2, 10, emb[qi], exclude=qi, err=1e12), ref, True)


def test_counts_and_topk_against_brute_force():
    rng = np.random.default_rng(5)
    n, d, s, D, nq, k = 700, 16, 3, 6, 40, 20
    ib, y, home = random_codes(rng, n, d, s, noise=0.6)
    member = np.zeros((n, d), dtype=bool)
    np.put_along_axis(member, ib, True, axis=1)
    emb = rng.standard_normal((n, D)).astype(np.float32)
    xq = rng.standard_normal((nq, D)).astype(np.float32)
    order = query_orders(rng, nq, d, home, rng.integers(0, 5, nq))
    res = HashTableIndex(InvertedHashTable.build(ib), emb).search(order, s, k, xq)
    for q in range(nq):
        cand = np.flatnonzero(member[:, order[q, : res.n_buckets[q]]].any(1))
        assert res.n_candidates[q] == cand.size >= k
        if res.n_buckets[q] > s:
            assert member[:, order[q, : res.n_buckets[q] - 1]].any(1).sum() < k
        d2 = ((emb[cand] - xq[q]) ** 2).sum(1)
        np.testing.assert_array_equal(res.ids[q], cand[np.argsort(d2, kind="stable")[:k]])


def test_index_arguments():
    table = InvertedHashTable.build(np.array([[0], [1], [1]]))
    emb = np.zeros((3, 2), np.float32)
    with pytest.raises(ValueError):
        HashTableIndex(table, np.zeros((2, 2), np.float32))
    with pytest.raises(ValueError):
        HashTableIndex(table).search(np.array([[0, 1]]), 1, 1, rerank_query=np.zeros((1, 2), np.float32))
    with pytest.raises(ValueError):
        HashTableIndex(table, emb).search(np.array([[0, 1]]), 1, 1)
    assert HashTableIndex(table, emb).memory_bytes() > HashTableIndex(table).memory_bytes()


def test_table_without_buckets_equals_loop():
    """Every item without a bucket (an all-padding table): no candidates, every bucket probed,
    -1 ids, as the loop gives (the vectorised path read past the end of the empty offsets)."""
    table = InvertedHashTable.build(np.full((3, 2), -1))
    emb = np.ones((3, 2), np.float32)
    order = np.array([[0, 1], [1, 0]])
    for keep in (False, True):
        ref = search_loop(table, order, 1, 2, np.zeros((2, 2), np.float32), emb, keep_candidates=keep)
        assert_same(HashTableIndex(table, emb).search(order, 1, 2, np.zeros((2, 2), np.float32),
                                                      keep_candidates=keep), ref, True)
        ref = search_loop(table, order, 1, 2, keep_candidates=keep)
        assert_same(search(table, order, 1, 2, keep_candidates=keep), ref, False)
    np.testing.assert_array_equal(candidates(table, order, 1, 2).counts, [0, 0])
