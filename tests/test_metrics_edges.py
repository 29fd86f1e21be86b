"""Edge cases and option plumbing of the metrics package that mutation testing found untested
(results/mutation/session4-metrics/NOTES.md): empty databases and query sets, cut-offs beyond the
database, chunked group building, options a wrapper must pass on, dtypes the metrics promise to
handle, and the small numeric helpers' hand values. Every value is derived by hand next to its case
or compared with the plain per-metric function it must equal."""
from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans
from sklearn.metrics import normalized_mutual_info_score

from hashbench.benchmark.metrics import dense_groups, nmi, onepass, ranking, speed
from test_metrics_ranking import random_groups


# ----------------------------------------------------------------------------- speed metrics

def test_suf_is_computed_in_float64_and_quietly():
    # float32 counts: 10 / 3 in float64, not float32's 3.3333333
    assert speed.search_speedup_factor(10, np.array([3], dtype=np.float32)) == 10 / 3
    assert speed.search_speedup_factor(10, np.array([[1, 3]])) == 5.0  # any shape of counts
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert speed.search_speedup_factor(10, [0, 0]) == float("inf")  # no division-by-zero warning


def test_recall_of_exact_topk_empty_lists_and_float_ids():
    # ids given as floats are ids: query 0 finds 2 of {2, 5}
    assert speed.recall_of_exact_topk(np.array([[0.0, 2.0]]), np.array([[2.0, 5.0]])) == 0.5
    # the approximate search returned nothing: recall 0; the exact lists are empty: NaN, no warning
    assert speed.recall_of_exact_topk(np.zeros((2, 0)), np.array([[1], [2]])) == 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(speed.recall_of_exact_topk(np.array([[1], [2]]), np.zeros((2, 0))))
        assert np.isnan(speed.recall_of_exact_topk(np.array([[1]]), np.array([[-1]])))


# ----------------------------------------------------------------------------- NMI

def test_nmi_buckets_hand_values():
    y = np.array([0, 0, 1, 1])
    # buckets that split each class in half: H(B) = H(C) = 1 bit, I(B; C) = 0 → NMI 0
    assert nmi.nmi_buckets(np.array([0, 1, 0, 1]), y) == pytest.approx(0.0, abs=1e-12)
    assert nmi.nmi_buckets(np.array([[0], [1], [0], [1]]), y) == pytest.approx(0.0, abs=1e-12)  # 1-D = one column
    assert nmi.nmi_buckets(np.array([5, 5, 7, 7]), y) == pytest.approx(1.0)
    # one bucket and one class: both constant → 1.0 (as scikit-learn)
    assert nmi.nmi_buckets(np.zeros(3, int), np.zeros(3, int)) == 1.0
    # one-hot labels of a single class are class ids, not multi-label: H(C) = 0, I = 0 → 0
    assert nmi.nmi_buckets(np.array([0, 1, 1]), np.ones((3, 1), int)) == pytest.approx(0.0, abs=1e-12)
    assert np.isnan(nmi.nmi_buckets(np.array([0, 1, 1]), np.array([[1, 1], [1, 0], [0, 1]])))  # multi-label


def test_nmi_kmeans_defaults_are_one_init_and_seed_zero():
    rng = np.random.default_rng(1)  # structureless points: the clustering depends on seed and restarts
    x, y = rng.random((30, 2)), rng.integers(0, 3, 30)

    def ref(**kw):
        return normalized_mutual_info_score(y, KMeans(3, **kw).fit_predict(x), average_method="arithmetic")

    want = ref(n_init=1, random_state=0)
    assert nmi.nmi_kmeans(x, y) == want
    assert want != ref(n_init=1, random_state=1) and want != ref(n_init=2, random_state=0)  # the data tells them apart
    assert nmi.nmi_kmeans(x, y, seed=1) == ref(n_init=1, random_state=1)
    assert nmi.nmi_kmeans(x, y, n_init=2) == ref(n_init=2, random_state=0)


