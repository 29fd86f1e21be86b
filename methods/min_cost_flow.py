"""Exact sparse class codes by min-cost flow (Deep Hash Table, ICML'18, and its cascaded CVPR'19
variant), with OR-Tools' current Python API.

Problem (per mini-batch, classes i = 1..n_c with unaries u_i ∈ R^d):

    minimise   Σ_i −u_iᵀ h_i  +  λ_group · Σ_G Σ_q C(n_{G,q}, 2)  +  λ · Σ_q C(n_q, 2)
    subject to h_i ∈ {0,1}^d,  ‖h_i‖₁ = s,

where n_q = Σ_i h_i[q] counts the classes in bucket q and n_{G,q} those of parent group G (the
cascade's sibling penalty; without groups the second term is absent and this is the ICML'18
problem). The network (methods.md §2.4, §3.4): source → class (capacity s) → bucket, or → (group,
bucket) → bucket for classes whose group has ≥ 2 members, → sink; the ``C(n, 2)`` penalties are
convex costs made of parallel unit arcs costing 0, Λ, 2Λ, … , and min-cost integral flow fills the
cheapest first, so the optimum of the flow is the optimum of the problem.

Costs are integers: ``cost(i, q) = trunc(−V·u_i[q])`` and ``Λ = trunc(λ·V)`` with the scale
V = 10,000, both truncated toward zero exactly as the original code's ``int32`` casts (so the
solver is exact for these scaled, truncated costs; the float objective can differ by at most
n_c·s/V from its true optimum). Costs are int64 here and checked against overflow.
"""
from __future__ import annotations

import numpy as np

COST_SCALE = 10_000
_INT64_BUDGET = 2**62


def scaled_unary_costs(unaries: np.ndarray, scale: int = COST_SCALE) -> np.ndarray:
    """trunc(−scale·u) as int64: the arc costs of class i → bucket q."""
    return np.trunc(-scale * np.asarray(unaries, dtype=np.float64)).astype(np.int64)


def scaled_penalty(lam: float, scale: int = COST_SCALE) -> int:
    """Λ = trunc(λ·scale), the cost step of the parallel arcs of one C(n, 2) penalty."""
    if lam < 0:
        raise ValueError(f"pairwise penalty must be ≥ 0, got {lam}")
    return int(np.trunc(lam * scale))


def solve_class_codes(unaries: np.ndarray, s: int, lam: float, groups: np.ndarray | None = None,
                      lam_group: float = 0.0, scale: int = COST_SCALE) -> np.ndarray:
    """The exact minimiser h (n_c, d) uint8 of the problem in the module docstring.

    ``unaries`` (n_c, d) float; ``s`` active buckets per class (1 ≤ s ≤ d); ``lam`` the global
    penalty λ; ``groups`` (n_c,) int parent group of each class (None: no sibling term) with
    penalty ``lam_group``. Raises ValueError on infeasible input, OverflowError when the scaled
    costs could exceed int64 or the solver's cost range, RuntimeError if the solver does not
    report an optimum.
    """
    u = _checked_unaries(unaries, s)
    step, step_group = scaled_penalty(lam, scale), scaled_penalty(lam_group, scale)
    _check_int64_range(u, s, step, step_group, scale)
    unary = scaled_unary_costs(u, scale)
    layout = _GroupLayout.of(groups, u.shape[0])
    tails, heads, caps, costs, n_nodes = _flow_network(unary, s, step, step_group, layout)
    flows = _min_cost_flows(tails, heads, caps, costs, n_nodes, u.shape[0] * s, scale)
    n_c, d = u.shape
    return flows[n_c : n_c + n_c * d].reshape(n_c, d).astype(np.uint8)  # class arcs follow the n_c source arcs


def _checked_unaries(unaries: np.ndarray, s: int) -> np.ndarray:
    """``unaries`` as float64 (n_c, d); ValueError unless 2-D, finite and 1 ≤ s ≤ d."""
    u = np.asarray(unaries, dtype=np.float64)
    if u.ndim != 2:
        raise ValueError(f"unaries must be (n_classes, d), got shape {u.shape}")
    d = u.shape[1]
    if not 1 <= s <= d:
        raise ValueError(f"sparsity s must satisfy 1 ≤ s ≤ d = {d}, got {s}")
    if not np.isfinite(u).all():
        raise ValueError("unaries must be finite")
    return u


