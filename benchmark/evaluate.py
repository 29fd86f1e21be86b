"""Evaluation of one method's codes: which distance, metric variants and search backend each
code type gets. Pure function of arrays (codes, embeddings, labels); knows no method or dataset.

Quality metrics are computed from exact rankings (Hamming distance for ``binary`` codes,
asymmetric lookup-table scores for ``additive`` codes, Euclidean distance for ``float``
embeddings; ties handled by the declared tie policy), chunked over queries, every metric of a
chunk read from one pass over its tie groups (``metrics.onepass``; ``engine="reference"`` runs the
per-metric functions instead, with the same values bit for bit). Speed metrics time a real search
backend against exhaustive float search (faiss ``IndexFlatL2``) over the reference features shared
by every method of a table, single-threaded, best of up to N within a time budget, the reference
timed once per :class:`EvalInputs` and reused for every code length.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
import torch

from hashbench.benchmark.metrics import candidates as candidate_metrics
from hashbench.benchmark.metrics import dense_groups
from hashbench.benchmark.metrics import nmi as nmi_metrics
from hashbench.benchmark.metrics import onepass, ranking
from hashbench.benchmark.metrics import speed as speed_metrics
from hashbench.benchmark.search import additive as additive_search
from hashbench.benchmark.search import binary as binary_search
from hashbench.benchmark.search import flat as flat_search
from hashbench.benchmark.search import sparse as sparse_search
from hashbench.benchmark.search.timing import time_call, time_within
from hashbench.benchmark.store import DEFAULT_MAP

#: Extra mAP variants written next to the default, for cross-suite comparison.
MAP_VARIANTS = [
    DEFAULT_MAP,
    {"ties": "optimistic", "denominator": "relevant_retrieved", "empty": "zero"},
    {"ties": "pessimistic", "denominator": "relevant_retrieved", "empty": "zero"},
    {"ties": "expected", "denominator": "all_relevant", "empty": "zero"},
    {"ties": "expected", "denominator": "min_k_all_relevant", "empty": "zero"},
    {"ties": "expected", "denominator": "relevant_retrieved", "empty": "skip"},
]
PRECISION_KS = (1, 10, 100, 1000)
PR_CUTOFFS = (1, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000)
SPARSE_KS = (1, 4, 16, 100)
SPEED_K = 100
#: Seconds each speed measurement may spend on repeats after its first timed call.
SPEED_BUDGET_S = 2.0
#: Evaluation engines: ``"onepass"`` (integer-key sorts, every metric from one pass over the tie
#: groups) and ``"reference"`` (a sort with permutation per chunk, one call per metric); the same
#: values bit for bit (tests/test_evaluate_onepass.py), the reference kept as the spec's check.
ENGINES = ("onepass", "reference")


@dataclass
class EvalInputs:
    """Everything evaluation needs, as numpy arrays.

    ``query``/``database``: the code arrays of ``methods.base.CODE_KEYS[code_type]``;
    ``code_state``: shared arrays (additive ``codebooks`` (M, K, D));
    ``*_embedding``: the method's continuous embedding; ``*_features``: the reference features
    for speed and recall (the same for every method on a dataset); ``query_in_database``: the
    database index of each query (−1 when not in the database), for self-exclusion.
    """

    code_type: str
    query: dict[str, np.ndarray]
    database: dict[str, np.ndarray]
    query_labels: np.ndarray
    database_labels: np.ndarray
    query_embedding: np.ndarray
    database_embedding: np.ndarray
    code_state: dict[str, np.ndarray] = field(default_factory=dict)
    search_metric: str = "ip"
    query_features: np.ndarray | None = None
    database_features: np.ndarray | None = None
    query_in_database: np.ndarray | None = None
    rerank: bool = True
    #: Results shared by the evaluations of one run's code lengths: the float reference search
    #: (time and ids) and the NMI of the query embeddings, which no code length changes.
    memo: dict = field(default_factory=dict, repr=False, compare=False)


@dataclass
class EvalResult:
    """Metric rows ``(bits, metric, options, value)``, per-query arrays and curves."""

    rows: list[tuple[int, str, dict[str, Any], float]] = field(default_factory=list)
    per_query: dict[str, np.ndarray] = field(default_factory=dict)
    curves: dict[str, Any] = field(default_factory=dict)

    def add(self, bits: int, metric: str, options: dict[str, Any], value: float) -> None:
        self.rows.append((bits, metric, options, float(value)))


def map_name(k: int | None) -> str:
    """``map@all`` for the whole database, else ``map@<k>``."""
    return "map@all" if k is None else f"map@{k}"


def _chunks(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def _sq_l2_dist(q: np.ndarray, db: np.ndarray) -> np.ndarray:
    """max(0, ‖q − x‖²) for every pair, float64 from the expansion ‖q‖² − 2⟨q, x⟩ + ‖x‖²."""
    d = 2.0 * q @ db.T  # (2q) @ dbᵀ, then the same subtraction and addition, in place
    np.subtract((q * q).sum(1)[:, None], d, out=d)
    d += (db * db).sum(1)[None, :]
    return np.maximum(d, 0.0, out=d)


def tie_groups(inp: EvalInputs, sl: slice, prefix: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Tie groups (n, r) of the exact ranking for the queries in ``sl`` (see ``benchmark.metrics.ranking``);
    the reference engine (a sort with permutation of the scores)."""
    ql, dl, excl = _ranked_queries(inp, sl)
    if inp.code_type == "binary":
        return ranking.hamming_tie_groups(inp.query["bits"][sl], inp.database["bits"], ql, dl, self_exclusion=excl)
    scores = _lut_scores(inp, sl, prefix) if inp.code_type == "additive" else -_float_sq_l2(inp, sl)
    return ranking.score_tie_groups(scores, ql, dl, higher_is_better=True, self_exclusion=excl)