# ----------------------------------------------------------------------------- labels and codes

def test_class_ids_of_single_label_rows():
    t = torch.tensor
    assert ranking._class_ids(t([[1], [1]])).tolist() == [0, 0]  # one class, one-hot
    assert ranking._class_ids(t([[0, 1], [1, 0]])).tolist() == [1, 0]
    assert ranking._class_ids(t([[0.0, 1.0, 0.0]])).tolist() == [1]
    assert ranking._class_ids(t([2, 0])).tolist() == [2, 0]
    for multi in ([[1, 1], [1, 0]], [[0, 0], [1, 0]], [[2, 0], [0, 1]], [[2, -1]], [[1, 0], [0, 0]]):
        assert ranking._class_ids(t(multi)) is None, multi
    assert ranking._class_ids(torch.zeros((3, 0))) is None  # no classes: no class id


def test_bfloat16_codes_equal_float_codes():
    rng = np.random.default_rng(2)
    q, db = rng.choice([-1.0, 1.0], (6, 8)), rng.choice([-1.0, 1.0], (15, 8))
    yq, yd = rng.integers(0, 3, 6), rng.integers(0, 3, 15)
    want = ranking.hamming_tie_groups(q, db, yq, yd, self_exclusion=[0, -1, 3, -1, -1, 14])
    got = ranking.hamming_tie_groups(torch.tensor(q, dtype=torch.bfloat16), torch.tensor(db, dtype=torch.bfloat16),
                                     torch.tensor(yq), torch.tensor(yd), self_exclusion=torch.tensor([0, -1, 3, -1, -1, 14]))
    assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])


def test_class_ids_against_multi_hot_rows_of_more_classes():
    # queries of class 0 only (1-D ids) against multi-hot rows of 3 classes: one-hot of width 3
    codes = np.array([[1, 1], [1, -1], [-1, -1]])
    db_multi = np.array([[1, 0, 1], [0, 1, 1], [1, 1, 0]])
    n, r = ranking.hamming_tie_groups(codes, codes, np.array([0, 0, 0]), db_multi)
    # relevant: db items 0 and 2; query 0 = item 0 (distance 0), item 1 at 1, item 2 at 2
    assert n.tolist() == [[1, 1, 1], [1, 2, 0], [1, 1, 1]]
    assert r.tolist() == [[1, 0, 1], [0, 2, 0], [1, 0, 1]]


# ----------------------------------------------------------------------------- building groups

def test_a_database_without_items_gives_one_empty_group_per_query():
    yq, empty_db = np.array([0, 1]), np.zeros(0, dtype=np.int64)
    for n, r in (ranking.score_tie_groups(np.zeros((2, 0)), yq, empty_db),
                 ranking.index_order_groups(np.zeros((2, 0)), yq, empty_db),
                 dense_groups.dense_tie_groups(np.zeros((2, 0), np.float32), yq, empty_db)):
        assert n.tolist() == [[0], [0]] and r.tolist() == [[0], [0]]
        assert n.dtype == r.dtype == np.int64
    n, r = ranking.score_tie_groups(np.zeros((2, 0)), yq, empty_db, k=3)  # with k: the group and an empty tail
    assert n.tolist() == r.tolist() == [[0, 0], [0, 0]]
    n, r = ranking.hamming_tie_groups(np.ones((2, 3)), np.ones((0, 3)), yq, empty_db)
    assert n.tolist() == r.tolist() == [[0] * 4] * 2


