"""Golden values (derived by hand next to each case) and brute-force properties of the ranking
metrics in ``benchmark.metrics.ranking``, computed from tie groups (n, r)."""
import itertools

import numpy as np
import pytest

from hashbench.benchmark.metrics import ranking
from hashbench.benchmark.metrics.ranking import (
    DENOMINATORS,
    EMPTY_POLICIES,
    average_precision,
    hit_rate_at_k,
    index_order_groups,
    mean_average_precision,
    precision_at_k,
    precision_recall_by_radius,
    precision_recall_by_rank,
    precision_within_radius,
    recall_at_k,
)


def ap(n, r, **kw):
    """AP of a single query given its groups as flat lists."""
    return average_precision(np.array([n]), np.array([r]), **kw)[0]


def singletons(rel):
    """A ranking without ties: one group per item."""
    return [1] * len(rel), list(rel)


# ------------------------------------------------------------------------------------------------
# Golden values: no ties
# ------------------------------------------------------------------------------------------------

# Ranking + − + − − +, R = 3 relevant in the database.
# Precision at the relevant ranks: 1/1, 2/3, 3/6.
NO_TIES = singletons([1, 0, 1, 0, 0, 1])


@pytest.mark.parametrize("k, denominator, expected", [
    (None, "relevant_retrieved", (1 + 2 / 3 + 1 / 2) / 3),  # 13/18
    (None, "all_relevant", (1 + 2 / 3 + 1 / 2) / 3),        # same: all 3 are retrieved
    (None, "min_k_all_relevant", (1 + 2 / 3 + 1 / 2) / 3),  # min(N, R) = R
    (4, "relevant_retrieved", (1 + 2 / 3) / 2),             # top 4 = + − + −: 5/6
    (4, "all_relevant", (1 + 2 / 3) / 3),                   # 5/9
    (4, "min_k_all_relevant", (1 + 2 / 3) / 3),             # min(4, 3) = 3: 5/9
    (2, "relevant_retrieved", 1.0),                         # top 2 = + −: 1/1
    (2, "all_relevant", 1 / 3),
    (2, "min_k_all_relevant", 1 / 2),                       # min(2, 3) = 2
    (100, "relevant_retrieved", 13 / 18),                   # k beyond the database = @all
])
def test_ap_without_ties_every_denominator(k, denominator, expected):
    for ties in ("expected", "optimistic", "pessimistic", "index"):  # no ties: all agree
        assert ap(*NO_TIES, k=k, denominator=denominator, ties=ties) == pytest.approx(expected, abs=1e-14)


def test_ap_denominators_disagree_on_issue_33_example():
    # DeepHash-pytorch issue #33: AP@3 of + − − (1/1 = 1) beats + − + ((1 + 2/3)/2 = 5/6) when
    # normalised by the relevant retrieved; by all relevant (R = 2 in both) it is 1/2 vs 5/6.
    a = singletons([1, 0, 0, 1])  # the second relevant item at rank 4, outside the top 3
    b = singletons([1, 0, 1])
    assert ap(*a, k=3) == pytest.approx(1.0)
    assert ap(*b, k=3) == pytest.approx(5 / 6)
    assert ap(*a, k=3, denominator="all_relevant") == pytest.approx(1 / 2)
    assert ap(*b, k=3, denominator="all_relevant") == pytest.approx(5 / 6)


# ------------------------------------------------------------------------------------------------
# Golden values: tie groups
# ------------------------------------------------------------------------------------------------

# Groups (n, r) = (1, 1), (3, 1), (2, 2); R = 4, N = 6.
# Group 2 sits at ranks 2..4; its relevant item is at rank 2, 3 or 4 (precision 2/2, 2/3, 2/4).
# Group 3 = ranks 5, 6, both relevant: 3/5 + 4/6 = 19/15.
TIED = ([1, 3, 2], [1, 1, 2])


@pytest.mark.parametrize("ties, expected", [
    # expected: (1 + mean(1, 2/3, 1/2) + 19/15) / 4 = (1 + 13/18 + 19/15) / 4 = 269/360
    ("expected", 269 / 360),
    ("optimistic", (1 + 1 + 19 / 15) / 4),      # 49/60
    ("pessimistic", (1 + 1 / 2 + 19 / 15) / 4),  # 83/120
])
def test_ap_at_all_each_tie_policy(ties, expected):
    for denominator in DENOMINATORS:  # @all: retrieved = all relevant = min(N, R) = 4
        assert ap(*TIED, ties=ties, denominator=denominator) == pytest.approx(expected, abs=1e-14)