def _check_int64_range(u: np.ndarray, s: int, step: int, step_group: int, scale: int) -> None:
    """OverflowError when the total scaled cost could reach 2⁶² (checked in floating point, before
    any cast to int64 can wrap around): max|u|·scale·n_c·s + (Λ + Λ_group)·n_c²·d."""
    n_c, d = u.shape
    bound = float(np.abs(u).max(initial=0.0)) * scale * n_c * s + float(step + step_group) * n_c * n_c * d
    if bound >= _INT64_BUDGET:
        raise OverflowError(f"scaled costs up to {bound} overflow int64 (scale {scale}); rescale the unaries")


class _GroupLayout:
    """Which classes share a parent group: ``group_of`` (n_c,) group index, ``group_size`` per
    group, ``shared`` (n_c,) classes routed through (group, bucket) nodes (group of ≥ 2 members),
    ``shared_groups`` those groups' indices and ``gb_index`` each group's rank among them (-1)."""

    def __init__(self, group_of: np.ndarray, group_size: np.ndarray):
        self.group_of, self.group_size = group_of, group_size
        self.shared = group_size[group_of] >= 2
        self.shared_groups = np.flatnonzero(group_size >= 2)
        self.gb_index = np.full(len(group_size), -1)
        self.gb_index[self.shared_groups] = np.arange(len(self.shared_groups))

    @classmethod
    def of(cls, groups: np.ndarray | None, n_c: int) -> "_GroupLayout":
        """The layout of ``groups`` (n_c,) (None: every class alone, no sibling term)."""
        groups = np.arange(n_c) if groups is None else np.asarray(groups)
        if groups.shape != (n_c,):
            raise ValueError(f"groups must have shape ({n_c},), got {groups.shape}")
        _, group_of, group_size = np.unique(groups, return_inverse=True, return_counts=True)
        return cls(group_of, group_size)


def _flow_network(unary: np.ndarray, s: int, step: int, step_group: int, layout: _GroupLayout):
    """The arcs (tails, heads, capacities, unit costs: flat arrays) and the node count of the
    network in the module docstring. Nodes: source 0, classes 1..n_c, then one (group, bucket)
    node per shared group and bucket, then the d buckets, then the sink. Arcs in this order:
    source → class (n_c), class → bucket or (group, bucket) (n_c·d, row-major), (group, bucket) →
    bucket (|G| parallel arcs costing 0, Λ_group, 2Λ_group, …), bucket → sink (K parallel arcs
    costing 0, Λ, 2Λ, … with K = :func:`max_bucket_load`)."""
    n_c, d = unary.shape
    first_class = 1
    first_gb = first_class + n_c
    first_bucket = first_gb + len(layout.shared_groups) * d
    sink = first_bucket + d
    buckets = np.arange(d)
    tails, heads, caps, costs = [], [], [], []

    def arcs(t, h, c, w):
        tails.append(np.broadcast_to(t, np.shape(w)).ravel())
        heads.append(np.broadcast_to(h, np.shape(w)).ravel())
        caps.append(np.broadcast_to(c, np.shape(w)).ravel())
        costs.append(np.asarray(w).ravel())

    arcs(0, first_class + np.arange(n_c), s, np.zeros(n_c, np.int64))
    gb_node = first_gb + layout.gb_index[layout.group_of][:, None] * d + buckets
    arcs(first_class + np.arange(n_c)[:, None], np.where(layout.shared[:, None], gb_node, first_bucket + buckets),
         1, unary)
    for g in layout.shared_groups:
        r = np.arange(layout.group_size[g])[:, None]
        arcs(first_gb + layout.gb_index[g] * d + buckets[None, :], first_bucket + buckets[None, :], 1,
             np.broadcast_to(r * step_group, (layout.group_size[g], d)))
    r = np.arange(max_bucket_load(unary, s, step, step_group, layout.group_size.max(initial=1)))[:, None]
    arcs(first_bucket + buckets[None, :], sink, 1, np.broadcast_to(r * step, (len(r), d)))
    return (np.concatenate(tails), np.concatenate(heads), np.concatenate(caps), np.concatenate(costs), sink + 1)