def test_score_tie_groups_with_k_beyond_the_database_keep_every_group_and_an_empty_tail():
    # query 0 (class 0): one group of 3 tied items, 1 relevant; query 1 (class 1): three singletons
    scores, yq, yd = np.array([[1.0, 1.0, 1.0], [3.0, 2.0, 1.0]]), np.array([0, 1]), np.array([0, 1, 1])
    for chunk in (None, 1):
        n, r = ranking.score_tie_groups(scores, yq, yd, k=5, chunk_size=chunk)
        assert n.tolist() == [[3, 0, 0, 0], [1, 1, 1, 0]] and r.tolist() == [[1, 0, 0, 0], [0, 1, 1, 0]]
        n, r = ranking.score_tie_groups(scores, yq, yd, k=2, chunk_size=chunk)  # rank 2: groups 0, 1 + tail
        assert n.tolist() == [[3, 0, 0], [1, 1, 1]] and r.tolist() == [[1, 0, 0], [0, 1, 1]]
        n, r = ranking.score_tie_groups(scores[:1], yq[:1], yd, k=5, chunk_size=chunk)  # a single group
        assert n.tolist() == [[3, 0]] and r.tolist() == [[1, 0]]


@pytest.mark.parametrize("k", [None, 4])
def test_index_order_groups_by_chunks_of_queries(k):
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 3, (7, 9)).astype(np.float32)
    yq, yd = rng.integers(0, 2, 7), rng.integers(0, 2, 9)
    excl = np.array([0, -1, 8, 2, -1, 5, 1])
    whole = ranking.index_order_groups(scores, yq, yd, self_exclusion=excl, k=k)
    # brute force: stable order by decreasing score; the first k + 1 ranks (one more for the own
    # item, which has n = 0) as singletons, then one tail group
    length = 9 if k is None else k + 1
    for q in range(7):
        order = np.argsort(-scores[q], kind="stable")
        valid = [int(i != excl[q]) for i in order]
        rel = [v * int(yq[q] == yd[i]) for v, i in zip(valid, order)]
        assert whole[0][q].tolist() == valid[:length] + [sum(valid[length:])]
        assert whole[1][q].tolist() == rel[:length] + [sum(rel[length:])]
    for chunk in (1, 2, 3):
        for scores_in in (scores, lambda s, e: scores[s:e]):
            parts = ranking.index_order_groups(scores_in, yq, yd, self_exclusion=excl, k=k, chunk_size=chunk)
            assert np.array_equal(parts[0], whole[0]) and np.array_equal(parts[1], whole[1])


# ----------------------------------------------------------------------------- numeric helpers

def test_harmonic_differences_by_hand():
    hi = np.array([3.0, 3.0, 5.0, 0.0, 1.0])
    lo = np.array([3.0, 2.0, 2.0, 0.0, 0.0])
    got = ranking._harmonic_diff(hi, lo)
    assert got.tolist()[:2] == [0.0, 1 / 3] and got[3:].tolist() == [0.0, 1.0]
    assert got[2] == pytest.approx(1 / 3 + 1 / 4 + 1 / 5, rel=1e-14)
    lo = np.arange(2000, dtype=np.float64)  # one step is exactly 1/hi (no digamma rounding)
    assert np.array_equal(ranking._harmonic_diff(lo + 1.0, lo), 1.0 / (lo + 1.0))


def test_safe_div_is_zero_where_the_denominator_is_not_positive():
    assert ranking._safe_div(np.array([1.0, 2.0, 3.0]), np.array([0.0, 2.0, -1.0])).tolist() == [0.0, 1.0, 0.0]


# ----------------------------------------------------------------------------- the group table

def test_no_queries_give_empty_metrics():
    n = r = np.zeros((0, 3), dtype=np.int64)
    for k in (None, 2):
        assert ranking.average_precision(n, r, k=k).shape == (0,)
        assert ranking.average_precision(n, r, k=k, empty="skip").shape == (0,)
    assert ranking.precision_at_k(n, r, 2).shape == ranking.hit_rate_at_k(n, r, 2).shape == (0,)
    out = onepass.ranking_table(n, r, 2, [{}], [1, 2])
    assert out["ap"][0].shape == out["precision"][2].shape == (0,)