@pytest.mark.parametrize("denominator, ties, expected", [
    # k = 3 cuts group 2 after 2 of its 3 items. Its relevant item is at group position 1, 2, 3
    # (prob 1/3 each): top 3 = + + − (S = 2, 2 retrieved), + − + (S = 1 + 2/3, 2), + − − (S = 1, 1).
    ("relevant_retrieved", "expected", (2 / 2 + (5 / 3) / 2 + 1 / 1) / 3),  # (1 + 5/6 + 1)/3 = 17/18
    ("all_relevant", "expected", (2 + 5 / 3 + 1) / 3 / 4),                  # 7/18
    ("min_k_all_relevant", "expected", (2 + 5 / 3 + 1) / 3 / 3),            # 14/27
    ("relevant_retrieved", "optimistic", 1.0),                              # + + −
    ("all_relevant", "optimistic", 2 / 4),
    ("min_k_all_relevant", "optimistic", 2 / 3),
    ("relevant_retrieved", "pessimistic", 1.0),                             # + − −
    ("all_relevant", "pessimistic", 1 / 4),
    ("min_k_all_relevant", "pessimistic", 1 / 3),
])
def test_ap_with_straddled_tie_group(denominator, ties, expected):
    assert ap(*TIED, k=3, denominator=denominator, ties=ties) == pytest.approx(expected, abs=1e-14)


def test_relevant_retrieved_is_not_monotone_in_the_tie_order():
    # (1,1), (2,0), (2,1) with k = 4 cuts the last group after 1 item.
    # optimistic  + − − + : (1 + 2/4)/2 = 3/4; pessimistic + − − − : 1/1 = 1; expected: mean = 7/8.
    groups = ([1, 2, 2], [1, 0, 1])
    assert ap(*groups, k=4, ties="optimistic") == pytest.approx(3 / 4)
    assert ap(*groups, k=4, ties="pessimistic") == pytest.approx(1.0)
    assert ap(*groups, k=4, ties="expected") == pytest.approx(7 / 8)


def test_index_ties_from_stable_order():
    # Scores 2 0 2 0 2 (higher first), relevance 0 1 1 0 1. By database index: items 0, 2, 4, 1, 3
    # → relevance 0 1 1 1 0: AP = (1/2 + 2/3 + 3/4) / 3 = 23/36.
    scores = np.array([[2, 0, 2, 0, 2]])
    q_labels, db_labels = np.array([1]), np.array([0, 1, 1, 0, 1])
    n, r = index_order_groups(scores, q_labels, db_labels)
    assert n.tolist() == [[1, 1, 1, 1, 1, 0]] and r.tolist() == [[0, 1, 1, 1, 0, 0]]
    assert ap(n[0], r[0], ties="index") == pytest.approx(23 / 36)
    # Expected ties on the same scores: groups (3, 2), (2, 1):
    # (2/3)(1/1 + 1.5/2 + 2/3) + (1/2)(3/4 + 3/5) = 29/18 + 27/40 = 823/360; / 3 → 823/1080.
    ng, rg = ranking.score_tie_groups(scores, q_labels, db_labels)
    assert ap(ng[0], rg[0]) == pytest.approx(823 / 1080)
    with pytest.raises(ValueError, match="index_order_groups"):
        ap(ng[0], rg[0], ties="index")
    # A cut-off inside the stable order: top 2 = 0 1 → (1/2)/1.
    n2, r2 = index_order_groups(scores, q_labels, db_labels, k=2)
    assert n2.tolist() == [[1, 1, 3]] and r2.tolist() == [[0, 1, 2]]
    assert ap(n2[0], r2[0], k=2, ties="index") == pytest.approx(1 / 2)
    assert ap(n2[0], r2[0], k=2, ties="index", denominator="all_relevant") == pytest.approx(1 / 6)


