"""Tie-group builders (Hamming, scores, stable index order) against numpy brute force, and the
reproduction of DeepHash-pytorch's ``CalcTopMap`` mAP convention."""
import itertools

import numpy as np
import pytest
import torch

from hashbench.benchmark.metrics.ranking import (
    DENOMINATORS,
    average_precision,
    hamming_tie_groups,
    index_order_groups,
    mean_average_precision,
    score_tie_groups,
)


def random_pm1(rng, n, k):
    return np.where(rng.random((n, k)) < 0.5, -1, 1).astype(np.int8)


def brute_relevance(yq, yd):
    yq, yd = np.asarray(yq), np.asarray(yd)
    if yq.ndim == 1:
        return yq[:, None] == yd[None, :]
    return (yq.astype(np.int64) @ yd.astype(np.int64).T) > 0


def brute_hamming_groups(q, db, yq, yd, excl=None):
    """Per query, np.bincount of the Hamming distances of all / relevant database items."""
    k = q.shape[1]
    dist = (k - q.astype(np.int64) @ db.astype(np.int64).T) // 2
    rel = brute_relevance(yq, yd)
    n = np.zeros((len(q), k + 1), dtype=np.int64)
    r = np.zeros_like(n)
    for i in range(len(q)):
        keep = np.ones(len(db), dtype=bool)
        if excl is not None and excl[i] >= 0:
            keep[excl[i]] = False
        n[i] = np.bincount(dist[i][keep], minlength=k + 1)
        r[i] = np.bincount(dist[i][keep & rel[i]], minlength=k + 1)
    return n, r


def brute_score_groups(scores, yq, yd, higher_is_better=True, excl=None):
    """Per query, the distinct score values in rank order with their item / relevant counts."""
    rel = brute_relevance(yq, yd)
    rows_n, rows_r = [], []
    for i, s in enumerate(scores):
        values = np.unique(s)[::-1] if higher_is_better else np.unique(s)
        keep = np.ones(len(s), dtype=bool)
        if excl is not None and excl[i] >= 0:
            keep[excl[i]] = False
        rows_n.append([int(((s == v) & keep).sum()) for v in values])
        rows_r.append([int(((s == v) & keep & rel[i]).sum()) for v in values])
    width = max(map(len, rows_n))
    pad = lambda rows: np.array([x + [0] * (width - len(x)) for x in rows])  # noqa: E731
    return pad(rows_n), pad(rows_r)


def random_labels(rng, kind, n_q, n_db, c=5):
    if kind == "ids":
        return rng.integers(0, c, n_q), rng.integers(0, c, n_db)
    if kind == "onehot":
        return np.eye(c, dtype=np.int64)[rng.integers(0, c, n_q)], np.eye(c, dtype=np.int64)[rng.integers(0, c, n_db)]
    return (rng.random((n_q, c)) < 0.3).astype(np.float32), (rng.random((n_db, c)) < 0.3).astype(np.float32)


@pytest.mark.parametrize("kind", ["ids", "onehot", "multi"])
def test_hamming_groups_equal_brute_force(kind):
    rng = np.random.default_rng({"ids": 0, "onehot": 1, "multi": 2}[kind])
    for trial in range(12):
        n_q, n_db, bits = int(rng.integers(1, 40)), int(rng.integers(1, 80)), int(rng.integers(1, 24))
        q, db = random_pm1(rng, n_q, bits), random_pm1(rng, n_db, bits)
        yq, yd = random_labels(rng, kind, n_q, n_db)
        excl = np.where(rng.random(n_q) < 0.5, rng.integers(0, n_db, n_q), -1) if trial % 2 else None
        n, r = hamming_tie_groups(q, db, yq, yd, self_exclusion=excl, chunk_size=int(rng.integers(1, 9)))
        n_bf, r_bf = brute_hamming_groups(q, db, yq, yd, excl)
        assert n.shape == (n_q, bits + 1)
        np.testing.assert_array_equal(n, n_bf)
        np.testing.assert_array_equal(r, r_bf)