def test_wide_tables_whose_first_groups_are_empty():
    # one group per score, k = 1: row 0 reaches rank 1 in its first group, row 1 only in its last
    n = np.zeros((2, 10), dtype=np.int64)
    r = np.zeros((2, 10), dtype=np.int64)
    n[0, 0], r[0, 0] = 5, 1
    n[1, 9], r[1, 9] = 5, 2
    assert ranking.average_precision(n, r, k=1).tolist() == pytest.approx([1 / 5, 2 / 5])  # P(hit) · 1
    assert ranking.precision_at_k(n, r, 1).tolist() == pytest.approx([1 / 5, 2 / 5])
    # rank k first reached in column k + 2 (0-based 3): a group of 2, 1 relevant → E[AP@1] = 1/2
    n1, r1 = np.array([[0, 0, 0, 2, 0, 0]]), np.array([[0, 0, 0, 1, 0, 0]])
    assert ranking.average_precision(n1, r1, k=1).tolist() == pytest.approx([1 / 2])
    assert onepass.ranking_table(n1, r1, 1, [{}], [1])["ap"][0].tolist() == pytest.approx([1 / 2])


def test_one_pass_blocks_keep_the_columns_of_the_group_table():
    """``onepass._Block.width(k)`` is the number of columns ``ranking._Groups(n, r, k)`` keeps (the
    same width makes every float sum add the same numbers): wide tables, empty groups, rows that end
    early, k below, at and past the table's reach."""
    rng = np.random.default_rng(8)
    for trial in range(300):
        q, g = int(rng.integers(1, 6)), int(rng.integers(1, 30))
        n = rng.integers(0, 4, (q, g)) * (rng.random((q, g)) < 0.5)
        for row in range(q):  # some rows end early (zeros after a point)
            if rng.random() < 0.5:
                n[row, int(rng.integers(0, g + 1)):] = 0
        r = rng.binomial(n, 0.5)
        block = onepass._Block(n, r)
        for k in {1, 2, int(rng.integers(1, g + 4)), g, g + 2}:
            assert block.width(k) == ranking._Groups(n, r, k).n.shape[1], (n.tolist(), k)
        assert block.width(None) == ranking._Groups(n, r, None).n.shape[1] == g


# ----------------------------------------------------------------------------- options passed on

def test_mean_average_precision_passes_every_option_on():
    rng = np.random.default_rng(9)
    tables = [random_groups(rng) for _ in range(30)]
    width = max(len(t[0]) for t in tables)
    n = np.array([np.pad(t[0], (0, width - len(t[0]))) for t in tables])
    r = np.array([np.pad(t[1], (0, width - len(t[1]))) for t in tables])
    seen = set()
    for den, empty, ties in itertools.product(ranking.DENOMINATORS, ranking.EMPTY_POLICIES,
                                              ("expected", "optimistic", "pessimistic")):
        ap = ranking.average_precision(n, r, k=3, denominator=den, empty=empty, ties=ties)
        got = ranking.mean_average_precision(n, r, k=3, denominator=den, empty=empty, ties=ties)
        assert got == float(np.nanmean(ap))
        seen.add(round(got, 12))
    assert len(seen) > 20  # the options change the value on this table
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every query skipped: NaN without "Mean of empty slice"
        assert np.isnan(ranking.mean_average_precision(np.array([[2]]), np.array([[0]]), empty="skip"))


def test_index_ties_at_a_cut_off():
    # scores 2 0 2 0 2, relevance 0 1 1 0 1: by database index the ranking is 0 1 1 1 0 (R = 3)
    scores, yq, yd = np.array([[2, 0, 2, 0, 2]]), np.array([1]), np.array([0, 1, 1, 0, 1])
    n, r = ranking.index_order_groups(scores, yq, yd, k=3)
    assert ranking.precision_at_k(n, r, 3, ties="index").tolist() == pytest.approx([2 / 3])
    assert ranking.recall_at_k(n, r, 3, ties="index").tolist() == pytest.approx([2 / 3])
    assert ranking.hit_rate_at_k(n, r, 1, ties="index").tolist() == [0.0]
    assert ranking.hit_rate_at_k(n, r, 2, ties="index").tolist() == [1.0]
    ng, rg = ranking.score_tie_groups(scores, yq, yd)
    with pytest.raises(ValueError, match="index_order_groups"):
        ranking.precision_at_k(ng, rg, 2, ties="index")