def test_empty_groups_are_skipped():
    with_empty = ([0, 1, 0, 3, 0, 2, 0], [0, 1, 0, 1, 0, 2, 0])
    for k in (None, 3):
        assert ap(*with_empty, k=k) == pytest.approx(ap(*TIED, k=k), abs=1e-15)
    # many empty groups before rank k (the first k + 2 columns hold no item)
    late = ([0] * 6 + [1, 3, 2], [0] * 6 + [1, 1, 2])
    for k in (1, 3, 5):
        for d in DENOMINATORS:
            assert ap(*late, k=k, denominator=d) == pytest.approx(ap(*TIED, k=k, denominator=d), abs=1e-15)
        assert precision_at_k(np.array([late[0]]), np.array([late[1]]), k) == pytest.approx(
            precision_at_k(np.array([TIED[0]]), np.array([TIED[1]]), k))


# ------------------------------------------------------------------------------------------------
# Golden values: empty queries
# ------------------------------------------------------------------------------------------------

def test_empty_policies():
    # q0: (2, 0), (2, 1), k = 2 → nothing relevant in the top 2 under any order, R = 1.
    # q1: (3, 0) → nothing relevant in the database.
    # q2: (1, 0), (3, 1), k = 2 → the relevant item of group 2 is kept with prob 1/3 (at rank 2,
    #     precision 1/2 → AP 1/2 given a hit): E[AP] = 1/6, E[AP | hit] = 1/2.
    n = np.array([[2, 2], [3, 0], [1, 3]])
    r = np.array([[0, 1], [0, 0], [0, 1]])
    zero = average_precision(n, r, k=2, empty="zero")
    skip = average_precision(n, r, k=2, empty="skip")
    caffe = average_precision(n, r, k=2, empty="skip_no_relevant_in_database")
    assert zero == pytest.approx([0, 0, 1 / 6])
    np.testing.assert_allclose(skip, [np.nan, np.nan, 1 / 2])
    np.testing.assert_allclose(caffe, [0, np.nan, 1 / 6])
    assert mean_average_precision(n, r, k=2, empty="zero") == pytest.approx(1 / 18)   # (0+0+1/6)/3
    assert mean_average_precision(n, r, k=2, empty="skip") == pytest.approx(1 / 2)
    assert mean_average_precision(n, r, k=2, empty="skip_no_relevant_in_database") == pytest.approx(1 / 12)
    # deterministic orders: optimistic keeps q2's relevant item at rank 2 (AP 1/2), pessimistic never
    assert average_precision(n, r, k=2, empty="skip", ties="optimistic") == pytest.approx([np.nan, np.nan, 0.5], nan_ok=True)
    assert np.isnan(average_precision(n, r, k=2, empty="skip", ties="pessimistic")).all()
    # with the all_relevant denominator (R = 1 for q2) the same numbers: 1/2 given a hit
    assert average_precision(n, r, k=2, empty="skip", denominator="all_relevant")[2] == pytest.approx(1 / 2)
    assert np.isnan(mean_average_precision(n[1:2], r[1:2], empty="skip"))


# ------------------------------------------------------------------------------------------------
# Golden values: P@k, R@k, hit rate, curves
# ------------------------------------------------------------------------------------------------

def test_precision_recall_hit_rate_golden():
    n, r = np.array([TIED[0]]), np.array([TIED[1]])
    # k = 3: 1 relevant for sure + group 2 keeps 2 of 3 items, its relevant one with prob 2/3.
    assert precision_at_k(n, r, 3) == pytest.approx([(1 + 2 / 3) / 3])          # 5/9
    assert recall_at_k(n, r, 3) == pytest.approx([(1 + 2 / 3) / 4])             # 5/12
    assert precision_at_k(n, r, 3, ties="optimistic") == pytest.approx([2 / 3])
    assert precision_at_k(n, r, 3, ties="pessimistic") == pytest.approx([1 / 3])
    assert hit_rate_at_k(n, r, 1) == pytest.approx([1.0])
    # a hit only through a straddled group: (1, 0), (3, 1), k = 2 → P(hit) = 1/3; k = 3 → 2/3
    n2, r2 = np.array([[1, 3]]), np.array([[0, 1]])
    assert hit_rate_at_k(n2, r2, 2) == pytest.approx([1 / 3])
    assert hit_rate_at_k(n2, r2, 3) == pytest.approx([2 / 3])
    assert hit_rate_at_k(n2, r2, 2, ties="optimistic") == pytest.approx([1.0])
    assert hit_rate_at_k(n2, r2, 3, ties="pessimistic") == pytest.approx([0.0])
    # k beyond the database: P@4 of 2 items with 1 relevant = 1/4 (divides by k); recall 1
    assert precision_at_k(np.array([[2]]), np.array([[1]]), 4) == pytest.approx([1 / 4])
    assert recall_at_k(np.array([[2]]), np.array([[1]]), 4) == pytest.approx([1.0])
    assert np.isnan(recall_at_k(np.array([[2]]), np.array([[0]]), 1)).all()