def test_hamming_groups_query_in_database_with_self_exclusion():
    # The queries are database items 3, 0 and 7: their own item (distance 0, relevant) disappears.
    rng = np.random.default_rng(3)
    db = random_pm1(rng, 20, 16)
    yd = rng.integers(0, 3, 20)
    own = np.array([3, 0, 7])
    n, r = hamming_tie_groups(db[own], db, yd[own], yd, self_exclusion=own)
    n_all, r_all = hamming_tie_groups(db[own], db, yd[own], yd)
    assert (n_all[:, 0] - n[:, 0]).tolist() == [1, 1, 1] and (r_all[:, 0] - r[:, 0]).tolist() == [1, 1, 1]
    np.testing.assert_array_equal(n[:, 1:], n_all[:, 1:])
    assert n.sum() == 3 * 19


def test_hamming_groups_accept_torch_and_large_tiles():
    # Several CPU tiles per chunk (N > tile) and torch inputs give the same counts as numpy.
    rng = np.random.default_rng(4)
    q, db = random_pm1(rng, 70, 32), random_pm1(rng, 9000, 32)
    yq, yd = random_labels(rng, "onehot", 70, 9000, c=10)
    n, r = hamming_tie_groups(q, db, yq, yd, chunk_size=64)
    n_bf, r_bf = brute_hamming_groups(q, db, yq, yd)
    np.testing.assert_array_equal(n, n_bf)
    np.testing.assert_array_equal(r, r_bf)
    n_t, r_t = hamming_tie_groups(torch.from_numpy(q), torch.from_numpy(db), torch.from_numpy(yq), torch.from_numpy(yd))
    np.testing.assert_array_equal(n_t, n_bf)
    np.testing.assert_array_equal(r_t, r_bf)


@pytest.fixture
def reduced_matmul_precision():
    """float32 matmuls in bf16 (CPU oneDNN) / TF32 (CUDA), as Lightning users often configure."""
    before = torch.get_float32_matmul_precision(), torch.backends.cuda.matmul.allow_tf32
    torch.set_float32_matmul_precision("medium")
    torch.backends.cuda.matmul.allow_tf32 = True
    yield
    torch.set_float32_matmul_precision(before[0])
    torch.backends.cuda.matmul.allow_tf32 = before[1]


def test_hamming_groups_exact_under_reduced_matmul_precision(reduced_matmul_precision):
    # Bin offsets up to chunk · 2(K+1) ≈ 4·10^4 are not representable in bf16/TF32: they must
    # never enter the matrix product.
    rng = np.random.default_rng(12)
    q, db = random_pm1(rng, 400, 64), random_pm1(rng, 700, 64)
    for kind in ("ids", "multi"):
        yq, yd = random_labels(rng, kind, 400, 700)
        n, r = hamming_tie_groups(q, db, yq, yd, chunk_size=300)
        n_bf, r_bf = brute_hamming_groups(q, db, yq, yd)
        np.testing.assert_array_equal(n, n_bf)
        np.testing.assert_array_equal(r, r_bf)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("reduced", [False, True])
def test_hamming_groups_on_cuda_equal_brute_force(reduced, request):
    if reduced:
        request.getfixturevalue("reduced_matmul_precision")
    rng = np.random.default_rng(5)
    # large chunks (small database) and shared-memory-sized chunks (database ≥ ~10^5)
    for (n_q, n_db), kind in itertools.product([(3000, 5000), (100, 120_000)], ["ids", "multi"]):
        q, db = random_pm1(rng, n_q, 64), random_pm1(rng, n_db, 64)
        yq, yd = random_labels(rng, kind, n_q, n_db)
        excl = rng.integers(-1, n_db, n_q)
        to_cuda = lambda a: torch.from_numpy(np.asarray(a)).cuda()  # noqa: E731
        n, r = hamming_tie_groups(to_cuda(q), to_cuda(db), to_cuda(yq), to_cuda(yd), self_exclusion=excl)
        n_bf, r_bf = brute_hamming_groups(q, db, yq, yd, excl)
        np.testing.assert_array_equal(n, n_bf)
        np.testing.assert_array_equal(r, r_bf)


