"""Binary backends: exact Hamming scan and hash lookup vs numpy brute force (faiss
test_binary_hashindex.py pattern: hash results ⊆ exact results, monotone in nflip, exact at full flips)."""

import numpy as np
import pytest

from hashbench.benchmark.search.binary import MISSING_DIST, BinaryFlatIndex, BinaryHashIndex, pack_bits


def random_pm1(rng, n, k):
    return np.where(rng.random((n, k)) < 0.5, -1, 1).astype(np.int8)


def clustered_pm1(rng, n, k, n_centres=20, noise=0.15):
    """Codes near a few random centres, so hash buckets are unevenly filled and neighbours are close."""
    centres = random_pm1(rng, n_centres, k)
    codes = centres[rng.integers(0, n_centres, n)]
    flip = rng.random((n, k)) < noise
    return np.where(flip, -codes, codes).astype(np.int8)


def hamming(q, db):
    """Brute-force Hamming distances of ±1 codes: (K - <q, b>) / 2."""
    return (q.shape[1] - q.astype(np.int64) @ db.astype(np.int64).T) // 2


def hash_keys(codes_pm1, b, offset_bits):
    """faiss's key for the b-bit substring at bit offset `offset_bits`: the little-endian 64-bit word
    starting at byte offset_bits // 8 of the packed code, shifted right by offset_bits % 8, masked."""
    packed = np.packbits(codes_pm1 > 0, axis=1)
    padded = np.zeros((packed.shape[0], packed.shape[1] + 8), dtype=np.uint8)
    padded[:, : packed.shape[1]] = packed
    start = offset_bits // 8
    word = np.ascontiguousarray(padded[:, start : start + 8]).view("<u8")[:, 0]
    return (word >> np.uint64(offset_bits % 8)) & np.uint64((1 << b) - 1)


def popcount(x):
    return np.array([bin(int(v)).count("1") for v in x.ravel()]).reshape(x.shape)


# ---------------------------------------------------------------- pack_bits


def test_pack_bits_hand_values():
    codes = np.array([[1, -1, -1, -1, -1, -1, -1, 1, -1, -1, -1, -1, -1, -1, -1, -1],
                      [-1] * 15 + [1]], dtype=np.int8)
    np.testing.assert_array_equal(pack_bits(codes), np.array([[0b10000001, 0], [0, 1]], dtype=np.uint8))


def test_pack_bits_rejects_bad_input():
    with pytest.raises(ValueError, match="multiple of 8"):
        pack_bits(np.ones((2, 12), dtype=np.int8))
    with pytest.raises(ValueError, match="-1 and \\+1"):
        pack_bits(np.zeros((2, 8), dtype=np.int8))


# ---------------------------------------------------------------- flat


def test_flat_hand_example():
    db = np.array([[1] * 8, [-1] * 8, [1, 1, 1, 1, -1, -1, -1, -1], [1] * 7 + [-1]], dtype=np.int8)
    q = np.array([[1] * 8], dtype=np.int8)
    dist, ids = BinaryFlatIndex(db).search(q, 4)
    np.testing.assert_array_equal(dist, [[0, 1, 4, 8]])
    np.testing.assert_array_equal(ids, [[0, 3, 2, 1]])


@pytest.mark.parametrize("n_bits", [16, 32, 64])
def test_flat_equals_brute_force(n_bits):
    rng = np.random.default_rng(n_bits)
    db, q = random_pm1(rng, 1500, n_bits), random_pm1(rng, 40, n_bits)
    k = 50
    dist, ids = BinaryFlatIndex(db).search(q, k)
    brute = hamming(q, db)
    np.testing.assert_array_equal(dist, np.sort(brute, axis=1)[:, :k])  # distances exactly
    np.testing.assert_array_equal(np.take_along_axis(brute, ids, 1), dist)  # ids carry those distances
    assert all(len(set(r)) == k for r in ids.tolist())
    # ties come back in ascending database id
    same = dist[:, 1:] == dist[:, :-1]
    assert np.all(ids[:, 1:][same] > ids[:, :-1][same])


def test_flat_range_search_equals_brute_force():
    rng = np.random.default_rng(3)
    db, q = random_pm1(rng, 1000, 32), random_pm1(rng, 30, 32)
    lims, dist, ids = BinaryFlatIndex(db).range_search(q, 12)
    brute = hamming(q, db)
    for i in range(len(q)):
        expect = np.flatnonzero(brute[i] < 12)
        got = ids[lims[i] : lims[i + 1]]
        np.testing.assert_array_equal(np.sort(got), expect)
        np.testing.assert_array_equal(dist[lims[i] : lims[i + 1]], brute[i, got])


# ---------------------------------------------------------------- hash


def result_sets(lims, dist, ids):
    out = []
    for i in range(len(lims) - 1):
        pairs = list(zip(ids[lims[i] : lims[i + 1]].tolist(), dist[lims[i] : lims[i + 1]].tolist()))
        assert len(pairs) == len({p[0] for p in pairs}), "duplicate ids in one query's results"
        out.append(set(pairs))
    return out