def test_precision_recall_by_rank_golden():
    curve = precision_recall_by_rank(np.array([TIED[0]]), np.array([TIED[1]]), [1, 3, 6])
    assert curve["cutoff"].tolist() == [1, 3, 6]
    assert curve["precision"] == pytest.approx([1, 5 / 9, 4 / 6])
    assert curve["recall"] == pytest.approx([1 / 4, 5 / 12, 1])


# Two queries, K = 2 (groups = distances 0, 1, 2):
# q0: n = 1 2 1, r = 1 1 0 (R = 2); q1: n = 0 3 1, r = 0 1 1 (R = 2).
RADIUS = (np.array([[1, 2, 1], [0, 3, 1]]), np.array([[1, 1, 0], [0, 1, 1]]))


def test_precision_recall_by_radius_golden():
    curve = precision_recall_by_radius(*RADIUS)
    assert curve["radius"].tolist() == [0, 1, 2]
    # ρ = 0: only q0 retrieves (1 of 1 relevant); ρ = 1: 2/3 and 1/3; ρ = 2: 2/4 and 2/4
    assert curve["precision"] == pytest.approx([1, 1 / 2, 1 / 2])
    assert curve["fraction_retrieving"] == pytest.approx([1 / 2, 1, 1])
    # recall: (1/2 + 0)/2, (2/2 + 1/2)/2, 1
    assert curve["recall"] == pytest.approx([1 / 4, 3 / 4, 1])


def test_precision_recall_by_radius_empty_radii_and_unanswerable_queries():
    # q0: n = 0 2 1, r = 0 1 0 (R = 1); q1: n = 0 1 2, r = 0 0 0 (R = 0: left out of recall)
    curve = precision_recall_by_radius(np.array([[0, 2, 1], [0, 1, 2]]), np.array([[0, 1, 0], [0, 0, 0]]))
    # ρ = 0: nobody retrieves → precision NaN; ρ = 1: (1/2 + 0/1)/2; ρ = 2: (1/3 + 0/3)/2
    np.testing.assert_allclose(curve["precision"], [np.nan, 1 / 4, 1 / 6])
    assert curve["fraction_retrieving"] == pytest.approx([0, 1, 1])
    assert curve["recall"] == pytest.approx([0, 1, 1])  # q0 alone
    # no query has a relevant item: recall NaN at every radius
    none = precision_recall_by_radius(np.array([[1, 1]]), np.array([[0, 0]]))
    assert np.isnan(none["recall"]).all() and none["recall"].shape == (2,)
    assert none["precision"] == pytest.approx([0, 0])


def test_precision_within_radius_golden():
    assert precision_within_radius(*RADIUS, radius=0) == pytest.approx([1, 0])
    np.testing.assert_allclose(precision_within_radius(*RADIUS, radius=0, empty="skip"), [1, np.nan])
    assert precision_within_radius(*RADIUS, radius=1) == pytest.approx([2 / 3, 1 / 3])
    assert precision_within_radius(*RADIUS) == pytest.approx([1 / 2, 1 / 2])


def test_bad_options_raise():
    n, r = np.array([TIED[0]]), np.array([TIED[1]])
    for kw in ({"denominator": "all"}, {"empty": "drop"}, {"ties": "random"}, {"k": 0}, {"k": 1.5}):
        with pytest.raises(ValueError):
            average_precision(n, r, **kw)
    with pytest.raises(ValueError):
        average_precision(np.array([[1, 2]]), np.array([[2, 0]]))  # r > n
    with pytest.raises(ValueError):
        precision_at_k(n, r, None)


# ------------------------------------------------------------------------------------------------
# Properties against brute force
# ------------------------------------------------------------------------------------------------

