"""Sparse bucket backend (DHT family): inverted table, candidate union with expansion,
self-exclusion and re-ranking, against hand-built cases and brute force."""

import numpy as np
import pytest

from hashbench.benchmark.search.flat import exact_knn
from hashbench.benchmark.search.sparse import InvertedHashTable, candidates, search

# Hand-built table, d = 4 buckets, s = 2 (item 4 lists bucket 3 twice, item 5 has one bucket):
#   bucket 0: items 0, 3      bucket 1: items 0, 1, 5
#   bucket 2: items 1, 2      bucket 3: items 2, 3, 4
HAND = np.array([[0, 1], [1, 2], [2, 3], [0, 3], [3, 3], [1, -1]])


def test_build_hand_table():
    t = InvertedHashTable.build(HAND)
    assert t.n_items == 6
    np.testing.assert_array_equal(t.keys, [0, 1, 2, 3])
    np.testing.assert_array_equal(t.offsets, [0, 2, 5, 7, 10])
    np.testing.assert_array_equal(t.items, [0, 3, 0, 1, 5, 1, 2, 2, 3, 4])
    np.testing.assert_array_equal(t.bucket(3), [2, 3, 4])
    assert t.bucket(7).size == 0 and t.bucket(-1).size == 0
    keys, counts = t.sizes()
    np.testing.assert_array_equal(keys, [0, 1, 2, 3])
    np.testing.assert_array_equal(counts, [2, 3, 2, 3])
    assert t.items.dtype == np.int64


def test_hand_candidates_counts_expansion_and_exclusion():
    t = InvertedHashTable.build(HAND)
    order = np.array([[0, 2, 1, 3], [3, 1, 0, 2], [2, 0, 3, 1]])
    # s = 1, k = 1: first bucket only -> {0,3}, {2,3,4}, {1,2}
    c = candidates(t, order, s=1, k=1)
    np.testing.assert_array_equal(c.counts, [2, 3, 2])
    np.testing.assert_array_equal(c.n_buckets, [1, 1, 1])
    np.testing.assert_array_equal(c[1], [2, 3, 4])
    # s = 1, k = 4: query 0: {0,3} -> +bucket 2 {1,2} -> 4 items; query 1: {2,3,4} -> +bucket 1 -> {2,3,4,0,1,5}
    # query 2: {1,2} -> +bucket 0 {0,3} -> 4 items
    c = candidates(t, order, s=1, k=4)
    np.testing.assert_array_equal(c.counts, [4, 6, 4])
    np.testing.assert_array_equal(c.n_buckets, [2, 2, 2])
    np.testing.assert_array_equal(c[0], [0, 3, 1, 2])  # bucket order, then ascending id
    np.testing.assert_array_equal(c[1], [2, 3, 4, 0, 1, 5])
    # s = 2, exclusion of "the query itself" (pretend queries are items 3, 4, -1)
    c = candidates(t, order, s=2, k=1, exclude=np.array([3, 4, -1]))
    np.testing.assert_array_equal(c.counts, [3, 5, 4])  # {0,1,2}, {2,3,0,1,5}, {1,2,0,3}
    np.testing.assert_array_equal(c[1], [2, 3, 0, 1, 5])
    # k larger than the database: all buckets probed, everything but the excluded item
    c = candidates(t, order, s=1, k=10, exclude=np.array([0, -1, -1]))
    np.testing.assert_array_equal(c.counts, [5, 6, 6])
    np.testing.assert_array_equal(c.n_buckets, [4, 4, 4])


def random_table(rng, n, d, s):
    """Each item gets s distinct buckets out of d; returns (item_buckets, membership (N, d) bool)."""
    item_buckets = np.argsort(rng.random((n, d)), axis=1)[:, :s]
    member = np.zeros((n, d), dtype=bool)
    np.put_along_axis(member, item_buckets, True, axis=1)
    return item_buckets, member


def test_candidate_set_equals_brute_force_union():
    rng = np.random.default_rng(0)
    n, d, s = 400, 16, 2
    ib, member = random_table(rng, n, d, s)
    t = InvertedHashTable.build(ib)
    order = np.argsort(rng.random((50, d)), axis=1)
    c = candidates(t, order, s=s, k=1)
    for q in range(50):
        expect = np.flatnonzero(member[:, order[q, :s]].any(1))
        np.testing.assert_array_equal(np.sort(c[q]), expect)
        assert c.counts[q] == expect.size and c.n_buckets[q] == s


def test_expansion_adds_buckets_in_query_order_and_stops_at_k():
    rng = np.random.default_rng(1)
    n, d, s = 300, 32, 1
    ib, member = random_table(rng, n, d, s)
    t = InvertedHashTable.build(ib)
    order = np.argsort(rng.random((40, d)), axis=1)
    for k in (1, 16, 60):
        c = candidates(t, order, s=s, k=k)
        for q in range(40):
            r = c.n_buckets[q]
            union_r = np.flatnonzero(member[:, order[q, :r]].any(1))
            np.testing.assert_array_equal(np.sort(c[q]), union_r)
            assert union_r.size >= k  # enough (d * 300 / 32 items: never runs out here)
            if r > s:  # one bucket fewer would not have been enough
                assert member[:, order[q, : r - 1]].any(1).sum() < k
            # candidates listed in bucket order: rank of each item's best bucket never decreases,
            # ascending id within a rank
            rank_of_bucket = np.empty(d, dtype=np.int64)
            rank_of_bucket[order[q]] = np.arange(d)
            best = np.where(member[c[q]], rank_of_bucket[None, :], d).min(1)
            key = best * n + c[q]
            assert np.all(np.diff(key) > 0)