def _min_cost_flows(tails, heads, caps, costs, n_nodes: int, supply: int, scale: int) -> np.ndarray:
    """The flow on every arc of a min-cost flow of ``supply`` units from node 0 to the last node
    (OR-Tools' SimpleMinCostFlow). OverflowError on BAD_COST_RANGE, RuntimeError on any other
    status than OPTIMAL."""
    # imported here: only training a sparse-code method needs OR-Tools, not the method registry
    from ortools.graph.python import min_cost_flow

    flow = min_cost_flow.SimpleMinCostFlow()
    flow.add_arcs_with_capacity_and_unit_cost(tails.astype(np.int32), heads.astype(np.int32),
                                              caps.astype(np.int64), costs.astype(np.int64))
    supplies = np.zeros(n_nodes, np.int64)
    supplies[0], supplies[-1] = supply, -supply
    flow.set_nodes_supplies(np.arange(n_nodes, dtype=np.int32), supplies)
    status = flow.solve()
    if status == flow.BAD_COST_RANGE:
        # OR-Tools' cost scaling multiplies costs by about twice the node count: it refuses ranges
        # our int64 guard lets through (measured: max |cost| × 2 (nodes + 3) must fit in int64)
        raise OverflowError(f"costs up to {int(np.abs(costs).max())} exceed the flow solver's "
                            f"cost range (scale {scale}); rescale the unaries")
    if status != flow.OPTIMAL:
        raise RuntimeError(f"min-cost flow did not reach an optimum (status {status})")
    return flow.flows(np.arange(len(tails)))


def max_bucket_load(cost: np.ndarray, s: int, step: int, step_group: int = 0, largest_group: int = 1) -> int:
    """An upper bound K on the classes any one bucket holds in every optimum, so the bucket → sink
    layer needs K parallel arcs instead of n_c (at 512×512, s = 4, λ = 1: 6 instead of 512).

    Exchange argument: in an optimum, moving a class i out of its bucket q (holding n_q classes)
    into a bucket q′ it does not use cannot lower the cost, so
    Λ·(n_q − 1 − n_q′) ≤ cost(i, q′) − cost(i, q) + Λ_group·(|G| − 1) ≤ R + Λ_group·(|G|_max − 1),
    with R the largest spread of one class's scaled costs. Some bucket q′ outside i's s buckets
    holds at most ⌊n_c·s / (d − s)⌋ classes, hence n_q ≤ 1 + ⌊n_c·s/(d − s)⌋ + ⌊(R + Λ_group·(|G|_max − 1)) / Λ⌋.
    With Λ = 0 (no global penalty) or s = d there is no useful bound: n_c."""
    n_c, d = cost.shape
    if step <= 0 or s >= d:
        return n_c
    spread = int((cost.max(1) - cost.min(1)).max(initial=0))
    bound = 1 + (n_c * s) // (d - s) + (spread + step_group * (int(largest_group) - 1)) // step
    return int(min(n_c, bound))


def objective(h: np.ndarray, unaries: np.ndarray, lam: float, groups: np.ndarray | None = None,
              lam_group: float = 0.0, scale: int = COST_SCALE) -> int:
    """The scaled integer objective Σ cost(i,q)·h + Λ·Σ_q C(n_q,2) + Λ_group·Σ_{G,q} C(n_{G,q},2)."""
    h = np.asarray(h, dtype=np.int64)
    value = int((scaled_unary_costs(unaries, scale) * h).sum())
    n_q = h.sum(0)
    value += scaled_penalty(lam, scale) * int((n_q * (n_q - 1) // 2).sum())
    if groups is not None:
        for g in np.unique(groups):
            n_gq = h[np.asarray(groups) == g].sum(0)
            value += scaled_penalty(lam_group, scale) * int((n_gq * (n_gq - 1) // 2).sum())
    return value