def test_hamming_groups_reject_zero_bits_and_mismatches():
    rng = np.random.default_rng(6)
    q, db = random_pm1(rng, 3, 8), random_pm1(rng, 5, 8)
    bad = q.copy()
    bad[0, 0] = 0  # torch.sign(0) = 0 is not a bit
    with pytest.raises(ValueError, match="±1"):
        hamming_tie_groups(bad, db, np.zeros(3, int), np.zeros(5, int))
    with pytest.raises(ValueError):
        hamming_tie_groups(q, db[:, :6], np.zeros(3, int), np.zeros(5, int))
    with pytest.raises(ValueError):
        hamming_tie_groups(q, db, np.zeros(3, int), np.zeros(4, int))
    with pytest.raises(ValueError):
        hamming_tie_groups(q, db, np.zeros(3, int), np.zeros(5, int), self_exclusion=[0, 5, -1])


@pytest.mark.parametrize("kind", ["ids", "multi"])
def test_score_groups_equal_brute_force(kind):
    rng = np.random.default_rng(7 if kind == "ids" else 8)
    for trial in range(10):
        n_q, n_db = int(rng.integers(1, 25)), int(rng.integers(1, 60))
        scores = rng.integers(0, 6, (n_q, n_db)).astype(np.float64) / 4  # many exact ties
        yq, yd = random_labels(rng, kind, n_q, n_db)
        excl = np.where(rng.random(n_q) < 0.5, rng.integers(0, n_db, n_q), -1) if trial % 2 else None
        higher = bool(trial % 3)
        n, r = score_tie_groups(scores, yq, yd, higher_is_better=higher, self_exclusion=excl,
                                chunk_size=int(rng.integers(1, 6)))
        n_bf, r_bf = brute_score_groups(scores, yq, yd, higher, excl)
        np.testing.assert_array_equal(n, n_bf)
        np.testing.assert_array_equal(r, r_bf)
        # a callable producing chunks gives the same groups
        n_c, r_c = score_tie_groups(lambda s, e: scores[s:e], yq, yd, higher_is_better=higher,
                                    self_exclusion=excl, chunk_size=3)
        np.testing.assert_array_equal(n_c, n_bf)
        np.testing.assert_array_equal(r_c, r_bf)
        # truncating at k merges the later groups: metrics at k unchanged
        k = int(rng.integers(1, n_db + 2))
        n_k, r_k = score_tie_groups(scores, yq, yd, higher_is_better=higher, self_exclusion=excl, k=k)
        assert n_k.shape[1] <= k + 1
        np.testing.assert_array_equal(n_k.sum(1), n_bf.sum(1))
        for d in DENOMINATORS:
            np.testing.assert_allclose(average_precision(n_k, r_k, k=k, denominator=d),
                                       average_precision(n_bf, r_bf, k=k, denominator=d), rtol=1e-13)


def test_score_groups_of_inner_products_equal_hamming_groups():
    rng = np.random.default_rng(9)
    q, db = random_pm1(rng, 30, 12), random_pm1(rng, 200, 12)
    yq, yd = random_labels(rng, "ids", 30, 200)
    n_h, r_h = hamming_tie_groups(q, db, yq, yd)
    n_s, r_s = score_tie_groups(q.astype(np.float32) @ db.astype(np.float32).T, yq, yd)
    for d in DENOMINATORS:
        for k in (None, 1, 17):
            np.testing.assert_allclose(average_precision(n_s, r_s, k=k, denominator=d),
                                       average_precision(n_h, r_h, k=k, denominator=d), rtol=1e-12)


def test_score_groups_reject_nan():
    with pytest.raises(ValueError, match="NaN"):
        score_tie_groups(np.array([[0.5, np.nan]]), np.array([0]), np.array([0, 1]))


