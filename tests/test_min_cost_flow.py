"""The min-cost-flow code solver: the worked example of methods.md §2.4 and exhaustive
enumeration on random small instances (single-level and grouped)."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from hashbench.methods.min_cost_flow import max_bucket_load, objective, scaled_penalty, scaled_unary_costs, solve_class_codes


def test_worked_micro_example():
    u = np.array([[0.9, 0.8, 0.1], [0.85, 0.2, 0.1]])
    h0 = solve_class_codes(u, s=1, lam=0.0)
    assert h0.tolist() == [[1, 0, 0], [1, 0, 0]]
    h3 = solve_class_codes(u, s=1, lam=0.3)
    assert h3.tolist() == [[0, 1, 0], [1, 0, 0]]           # class 1 moves to bucket 1
    assert objective(h3, u, 0.3) == -16500                  # −0.8 − 0.85, scaled by 10^4


def _brute_force(u, s, lam, groups=None, lam_group=0.0):
    n_c, d = u.shape
    subsets = [np.isin(np.arange(d), c).astype(np.uint8) for c in itertools.combinations(range(d), s)]
    return min(objective(np.stack(choice), u, lam, groups, lam_group) for choice in itertools.product(subsets, repeat=n_c))


@pytest.mark.parametrize("case", range(150))
def test_equals_exhaustive_enumeration(case):
    rng = np.random.default_rng(case)
    n_c, d = rng.integers(2, 5), rng.integers(2, 5)
    s = int(rng.integers(1, d))
    lam = [0.0, 0.1, 0.3, 1.0][case % 4]
    u = rng.normal(size=(n_c, d))
    if case % 5 == 0:  # ties: repeated unary values
        u = np.round(u, 1)
    h = solve_class_codes(u, s, lam)
    assert (h.sum(1) == s).all() and set(np.unique(h)) <= {0, 1}
    assert objective(h, u, lam) == _brute_force(u, s, lam)


@pytest.mark.parametrize("case", range(100))
def test_grouped_network_equals_exhaustive_enumeration(case):
    rng = np.random.default_rng(1000 + case)
    n_c, d = rng.integers(2, 5), rng.integers(2, 4)
    s = int(rng.integers(1, d + 1)) if case % 2 else 1
    groups = rng.integers(0, 2, size=n_c)                   # groups of size 1 included
    lam, lam_group = [0.0, 0.3][case % 2], [0.5, 100.0][(case // 2) % 2]
    u = rng.normal(size=(n_c, d))
    h = solve_class_codes(u, s, lam, groups=groups, lam_group=lam_group)
    assert (h.sum(1) == s).all()
    assert objective(h, u, lam, groups, lam_group) == _brute_force(u, s, lam, groups, lam_group)


@pytest.mark.parametrize("case", range(60))
def test_pruned_bucket_arcs_keep_the_optimum(case):
    """Instances where the bucket-load bound is below n_c (the sink layer is pruned): the optimum
    is still the brute-force one, grouped instances included."""
    rng = np.random.default_rng(5000 + case)
    n_c, d, s = (5, 5, 2) if case % 20 == 0 else (int(rng.integers(5, 7)), 4, 1)
    lam = 2.0 if s == 2 else [1.0, 2.0, 0.6][case % 3]
    u = rng.random((n_c, d)) * [0.2, 0.6, 1.0][case % 3]
    if case % 4 == 0:
        u = np.round(u, 1)                                  # ties
    groups = rng.integers(0, 2, size=n_c) if case % 2 else None
    lam_group = 0.3 if groups is not None else 0.0
    step, step_group = scaled_penalty(lam), scaled_penalty(lam_group)
    largest = np.unique(groups, return_counts=True)[1].max() if groups is not None else 1
    if groups is None:                                      # grouped: pruned only when groups are small
        assert max_bucket_load(scaled_unary_costs(u), s, step, step_group, largest) < n_c
    h = solve_class_codes(u, s, lam, groups=groups, lam_group=lam_group)
    assert (h.sum(1) == s).all()
    assert objective(h, u, lam, groups, lam_group) == _brute_force(u, s, lam, groups, lam_group)


def test_bucket_load_bound_hand_values():
    cost = -np.array([[10_000, 0, 0, 0], [10_000, 0, 0, 0]])   # spread 10,000 = Λ at λ = 1
    assert max_bucket_load(cost, 1, 10_000) == 2                # min(n_c, 1 + ⌊2/3⌋ + 1)
    assert max_bucket_load(np.zeros((8, 8), np.int64), 1, 10_000) == 2   # 1 + ⌊8/7⌋ + 0
    assert max_bucket_load(np.zeros((8, 8), np.int64), 1, 0) == 8        # no global penalty: n_c
    assert max_bucket_load(np.zeros((8, 2), np.int64), 2, 10_000) == 8   # s = d: every class everywhere


def test_one_group_of_singletons_reduces_to_single_level():
    rng = np.random.default_rng(7)
    u = rng.normal(size=(6, 5))
    a = solve_class_codes(u, 2, 0.2)
    b = solve_class_codes(u, 2, 0.2, groups=np.arange(6), lam_group=100.0)
    assert objective(a, u, 0.2) == objective(b, u, 0.2)


def test_large_sibling_penalty_keeps_siblings_apart():
    rng = np.random.default_rng(3)
    u = np.tile(rng.normal(size=(1, 4)), (4, 1))            # identical preferences
    h = solve_class_codes(u, 1, 0.0, groups=np.zeros(4, int), lam_group=100.0)
    assert (h.sum(0) <= 1).all()


@pytest.mark.parametrize("bad", [dict(s=0), dict(s=4)])
def test_infeasible_sparsity_is_rejected(bad):
    with pytest.raises(ValueError, match="sparsity"):
        solve_class_codes(np.zeros((2, 3)), lam=0.0, **bad)


def test_overflow_is_detected():
    with pytest.raises(OverflowError):
        solve_class_codes(np.full((2, 3), 1e18), 1, 0.0)


def test_overflow_bound_is_the_documented_one():
    """bound = max|u| · scale · n_c · s + (λ + λ_group) · scale · n_c² · d must stay under 2^62
    (checked before any int64 cast): 10 % over it is refused by that guard for each of its
    terms. Unary costs 10 % under it are still too large for OR-Tools' cost scaling, which
    reports BAD_COST_RANGE: that is an OverflowError too, naming the solver's range; realistic
    magnitudes solve."""
    from hashbench.methods.min_cost_flow import COST_SCALE

    n_c, d, s, budget = 2, 3, 1, 2.0**62
    u_max = budget / (COST_SCALE * n_c * s)
    lam_max = budget / (COST_SCALE * n_c * n_c * d)
    u = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # class 0 wants bucket 0, class 1 bucket 2
    with pytest.raises(OverflowError, match="overflow int64"):
        solve_class_codes(1.1 * u_max * u, s, 0.0)
    with pytest.raises(OverflowError) as err:
        solve_class_codes(0.9 * u_max * u, s, 0.0)
    cost = int(np.trunc(0.9 * u_max * COST_SCALE))
    assert str(err.value) == (f"costs up to {cost} exceed the flow solver's cost range (scale 10000); "
                              f"rescale the unaries")
    assert solve_class_codes(1e12 * u, s, 0.0).tolist() == [[1, 0, 0], [0, 0, 1]]
    assert solve_class_codes(u, s, 0.9 * lam_max).tolist() == [[1, 0, 0], [0, 0, 1]]
    with pytest.raises(OverflowError, match="overflow int64"):
        solve_class_codes(u, s, 1.1 * lam_max)
    assert solve_class_codes(u, s, 0.0, groups=np.array([0, 0]), lam_group=0.9 * lam_max).tolist() == \
        [[1, 0, 0], [0, 0, 1]]
    with pytest.raises(OverflowError, match="overflow int64"):
        solve_class_codes(u, s, 0.0, groups=np.array([0, 0]), lam_group=1.1 * lam_max)


def test_group_penalty_defaults_to_none():
    # two sibling classes that both prefer bucket 0; with no sibling penalty they share it
    u = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.5]])
    both = solve_class_codes(u, 1, 0.0, groups=np.array([0, 0]))
    assert both.tolist() == [[1, 0, 0], [1, 0, 0]]
    assert np.array_equal(both, solve_class_codes(u, 1, 0.0, groups=np.array([0, 0]), lam_group=0.0))
    # a sibling penalty of 1 (> the 0.5 the second class loses by moving) separates them
    assert solve_class_codes(u, 1, 0.0, groups=np.array([0, 0]), lam_group=1.0).tolist() == [[1, 0, 0], [0, 0, 1]]


@pytest.mark.parametrize("kwargs,error,message", [
    (dict(unaries=np.zeros(3), s=1, lam=0.0), ValueError, "unaries must be (n_classes, d), got shape (3,)"),
    (dict(unaries=np.array([[0.0, np.nan]]), s=1, lam=0.0), ValueError, "unaries must be finite"),
    (dict(unaries=np.array([[0.0, np.inf]]), s=1, lam=0.0), ValueError, "unaries must be finite"),
    (dict(unaries=np.zeros((2, 3)), s=1, lam=-0.1), ValueError, "pairwise penalty must be ≥ 0, got -0.1"),
    (dict(unaries=np.zeros((2, 3)), s=1, lam=0.0, groups=np.array([0, 0]), lam_group=-1.0), ValueError,
     "pairwise penalty must be ≥ 0, got -1.0"),
    (dict(unaries=np.zeros((2, 3)), s=1, lam=0.0, groups=np.array([0, 0, 1])), ValueError,
     "groups must have shape (2,), got (3,)"),
    (dict(unaries=[[0.0, None]], s=1, lam=0.0), ValueError, "unaries must be finite"),   # a missing value: NaN
], ids=["1-D unaries", "NaN", "inf", "negative lambda", "negative group lambda", "groups shape", "None in a list"])
def test_bad_input_names_the_problem(kwargs, error, message):
    with pytest.raises(error) as err:
        solve_class_codes(**kwargs)
    assert str(err.value) == message


def _brute_force_at(u, s, lam, scale, groups=None, lam_group=0.0):
    n_c, d = u.shape
    subsets = [np.isin(np.arange(d), c).astype(np.uint8) for c in itertools.combinations(range(d), s)]
    return min(objective(np.stack(choice), u, lam, groups, lam_group, scale)
               for choice in itertools.product(subsets, repeat=n_c))


def test_scale_reaches_unaries_penalties_and_objective():
    """``scale`` V sets cost(i, q) = trunc(−V·u) and Λ = trunc(λ·V) (hand values at V = 100), and the
    solver optimises the objective at that scale: with V = 100 the unary spread (±100) and the
    penalties (30 = 0.3·100, 50) are comparable, so using 10,000 for any one of them changes the
    optimum of these instances."""
    np.testing.assert_array_equal(scaled_unary_costs(np.array([[0.123, -0.456]]), 100), [[-12, 45]])
    assert scaled_unary_costs(np.array([[0.123, -0.456]]), 100).dtype == np.int64
    assert scaled_penalty(0.3, 100) == 30 and scaled_penalty(0.3) == 3000
    h = np.array([[1, 0], [1, 0], [0, 1]])
    u = np.array([[0.5, 0.1], [0.4, 0.2], [0.3, 0.9]])
    # unaries −(50 + 40 + 90) = −180; bucket 0 holds 2 classes: Λ·1 = 30; group {0, 1} shares bucket 0: 50
    assert objective(h, u, 0.3, np.array([0, 0, 1]), 0.5, scale=100) == -180 + 30 + 50
    rng = np.random.default_rng(42)
    for case in range(12):
        u = rng.normal(size=(4, 3))
        groups = np.array([0, 0, 1, 1]) if case % 2 else None
        lam_group = 0.5 if case % 2 else 0.0
        h = solve_class_codes(u, 1, 0.3, groups=groups, lam_group=lam_group, scale=100)
        assert objective(h, u, 0.3, groups, lam_group, 100) == _brute_force_at(u, 1, 0.3, 100, groups, lam_group)


def test_float32_unaries_are_scaled_in_float64():
    """trunc(−10⁴·u) of the float32 value 0.9582 (0.95819997…) is −9581 in float64; a float32
    product rounds to −9582.0 first."""
    u = np.array([[np.float32(0.9582)]], dtype=np.float32)
    np.testing.assert_array_equal(scaled_unary_costs(u), [[-9581]])


def test_codes_are_uint8_and_no_classes_give_no_codes():
    h = solve_class_codes(np.array([[0.9, 0.1], [0.2, 0.8]]), 1, 0.0)
    assert h.dtype == np.uint8 and h.tolist() == [[1, 0], [0, 1]]
    empty = solve_class_codes(np.zeros((0, 4)), 1, 1.0)
    assert empty.shape == (0, 4) and empty.dtype == np.uint8


def test_bucket_load_bound_more_hand_values():
    # Λ = 1 (not "no penalty"), zero spread: 1 + ⌊8/7⌋ + 0
    assert max_bucket_load(np.zeros((8, 8), np.int64), 1, 1) == 2
    # the spread is per row: rows (0, 10⁴, 10⁴, 10⁴) and constant 2·10⁴ rows spread 10⁴, not 2·10⁴
    cost = np.array([[0, 10_000, 10_000, 10_000]] + [[20_000] * 4] * 5)
    assert max_bucket_load(cost, 1, 10_000) == 1 + 6 // 3 + 1
    zeros, skew = np.zeros((20, 8), np.int64), np.zeros((20, 8), np.int64)
    skew[0, 1] = 9_999                                     # spread Λ − 1
    assert max_bucket_load(skew, 1, 10_000, largest_group=3) == 1 + 20 // 7 + 0        # Λ_group defaults to 0
    assert max_bucket_load(zeros, 1, 10_000, step_group=10_000) == 1 + 20 // 7 + 0     # |G|max defaults to 1
    assert max_bucket_load(zeros, 1, 10_000, step_group=10_000, largest_group=3) == 1 + 20 // 7 + 2


def test_objective_group_term_hand_values():
    u = np.zeros((3, 2))
    h = np.array([[1, 0], [1, 0], [1, 0]])
    groups = np.array([0, 0, 0])
    # n_q = 3 in bucket 0: C(3, 2) = 3 pairs, for both the global and the sibling term
    assert objective(h, u, 0.1, groups, 0.2) == 3 * 1000 + 3 * 2000
    assert objective(h, u, 0.1, groups) == objective(h, u, 0.1) == 3 * 1000  # λ_group defaults to 0


def test_overflow_guard_boundaries():
    """The guard is the documented bound exactly: ≥ 2⁶² is refused (at scale 1 a unary of 2⁶² is
    the bound itself), the unary term is multiplied by s, and a penalty just under 2⁶² with zero
    unaries still solves (max|u| is 0 there, not 1)."""
    with pytest.raises(OverflowError, match="overflow int64"):
        solve_class_codes(np.array([[2.0**62, 0.0]]), 1, 0.0, scale=1)
    u_max = 2.0**62 / (10_000 * 1 * 2)                      # n_c = 1, s = 2
    with pytest.raises(OverflowError, match="overflow int64"):
        solve_class_codes(np.array([[1.1 * u_max, 0.0, 0.0, 0.0]]), 2, 0.0)
    lam = (2.0**62 - 5120) / 10_000                          # Λ = 2⁶² − 5632 after truncation
    assert solve_class_codes(np.zeros((1, 1)), 1, lam).tolist() == [[1]]


def test_solver_status_other_than_optimal_is_an_error(monkeypatch):
    from ortools.graph.python import min_cost_flow

    class Infeasible(min_cost_flow.SimpleMinCostFlow):
        def solve(self):
            super().solve()
            return self.INFEASIBLE

    monkeypatch.setattr(min_cost_flow, "SimpleMinCostFlow", Infeasible)
    with pytest.raises(RuntimeError, match=r"min-cost flow did not reach an optimum \(status .*INFEASIBLE"):
        solve_class_codes(np.zeros((2, 3)), 1, 0.0)


@pytest.mark.parametrize("grouped", [False, True])
def test_network_has_the_documented_arcs(monkeypatch, grouped):
    """The arcs handed to OR-Tools: n_c source arcs of capacity s and cost 0, n_c·d class arcs of
    capacity 1 costing trunc(−V·u), |G| parallel arcs 0, Λ_group, 2Λ_group, … per shared (group,
    bucket), and K = max_bucket_load(…, largest group) parallel arcs 0, Λ, 2Λ, … per bucket → sink."""
    from ortools.graph.python import min_cost_flow

    seen = {}

    class Spy(min_cost_flow.SimpleMinCostFlow):
        def add_arcs_with_capacity_and_unit_cost(self, tails, heads, caps, costs):
            seen.update(tails=np.asarray(tails), heads=np.asarray(heads), caps=np.asarray(caps),
                        costs=np.asarray(costs))
            return super().add_arcs_with_capacity_and_unit_cost(tails, heads, caps, costs)

    monkeypatch.setattr(min_cost_flow, "SimpleMinCostFlow", Spy)
    rng = np.random.default_rng(3)
    n_c, d, s, lam, lam_group = 9, 6, 2, 0.5, 0.2
    u = rng.random((n_c, d))
    groups = np.array([0, 0, 0, 1, 1, 2, 3, 3, 3]) if grouped else None
    solve_class_codes(u, s, lam, groups=groups, lam_group=lam_group if grouped else 0.0)
    unary, step, step_group = scaled_unary_costs(u), scaled_penalty(lam), scaled_penalty(lam_group)
    largest = 3 if grouped else 1
    K = max_bucket_load(unary, s, step, step_group if grouped else 0, largest)
    assert 1 < K < n_c                                      # the pruned layer
    n_shared_arcs = (3 + 2 + 3) * d if grouped else 0       # groups 0, 1, 3 are shared; group 2 is alone
    caps, costs, tails, heads = seen["caps"], seen["costs"], seen["tails"], seen["heads"]
    assert len(caps) == n_c + n_c * d + n_shared_arcs + K * d
    np.testing.assert_array_equal(tails[:n_c], 0)
    np.testing.assert_array_equal(heads[:n_c], 1 + np.arange(n_c))
    np.testing.assert_array_equal(caps[:n_c], s)
    np.testing.assert_array_equal(costs[:n_c], 0)
    np.testing.assert_array_equal(caps[n_c : n_c + n_c * d], 1)
    np.testing.assert_array_equal(costs[n_c : n_c + n_c * d], unary.ravel())
    sink_costs = costs[-K * d :].reshape(K, d)
    np.testing.assert_array_equal(sink_costs, np.arange(K)[:, None] * step + 0 * sink_costs)
    np.testing.assert_array_equal(heads[-K * d :], heads.max())
    if grouped:
        first_gb = 1 + n_c
        shared = costs[n_c + n_c * d : n_c + n_c * d + n_shared_arcs]
        np.testing.assert_array_equal(shared[: 3 * d].reshape(3, d), np.arange(3)[:, None] * step_group + 0 * shared[:d])
        # class 5 (alone in group 2) goes straight to the buckets, class 0 through (group 0, bucket)
        class_heads = heads[n_c : n_c + n_c * d].reshape(n_c, d)
        first_bucket = first_gb + 3 * d
        np.testing.assert_array_equal(class_heads[5], first_bucket + np.arange(d))
        np.testing.assert_array_equal(class_heads[0], first_gb + np.arange(d))
        np.testing.assert_array_equal(class_heads[3], first_gb + d + np.arange(d))
        np.testing.assert_array_equal(class_heads[8], first_gb + 2 * d + np.arange(d))


def test_singleton_groups_add_no_sibling_slack_to_the_bucket_bound(monkeypatch):
    """Groups of one class each with λ_group > 0: no (group, bucket) node, and the bucket → sink
    layer uses the bound with |G|max = 1 (a larger |G| would add Λ_group to the slack)."""
    from ortools.graph.python import min_cost_flow

    seen = {}

    class Spy(min_cost_flow.SimpleMinCostFlow):
        def add_arcs_with_capacity_and_unit_cost(self, tails, heads, caps, costs):
            seen["n_arcs"] = len(np.asarray(tails))
            return super().add_arcs_with_capacity_and_unit_cost(tails, heads, caps, costs)

    monkeypatch.setattr(min_cost_flow, "SimpleMinCostFlow", Spy)
    n_c, d, s, lam, lam_group = 12, 6, 1, 0.5, 2.0
    u = np.random.default_rng(9).random((n_c, d))
    solve_class_codes(u, s, lam, groups=np.arange(n_c), lam_group=lam_group)
    unary, step, step_group = scaled_unary_costs(u), scaled_penalty(lam), scaled_penalty(lam_group)
    K = max_bucket_load(unary, s, step, step_group, 1)
    assert K < max_bucket_load(unary, s, step, step_group, 2)
    assert seen["n_arcs"] == n_c + n_c * d + K * d


def test_penalty_arcs_are_exact_int64_beyond_float64_precision(monkeypatch):
    """The parallel arcs' costs r·Λ are computed in int64, never through float64: at scale 1 with
    Λ = 2⁵³ − 1 (inside the int64 guard and OR-Tools' cost range for 4 classes and 2 buckets),
    3Λ needs 55 bits and float64 would round it to 3Λ − 1."""
    from ortools.graph.python import min_cost_flow

    seen = {}

    class Spy(min_cost_flow.SimpleMinCostFlow):
        def add_arcs_with_capacity_and_unit_cost(self, tails, heads, caps, costs):
            seen["costs"] = np.asarray(costs)
            return super().add_arcs_with_capacity_and_unit_cost(tails, heads, caps, costs)

    monkeypatch.setattr(min_cost_flow, "SimpleMinCostFlow", Spy)
    lam = float(2**53 - 1)
    h = solve_class_codes(np.zeros((4, 2)), 1, lam, scale=1)
    assert h.sum(0).tolist() == [2, 2]
    sink = seen["costs"][-4 * 2:].reshape(4, 2)               # K = 4 arcs per bucket
    assert sink.dtype == np.int64 and sink[:, 0].tolist() == [0, 2**53 - 1, 2**54 - 2, 3 * (2**53 - 1)]