def test_curves_pass_the_tie_policy_and_stay_quiet_without_relevant_items():
    n, r = np.array([[1, 3, 2]]), np.array([[1, 1, 2]])
    for ties in ("expected", "optimistic", "pessimistic"):
        curve = ranking.precision_recall_by_rank(n, r, [2, 3], ties=ties)
        assert curve["precision"].tolist() == [float(ranking.precision_at_k(n, r, c, ties)[0]) for c in (2, 3)]
        assert curve["recall"].tolist() == [float(ranking.recall_at_k(n, r, c, ties)[0]) for c in (2, 3)]
    # (1,1), (3,1), k = 2: optimistic 2/2, expected (1 + 1/3)/2, pessimistic 1/2
    assert [ranking.precision_recall_by_rank(n, r, [2], ties=t)["precision"][0] for t in ("optimistic", "pessimistic")] \
        == pytest.approx([1.0, 0.5])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        curve = ranking.precision_recall_by_rank(np.array([[2]]), np.array([[0]]), [1])
        assert np.isnan(curve["recall"]).all() and curve["precision"].tolist() == [0.0]
        radius = ranking.precision_recall_by_radius(np.array([[1, 1]]), np.array([[0, 0]]))
        assert np.isnan(radius["recall"]).all()
    one = ranking.precision_recall_by_radius(np.array([[1, 1]]), np.array([[1, 0]]))  # a single query
    assert one["fraction_retrieving"].tolist() == [1.0, 1.0] and one["precision"].tolist() == [1.0, 0.5]


# ----------------------------------------------------------------------------- dense tie groups

@pytest.mark.parametrize("pool", ["all", "up to 2^32", "below 2^32"])
def test_dense_tie_groups_of_float64_distances_on_both_sort_paths(pool):
    """Rank keys of float64 distances are their IEEE bit patterns (up to 2^63): keys at and around
    2^32 (subnormal distances; the 32-bit table takes only keys below 2^32) and up to the largest
    double and inf, through numpy's and torch's sort, against ``score_tie_groups``."""
    rng = np.random.default_rng(10)
    keys = {"all": [0, 1, 2**32 - 1, 2**32, 2**32 + 1], "up to 2^32": [0, 1, 2**32 - 1, 2**32],
            "below 2^32": [0, 1, 2**32 - 1]}[pool]
    values = np.array(keys, dtype=np.uint64).view(np.float64)
    if pool == "all":
        values = np.concatenate([values, [0.5, 2.0, 3.0, 1e10, 1e300, np.finfo(np.float64).max, np.inf]])
    d = rng.choice(values, (9, 40))
    yq, yd = rng.integers(0, 3, 9), rng.integers(0, 3, 40)
    excl = rng.integers(-1, 40, 9)
    want = ranking.score_tie_groups(-d, yq, yd, self_exclusion=excl)
    for device in (None, "cpu"):  # numpy sort (32-bit or 64-bit table); torch sort
        got = dense_groups.dense_tie_groups(d, yq, yd, dense_groups.nonnegative_float64_rank_keys,
                                            self_exclusion=excl, device=device)
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1]), device
        assert got[0].dtype == got[1].dtype == np.int64  # the promised int64 tables


def test_float32_rank_keys_of_float64_scores_and_their_range():
    s = np.array([[1.5, -2.0, 0.0, -0.0, 3.4e38, -3.4e38, np.inf, -np.inf]])
    keys = dense_groups.float32_rank_keys(s)  # float64 scores: the keys of their float32 values
    assert np.array_equal(keys, dense_groups.float32_rank_keys(s.astype(np.float32)))
    for hib in (True, False):  # keys below 2^32: the 32-bit table takes them
        k = dense_groups.float32_rank_keys(s.astype(np.float32), higher_is_better=hib)
        assert k.dtype == np.uint64 and int(k.max()) < 2**32