def test_self_exclusion_removes_exactly_the_query():
    rng = np.random.default_rng(2)
    n, d, s = 200, 8, 2
    ib, member = random_table(rng, n, d, s)
    t = InvertedHashTable.build(ib)
    qidx = rng.choice(n, 30, replace=False)
    # the query ranks its own buckets first, so it is always in its own candidate set
    order = np.argsort(-(member[qidx] + rng.random((30, d)) * 0.5), axis=1)
    plain = candidates(t, order, s=s, k=1)
    excl = candidates(t, order, s=s, k=1, exclude=qidx)
    for q in range(30):
        assert qidx[q] in plain[q]
        np.testing.assert_array_equal(excl[q], plain[q][plain[q] != qidx[q]])
    np.testing.assert_array_equal(excl.counts, plain.counts - 1)


def test_search_full_expansion_equals_exhaustive_rerank():
    rng = np.random.default_rng(3)
    n, d, s, D = 500, 12, 2, 8
    ib, _ = random_table(rng, n, d, s)
    t = InvertedHashTable.build(ib)
    emb_db = rng.standard_normal((n, D)).astype(np.float32)
    emb_q = rng.standard_normal((25, D)).astype(np.float32)
    order = np.argsort(rng.random((25, d)), axis=1)
    k = 10
    res = search(t, order, s=d, k=k, rerank_query=emb_q, rerank_db=emb_db, keep_candidates=True)
    exact_d, exact_i = exact_knn(emb_q, emb_db, k, metric="l2")
    np.testing.assert_array_equal(res.n_candidates, n)
    np.testing.assert_array_equal(res.ids, exact_i)
    np.testing.assert_allclose(res.dist, exact_d, rtol=1e-4, atol=1e-4)
    # the kept list is every candidate, by ascending distance
    for q in range(25):
        ranked = res.ranked[q]
        assert sorted(ranked.tolist()) == list(range(n))
        dq = res.ranked_dist[res.ranked.offsets[q] : res.ranked.offsets[q + 1]]
        assert np.all(np.diff(dq) >= 0)
        np.testing.assert_allclose(dq, ((emb_db[ranked] - emb_q[q]) ** 2).sum(1), rtol=1e-5, atol=1e-5)


def test_search_reranks_candidates_only():
    rng = np.random.default_rng(4)
    n, d, s, D = 300, 10, 1, 6
    ib, member = random_table(rng, n, d, s)
    t = InvertedHashTable.build(ib)
    emb_db = rng.standard_normal((n, D)).astype(np.float32)
    emb_q = rng.standard_normal((20, D)).astype(np.float32)
    order = np.argsort(rng.random((20, d)), axis=1)
    res = search(t, order, s=s, k=5, rerank_query=emb_q, rerank_db=emb_db)
    for q in range(20):
        cand = np.flatnonzero(member[:, order[q, : res.n_buckets[q]]].any(1))
        d2 = ((emb_db[cand] - emb_q[q]) ** 2).sum(1)
        np.testing.assert_array_equal(res.ids[q], cand[np.argsort(d2)[:5]])


def test_search_without_rerank_and_padding():
    t = InvertedHashTable.build(HAND)
    order = np.array([[2, 0, 3, 1], [3, 1, 0, 2]])
    res = search(t, order, s=1, k=3)
    assert res.dist is None
    np.testing.assert_array_equal(res.ids, [[1, 2, 0], [2, 3, 4]])  # query 0 expands into bucket 0
    np.testing.assert_array_equal(res.n_candidates, [4, 3])
    res = search(t, order, s=1, k=8, exclude=np.array([-1, 2]), keep_candidates=True)
    np.testing.assert_array_equal(res.ids[1], [3, 4, 0, 1, 5, -1, -1, -1])
    np.testing.assert_array_equal(res.ranked[1], [3, 4, 0, 1, 5])
    emb = np.arange(6, dtype=np.float32)[:, None]
    res = search(t, order[:1], s=1, k=8, rerank_query=np.array([[2.2]], np.float32), rerank_db=emb)
    np.testing.assert_array_equal(res.ids[0], [2, 3, 1, 4, 0, 5, -1, -1])
    assert np.isinf(res.dist[0, 6:]).all()


def test_arbitrary_int64_bucket_ids():
    # hierarchical leaf ids can be huge; nothing may be allocated over the id space
    big = np.int64(1) << 50
    ib = np.array([[big + 7, 3], [3, big], [big + 7, big]], dtype=np.int64)
    t = InvertedHashTable.build(ib)
    np.testing.assert_array_equal(t.keys, [3, big, big + 7])
    c = candidates(t, np.array([[big + 7, 3, big]]), s=1, k=1)
    np.testing.assert_array_equal(c[0], [0, 2])
    c = candidates(t, np.array([[12345, big, 3]]), s=1, k=2)  # unknown bucket first: empty, expand
    np.testing.assert_array_equal(c[0], [1, 2])
    np.testing.assert_array_equal(c.n_buckets, [2])


def test_bad_arguments():
    t = InvertedHashTable.build(HAND)
    with pytest.raises(ValueError):
        candidates(t, np.array([[0, 1]]), s=0, k=1)
    with pytest.raises(ValueError):
        candidates(t, np.array([[0, 1]]), s=1, k=1, exclude=np.array([1, 2]))
    with pytest.raises(ValueError):
        search(t, np.array([[0, 1]]), s=1, k=1, rerank_query=np.zeros((1, 2)))