def _ranked_queries(inp: EvalInputs, sl: slice):
    """(query labels, database labels, self-exclusion) of the queries in ``sl``; refuses a code
    type without an exact ranking."""
    if inp.code_type not in ("binary", "additive", "float"):
        raise ValueError(f"no exact ranking for code type {inp.code_type!r}")
    excl = None if inp.query_in_database is None else inp.query_in_database[sl]
    return inp.query_labels[sl], inp.database_labels, excl


def _float_sq_l2(inp: EvalInputs, sl: slice) -> np.ndarray:
    """Squared Euclidean distances (float64) of the float embeddings of the queries in ``sl``."""
    return _sq_l2_dist(inp.query["embedding"][sl].astype(np.float64), inp.database["embedding"].astype(np.float64))


def _lut_scores(inp: EvalInputs, sl: slice, prefix: int | None) -> np.ndarray:
    return additive_search.lut_scores(inp.query["features"][sl], inp.code_state["codebooks"],
                                      inp.database["indices"], m=prefix, metric=inp.search_metric)


def fast_tie_groups(inp: EvalInputs, sl: slice, prefix: int | None, device: str | None = None,
                    threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The same (n, r) as :func:`tie_groups`, from one value-only sort of integer rank keys per
    query (``benchmark.metrics.dense_groups``): the same float32 LUT scores and float64 distances,
    so the same ties and order. ``device="cuda"`` sorts (and counts Hamming bins) on the GPU."""
    ql, dl, excl = _ranked_queries(inp, sl)
    if inp.code_type == "binary":
        q, db = inp.query["bits"][sl], inp.database["bits"]
        if device is not None:
            q, db = torch.from_numpy(np.ascontiguousarray(q)).to(device), torch.from_numpy(np.ascontiguousarray(db)).to(device)
        return ranking.hamming_tie_groups(q, db, ql, dl, self_exclusion=excl)
    if inp.code_type == "additive":
        scores, keys = _lut_scores(inp, sl, prefix), dense_groups.float32_rank_keys
    else:
        scores, keys = _float_sq_l2(inp, sl), dense_groups.nonnegative_float64_rank_keys
    return dense_groups.dense_tie_groups(scores, ql, dl, keys, self_exclusion=excl, threads=threads, device=device)


def _default_device() -> str | None:
    return "cuda" if torch.cuda.is_available() else None


def ranking_metrics(inp: EvalInputs, bits: int, map_at: int | None, prefix: int | None = None,
                    chunk: int = 1000, engine: str = "onepass", device: str | None = "auto") -> EvalResult:
    """mAP (every variant in :data:`MAP_VARIANTS`), P@k, R@k, PR curves and, for binary codes,
    precision within Hamming radius 2, from the exact ranking of every query.

    ``engine`` (:data:`ENGINES`): ``"onepass"`` or ``"reference"``, equal values. ``device``:
    where the one-pass engine sorts (``"auto"``: CUDA when available, else the CPU)."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    n_db = len(inp.database_labels)
    ks = [k for k in PRECISION_KS if k <= n_db]
    cutoffs = [c for c in PR_CUTOFFS if c <= n_db] + ([n_db] if n_db not in PR_CUTOFFS else [])
    per_query: dict[str, list[np.ndarray]] = {}
    radius_groups: list[tuple[np.ndarray, np.ndarray]] = []
    binary = inp.code_type == "binary"
    device = _default_device() if device == "auto" else device
    threads = torch.get_num_threads()

    def keep(name: str, values: np.ndarray) -> None:
        per_query.setdefault(name, []).append(np.asarray(values, dtype=np.float64))

    for sl in _chunks(len(inp.query_labels), chunk):
        if engine == "reference":
            n, r = tie_groups(inp, sl, prefix)
            _reference_chunk(keep, n, r, map_at, ks, cutoffs, binary)
        else:
            n, r = fast_tie_groups(inp, sl, prefix, device=device, threads=threads)
            tab = onepass.ranking_table(n, r, map_at, MAP_VARIANTS, ks + cutoffs, radius=2 if binary else None,
                                        threads=threads)
            for opts, ap in zip(MAP_VARIANTS, tab["ap"]):
                keep(f"ap|{_key(opts)}", ap)
            for prefix_p, prefix_r, values in (("p@", "r@", ks), ("pc@", "rc@", cutoffs)):
                for k in values:
                    keep(f"{prefix_p}{k}", tab["precision"][k])
                    keep(f"{prefix_r}{k}", tab["recall"][k])
            if binary:
                keep("p@radius2", tab["radius"])
        if binary:
            radius_groups.append((n, r))
    return _ranking_rows(inp, bits, map_at, ks, cutoffs, {k: np.concatenate(v) for k, v in per_query.items()},
                         radius_groups)


def _reference_chunk(keep, n, r, map_at, ks, cutoffs, binary: bool) -> None:
    """Per-query metrics of one chunk, one per-metric function call each (the reference engine)."""
    for opts in MAP_VARIANTS:
        keep(f"ap|{_key(opts)}", ranking.average_precision(n, r, k=map_at, **opts))
    for k in ks:
        keep(f"p@{k}", ranking.precision_at_k(n, r, k))
        keep(f"r@{k}", ranking.recall_at_k(n, r, k))
    for c in cutoffs:
        keep(f"pc@{c}", ranking.precision_at_k(n, r, c))
        keep(f"rc@{c}", ranking.recall_at_k(n, r, c))
    if binary:
        keep("p@radius2", ranking.precision_within_radius(n, r, radius=2))


def _ranking_rows(inp: EvalInputs, bits: int, map_at: int | None, ks, cutoffs, pq: dict[str, np.ndarray],
                  radius_groups) -> EvalResult:
    """Metric rows, per-query AP and curves from the per-query values of every chunk."""
    res = EvalResult()
    for opts in MAP_VARIANTS:
        values = pq[f"ap|{_key(opts)}"]
        res.add(bits, map_name(map_at), opts, np.nanmean(values) if np.isfinite(values).any() else np.nan)
    res.per_query[f"ap|{map_name(map_at)}"] = pq[f"ap|{_key(DEFAULT_MAP)}"]
    for k in ks:
        res.add(bits, f"precision@{k}", {"ties": "expected"}, pq[f"p@{k}"].mean())
        res.add(bits, f"recall@{k}", {"ties": "expected"}, np.nanmean(pq[f"r@{k}"]))
    res.curves["pr_rank"] = {
        "cutoff": cutoffs,
        "precision": [float(pq[f"pc@{c}"].mean()) for c in cutoffs],
        "recall": [float(np.nanmean(pq[f"rc@{c}"])) for c in cutoffs],
    }
    if inp.code_type == "binary":
        res.add(bits, "precision@radius2", {"empty": "zero"}, pq["p@radius2"].mean())
        n = np.concatenate([g[0] for g in radius_groups])
        r = np.concatenate([g[1] for g in radius_groups])
        curve = ranking.precision_recall_by_radius(n, r)
        res.curves["pr_radius"] = {k: np.asarray(v).tolist() for k, v in curve.items()}
    return res


def _key(opts: dict[str, Any]) -> str:
    return ",".join(f"{k}={opts[k]}" for k in sorted(opts))


def nmi_rows(inp: EvalInputs, bits: int, n_classes: int, seed: int) -> EvalResult:
    """``nmi_kmeans`` on the query embeddings (k-means with one cluster per class); multi-label → NaN."""
    res = EvalResult()
    key = ("nmi_kmeans", id(inp.query_embedding), n_classes, seed)  # the same for every code length
    if key not in inp.memo:
        inp.memo[key] = nmi_metrics.nmi_kmeans(inp.query_embedding, inp.query_labels, n_clusters=n_classes, seed=seed)
    value = inp.memo[key]
    res.add(bits, "nmi_kmeans", {"on": "query_embedding"}, value)
    return res


def speed_metrics_rows(inp: EvalInputs, bits: int, prefix: int | None = None, k: int = SPEED_K,
                       repeats: int = 3, budget_s: float = SPEED_BUDGET_S) -> EvalResult:
    """Wall-clock speed-up of the code type's search backend over exhaustive float search on the
    reference features (both top-k, 1 thread), with the recall of the exact top-k and the fast
    search's own P@k. The code search gets a warm-up and the best of up to ``repeats`` timed calls,
    the reference (far too large for caches to matter) no warm-up and the best of up to 2; repeats
    stop once the timed calls of one measurement took ``budget_s``. The reference depends only on
    the features, so it is timed once per :class:`EvalInputs` (``memo``) and its time and
    ids reused for every code length and prefix of the run."""
    res = EvalResult()
    if inp.query_features is None or inp.database_features is None:
        return res
    n_db = len(inp.database_labels)
    k = min(k, n_db)
    out: dict[str, Any] = {}
    ref_t, exact_ids = _reference_search(inp, k, budget_s)

    backends: list[tuple[dict[str, Any], Any]] = []
    if inp.code_type == "binary":
        flat_index = binary_search.BinaryFlatIndex(inp.database["bits"])
        backends.append(({"backend": "faiss_binary_flat"}, lambda: flat_index.search(inp.query["bits"], k)[1]))
    elif inp.code_type == "additive":
        books, idx, qx = inp.code_state["codebooks"], inp.database["indices"], inp.query["features"]
        backends.append(({"backend": "lut"}, lambda: additive_search.lut_topk(
            qx, books, idx, k, m=prefix, metric=inp.search_metric)[1]))
    elif inp.code_type == "float":
        emb_q = np.ascontiguousarray(inp.query["embedding"], dtype=np.float32)
        emb_db = np.ascontiguousarray(inp.database["embedding"], dtype=np.float32)
        backends.append(({"backend": "faiss_flat_l2"}, lambda: flat_search.exact_knn(emb_q, emb_db, k, metric="l2")[1]))
    for opts, fn in backends:
        t = time_within(lambda: out.__setitem__("ids", fn()), budget_s, max_repeats=repeats, threads=1)
        ids = out["ids"]
        opts = {**opts, "reference": "faiss_flat_l2_features", "threads": 1}
        res.add(bits, f"speedup_wallclock@{k}", opts, ref_t["best_s"] / t["best_s"])
        res.add(bits, f"search_seconds@{k}", opts, t["best_s"])
        res.add(bits, f"recall_of_exact@{k}", opts, speed_metrics.recall_of_exact_topk(ids, exact_ids))
        rel = _relevance_of(ids, inp.query_labels, inp.database_labels)
        res.add(bits, f"precision@{k}", {"search": opts["backend"]}, rel.sum(1).mean() / k)
    res.add(bits, f"search_seconds@{k}", {"backend": "faiss_flat_l2", "on": "features", "threads": 1}, ref_t["best_s"])
    return res


def _reference_search(inp: EvalInputs, k: int, budget_s: float) -> tuple[dict, np.ndarray]:
    """(timing, exact top-k ids) of faiss ``IndexFlatL2`` on the reference features, 1 thread,
    no warm-up, best of up to 2 within ``budget_s``; memoised in ``inp.memo`` (keyed on k and
    the feature arrays' identity)."""
    key = ("faiss_flat_l2_features", k, id(inp.query_features), id(inp.database_features))
    if key not in inp.memo:
        qf = np.ascontiguousarray(inp.query_features, dtype=np.float32)
        dbf = np.ascontiguousarray(inp.database_features, dtype=np.float32)
        out: dict[str, Any] = {}
        t = time_within(lambda: out.__setitem__("ids", flat_search.exact_knn(qf, dbf, k, metric="l2")[1]),
                        budget_s, max_repeats=2, warmup=0, threads=1)
        inp.memo[key] = (t, out["ids"])
    return inp.memo[key]


def _relevance_of(ids: np.ndarray, q_labels: np.ndarray, db_labels: np.ndarray) -> np.ndarray:
    """0/1 relevance (shares ≥ 1 label) of retrieved ids (−1 = nothing, counted irrelevant)."""
    valid = ids >= 0
    shared = np.einsum("qc,qkc->qk", q_labels.astype(np.int32), db_labels[np.where(valid, ids, 0)].astype(np.int32))
    return ((shared > 0) & valid).astype(np.int64)


def _exact_excluding(q: np.ndarray, db: np.ndarray, k: int, exclude: np.ndarray | None) -> np.ndarray:
    """Exact L2 top-k ids (faiss ``IndexFlatL2``) with each query's own database index removed."""
    extra = 0 if exclude is None else 1
    ids = flat_search.exact_knn(q, db, min(k + extra, len(db)), metric="l2")[1]
    if exclude is None:
        return ids[:, :k]
    out = np.full((len(ids), k), -1, dtype=np.int64)
    for i, row in enumerate(ids):
        row = row[row != exclude[i]][:k]
        out[i, : row.size] = row
    return out


def sparse_metrics(inp: EvalInputs, bits: int, s: int, ks=SPARSE_KS, speed: bool = False) -> EvalResult:
    """Hash-table search of sparse codes (Deep Hash Table family, methods.md §2.7–2.8, §3.6).

    Per k: the candidate set (the query's own s buckets, expanded in its bucket order until it
    holds ≥ k items), re-ranked by squared Euclidean distance in the method's embedding (unless
    the method declares no re-ranking); ``precision@k`` = mean fraction of relevant items in the
    top k; ``hit_rate@k`` = fraction of queries with ≥ 1 relevant item in the top k;
    ``suf@k`` = N / mean |Cand(q)|. Also ``precision@k`` of exhaustive search in the same
    embedding (``search: exhaustive_embedding``); ``map@candidates``: AP of the re-ranked
    candidate list of the query's own buckets (no expansion), with the relevant-retrieved and the
    all-relevant denominators; ``nmi_buckets`` of the database table; and with ``speed`` the
    wall-clock speed-up of lookup + re-ranking (top-100) over faiss ``IndexFlatL2`` on the
    reference features and on the embedding, with the recall of each exact top-100.
    """
    res = EvalResult()
    table = sparse_search.InvertedHashTable.build(inp.database["buckets"])
    order = sparse_search.bucket_order(inp.query["bucket_scores"])
    n_db = len(inp.database_labels)
    emb_q = np.ascontiguousarray(inp.query_embedding, dtype=np.float32)
    emb_db = np.ascontiguousarray(inp.database_embedding, dtype=np.float32)
    rq, rdb = (emb_q, emb_db) if inp.rerank else (None, None)
    opts = {"rerank": "embedding" if inp.rerank else "none", "s": s}
    excl = inp.query_in_database
    ks = [k for k in ks if k <= n_db]
    exact = _exact_excluding(emb_q, emb_db, max(ks), excl) if ks else None
    for k in ks:
        out = sparse_search.search(table, order, s, k, rq, rdb, exclude=excl)
        rel = _relevance_of(out.ids, inp.query_labels, inp.database_labels)
        res.add(bits, f"precision@{k}", {**opts, "search": "hash_table"}, rel.sum(1).mean() / k)
        res.add(bits, f"hit_rate@{k}", {**opts, "search": "hash_table"}, (rel.sum(1) > 0).mean())
        res.add(bits, f"suf@{k}", opts, speed_metrics.search_speedup_factor(n_db, out.n_candidates))
        rel_x = _relevance_of(exact[:, :k], inp.query_labels, inp.database_labels)
        res.add(bits, f"precision@{k}", {"search": "exhaustive_embedding"}, rel_x.sum(1).mean() / k)
        res.add(bits, f"hit_rate@{k}", {"search": "exhaustive_embedding"}, (rel_x.sum(1) > 0).mean())
    own = sparse_search.search(table, order, s, 1, rq, rdb, exclude=excl, keep_candidates=True)
    cand_rel = _candidate_relevance(own.ranked, inp.query_labels, inp.database_labels)
    n_rel = _n_relevant(inp.query_labels, inp.database_labels, excl)
    for denominator in candidate_metrics.DENOMINATORS:
        ap = candidate_metrics.average_precision_of_lists(own.ranked.offsets, cand_rel, n_rel, denominator)
        res.add(bits, "map@candidates", {**opts, "denominator": denominator}, ap.mean())
        if denominator == "all_relevant":
            res.per_query["ap|map@candidates"] = ap
    res.add(bits, "candidates_per_query", {**opts, "expansion": "none"}, own.n_candidates.mean())
    labels = inp.database_labels.argmax(1) if (inp.database_labels.sum(1) == 1).all() else None
    if labels is not None:
        res.add(bits, "nmi_buckets", {"table": "database"}, nmi_metrics.nmi_buckets(inp.database["buckets"], labels))
    if speed:
        _sparse_speed(res, inp, bits, table, order, s, rq, rdb, opts)
    return res


def _candidate_relevance(ranked: "sparse_search.Candidates", q_labels: np.ndarray, db_labels: np.ndarray) -> np.ndarray:
    """0/1 relevance of every candidate (CSR order of ``ranked``) to its query."""
    query_of = np.repeat(np.arange(len(ranked)), ranked.counts)
    shared = (q_labels[query_of].astype(np.int32) * db_labels[ranked.ids].astype(np.int32)).sum(1)
    return (shared > 0).astype(np.int64)


def _n_relevant(q_labels: np.ndarray, db_labels: np.ndarray, exclude: np.ndarray | None) -> np.ndarray:
    """Relevant database items per query (the query itself excluded when it is in the database)."""
    n = ((q_labels.astype(np.float32) @ db_labels.T.astype(np.float32)) > 0).sum(1).astype(np.int64)
    if exclude is not None:
        n -= (exclude >= 0).astype(np.int64)
    return n


def _sparse_speed(res: EvalResult, inp: EvalInputs, bits: int, table, order, s: int, rq, rdb,
                  opts: dict[str, Any], k: int = SPEED_K, repeats: int = 3) -> None:
    """Wall-clock rows of hash-table search (lookup, expansion to ≥ k, re-ranking, top-k) against
    exhaustive faiss ``IndexFlatL2`` top-k, 1 thread, best of ``repeats`` (the reference best of 2)."""
    n_db = len(inp.database_labels)
    k = min(k, n_db)
    out: dict[str, Any] = {}
    index = sparse_search.HashTableIndex(table, rdb)  # built once, outside the timed call
    hash_t = time_call(lambda: out.__setitem__("ids", index.search(
        order, s, k, rq, exclude=inp.query_in_database).ids), repeats=repeats, threads=1)
    ids = out["ids"]
    backend = {**opts, "backend": "hash_table", "threads": 1}
    res.add(bits, f"search_seconds@{k}", backend, hash_t["best_s"])
    refs = {"embedding": (inp.query_embedding, inp.database_embedding)}
    if inp.query_features is not None and inp.database_features is not None:
        refs["features"] = (inp.query_features, inp.database_features)
    for name, (q, db) in refs.items():
        q = np.ascontiguousarray(q, dtype=np.float32)
        db = np.ascontiguousarray(db, dtype=np.float32)
        ref_t = time_call(lambda: out.__setitem__("ref", flat_search.exact_knn(q, db, k, metric="l2")[1]),
                          repeats=2, warmup=0, threads=1)
        exact = _exact_excluding(q, db, k, inp.query_in_database)
        ref = f"faiss_flat_l2_{name}"
        res.add(bits, f"speedup_wallclock@{k}", {**backend, "reference": ref}, ref_t["best_s"] / hash_t["best_s"])
        res.add(bits, f"recall_of_exact@{k}", {**backend, "reference": ref}, speed_metrics.recall_of_exact_topk(ids, exact))
        res.add(bits, f"search_seconds@{k}", {"backend": "faiss_flat_l2", "on": name, "threads": 1}, ref_t["best_s"])


def evaluate(inp: EvalInputs, bits: int, map_at: int | None, n_classes: int, seed: int,
             prefix: int | None = None, speed: bool = True, engine: str = "onepass") -> EvalResult:
    """All metrics for one code length of one run (``engine``: see :func:`ranking_metrics`)."""
    total = EvalResult()
    parts = []
    if inp.code_type == "sparse":
        parts.append(sparse_metrics(inp, bits, s=inp.database["buckets"].shape[1], speed=speed))
    else:
        parts.append(ranking_metrics(inp, bits, map_at, prefix=prefix, engine=engine))
        if speed:
            parts.append(speed_metrics_rows(inp, bits, prefix=prefix))
    parts.append(nmi_rows(inp, bits, n_classes, seed))
    for p in parts:
        total.rows += p.rows
        total.per_query.update(p.per_query)
        total.curves.update(p.curves)
    return total
