"""Every ranking metric of a table of tie groups in one pass: the cumulative quantities are built
once per block of queries and every mAP variant, P@k, R@k and PR cut-off is read from them.

The definitions are those of :mod:`benchmark.metrics.ranking` (the one metric spec); this module
only shares work between them. Values are bit-identical to calling the per-metric functions one by
one, by construction: the per-metric functions convert a block of queries to float64, take
cumulative sums and cut the table to the columns that reach the cut-off k; here the conversion and
the cumulative sums are done once per block (they are exact: integer-valued floats below 2⁵³), and
each cut-off takes a *view* of the same columns the per-metric function would keep (the same
width, so every floating-point sum adds the same numbers in the same order), then runs the same
closed forms (``ranking._group_sums``, ``ranking._expected_ratio_straddled``,
``ranking._hit_probability``). Blocks of queries are those of ``ranking._per_row_blocks``;
they run on a small thread pool (numpy releases the GIL), each block's result independent of the
others.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from hashbench.benchmark.metrics import ranking

# Row offset of the flattened N_b (exact in float64 for up to 2²¹ rows of up to 2³² items).
_ROW_OFFSET = float(1 << 32)


@dataclass
class _Cut:
    """The attributes of ``ranking._Groups`` at one cut-off, as views of shared arrays."""

    k: int | None
    R: np.ndarray
    n: np.ndarray
    r: np.ndarray
    Nb: np.ndarray
    Rb: np.ndarray
    m: np.ndarray
    straddled: np.ndarray | None


class _Block:
    """One block of queries: validated float64 (n, r), N_b, R_b and R over the full width."""

    def __init__(self, n: np.ndarray, r: np.ndarray):
        if np.any(n < 0) or np.any(r < 0) or np.any(r > n):
            raise ValueError("tie groups need 0 ≤ r ≤ n")
        self.R = r.sum(1, dtype=np.float64)
        self.n = n.astype(np.float64)
        self.r = r.astype(np.float64)
        self.cum_n = np.cumsum(self.n, 1)
        self.Nb = self.cum_n - self.n
        self.Rb = np.cumsum(self.r, 1) - self.r
        self.ratio = None  # r / n, for the expected number retrieved at every cut-off
        self.scratch = None
        # N_b of every row, offset by row · 2³², as one sorted vector: one searchsorted per cut-off
        # counts the groups of each row that start before it (N_b is non-decreasing in a row).
        self.row_base = np.arange(n.shape[0], dtype=np.float64) * _ROW_OFFSET
        self.nb_sorted = (self.Nb + self.row_base[:, None]).reshape(-1)

    def width(self, k: int | None) -> int:
        """The number of columns ``ranking._Groups(n, r, k)`` keeps for this block:
        max(1, max over rows of #{g < cols : N_b,g < k}), cols = k + 2 when every row reaches
        rank k (or ends) within its first k + 2 groups, else all."""
        rows, g = self.n.shape
        if k is None or g == 0 or rows == 0:
            return g
        cols = g
        if g > k + 2:
            head = self.cum_n[:, k + 1]
            if np.all((head >= k) | (head == self.cum_n[:, -1])):
                cols = k + 2
        at = np.searchsorted(self.nb_sorted, self.row_base + min(k, _ROW_OFFSET - 1), side="left")
        reach = at - np.arange(rows) * g
        return max(int(np.minimum(reach, cols).max()), 1)

    def cut(self, k: int | None) -> _Cut:
        """``ranking._Groups(n, r, k)`` as views of this block's arrays."""
        w = self.width(k)
        n, r, nb = self.n[:, :w], self.r[:, :w], self.Nb[:, :w]
        m = n if k is None else np.clip(k - nb, 0.0, n)
        straddled = None if k is None else (m > 0) & (m < n)
        return _Cut(k, self.R, n, r, nb, self.Rb[:, :w], m, straddled)

    def retrieved(self, k: int) -> np.ndarray:
        """E[#relevant in the top k] under random ties: Σ_g (r_g / n_g) · clip(k − N_b, 0, n_g)
        over the kept columns (``ranking._group_sums`` at ``"expected"``), in a reused buffer."""
        if self.ratio is None:
            self.ratio = ranking._safe_div(self.r, self.n)
            self.scratch = np.empty(self.n.size)
        w = self.width(k)
        m = self.scratch[: self.n.shape[0] * w].reshape(self.n.shape[0], w)
        np.subtract(k, self.Nb[:, :w], out=m)
        np.clip(m, 0.0, self.n[:, :w], out=m)
        np.multiply(self.ratio[:, :w], m, out=m)
        return m.sum(1)


def _map_variants(b: _Block, k: int | None, variants: Sequence[dict[str, Any]]) -> list[np.ndarray]:
    """AP per query of each variant (options of ``ranking.average_precision``), sharing the group
    sums of each tie policy between the variants that use it."""
    t = b.cut(k)
    sums: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    active = ranking._active_groups(t)
    out = []
    for opts in variants:
        ties, den, empty = opts.get("ties", "expected"), opts.get("denominator", "relevant_retrieved"), opts.get("empty", "zero")
        if ties not in ranking.TIE_POLICIES or ties == "index":
            raise ValueError(f"the one-pass engine takes ties in expected/optimistic/pessimistic, got {ties!r}")
        if den not in ranking.DENOMINATORS or empty not in ranking.EMPTY_POLICIES:
            raise ValueError(f"unknown mAP variant {opts!r}")
        if ties not in sums:
            s_groups, retrieved = ranking._group_sums(t, ties, active)
            sums[ties] = (s_groups, s_groups.sum(1), retrieved)
        s_groups, s, retrieved = sums[ties]
        if den == "all_relevant":
            ap = ranking._safe_div(s, t.R)
        elif den == "min_k_all_relevant":
            ap = ranking._safe_div(s, t.R if t.k is None else np.minimum(t.k, t.R))
        else:
            ap = ranking._safe_div(s, retrieved)
            if ties == "expected" and t.k is not None:
                ranking._expected_ratio_straddled(t, s_groups, ap)
        if empty == "skip":
            hit = ranking._hit_probability(t, ties, retrieved)
            ap = np.where(hit > 0, ranking._safe_div(ap, hit), np.nan)
        elif empty == "skip_no_relevant_in_database":
            ap = np.where(t.R > 0, ap, np.nan)
        out.append(ap)
    return out


def _block_metrics(n, r, map_at, variants, ks, radius) -> dict[str, Any]:
    b = _Block(n, r)
    out: dict[str, Any] = {"ap": _map_variants(b, map_at, variants), "precision": {}, "recall": {}}
    for k in ks:
        retrieved = b.retrieved(k)
        out["precision"][k] = retrieved / float(k)
        with np.errstate(divide="ignore", invalid="ignore"):
            out["recall"][k] = np.where(b.R > 0, retrieved / np.where(b.R > 0, b.R, 1.0), np.nan)
    if radius is not None:
        got = b.n[:, : radius + 1].sum(1)
        hits = b.r[:, : radius + 1].sum(1)
        out["radius"] = np.where(got > 0, ranking._safe_div(hits, got), 0.0)
    return out


def ranking_table(n, r, map_at: int | None, variants: Sequence[dict[str, Any]], ks: Sequence[int],
                  radius: int | None = None, threads: int = 1) -> dict[str, Any]:
    """Every ranking metric of the tie groups ``(n, r)`` (int, (Q, G); see ``ranking``), per query.

    Returns a dict: ``"ap"``: a list of (Q,) arrays, ``ranking.average_precision(n, r, k=map_at,
    **variants[i])`` (ties ``"expected"``, ``"optimistic"`` or ``"pessimistic"``); ``"precision"``,
    ``"recall"``: dicts k → (Q,), ``ranking.precision_at_k`` and ``ranking.recall_at_k`` (random
    ties) for every k in ``ks``; with ``radius``, ``"radius"``: ``ranking.precision_within_radius(n,
    r, radius)`` (``empty="zero"``). Every value equals the per-metric function's bit for bit.
    ``threads``: blocks of queries evaluated concurrently (results do not depend on it).
    """
    n, r = np.asarray(n), np.asarray(r)
    if n.ndim != 2 or n.shape != r.shape:
        raise ValueError(f"n and r must be 2-D of one shape, got {n.shape} and {r.shape}")
    ks = sorted({int(k) for k in ks})
    if any(k < 1 for k in ks) or (map_at is not None and (int(map_at) != map_at or map_at < 1)):
        raise ValueError("cut-offs must be positive integers")
    map_at = None if map_at is None else int(map_at)
    step = max(1, ranking._ROW_BLOCK_ELEMS // max(n.shape[1], 1))
    starts = range(0, n.shape[0], step) if n.shape[0] > step else [0]
    stop = (lambda s: s + step) if n.shape[0] > step else (lambda s: n.shape[0])
    job = lambda s: _block_metrics(n[s:stop(s)], r[s:stop(s)], map_at, variants, ks, radius)  # noqa: E731
    if threads > 1 and len(starts) > 1:
        with ThreadPoolExecutor(threads) as pool:
            parts = list(pool.map(job, starts))
    else:
        parts = [job(s) for s in starts]
    out: dict[str, Any] = {
        "ap": [np.concatenate([p["ap"][i] for p in parts]) for i in range(len(variants))],
        "precision": {k: np.concatenate([p["precision"][k] for p in parts]) for k in ks},
        "recall": {k: np.concatenate([p["recall"][k] for p in parts]) for k in ks},
    }
    if radius is not None:
        out["radius"] = np.concatenate([p["radius"] for p in parts])
    return out