def ap_of_sequence(rel, n_relevant, k, denominator, empty):
    """Direct AP of one explicit 0/1 ranking (the definition, written out)."""
    top = np.asarray(rel[: len(rel) if k is None else k])
    s = sum(top[i] * top[: i + 1].sum() / (i + 1) for i in range(len(top)))
    hits = top.sum()
    if (empty == "skip" and hits == 0) or (empty == "skip_no_relevant_in_database" and n_relevant == 0):
        return np.nan
    den = {"relevant_retrieved": hits, "all_relevant": n_relevant,
           "min_k_all_relevant": n_relevant if k is None else min(k, n_relevant)}[denominator]
    return s / den if den > 0 else 0.0


def all_orders(n, r):
    """Every distinct 0/1 ranking obtained by ordering the items inside each group. Each stands for
    the same number r!(n−r)! of item permutations per group, so the plain mean over these is the
    mean over all permutations within tie groups."""
    per_group = []
    for size, rel in zip(n, r):
        choices = []
        for pos in itertools.combinations(range(size), rel):
            v = np.zeros(size, dtype=int)
            v[list(pos)] = 1
            choices.append(v)
        per_group.append(choices)
    for combo in itertools.product(*per_group):
        yield np.concatenate(combo)


def random_groups(rng, max_groups=4, max_size=4):
    g = int(rng.integers(1, max_groups + 1))
    n = rng.integers(0, max_size + 1, g)
    r = np.array([rng.integers(0, s + 1) for s in n])
    if n.sum() == 0:
        n[0], r[0] = 1, int(rng.integers(0, 2))
    return n, r


def test_expected_ties_equal_brute_force_over_all_orders():
    rng = np.random.default_rng(0)
    for _ in range(250):
        n, r = random_groups(rng)
        k = None if rng.random() < 0.3 else int(rng.integers(1, n.sum() + 3))
        orders = list(all_orders(n, r))
        for denominator in DENOMINATORS:
            for empty in EMPTY_POLICIES:
                values = np.array([ap_of_sequence(o, r.sum(), k, denominator, empty) for o in orders])
                want = np.nanmean(values) if np.isfinite(values).any() else np.nan
                got = ap(n, r, k=k, denominator=denominator, empty=empty)
                np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14, err_msg=f"{n} {r} {k} {denominator} {empty}")
        if k is not None:
            hits = np.array([o[:k].sum() for o in orders])
            assert precision_at_k(n[None], r[None], k)[0] == pytest.approx(hits.mean() / k, abs=1e-14)
            assert hit_rate_at_k(n[None], r[None], k)[0] == pytest.approx((hits > 0).mean(), abs=1e-14)
            if r.sum():
                assert recall_at_k(n[None], r[None], k)[0] == pytest.approx(hits.mean() / r.sum(), abs=1e-14)


def test_optimistic_and_pessimistic_equal_their_explicit_orders():
    rng = np.random.default_rng(1)
    for _ in range(200):
        n, r = random_groups(rng)
        k = None if rng.random() < 0.3 else int(rng.integers(1, n.sum() + 3))
        first = np.concatenate([np.r_[np.ones(b, int), np.zeros(a - b, int)] for a, b in zip(n, r)])
        last = np.concatenate([np.r_[np.zeros(a - b, int), np.ones(b, int)] for a, b in zip(n, r)])
        for denominator in DENOMINATORS:
            for empty in EMPTY_POLICIES:
                for ties, order in (("optimistic", first), ("pessimistic", last)):
                    want = ap_of_sequence(order, r.sum(), k, denominator, empty)
                    got = ap(n, r, k=k, denominator=denominator, empty=empty, ties=ties)
                    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


def test_optimistic_ge_expected_ge_pessimistic():
    rng = np.random.default_rng(2)
    n = rng.integers(0, 30, (300, 12))
    r = rng.integers(0, 31, (300, 12)) % (n + 1)
    for k in (None, 1, 7, 50, 200):
        # relevant_retrieved only at k = None: with a cut-off it is not monotone (see above)
        for denominator in DENOMINATORS if k is None else ("all_relevant", "min_k_all_relevant"):
            a_opt, a_exp, a_pes = (average_precision(n, r, k=k, denominator=denominator, ties=t)
                                   for t in ("optimistic", "expected", "pessimistic"))
            assert np.all(a_opt >= a_exp - 1e-12) and np.all(a_exp >= a_pes - 1e-12)
            assert np.any(a_opt > a_exp + 1e-6) and np.any(a_exp > a_pes + 1e-6)
        if k is not None:
            p = [precision_at_k(n, r, k, t) for t in ("optimistic", "expected", "pessimistic")]
            assert np.all(p[0] >= p[1] - 1e-12) and np.all(p[1] >= p[2] - 1e-12)