# ----------------------------------------------------------------------------- Hamming tie groups

def test_hamming_chunk_size_by_hand():
    """Queries per job: 64 on the CPU or as given; on CUDA the rows whose histograms fit 40 KB of
    shared memory (int64 bins of width 2(K + 1)) when rows × N ≥ 2^22 items, else 2^27 / N; always
    at least 1 and below 2^24 / width (exact float32 bin indices)."""
    cpu, cuda = torch.device("cpu"), torch.device("cuda")  # a device object needs no GPU
    size = ranking._hamming_chunk_size
    assert size(None, 64, 1000, cpu) == 64
    assert size(10, 64, 1000, cpu) == size(10, 64, 1000, cuda) == 10
    assert size(10**9, 64, 1000, cpu) == 16777216 // 130 - 1 == 129054  # the float32 bound, width 130
    assert size(0, 64, 10, cpu) == 1
    assert size(None, 64, 500_000, cuda) == 40960 // 1040 == 39  # shared-memory rows: 39 · N ≥ 2^22
    assert size(None, 64, 107_546, cuda) == 134217728 // 107_546 == 1248  # 39 · N < 2^22
    assert size(None, 64, 1000, cuda) == size(None, 64, 0, cuda) == 129054  # 2^27 / N, capped
    assert size(None, 1000, 2_097_152, cuda) == 2  # 40960 // 16016 = 2 rows, 2 · N = 2^22 exactly
    assert size(None, 1000, 2_097_151, cuda) == 64  # just below: 2^27 // N
    assert size(None, 3000, 4_194_304, cuda) == 1  # a histogram row over 40 KB: still one row
    assert size(None, 3000, 2_000_000, cuda) == 67 and size(None, 3000, 10, cuda) == 16777216 // 6002 - 1


def test_hamming_self_exclusion_of_item_zero_only():
    codes = np.array([[1, 1], [1, -1], [-1, -1]])
    y = np.array([0, 0, 1])
    n, r = ranking.hamming_tie_groups(codes[:2], codes, y[:2], y, self_exclusion=[0, -1])
    # query 0 without item 0: item 1 at distance 1 (relevant), item 2 at 2; query 1 keeps all three:
    # itself at 0, items 0 (relevant) and 2 at 1
    assert n.tolist() == [[0, 1, 1], [1, 2, 0]] and r.tolist() == [[0, 1, 0], [1, 1, 0]]


def test_hamming_counter_tiles_by_hand():
    """On the CPU a job walks the database in tiles of max(1024, 2^19 / chunk) items (~2 MB of
    float32 products, L2-resident); the counts do not depend on it."""
    q, db = torch.ones((3, 4)), torch.ones((15, 4))
    labels = ranking._Labels(np.zeros(3, int), np.zeros(15, int), q.device)
    hist = torch.zeros(3, 10, dtype=torch.int64)
    assert ranking._HammingCounter(q, db, labels, 64, hist).tile == 524288 // 64 == 8192
    assert ranking._HammingCounter(q, db, labels, 1024, hist).tile == 1024  # 2^19 / 1024 = 512 < 1024
    assert ranking._HammingCounter(q, db, labels, 1, hist).tile == 524288


@pytest.mark.parametrize("build", [ranking.score_tie_groups, ranking.index_order_groups])
def test_score_callables_are_asked_for_blocks_of_chunk_queries(monkeypatch, build):
    """Scores given as a callable are fetched in blocks of queries: ``chunk_size`` rows, by default
    max(1, elements per step // N) rows (the step's temporaries stay bounded)."""
    monkeypatch.setattr(ranking, "_CPU_CHUNK_ELEMS", 64)
    rng = np.random.default_rng(11)

    def run(n_q, n_db, chunk_size=None):
        scores, asked = rng.integers(0, 3, (n_q, n_db)).astype(np.float32), []
        yq, yd = rng.integers(0, 2, n_q), rng.integers(0, 2, n_db)
        got = build(lambda s, e: asked.append((s, e)) or scores[s:e], yq, yd, chunk_size=chunk_size)
        want = build(scores, yq, yd, chunk_size=n_q)
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
        return asked

    assert run(9, 16) == [(0, 4), (4, 8), (8, 9)]  # 64 // 16 = 4 queries a block
    assert run(3, 100) == [(0, 1), (1, 2), (2, 3)]  # 64 // 100 = 0 → at least 1
    assert run(5, 16, chunk_size=2) == [(0, 2), (2, 4), (4, 5)]