def test_index_order_groups_equal_stable_argsort():
    rng = np.random.default_rng(10)
    for trial in range(10):
        n_q, n_db = int(rng.integers(1, 20)), int(rng.integers(2, 50))
        scores = rng.integers(0, 4, (n_q, n_db))
        yq, yd = random_labels(rng, "multi", n_q, n_db)
        excl = np.where(rng.random(n_q) < 0.5, rng.integers(0, n_db, n_q), -1) if trial % 2 else None
        k = None if trial % 3 == 0 else int(rng.integers(1, n_db + 1))
        n, r = index_order_groups(scores, yq, yd, self_exclusion=excl, k=k)
        rel = brute_relevance(yq, yd)
        for i in range(n_q):
            order = np.argsort(-scores[i], kind="stable")
            if excl is not None and excl[i] >= 0:
                order = order[order != excl[i]]
            want = rel[i][order]
            got = np.repeat(r[i, :-1], n[i, :-1])  # relevance of the real items in rank order
            top = len(want) if k is None else k
            np.testing.assert_array_equal(got[:top], want[:top])
            assert n[i].sum() == len(order) and r[i].sum() == want.sum()
            for d in DENOMINATORS:
                assert average_precision(n[i:i + 1], r[i:i + 1], k=k, denominator=d, ties="index")[0] == pytest.approx(
                    average_precision(np.ones((1, len(want)), int), want[None].astype(int), k=k, denominator=d)[0])


# ------------------------------------------------------------------------------------------------
# DeepHash-pytorch CalcTopMap (swuxyj/DeepHash-pytorch utils/tools.py), restated faithfully
# ------------------------------------------------------------------------------------------------

def calc_top_map(rB, qB, retrievalL, queryL, topk):
    num_query = queryL.shape[0]
    topkmap = 0
    for i in range(num_query):
        gnd = (np.dot(queryL[i, :], retrievalL.transpose()) > 0).astype(np.float32)
        hamm = 0.5 * (qB.shape[1] - np.dot(qB[i, :], rB.transpose()))  # CalcHammingDist
        ind = np.argsort(hamm)
        gnd = gnd[ind]
        tgnd = gnd[0:topk]
        tsum = np.sum(tgnd).astype(int)
        if tsum == 0:
            continue  # adds 0, still divided by num_query below
        count = np.linspace(1, tsum, tsum)
        tindex = np.asarray(np.where(tgnd == 1)) + 1.0
        topkmap = topkmap + np.mean(count / tindex)
    return topkmap / num_query


def distinct_distance_codes(rng, n_db=8, block=8, n_queries=40):
    """Codes with no Hamming ties: item j flips block j of an all-ones code; a query flips f_j
    bits inside block j (f a random permutation of distinct values), so
    d(q, item j) = Σ_i f_i + block − 2 f_j, all distinct, in a random order per query."""
    bits = n_db * block
    db = np.ones((n_db, bits), dtype=np.int8)
    for j in range(n_db):
        db[j, j * block:(j + 1) * block] = -1
    q = np.ones((n_queries, bits), dtype=np.int8)
    for i in range(n_queries):
        f = rng.permutation(block + 1)[:n_db]
        for j in range(n_db):
            q[i, j * block:j * block + f[j]] = -1
    return q, db


def test_reproduces_deephash_pytorch_calc_top_map_without_ties():
    rng = np.random.default_rng(11)
    q, db = distinct_distance_codes(rng)
    dist = (q.shape[1] - q.astype(int) @ db.astype(int).T) // 2
    assert all(len(set(row)) == len(row) for row in dist)  # really no ties
    yq = (rng.random((len(q), 6)) < 0.25).astype(np.float32)
    yd = (rng.random((len(db), 6)) < 0.25).astype(np.float32)
    n, r = hamming_tie_groups(q, db, yq, yd)
    tested_empty = False
    for topk in (1, 3, 5, len(db)):
        ours = mean_average_precision(n, r, k=topk, denominator="relevant_retrieved", empty="zero")
        assert ours == pytest.approx(calc_top_map(db, q, yd, yq, topk), abs=1e-12)
        tested_empty |= bool((average_precision(n, r, k=topk) == 0).any())
    assert tested_empty  # some query had no relevant item in its top k (the "adds 0" branch)
    # DeepHash-pytorch's topk = -1 slices [0:-1]: it is mAP@(N − 1), not mAP@all
    assert calc_top_map(db, q, yd, yq, -1) == pytest.approx(mean_average_precision(n, r, k=len(db) - 1), abs=1e-12)