def test_expected_ap_matches_monte_carlo_on_large_groups():
    # Large groups exercise the harmonic-number and hypergeometric forms far from the small cases.
    rng = np.random.default_rng(3)
    n = np.array([40, 300, 500, 160])
    r = np.array([10, 90, 60, 40])
    k = 500  # cuts the third group after 160 of its 500 items
    labels = np.concatenate([np.r_[np.ones(b, int), np.zeros(a - b, int)] for a, b in zip(n, r)])
    bounds = np.cumsum(n) - n
    top = np.array([np.concatenate([rng.permutation(labels[s:s + a]) for s, a in zip(bounds, n)])[:k]
                    for _ in range(4000)])
    s = (top * np.cumsum(top, 1) / np.arange(1, k + 1)).sum(1)  # Σ rel_i · P_i over the top k
    per_order = {"relevant_retrieved": s / top.sum(1), "all_relevant": s / r.sum(), "min_k_all_relevant": s / min(k, r.sum())}
    for d, v in per_order.items():
        assert ap(n, r, k=k, denominator=d) == pytest.approx(v.mean(), abs=4 * v.std() / np.sqrt(v.size))
    # and the deterministic policies bracket the Monte-Carlo spread for the constant denominators
    assert ap(n, r, k=k, denominator="all_relevant", ties="optimistic") > per_order["all_relevant"].max()


def test_batching_does_not_change_results(monkeypatch):
    rng = np.random.default_rng(4)
    n = rng.integers(1, 60, (200, 6))
    r = rng.integers(0, 61, (200, 6)) % (n + 1)
    metrics = [lambda: average_precision(n, r, k=97), lambda: average_precision(n, r, k=97, empty="skip"),
               lambda: precision_at_k(n, r, 50), lambda: recall_at_k(n, r, 50), lambda: hit_rate_at_k(n, r, 3),
               lambda: precision_within_radius(n, r)]
    whole = [f() for f in metrics]
    monkeypatch.setattr(ranking, "_PAIR_BATCH", 7)         # (query, count) pairs per step
    monkeypatch.setattr(ranking, "_ROW_BLOCK_ELEMS", 30)   # 5 queries per block
    for f, want in zip(metrics, whole):
        np.testing.assert_allclose(f(), want, rtol=1e-13, atol=0)


def test_trailing_groups_after_k_do_not_matter():
    rng = np.random.default_rng(5)
    n = rng.integers(0, 6, (50, 10))
    r = rng.integers(0, 7, (50, 10)) % (n + 1)
    merged_n = np.c_[n[:, :4], n[:, 4:].sum(1)]
    merged_r = np.c_[r[:, :4], r[:, 4:].sum(1)]
    k = 3  # groups beyond column 3 may be needed when early groups are empty: only compare safe rows
    safe = n[:, :4].sum(1) >= k
    for d in DENOMINATORS:
        a = average_precision(n, r, k=k, denominator=d)[safe]
        b = average_precision(merged_n, merged_r, k=k, denominator=d)[safe]
        np.testing.assert_allclose(a, b, rtol=1e-13)


def test_hypergeometric_pmf_matches_scipy():
    from scipy.stats import hypergeom

    rng = np.random.default_rng(6)
    n = rng.integers(1, 60000, 5000).astype(float)
    r = np.floor(rng.random(5000) * (n + 1))
    m = np.floor(rng.random(5000) * (n + 1))
    lo, hi = np.maximum(0, m - (n - r)), np.minimum(r, m)
    x = np.floor(lo + rng.random(5000) * (hi - lo + 1))
    want = hypergeom.pmf(x, n, r, m)
    got = ranking._hypergeom_pmf(x, n, r, m)
    np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-15)
    # the per-row form used for (query, count) pairs
    row = rng.integers(0, 5000, 300)
    np.testing.assert_allclose(ranking._hypergeom_pmf(x[row], n, r, m, row=row), want[row], rtol=1e-8, atol=1e-15)
