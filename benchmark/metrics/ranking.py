"""Ranking metrics (mAP@k with named variants, P@k, R@k, hit rate, PR curves) from tie groups.

The one metric spec of hashbench
--------------------------------
Every ranking of the database for a query q is given as a sequence of **tie groups** in rank
order: group g holds ``n[q, g]`` database items, ``r[q, g]`` of them relevant. Items of one group
are tied (same Hamming distance, same score). Relevance is "shares at least one label":
``rel(q, x) = [y_q · y_x > 0]`` (single labels: ``y_q == y_x``). Groups with ``n = 0`` are allowed
and skipped. All metrics are pure functions of the integer arrays ``(n, r)`` of shape (Q, G).

Notation used in every docstring below, per query: ``N_b``, ``R_b`` the number of items and of
relevant items in the groups before group g; ``R`` = Σ_g r (relevant items in the database);
the top k keeps ``m_g = clip(k − N_b, 0, n_g)`` items of group g (k = None: the whole database,
``m_g = n_g``). At most one group is cut by k (``0 < m_g < n_g``): the *straddling* group.

Tie policies (order of the items inside a group):

* ``"expected"`` (default): the expectation of the metric over a uniformly random order inside
  every group (McSherry & Najork, ECIR 2008), computed in closed form;
* ``"optimistic"`` / ``"pessimistic"``: relevant items first / last inside every group;
* ``"index"``: ascending database index. This needs the actual order, so it is computed from
  singleton groups built by :func:`index_order_groups`; with ``ties="index"`` the metric functions
  check that every group reaching the top k has at most one item.

Building groups: :func:`hamming_tie_groups` (±1 codes, group g = Hamming distance g),
:func:`score_tie_groups` (real scores, groups = runs of equal scores), :func:`index_order_groups`
(stable order by database index).
"""
from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor
import numpy as np
import torch
from scipy.special import digamma, gammaln

DENOMINATORS = ("relevant_retrieved", "all_relevant", "min_k_all_relevant")
EMPTY_POLICIES = ("zero", "skip", "skip_no_relevant_in_database")
TIE_POLICIES = ("expected", "optimistic", "pessimistic", "index")

# Query × database pairs per step: CPU tiles of ~2 MB float32 (L2-resident), CUDA chunks of ~512 MB.
_CPU_CHUNK_ELEMS = 1 << 21
_CPU_CHUNK_QUERIES = 64
_CPU_TILE_ELEMS = 1 << 19
_CUDA_CHUNK_ELEMS = 1 << 27
# torch.bincount on CUDA uses a shared-memory histogram when the bins fit in ~48 KB: chunks of
# ≤ 40 queries at 64 bits. Measured on an H100 (20k × 500k pairs, 64 bits): 0.32 s vs 2.2 s with
# large chunks; for small databases large chunks win (launch overhead), hence the size switch.
_CUDA_SHARED_HIST_BYTES = 40 * 1024
_CUDA_SHARED_MIN_ELEMS = 1 << 22
# (query, count) pairs evaluated at once for the hypergeometric expectation.
_PAIR_BATCH = 1 << 21
# Group-table elements per block of queries in the metric functions (keeps temporaries ~8 MB).
_ROW_BLOCK_ELEMS = 1 << 20


# ----------------------------------------------------------------------------------------------
# Inputs: tensors, labels, relevance
# ----------------------------------------------------------------------------------------------

def _tensor(x, device=None) -> torch.Tensor:
    """``x`` as a torch tensor (numpy arrays are shared, not copied), moved to ``device`` if given."""
    t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))
    return t if device is None else t.to(device)


def _class_ids(y: torch.Tensor) -> torch.Tensor | None:
    """Class ids (int64) of single-label data: 1-D ints, or 2-D 0/1 rows with exactly one 1;
    None for anything else (multi-label)."""
    if y.ndim == 1:
        if y.is_floating_point() or y.is_complex():
            raise ValueError("1-D labels must be integer class ids")
        return y.long()
    if y.ndim != 2:
        raise ValueError(f"labels must be 1-D class ids or 2-D multi-hot, got shape {tuple(y.shape)}")
    if y.shape[1] > 0 and bool(((y == 0) | (y == 1)).all()) and bool((y.sum(1) == 1).all()):
        return y.argmax(1)
    return None


class _Labels:
    """Query and database labels in the form relevance is computed from: class ids when both
    sides are single-label, else float multi-hot matrices (relevance = dot product > 0)."""

    def __init__(self, q_labels, db_labels, device):
        yq, yd = _tensor(q_labels, device), _tensor(db_labels, device)
        cq, cd = _class_ids(yq), _class_ids(yd)
        self.single = cq is not None and cd is not None
        if self.single:
            self.q, self.db = cq, cd
            return
        if yq.ndim == 2 and yd.ndim == 2 and yq.shape[1] != yd.shape[1]:
            raise ValueError(f"label widths differ: {yq.shape[1]} vs {yd.shape[1]}")
        width = yq.shape[1] if yq.ndim == 2 else yd.shape[1]
        self.q, self.db = (self._multi_hot(y, width) for y in (yq, yd))

    @staticmethod
    def _multi_hot(y: torch.Tensor, width: int) -> torch.Tensor:
        if y.ndim == 1:
            y = torch.nn.functional.one_hot(y.long(), width)
        if bool((y < 0).any()):
            raise ValueError("multi-hot labels must be non-negative")
        return y.float()

    def relevance(self, rows) -> torch.Tensor:
        """Boolean relevance (len(rows), N) of the queries ``rows`` to every database item."""
        if self.single:
            return self.q[rows][:, None] == self.db[None, :]
        return (self.q[rows] @ self.db.T) > 0

    def pair_relevance(self, rows, items) -> torch.Tensor:
        """Boolean relevance of query ``rows[i]`` to database item ``items[i]``."""
        if self.single:
            return self.q[rows] == self.db[items]
        return (self.q[rows] * self.db[items]).sum(1) > 0