@pytest.mark.parametrize("n_bits,b,nhash", [(32, 10, 1), (64, 8, 1), (32, 8, 4), (24, 6, 3)])
def test_hash_range_subset_monotone_and_exact_at_full_flips(n_bits, b, nhash):
    rng = np.random.default_rng(b * 10 + nhash)
    db, q = clustered_pm1(rng, 2000, n_bits), clustered_pm1(rng, 25, n_bits)
    radius = n_bits // 3
    exact = result_sets(*BinaryFlatIndex(db).range_search(q, radius))
    index = BinaryHashIndex(db, b=b, nhash=nhash)
    prev = None
    for nflip in range(b + 1):
        got = result_sets(*index.range_search(q, radius, nflip=nflip))
        for g, e in zip(got, exact):
            assert g <= e
        n_found = np.array([len(g) for g in got])
        if prev is not None:
            assert np.all(n_found >= prev)
        prev = n_found
    assert got == exact  # all 2^b keys probed


def test_multihash_pigeonhole_guarantee():
    # nhash disjoint substrings, nflip = r per table: every item within Hamming distance
    # < nhash * (r + 1) differs in <= r bits on some substring, so it must be found.
    rng = np.random.default_rng(7)
    db, q = clustered_pm1(rng, 3000, 32), clustered_pm1(rng, 30, 32)
    index = BinaryHashIndex(db, b=8, nhash=4)
    for r in range(3):
        radius = 4 * (r + 1)
        assert result_sets(*index.range_search(q, radius, nflip=r)) == result_sets(
            *BinaryFlatIndex(db).range_search(q, radius)
        )


@pytest.mark.parametrize("n_bits,b,nhash", [(32, 10, 1), (32, 8, 4), (24, 6, 3)])
def test_hash_knn_and_candidate_counts_vs_brute_force(n_bits, b, nhash):
    rng = np.random.default_rng(n_bits + b)
    db, q = clustered_pm1(rng, 1500, n_bits), clustered_pm1(rng, 30, n_bits)
    k = 10
    brute = hamming(q, db)
    index = BinaryHashIndex(db, b=b, nhash=nhash)
    prev_found = prev_cand = None
    for nflip in range(b + 1):
        dist, ids, n_cand = index.search(q, k, nflip=nflip)
        # expected candidates: items whose key is within nflip bits of the query's in some table
        hit = np.zeros((len(q), len(db)), dtype=bool)
        for h in range(nhash):
            kq, kb = hash_keys(q, b, h * b), hash_keys(db, b, h * b)
            hit |= popcount(kq[:, None] ^ kb[None, :]) <= nflip
        np.testing.assert_array_equal(n_cand, hit.sum(1))
        # results: exact k nearest among those candidates
        masked = np.where(hit, brute, np.iinfo(np.int64).max)
        n_found = np.minimum(hit.sum(1), k)
        expect = np.sort(masked, axis=1)[:, :k]
        valid = ids >= 0
        np.testing.assert_array_equal(valid.sum(1), n_found)
        np.testing.assert_array_equal(dist[valid], expect[valid])
        np.testing.assert_array_equal(dist[~valid], MISSING_DIST)
        rows, cols = np.nonzero(valid)
        assert np.all(hit[rows, ids[valid]]) and np.all(brute[rows, ids[valid]] == dist[valid])
        assert all(len(set(r[r >= 0].tolist())) == (r >= 0).sum() for r in ids)
        if prev_found is not None:
            assert np.all(n_found >= prev_found) and np.all(n_cand >= prev_cand)
        prev_found, prev_cand = n_found, n_cand
    # at full flips every item is a candidate and the result is exact search
    np.testing.assert_array_equal(n_cand, len(db))
    flat_dist, _ = BinaryFlatIndex(db).search(q, k)
    np.testing.assert_array_equal(dist, flat_dist)


def test_hash_batch_mode_matches_per_query():
    rng = np.random.default_rng(11)
    db, q = clustered_pm1(rng, 3000, 64), clustered_pm1(rng, 150, 64)  # > 100 queries: faiss goes parallel
    index = BinaryHashIndex(db)  # defaults: one table, b = ceil(log2 3000) = 12
    assert (index.nhash, index.b) == (1, 12)
    d1, i1, n1 = index.search(q, 5, nflip=1)
    d2, i2, n2 = index.search(q, 5, nflip=1, per_query=False)
    np.testing.assert_array_equal(d1, d2)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_allclose(n2, n1.mean())
    assert n1.dtype == np.int64


def test_hash_missing_results_are_minus_one():
    db = np.array([[1] * 16, [1] * 8 + [-1] * 8, [-1] * 16], dtype=np.int8)
    q = np.array([[1] * 16], dtype=np.int8)
    dist, ids, n_cand = BinaryHashIndex(db, b=8).search(q, 3, nflip=0)
    # key = first byte: items 0 and 1 share the query's key, item 2 does not
    np.testing.assert_array_equal(ids, [[0, 1, -1]])
    np.testing.assert_array_equal(dist, [[0, 8, MISSING_DIST]])
    np.testing.assert_array_equal(n_cand, [2])


def test_hash_rejects_bad_parameters():
    db = np.ones((4, 32), dtype=np.int8)
    with pytest.raises(ValueError):
        BinaryHashIndex(db, b=8, nhash=5)  # 40 bits > 32
    with pytest.raises(ValueError):
        BinaryHashIndex(db, b=64)
    with pytest.raises(ValueError):
        BinaryHashIndex(db, b=8).search(db, 1, nflip=9)