def test_hamming_tie_groups_over_several_database_tiles():
    """A database of more than one CPU tile (≥ 1024 items): the relevant slice of each class, sorted
    by class, crosses tile boundaries; single- and multi-label equal the ranking by q · dbᵀ."""
    rng = np.random.default_rng(12)
    q, db = rng.choice([-1.0, 1.0], (5, 8)), rng.choice([-1.0, 1.0], (2600, 8))
    yq, yd = rng.integers(0, 3, 5), rng.integers(0, 3, 2600)
    excl = np.array([-1, 7, 2599, -1, 1500])
    for labels in ((yq, yd), (np.eye(3)[yq] + (rng.random((5, 3)) < 0.3), np.eye(3)[yd])):
        # 512 queries a job → tiles of max(1024, 2^19 / 512) = 1024 items: three tiles
        got = ranking.hamming_tie_groups(q, db, *labels, self_exclusion=excl, chunk_size=512)
        want = ranking.score_tie_groups(q @ db.T, *labels, self_exclusion=excl)  # groups = distances 0..8
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])


def test_nonnegative_rank_keys_of_float32_distances():
    d = np.array([[0.5, 0.0, 3.0, 1e-30]], dtype=np.float32)
    keys = dense_groups.nonnegative_float64_rank_keys(d)  # the keys of the same distances in float64
    assert keys.shape == (1, 4) and np.array_equal(keys, dense_groups.nonnegative_float64_rank_keys(d.astype(np.float64)))


def test_no_queries_give_empty_int64_group_tables():
    yd = np.array([0, 1, 0, 1])
    for n, r in (ranking.score_tie_groups(np.zeros((0, 4)), np.zeros(0, int), yd),
                 ranking.index_order_groups(np.zeros((0, 4)), np.zeros(0, int), yd),
                 dense_groups.dense_tie_groups(np.zeros((0, 4), np.float32), np.zeros(0, int), yd)):
        assert n.shape == r.shape == (0, 1) and n.dtype == r.dtype == np.int64
    n, r = ranking.hamming_tie_groups(np.ones((0, 3)), np.ones((4, 3)), np.zeros(0, int), yd)
    assert n.shape == r.shape == (0, 4)


def test_onepass_blocks_of_many_queries_over_few_groups(monkeypatch):
    """More queries than groups, in several blocks of rows (blocks of ``_ROW_BLOCK_ELEMS / G``
    queries): every query once, in order, equal to the per-metric functions."""
    monkeypatch.setattr(ranking, "_ROW_BLOCK_ELEMS", 64)
    rng = np.random.default_rng(13)
    for q, g in ((40, 4), (30, 2), (16, 4), (17, 4), (3, 40)):
        n = rng.integers(0, 5, (q, g))
        r = rng.binomial(n, 0.5)
        for threads in (1, 2):  # blocks one after the other, or on the thread pool
            out = onepass.ranking_table(n, r, 3, [{}], [1, 2], radius=1, threads=threads)
            assert out["ap"][0].shape == out["precision"][2].shape == out["radius"].shape == (q,)
            assert np.array_equal(out["ap"][0], ranking.average_precision(n, r, k=3))
            assert np.array_equal(out["precision"][2], ranking.precision_at_k(n, r, 2))
            assert np.array_equal(out["radius"], ranking.precision_within_radius(n, r, 1))