def _check_pm1(codes: torch.Tensor, name: str) -> None:
    if codes.ndim != 2:
        raise ValueError(f"{name} must be 2-D (items × bits), got shape {tuple(codes.shape)}")
    if not bool(((codes == 1) | (codes == -1)).all()):
        raise ValueError(f"{name} must contain only ±1 (note: sign(0) = 0 is not a valid bit)")


def _self_exclusion(self_exclusion, n_queries: int, n_db: int) -> np.ndarray | None:
    """Validated database index of each query's own item (−1: not in the database)."""
    if self_exclusion is None:
        return None
    ex = np.asarray(self_exclusion.cpu() if isinstance(self_exclusion, torch.Tensor) else self_exclusion)
    ex = ex.astype(np.int64).reshape(-1)
    if ex.shape[0] != n_queries:
        raise ValueError(f"self_exclusion has {ex.shape[0]} entries for {n_queries} queries")
    if ex.size and (ex.max() >= n_db or ex.min() < -1):
        raise ValueError("self_exclusion entries must be −1 or a database index")
    return ex


# ----------------------------------------------------------------------------------------------
# Tie groups
# ----------------------------------------------------------------------------------------------

def hamming_tie_groups(q_codes, db_codes, q_labels, db_labels, self_exclusion=None,
                       chunk_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Tie groups of the Hamming ranking of ±1 codes: group g = all items at Hamming distance g.

    ``q_codes`` (Q, K), ``db_codes`` (N, K): ±1 values (numpy or torch, CPU or CUDA; computed on the
    device of ``q_codes``). Labels: (·,) int class ids or (·, C) multi-hot; relevance = share ≥ 1
    label. ``self_exclusion`` (Q,): database index of the query itself, or −1; that item is removed
    from its query's ranking. Returns int64 numpy ``(n, r)`` of shape (Q, K + 1) with
    ``n[q, d] = #{x : d_H(q, x) = d}`` and ``r[q, d] = #{x relevant : d_H(q, x) = d}``.

    How: for a chunk of queries and a tile of the database, the float32 product of ``−b_q/2`` and
    ``b_x`` plus ``K/2 + i·2(K+1)`` (i = row in the chunk) is the exact integer bin
    ``i·2(K+1) + d``, ``d = (K − ⟨b_q, b_x⟩)/2``; relevant pairs get ``+(K+1)``, then one
    ``torch.bincount`` counts the bins. The matrix product only sees ±1/2, ±1 and 0/1 entries with
    float32 accumulation, so it stays exact under TF32 or bf16 ``float32_matmul_precision`` settings.
    Single-label data is sorted by class, so relevance is one slice addition per tile; multi-label
    data adds ``(K+1)·[Y_q Y_xᵀ > 0]``. On CPU, tiles of ~2 MB run on one single-threaded worker per
    intra-op thread (bincount is serial); on CUDA whole chunks run on the device. Extra memory: a
    few tiles on CPU, O(chunk_size · N) on CUDA.
    """
    q, db, labels = _hamming_inputs(q_codes, db_codes, q_labels, db_labels)
    n_q, n_bits = q.shape
    excl = _self_exclusion(self_exclusion, n_q, db.shape[0])
    chunk_size = _hamming_chunk_size(chunk_size, n_bits, db.shape[0], q.device)
    jobs, db_sorted = _hamming_jobs(labels, db, n_q, chunk_size)
    hist = torch.zeros(n_q, 2 * (n_bits + 1), dtype=torch.int64, device=q.device)
    count = _HammingCounter(q, db_sorted, labels, chunk_size, hist)
    _run_jobs(count, jobs, parallel=q.device.type == "cpu")
    if excl is not None and (excl >= 0).any():
        _remove_self_matches(hist, q, db, labels, excl)
    hist = hist.cpu().numpy()
    r = hist[:, n_bits + 1:]
    return hist[:, : n_bits + 1] + r, r.copy()


def _hamming_inputs(q_codes, db_codes, q_labels, db_labels):
    """Codes as tensors on the queries' device, checked ±1 and of equal length, and their labels."""
    q = _tensor(q_codes)
    db = _tensor(db_codes, q.device)
    _check_pm1(q, "q_codes")
    _check_pm1(db, "db_codes")
    if q.shape[1] != db.shape[1]:
        raise ValueError(f"code lengths differ: {q.shape[1]} vs {db.shape[1]}")
    labels = _Labels(q_labels, db_labels, q.device)
    if labels.q.shape[0] != q.shape[0] or labels.db.shape[0] != db.shape[0]:
        raise ValueError("labels and codes disagree on the number of items")
    return q, db, labels


def _hamming_chunk_size(chunk_size: int | None, n_bits: int, n_db: int, device) -> int:
    """Queries per job: the CPU default, or on CUDA what fits the histogram/element budgets;
    capped so that bin indices stay exact float32 integers (chunk · width < 2^24)."""
    width = 2 * (n_bits + 1)
    if chunk_size is None and device.type == "cpu":
        chunk_size = _CPU_CHUNK_QUERIES
    elif chunk_size is None:
        shared_rows = max(1, _CUDA_SHARED_HIST_BYTES // (width * 8))
        big = shared_rows * n_db >= _CUDA_SHARED_MIN_ELEMS
        chunk_size = shared_rows if big else max(1, _CUDA_CHUNK_ELEMS // max(n_db, 1))
    return int(max(1, min(chunk_size, (1 << 24) // width - 1)))


def _hamming_jobs(labels: _Labels, db: torch.Tensor, n_q: int, chunk_size: int):
    """Jobs ``(query rows, lo, hi)`` and the database they index. Single-label: the database sorted
    by class and each job's queries of one class, whose relevant items are the slice ``[lo, hi)``;
    multi-label: consecutive query chunks over the database as given (lo = hi = 0)."""
    if not labels.single:
        return [(torch.arange(s, min(n_q, s + chunk_size), device=db.device), 0, 0)
                for s in range(0, n_q, chunk_size)], db
    db_order = torch.argsort(labels.db, stable=True)
    db_classes = labels.db[db_order]
    q_order = torch.argsort(labels.q, stable=True)
    classes, counts = torch.unique_consecutive(labels.q[q_order], return_counts=True)
    lo = torch.searchsorted(db_classes, classes, right=False).tolist()
    hi = torch.searchsorted(db_classes, classes, right=True).tolist()
    jobs, start = [], 0
    for c_lo, c_hi, cnt in zip(lo, hi, counts.tolist()):
        for s in range(start, start + cnt, chunk_size):
            jobs.append((q_order[s:min(start + cnt, s + chunk_size)], c_lo, c_hi))
        start += cnt
    return jobs, db[db_order]


class _HammingCounter:
    """Callable on one job: adds its queries' (distance, relevance) bin counts into ``hist`` rows."""

    def __init__(self, q, db_sorted, labels: _Labels, chunk_size: int, hist: torch.Tensor):
        self.n_bits, self.n_db = q.shape[1], db_sorted.shape[0]
        self.width, self.labels, self.hist = 2 * (self.n_bits + 1), labels, hist
        on_cpu = q.device.type == "cpu"
        self.tile = max(1024, _CPU_TILE_ELEMS // chunk_size) if on_cpu else max(self.n_db, 1)
        self.a = q.float().mul_(-0.5)
        self.b = db_sorted.float().T.contiguous()
        rows = torch.arange(chunk_size, device=q.device, dtype=torch.float32)
        self.offsets = (self.n_bits / 2.0 + self.width * rows)[:, None]

    def __call__(self, spec) -> None:
        rows, c_lo, c_hi = spec
        m, relevant_bin = len(rows), self.n_bits + 1
        a_rows = self.a[rows]
        counts = torch.zeros(m * self.width, dtype=torch.int64, device=self.a.device)
        for t in range(0, self.n_db, self.tile):
            u = min(self.n_db, t + self.tile)
            bins = (a_rows @ self.b[:, t:u]).add_(self.offsets[:m])
            if self.labels.single:
                if min(c_hi, u) > max(c_lo, t):
                    bins[:, max(c_lo, t) - t:min(c_hi, u) - t] += relevant_bin
            else:
                shared = (self.labels.q[rows] @ self.labels.db[t:u].T).gt_(0)
                bins.add_(shared, alpha=relevant_bin)
            counts += torch.bincount(bins.to(torch.int32).view(-1), minlength=m * self.width)
        self.hist[rows] = counts.view(m, self.width)


def _run_jobs(run, jobs: list, parallel: bool) -> None:
    """``run(job)`` for every job; on CPU with several jobs and intra-op threads, one
    single-threaded worker per thread (bincount is serial, so this beats intra-op parallelism:
    measured ~1.7× on 2 cores); the thread count is restored in any case."""
    threads = torch.get_num_threads()
    if not (parallel and len(jobs) > 1 and threads > 1):
        for spec in jobs:
            run(spec)
        return

    def worker(spec):
        torch.set_num_threads(1)  # per pool thread with OpenMP; restored below in any case
        run(spec)

    try:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(worker, jobs))
    finally:
        torch.set_num_threads(threads)


def _remove_self_matches(hist: torch.Tensor, q, db, labels: _Labels, excl: np.ndarray) -> None:
    """Subtract each excluded (query, own database item) pair from its distance/relevance bin."""
    n_bits = q.shape[1]
    rows = torch.from_numpy(np.nonzero(excl >= 0)[0]).to(q.device)
    items = torch.from_numpy(excl[excl >= 0]).to(q.device)
    dist = (n_bits - (q[rows].long() * db[items].long()).sum(1)) // 2
    rel = labels.pair_relevance(rows, items).long()
    hist[rows, dist + (n_bits + 1) * rel] -= 1


def _score_chunks(scores, n_q: int, chunk_size: int | None, n_db_hint: int | None):
    """Yield (start, stop, tensor chunk of scores) for an array/tensor or a callable(start, stop)."""
    if chunk_size is None:
        chunk_size = max(1, _CPU_CHUNK_ELEMS // max(n_db_hint or 1, 1))
    for s in range(0, n_q, chunk_size):
        e = min(n_q, s + chunk_size)
        block = scores(s, e) if callable(scores) else scores[s:e]
        block = _tensor(block)
        if block.ndim != 2 or block.shape[0] != e - s:
            raise ValueError(f"score chunk for queries {s}:{e} has shape {tuple(block.shape)}")
        if block.is_floating_point() and bool(torch.isnan(block).any()):
            raise ValueError("scores contain NaN")
        yield s, e, block


def _pad_columns(blocks: list[np.ndarray]) -> np.ndarray:
    """The blocks stacked by rows, each zero-padded on the right to the widest (one copy each)."""
    if not blocks:
        return np.zeros((0, 1), dtype=np.int64)
    width = max(b.shape[1] for b in blocks)
    out = np.zeros((sum(b.shape[0] for b in blocks), width), dtype=np.result_type(*blocks))
    start = 0
    for b in blocks:
        out[start:start + b.shape[0], : b.shape[1]] = b
        start += b.shape[0]
    return out


def _truncate_to_k(n: torch.Tensor, r: torch.Tensor, k: int | None):
    """Keep the groups up to the one holding rank k, merge all later groups into one tail group."""
    if k is None:
        return n, r
    reach = (n.cumsum(1) < k).sum(1).clamp_(max=n.shape[1] - 1)  # index of the group holding rank k
    width = int(reach.max()) + 1
    cols = torch.arange(width, device=n.device)[None, :]
    keep = cols <= reach[:, None]
    n_keep = torch.where(keep, n[:, :width], 0)
    r_keep = torch.where(keep, r[:, :width], 0)
    n_tail = (n.sum(1) - n_keep.sum(1))[:, None]
    r_tail = (r.sum(1) - r_keep.sum(1))[:, None]
    return torch.cat([n_keep, n_tail], 1), torch.cat([r_keep, r_tail], 1)


def score_tie_groups(scores, q_labels, db_labels, higher_is_better: bool = True, self_exclusion=None,
                     k: int | None = None, chunk_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Tie groups of a ranking by real-valued scores: groups are runs of exactly equal scores.

    ``scores``: (Q, N) numpy/torch array, or a callable ``scores(start, stop)`` returning the rows
    ``start:stop``. Items are ranked by decreasing score (increasing if ``higher_is_better`` is
    False); each distinct score value of a query forms one group. Labels and ``self_exclusion`` as
    in :func:`hamming_tie_groups` (an excluded item leaves an empty group if its score was unique).
    Returns int64 numpy ``(n, r)`` of shape (Q, G), G = the largest number of distinct scores of a
    query, zero-padded on the right. Memory: O(Q · G) for the result — with ``k`` set, the groups
    after the one holding rank k are merged into one tail group (metrics at cut-offs ≤ k and
    ``denominator="all_relevant"`` are unchanged), so G ≤ k + 1.
    """
    labels = _Labels(q_labels, db_labels, torch.device("cpu"))
    n_q = labels.q.shape[0]
    n_db = labels.db.shape[0]
    excl = _self_exclusion(self_exclusion, n_q, n_db)
    out_n, out_r = [], []
    for s, e, block in _score_chunks(scores, n_q, chunk_size, n_db):
        if block.shape[1] != n_db:
            raise ValueError(f"scores have {block.shape[1]} columns for {n_db} database items")
        m = e - s
        block = block.cpu()
        vals, order = torch.sort(block, dim=1, descending=higher_is_better)
        new = torch.ones(vals.shape, dtype=torch.bool)
        new[:, 1:] = vals[:, 1:] != vals[:, :-1]
        gid = new.cumsum(1).sub_(1)
        rel = labels.relevance(torch.arange(s, e)).gather(1, order)
        valid = torch.ones(m, n_db, dtype=torch.bool)
        if excl is not None:
            rows = np.nonzero(excl[s:e] >= 0)[0]
            valid[torch.from_numpy(rows), torch.from_numpy(excl[s:e][rows])] = False
        valid = valid.gather(1, order)
        width = int(gid[:, -1].max()) + 1 if n_db else 1
        flat = (gid + torch.arange(m)[:, None] * width).view(-1)
        n = torch.zeros(m * width, dtype=torch.int64).scatter_add_(0, flat, valid.view(-1).long())
        r = torch.zeros(m * width, dtype=torch.int64).scatter_add_(0, flat, (valid & rel).view(-1).long())
        n, r = _truncate_to_k(n.view(m, width), r.view(m, width), k)
        out_n.append(n.numpy())
        out_r.append(r.numpy())
    return _pad_columns(out_n), _pad_columns(out_r)


def index_order_groups(scores, q_labels, db_labels, higher_is_better: bool = True, self_exclusion=None,
                       k: int | None = None, chunk_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Singleton groups of the ranking by score with ties broken by ascending database index
    (a stable sort): the input of every metric with ``ties="index"``.

    Arguments as in :func:`score_tie_groups` (for Hamming codes pass ``scores = q @ dbᵀ``, higher is
    better). Returns ``(n, r)`` of shape (Q, L + 1): ``n[q, i] = 1``, ``r[q, i] = rel`` of the item at
    rank i for the first L = min(k, N) ranks (L = N when k is None; one more rank when
    ``self_exclusion`` is given, the excluded item having ``n = 0``), then one tail group with all
    remaining items (so recall and ``all_relevant`` stay exact).
    """
    labels = _Labels(q_labels, db_labels, torch.device("cpu"))
    n_q = labels.q.shape[0]
    n_db = labels.db.shape[0]
    excl = _self_exclusion(self_exclusion, n_q, n_db)
    length = n_db if k is None else min(n_db, int(k) + (excl is not None))
    out_n, out_r = [], []
    for s, e, block in _score_chunks(scores, n_q, chunk_size, n_db):
        if block.shape[1] != n_db:
            raise ValueError(f"scores have {block.shape[1]} columns for {n_db} database items")
        m = e - s
        _, order = torch.sort(block.cpu(), dim=1, descending=higher_is_better, stable=True)
        rel = labels.relevance(torch.arange(s, e))
        valid = torch.ones(m, n_db, dtype=torch.bool)
        if excl is not None:
            rows = np.nonzero(excl[s:e] >= 0)[0]
            valid[torch.from_numpy(rows), torch.from_numpy(excl[s:e][rows])] = False
        top = order[:, :length]
        n = valid.gather(1, top).long()
        r = (valid & rel).gather(1, top).long()
        n_tail = (valid.sum(1) - n.sum(1))[:, None]
        r_tail = ((valid & rel).sum(1) - r.sum(1))[:, None]
        out_n.append(torch.cat([n, n_tail], 1).numpy())
        out_r.append(torch.cat([r, r_tail], 1).numpy())
    return _pad_columns(out_n), _pad_columns(out_r)


# ----------------------------------------------------------------------------------------------
# Metric core: per-group sums under each tie policy
# ----------------------------------------------------------------------------------------------

def _harmonic_diff(hi, lo):
    """H_hi − H_lo = Σ_{lo < i ≤ hi} 1/i for integer-valued float arrays hi ≥ lo ≥ 0 (same shape):
    1/hi when hi = lo + 1, else digamma(hi + 1) − digamma(lo + 1)."""
    hi = np.asarray(hi, dtype=np.float64)
    lo = np.asarray(lo, dtype=np.float64)
    out = np.zeros(hi.shape)
    one = hi == lo + 1.0
    out[one] = 1.0 / hi[one]
    more = hi > lo + 1.0
    out[more] = digamma(hi[more] + 1.0) - digamma(lo[more] + 1.0)
    return out


def _hypergeom_pmf(x, n, r, m, row=None):
    """P(X = x) for X ~ Hypergeom(population n, r successes, m draws), for x in the support
    [max(0, m − n + r), min(r, m)], as exp(log C(r, x) + log C(n−r, m−x) − log C(n, m)) with
    ``gammaln`` (vectorised and ~100× faster than ``scipy.stats.hypergeom.pmf``; agrees with it to
    ~1e-10 relative for populations up to 6·10⁴, tested). With ``row`` given, ``n, r, m`` are per
    row and x[i] belongs to row[i] (the x-free terms are computed once per row)."""
    const = gammaln(r + 1.0) + gammaln(n - r + 1.0) - gammaln(n + 1.0) + gammaln(m + 1.0) + gammaln(n - m + 1.0)
    if row is not None:
        const, r, n, m = const[row], r[row], n[row], m[row]
    return np.exp(const - gammaln(x + 1.0) - gammaln(r - x + 1.0) - gammaln(m - x + 1.0) - gammaln(n - r - m + x + 1.0))


def _safe_div(a, b):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b > 0, a / np.where(b > 0, b, 1.0), 0.0)


class _Groups:
    """Validated float64 view of (n, r) with the cut-off quantities N_b, R_b, m (see module doc);
    columns that cannot reach the top k are dropped (R keeps every column)."""

    def __init__(self, n, r, k):
        n = np.asarray(n)
        r = np.asarray(r)
        if n.ndim != 2 or n.shape != r.shape:
            raise ValueError(f"n and r must be 2-D of one shape, got {n.shape} and {r.shape}")
        if np.any(n < 0) or np.any(r < 0) or np.any(r > n):
            raise ValueError("tie groups need 0 ≤ r ≤ n")
        if k is not None and (int(k) != k or k < 1):
            raise ValueError(f"k must be a positive integer or None, got {k!r}")
        self.k = None if k is None else int(k)
        self.R = r.sum(1, dtype=np.float64)
        if self.k is not None and n.shape[1] > self.k + 2:
            # cheap path for wide arrays (one group per score): the first k + 2 columns suffice when
            # every row reaches rank k in them or has nothing after them
            head = n[:, : self.k + 2].sum(1)
            if np.all((head >= self.k) | (head == n.sum(1))):
                n, r = n[:, : self.k + 2], r[:, : self.k + 2]
        n = n.astype(np.float64)
        r = r.astype(np.float64)
        cum_n = np.cumsum(n, 1)
        if self.k is not None and n.shape[1] > 0 and n.shape[0] > 0:
            reach = ((cum_n - n) < self.k).sum(1)  # groups starting inside the top k (a prefix)
            width = max(int(reach.max()), 1)
            n, r, cum_n = n[:, :width], r[:, :width], cum_n[:, :width]
        self.n, self.r = n, r
        self.Nb = cum_n - n
        self.Rb = np.cumsum(r, 1) - r
        self.m = n if self.k is None else np.clip(self.k - self.Nb, 0.0, n)
        # the group cut by k (none when k is None)
        self.straddled = None if self.k is None else (self.m > 0) & (self.m < n)


def _active_groups(t: _Groups):
    """The groups that add to S (r > 0 and m > 0): their flat (row-major) indices in a (Q, G)
    table and their (n, r, m, N_b, R_b)."""
    act = np.flatnonzero((t.r > 0) & (t.m > 0))
    pick = lambda a: np.ascontiguousarray(a).reshape(-1).take(act)  # noqa: E731
    return act, pick(t.n), pick(t.r), pick(t.m), pick(t.Nb), pick(t.Rb)


def _group_sums(t: _Groups, ties: str, active=None):
    """Per group, S = Σ over relevant items kept in the top k of (precision at their rank), shape
    (Q, G); per query, the number of relevant items in the top k, shape (Q,); both expectations
    under the tie policy. ``active``: :func:`_active_groups` of ``t``, when already computed."""
    s = np.zeros(t.n.shape)
    act, n, r, m, Nb, Rb = _active_groups(t) if active is None else active
    if ties == "expected":
        # E[S] = Σ_{t=1..m} (r/n)(R_b + 1 + (t−1)(r−1)/(n−1)) / (N_b + t)
        #      = (r/n)[(R_b + 1 − β(N_b + 1))(H_{N_b+m} − H_{N_b}) + β m],  β = (r−1)/(n−1) (0 if n=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            beta = np.where(n > 1, (r - 1.0) / np.where(n > 1, n - 1.0, 1.0), 0.0)
        s.reshape(-1)[act] = (r / n) * ((Rb + 1.0 - beta * (Nb + 1.0)) * _harmonic_diff(Nb + m, Nb) + beta * m)
        return s, t.R if t.k is None else (_safe_div(t.r, t.n) * t.m).sum(1)
    if ties in ("optimistic", "index"):
        # relevant at group positions 1..j, j = min(r, m):  Σ_{t≤j} (R_b+t)/(N_b+t)
        #      = j + (R_b − N_b)(H_{N_b+j} − H_{N_b})
        j = np.minimum(r, m)
        s.reshape(-1)[act] = j + (Rb - Nb) * _harmonic_diff(Nb + j, Nb)
        return s, t.R if t.k is None else np.minimum(t.r, t.m).sum(1)
    if ties == "pessimistic":
        # relevant at group positions n−r+1..n, kept up to m: c = max(0, m − (n − r)) of them,
        # Σ_{t=n−r+1..m} (R_b + t − (n−r))/(N_b + t) = c + (R_b + r − n − N_b)(H_{N_b+m} − H_{N_b+n−r})
        c = np.maximum(m - (n - r), 0.0)
        start = Nb + n - r
        s.reshape(-1)[act] = np.where(c > 0, c + (Rb + r - n - Nb) * _harmonic_diff(np.maximum(Nb + m, start), start), 0.0)
        return s, t.R if t.k is None else np.maximum(t.m - (t.n - t.r), 0.0).sum(1)
    raise ValueError(f"ties must be one of {TIE_POLICIES}, got {ties!r}")


def _check_ties(t: _Groups, ties: str) -> None:
    if ties not in TIE_POLICIES:
        raise ValueError(f"ties must be one of {TIE_POLICIES}, got {ties!r}")
    if ties == "index" and np.any((t.m > 0) & (t.n > 1)):
        raise ValueError('ties="index" needs singleton groups within the top k: build them with '
                         "index_order_groups()")


def _straddle(t: _Groups):
    """Rows with a straddling group and, for each, that group's (n, r, m, N_b, R_b) and column."""
    if t.straddled is None:  # k = None: no group is cut
        rows = col = np.zeros(0, dtype=np.int64)
    else:
        rows = np.nonzero(t.straddled.any(1))[0]
        col = np.argmax(t.straddled[rows], 1)
    pick = lambda a: a[rows, col]  # noqa: E731
    return rows, col, pick(t.n), pick(t.r), pick(t.m), pick(t.Nb), pick(t.Rb)


def _hit_probability(t: _Groups, ties: str, retrieved: np.ndarray) -> np.ndarray:
    """P(at least one relevant item in the top k) under the tie policy."""
    if ties != "expected" or t.k is None:
        return (retrieved > 0).astype(np.float64)
    full = t.m == t.n
    p = ((t.r * full).sum(1) > 0).astype(np.float64)
    rows, _, n, r, m, _, _ = _straddle(t)
    miss = p[rows] == 0
    # P(none of the m kept items is relevant) = C(n−r, m)/C(n, m), hypergeometric pmf at 0.
    none = m[miss] <= n[miss] - r[miss]
    pmf0 = np.zeros(int(miss.sum()))
    pmf0[none] = _hypergeom_pmf(0.0, n[miss][none], r[miss][none], m[miss][none])
    p[rows[miss]] = 1.0 - pmf0
    return p


def _expected_ratio_straddled(t: _Groups, s_groups: np.ndarray, out: np.ndarray) -> None:
    """E[S / (relevant in top k)] for the rows with a straddling group (random ties), written into
    ``out``. X = relevant among the m kept items of the straddling group ~ Hypergeom(n, r, m);
    given X = x the kept part is a uniformly ordered group of m items with x relevant, so
    E[S | x] = S_before + (x/m)[(R_b + 1 − β_x(N_b+1))(H_{N_b+m} − H_{N_b}) + β_x m],
    β_x = (x−1)/(m−1), and E[AP·den] = Σ_x P(X=x)(E[S|x])/(R_b + x) (a zero denominator adds 0)."""
    rows, col, n, r, m, nb, rb = _straddle(t)
    if rows.size == 0:
        return
    s_before = s_groups[rows].sum(1) - s_groups[rows, col]
    lo = np.maximum(0.0, m - (n - r)).astype(np.int64)
    hi = np.minimum(r, m).astype(np.int64)
    count = hi - lo + 1
    hd = _harmonic_diff(nb + m, nb)
    ends = np.cumsum(count)
    start = 0
    while start < rows.size:
        stop = max(start + 1, int(np.searchsorted(ends, ends[start] - count[start] + _PAIR_BATCH, "right")))
        stop = min(stop, rows.size)
        cnt = count[start:stop]
        i = np.repeat(np.arange(start, stop), cnt)
        x = (lo[i] + np.arange(i.size) - np.repeat(np.cumsum(cnt) - cnt, cnt)).astype(np.float64)
        pmf = _hypergeom_pmf(x, n, r, m, row=i)
        mi = m[i]
        with np.errstate(divide="ignore", invalid="ignore"):
            beta = np.where(mi > 1, (x - 1.0) / np.where(mi > 1, mi - 1.0, 1.0), 0.0)
        s_x = s_before[i] + (x / mi) * ((rb[i] + 1.0 - beta * (nb[i] + 1.0)) * hd[i] + beta * mi)
        val = pmf * _safe_div(s_x, rb[i] + x)
        out[rows[start:stop]] = np.bincount(i - start, weights=val, minlength=stop - start)
        start = stop


# ----------------------------------------------------------------------------------------------
# Public metrics
# ----------------------------------------------------------------------------------------------

def _per_row_blocks(fn):
    """Run a per-query metric ``fn(n, r, ...) -> (Q,)`` on blocks of queries and concatenate: the
    same result, with bounded temporaries for wide tables (one group per distinct score)."""
    @functools.wraps(fn)
    def wrapper(n, r, *args, **kwargs):
        n, r = np.asarray(n), np.asarray(r)
        if n.ndim != 2 or n.shape != r.shape:
            raise ValueError(f"n and r must be 2-D of one shape, got {n.shape} and {r.shape}")
        step = max(1, _ROW_BLOCK_ELEMS // max(n.shape[1], 1))
        if n.shape[0] <= step:
            return fn(n, r, *args, **kwargs)
        return np.concatenate([fn(n[s:s + step], r[s:s + step], *args, **kwargs)
                               for s in range(0, n.shape[0], step)])
    return wrapper


@_per_row_blocks
def average_precision(n, r, k: int | None = None, denominator: str = "relevant_retrieved",
                      empty: str = "zero", ties: str = "expected") -> np.ndarray:
    """Average precision at cut-off k of every query, shape (Q,), from tie groups ``(n, r)``.

    With ``rel_i`` the relevance of rank i and ``P_i = (Σ_{j≤i} rel_j)/i``:
    ``AP@k = (Σ_{i≤k} rel_i · P_i) / D``; k = None means the whole database ("@all"; k larger than
    the database is the same).

    ``denominator`` D:
      * ``"relevant_retrieved"``: Σ_{i≤k} rel_i, the relevant items within the top k
        (DeepHash / HashNet / DRQ / DeepHash-pytorch ``CalcTopMap`` convention);
      * ``"all_relevant"``: R, all relevant items in the database;
      * ``"min_k_all_relevant"``: min(k, R).
    ``empty`` — a query with no relevant item in the top k (or none in the database):
      * ``"zero"``: AP = 0, counted in the mean (DeepHash-pytorch, DRQ);
      * ``"skip"``: AP = NaN, left out of the mean (HashNet PyTorch ``test.py``);
      * ``"skip_no_relevant_in_database"``: NaN only when R = 0, else as ``"zero"`` (HashNet Caffe
        ``predict_parallel.py``).
    ``ties``: ``"expected"`` — E[AP] over uniformly random orders inside every tie group (closed
    form below); ``"optimistic"`` / ``"pessimistic"`` — relevant items first / last in each group;
    ``"index"`` — the order by database index, from singleton groups of :func:`index_order_groups`.

    Closed forms, per group (N_b, R_b items / relevant before it, n, r its size / relevant,
    m = min(n, k − N_b) kept, H_j harmonic numbers), for S = Σ_{i≤k} rel_i · P_i:
      * expected: E[S_g] = Σ_{t=1..m} (r/n)(R_b + 1 + (t−1)(r−1)/(n−1))/(N_b + t)
        = (r/n)[(R_b + 1 − β(N_b+1))(H_{N_b+m} − H_{N_b}) + βm], β = (r−1)/(n−1) (β = 0 if n = 1);
      * optimistic: Σ_{t=1..j}(R_b + t)/(N_b + t) = j + (R_b − N_b)(H_{N_b+j} − H_{N_b}), j = min(r, m);
      * pessimistic: Σ_{t=n−r+1..m}(R_b + t − n + r)/(N_b + t)
        = c + (R_b + r − n − N_b)(H_{N_b+m} − H_{N_b+n−r}), c = max(0, m − n + r).
    Under random ties a constant D gives E[AP] = E[S]/D. For ``"relevant_retrieved"`` D is random
    when a group straddles the cut-off: X = relevant among its m kept items ~ Hypergeom(n, r, m) and
    E[AP] = Σ_x P(X = x) · E[S | X = x] / (R_b + x), with E[S | X = x] the expected-tie formula on
    the kept part (m items, x relevant). With ``empty="skip"`` and random ties, AP is the
    expectation conditioned on at least one relevant item in the top k,
    E[AP]/P(hit) (NaN when P(hit) = 0).
    """
    if denominator not in DENOMINATORS:
        raise ValueError(f"denominator must be one of {DENOMINATORS}, got {denominator!r}")
    if empty not in EMPTY_POLICIES:
        raise ValueError(f"empty must be one of {EMPTY_POLICIES}, got {empty!r}")
    t = _Groups(n, r, k)
    _check_ties(t, ties)
    s_groups, retrieved = _group_sums(t, ties)
    s = s_groups.sum(1)
    if denominator == "all_relevant":
        ap = _safe_div(s, t.R)
    elif denominator == "min_k_all_relevant":
        ap = _safe_div(s, t.R if t.k is None else np.minimum(t.k, t.R))
    else:
        ap = _safe_div(s, retrieved)
        if ties == "expected" and t.k is not None:
            _expected_ratio_straddled(t, s_groups, ap)
    if empty == "skip":
        hit = _hit_probability(t, ties, retrieved)
        ap = np.where(hit > 0, _safe_div(ap, hit), np.nan)
    elif empty == "skip_no_relevant_in_database":
        ap = np.where(t.R > 0, ap, np.nan)
    return ap


def mean_average_precision(n, r, k: int | None = None, denominator: str = "relevant_retrieved",
                           empty: str = "zero", ties: str = "expected") -> float:
    """mAP = mean over queries of :func:`average_precision` (same options), ignoring the NaN of
    skipped queries; NaN when every query is skipped."""
    ap = average_precision(n, r, k=k, denominator=denominator, empty=empty, ties=ties)
    return float(np.nanmean(ap)) if np.isfinite(ap).any() else float("nan")


def _retrieved(n, r, k: int, ties: str) -> tuple[_Groups, np.ndarray]:
    if k is None:
        raise ValueError("k is required")
    t = _Groups(n, r, k)
    _check_ties(t, ties)
    return t, _group_sums(t, ties)[1]


@_per_row_blocks
def precision_at_k(n, r, k: int, ties: str = "expected") -> np.ndarray:
    """P@k per query, (Q,): E[#relevant in the top k] / k. With random ties the straddling group
    contributes r·m/n. A database smaller than k still divides by k (missing ranks count as
    non-relevant)."""
    _, retrieved = _retrieved(n, r, k, ties)
    return retrieved / float(k)


@_per_row_blocks
def recall_at_k(n, r, k: int, ties: str = "expected") -> np.ndarray:
    """R@k per query, (Q,): E[#relevant in the top k] / R (all relevant in the database);
    NaN for a query with R = 0."""
    t, retrieved = _retrieved(n, r, k, ties)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(t.R > 0, retrieved / np.where(t.R > 0, t.R, 1.0), np.nan)


@_per_row_blocks
def hit_rate_at_k(n, r, k: int, ties: str = "expected") -> np.ndarray:
    """Hit rate per query, (Q,): P(at least one relevant item in the top k) — the DHT codes'
    "recall@k". Random ties: 1 − C(n−r, m)/C(n, m) (hypergeometric) when only the straddling group
    can supply the hit; optimistic/pessimistic/index: 0 or 1."""
    t, retrieved = _retrieved(n, r, k, ties)
    return _hit_probability(t, ties, retrieved)


def precision_recall_by_radius(n, r) -> dict[str, np.ndarray]:
    """Precision and recall of Hamming-ball retrieval for every radius ρ = 0..G−1 (groups = distances).

    Per query: retrieved(ρ) = Σ_{g≤ρ} n_g, hits(ρ) = Σ_{g≤ρ} r_g. Returns a dict of arrays (G,):
    ``radius``; ``precision`` = mean of hits/retrieved over the queries with retrieved(ρ) ≥ 1 (NaN if
    none); ``fraction_retrieving`` = the fraction of queries with retrieved(ρ) ≥ 1; ``recall`` = mean
    of hits/R over the queries with R ≥ 1. No tie policy is needed: whole groups are retrieved."""
    t = _Groups(n, r, None)
    cum_n = np.cumsum(t.n, 1)
    cum_r = np.cumsum(t.r, 1)
    got = cum_n > 0
    n_got = got.sum(0)
    prec = np.where(got, _safe_div(cum_r, cum_n), 0.0).sum(0)
    answerable = t.R > 0
    recall = (cum_r[answerable] / t.R[answerable, None]).mean(0) if answerable.any() else np.full(t.n.shape[1], np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(n_got > 0, prec / np.maximum(n_got, 1), np.nan)
    return {"radius": np.arange(t.n.shape[1]), "precision": precision, "recall": recall,
            "fraction_retrieving": n_got / max(t.n.shape[0], 1)}


def precision_recall_by_rank(n, r, cutoffs, ties: str = "expected") -> dict[str, np.ndarray]:
    """Precision@c and recall@c for each cut-off c (expected under the tie policy), as a dict of
    arrays: ``cutoff``; ``precision`` = mean over queries of :func:`precision_at_k`; ``recall`` = mean
    over queries with R ≥ 1 of :func:`recall_at_k` (NaN if there are none)."""
    cutoffs = [int(c) for c in cutoffs]
    prec, rec = [], []
    for c in cutoffs:
        prec.append(float(np.mean(precision_at_k(n, r, c, ties))))
        rc = recall_at_k(n, r, c, ties)
        rec.append(float(np.nanmean(rc)) if np.isfinite(rc).any() else float("nan"))
    return {"cutoff": np.asarray(cutoffs), "precision": np.asarray(prec), "recall": np.asarray(rec)}


@_per_row_blocks
def precision_within_radius(n, r, radius: int = 2, empty: str = "zero") -> np.ndarray:
    """Per query, (Q,): precision of the items within Hamming radius ρ, Σ_{g≤ρ} r_g / Σ_{g≤ρ} n_g.
    A query retrieving nothing gets 0 (``empty="zero"``, thuml DeepHash) or NaN (``"skip"``). The
    reported metric is the mean over queries (``np.nanmean`` for ``"skip"``)."""
    if empty not in ("zero", "skip"):
        raise ValueError(f'empty must be "zero" or "skip", got {empty!r}')
    t = _Groups(n, r, None)
    got = t.n[:, : radius + 1].sum(1)
    hits = t.r[:, : radius + 1].sum(1)
    return np.where(got > 0, _safe_div(hits, got), 0.0 if empty == "zero" else np.nan)
