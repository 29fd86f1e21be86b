"""The evaluation glue (benchmark/evaluate.py, benchmark/runner.py) on small hand-built inputs:
known mAP / P@k / R@k, the protocol's mAP cut-off, queries inside the database (self-exclusion),
each code type's ranking, the speed rows' P@k and recall, and the sparse-code hash-table metrics
against a brute-force re-implementation of the rules in their docstrings."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from hashbench.benchmark import evaluate as ev
from hashbench.benchmark import runner
from hashbench.benchmark.evaluate import DEFAULT_MAP, EvalInputs, evaluate, ranking_metrics, sparse_metrics
from hashbench.benchmark.metrics import nmi as nmi_metrics


# ----------------------------------------------------------------------------- helpers
def onehot(ids, n_classes: int) -> np.ndarray:
    return np.eye(n_classes, dtype=np.int64)[np.asarray(ids)]


def rows_of(res, metric: str, **opts) -> list[float]:
    """Values of the rows named ``metric`` whose options contain ``opts``."""
    return [v for _, name, o, v in res.rows if name == metric and all(o.get(k) == x for k, x in opts.items())]


def one(res, metric: str, **opts) -> float:
    vals = rows_of(res, metric, **opts)
    assert len(vals) == 1, (metric, opts, vals)
    return vals[0]


def float_inputs(q, db, ql, dl, in_db=None, **kw) -> EvalInputs:
    q, db = np.asarray(q, np.float32), np.asarray(db, np.float32)
    return EvalInputs(code_type="float", query={"embedding": q}, database={"embedding": db},
                      query_labels=ql, database_labels=dl, query_embedding=q, database_embedding=db,
                      query_in_database=None if in_db is None else np.asarray(in_db, np.int64), **kw)


def brute_ranking(scores: np.ndarray, ql, dl, in_db=None, k_map=None, ks=(1, 10)) -> dict:
    """Per-query AP (all six variants of MAP_VARIANTS, for tie-free scores), P@k, R@k by sorting
    every query's scores (higher is better), its own database item removed."""
    nq = len(ql)
    out: dict[str, list] = {}
    for i in range(nq):
        order = np.argsort(-scores[i], kind="stable")
        if in_db is not None and in_db[i] >= 0:
            order = order[order != in_db[i]]
        rel = ((dl[order] @ ql[i]) > 0).astype(float)
        n_rel = rel.sum()
        top = rel if k_map is None else rel[:k_map]
        prec = np.cumsum(top) / np.arange(1, top.size + 1)
        s = (prec * top).sum()
        got = top.sum()
        den = {"relevant_retrieved": got, "all_relevant": n_rel,
               "min_k_all_relevant": n_rel if k_map is None else min(k_map, n_rel)}
        for name, z in den.items():
            out.setdefault(f"ap|{name}", []).append(s / z if z > 0 else 0.0)
        out.setdefault("ap|skip", []).append(s / got if got > 0 else np.nan)
        for k in ks:
            out.setdefault(f"p@{k}", []).append(rel[:k].sum() / k)
            out.setdefault(f"r@{k}", []).append(rel[:k].sum() / n_rel if n_rel else np.nan)
    return {k: np.asarray(v, float) for k, v in out.items()}


def neg_sq_l2(q, db):
    q, db = np.asarray(q, np.float64), np.asarray(db, np.float64)
    return -((q[:, None, :] - db[None, :, :]) ** 2).sum(2)


def check_against_brute(res, scores, ql, dl, in_db=None, k_map=None, ks=(1, 10), bits=16):
    ref = brute_ranking(scores, ql, dl, in_db, k_map, ks)
    name = ev.map_name(k_map)
    for opts in ev.MAP_VARIANTS:
        key = "skip" if opts["empty"] == "skip" else opts["denominator"]
        want = np.nanmean(ref[f"ap|{key}"])
        got = [v for b, n, o, v in res.rows if n == name and o == opts]
        assert got == pytest.approx([want], abs=1e-9), opts
    for k in ks:
        assert one(res, f"precision@{k}", ties="expected") == pytest.approx(ref[f"p@{k}"].mean(), abs=1e-12)
        assert one(res, f"recall@{k}", ties="expected") == pytest.approx(np.nanmean(ref[f"r@{k}"]), abs=1e-12)
    assert np.allclose(res.per_query[f"ap|{name}"], ref["ap|relevant_retrieved"])
    assert all(b == bits for b, *_ in res.rows)


# ----------------------------------------------------------------------------- a hand-computed case
# Database: 12 items on a line at 1..12; query 0 (class 0) at 0, query 1 (class 1) at 13.
# Class 0 items at positions 1, 3, 11; class 1 at 4, 10; the rest class 2.
#   query 0 ranks 1..12 = positions 1..12: relevant at ranks 1, 3, 11 (R = 3)
#       AP@all = (1/1 + 2/3 + 3/11)/3 = 0.6464646…, AP@2 = 1 (one relevant in the top 2)
#       P@1 = 1, R@1 = 1/3, P@10 = 2/10, R@10 = 2/3
#   query 1 ranks 1..12 = positions 12..1: relevant at ranks 3 (pos 10) and 9 (pos 4) (R = 2)
#       AP@all = (1/3 + 2/9)/2 = 0.2777…, AP@2 = 0 (none in the top 2)
#       P@1 = 0, R@1 = 0, P@10 = 2/10, R@10 = 1
HAND_DB = np.arange(1, 13, dtype=np.float32)[:, None]
HAND_Q = np.array([[0.0], [13.0]], dtype=np.float32)
_cls = np.full(12, 2)
_cls[[0, 2, 10]] = 0
_cls[[3, 9]] = 1
HAND_DL = onehot(_cls, 3)
HAND_QL = onehot([0, 1], 3)


def test_hand_computed_map_precision_recall():
    res = ranking_metrics(float_inputs(HAND_Q, HAND_DB, HAND_QL, HAND_DL), bits=16, map_at=None)
    ap0 = (1 + 2 / 3 + 3 / 11) / 3
    ap1 = (1 / 3 + 2 / 9) / 2
    assert one(res, "map@all", **DEFAULT_MAP) == pytest.approx((ap0 + ap1) / 2, abs=1e-12)
    assert res.per_query["ap|map@all"] == pytest.approx([ap0, ap1], abs=1e-12)
    # all_relevant = relevant_retrieved here (no cut-off); empty=skip keeps both queries
    assert one(res, "map@all", ties="expected", denominator="all_relevant") == pytest.approx((ap0 + ap1) / 2)
    assert one(res, "precision@1") == pytest.approx(0.5)
    assert one(res, "recall@1") == pytest.approx((1 / 3 + 0) / 2)     # differs from P@1
    assert one(res, "precision@10") == pytest.approx(0.2)
    assert one(res, "recall@10") == pytest.approx((2 / 3 + 1) / 2)     # differs from P@10
    assert not rows_of(res, "precision@100")                          # k > database size: no row
    curve = res.curves["pr_rank"]
    assert curve["cutoff"] == [1, 5, 10, 12]
    assert curve["precision"] == pytest.approx([0.5, (2 / 5 + 1 / 5) / 2, 0.2, (3 / 12 + 2 / 12) / 2])
    assert curve["recall"] == pytest.approx([1 / 6, (2 / 3 + 1 / 2) / 2, (2 / 3 + 1) / 2, 1.0])
    assert "pr_radius" not in res.curves and not rows_of(res, "precision@radius2")


def test_map_cutoff_changes_the_value_and_the_name():
    res = ranking_metrics(float_inputs(HAND_Q, HAND_DB, HAND_QL, HAND_DL), bits=16, map_at=2)
    # AP@2: query 0 has 1 relevant in its top 2 (rank 1) -> 1; query 1 has none -> 0
    assert one(res, "map@2", **DEFAULT_MAP) == pytest.approx(0.5)
    assert not rows_of(res, "map@all")
    assert res.per_query["ap|map@2"] == pytest.approx([1.0, 0.0])
    # all_relevant at cut-off 2: query 0 = 1/3; min(k, R) = 2: query 0 = 1/2
    assert one(res, "map@2", ties="expected", denominator="all_relevant") == pytest.approx((1 / 3) / 2)
    assert one(res, "map@2", ties="expected", denominator="min_k_all_relevant") == pytest.approx(0.5 / 2)
    # empty=skip leaves query 1 (nothing relevant in its top 2) out of the mean
    assert one(res, "map@2", ties="expected", denominator="relevant_retrieved", empty="skip") == pytest.approx(1.0)


def test_map_name():
    assert ev.map_name(None) == "map@all" and ev.map_name(1000) == "map@1000"


# ----------------------------------------------------------------------------- runner glue
@pytest.mark.parametrize("setting, n_db, want", [
    (None, 5000, 1000), ("protocol", 5000, 1000), ("all", 5000, None), (50, 5000, 50), ("50", 5000, 50),
    (5000, 1497, 1497),
])
def test_map_cutoff_follows_the_protocol(setting, n_db, want):
    proto = SimpleNamespace(map_at=1000)
    assert runner._map_cutoff(setting, proto, n_db) == want
    assert runner._map_cutoff(None, SimpleNamespace(map_at=None), n_db) is None


def test_query_in_database_positions():
    split = SimpleNamespace(query=np.array([7, 3, 100, 5]), database=np.array([3, 4, 5, 6, 7]))
    assert runner._query_in_database(split).tolist() == [4, 0, -1, 2]
    disjoint = SimpleNamespace(query=np.array([1, 2]), database=np.array([3, 4, 5]))
    assert runner._query_in_database(disjoint) is None


# ----------------------------------------------------------------------------- against brute force
@pytest.fixture(scope="module")
def cloud():
    """150 items in 3-D with 4 classes (one multi-label item), 6 queries: 3 of them database items."""
    rng = np.random.default_rng(5)
    db = rng.standard_normal((150, 3)).astype(np.float32)
    dl = onehot(rng.integers(0, 4, 150), 4)
    dl[8] = [1, 0, 1, 0]                                   # a multi-label item
    in_db = np.array([7, 20, -1, 64, -1, -1])
    q = rng.standard_normal((6, 3)).astype(np.float32)
    ql = onehot(rng.integers(0, 4, 6), 4)
    for i, j in enumerate(in_db):
        if j >= 0:
            q[i], ql[i] = db[j], dl[j]
    return SimpleNamespace(q=q, db=db, ql=ql, dl=dl, in_db=in_db)


@pytest.mark.parametrize("map_at", [None, 5, 100])
def test_float_ranking_matches_brute_force_with_self_exclusion(cloud, map_at):
    c = cloud
    res = ranking_metrics(float_inputs(c.q, c.db, c.ql, c.dl, c.in_db), 24, map_at, chunk=4)
    check_against_brute(res, neg_sq_l2(c.q, c.db), c.ql, c.dl, c.in_db, map_at, ks=(1, 10, 100), bits=24)


def test_self_exclusion_matters(cloud):
    """Without self-exclusion every in-database query finds itself at rank 1 (a different P@1)."""
    c = cloud
    with_excl = ranking_metrics(float_inputs(c.q, c.db, c.ql, c.dl, c.in_db), 16, None)
    without = ranking_metrics(float_inputs(c.q, c.db, c.ql, c.dl, None), 16, None)
    check_against_brute(without, neg_sq_l2(c.q, c.db), c.ql, c.dl, None, None, ks=(1, 10, 100))
    assert one(with_excl, "precision@1") != one(without, "precision@1")
    assert one(with_excl, "map@all", **DEFAULT_MAP) != one(without, "map@all", **DEFAULT_MAP)


def _pm1(rng, n, k):
    return np.where(rng.random((n, k)) < 0.5, 1, -1).astype(np.int8)


def test_binary_ranking_equals_the_float_ranking_of_the_same_codes(cloud):
    """For ±1 codes the squared distance is 4·Hamming, so both paths give the same tie groups
    (ties are frequent with 6-bit codes and use the expected policy in both)."""
    c = cloud
    rng = np.random.default_rng(1)
    qb, dbb = _pm1(rng, 6, 6), _pm1(rng, 150, 6)
    for i, j in enumerate(c.in_db):
        if j >= 0:
            qb[i] = dbb[j]
    binp = EvalInputs(code_type="binary", query={"bits": qb}, database={"bits": dbb}, query_labels=c.ql,
                      database_labels=c.dl, query_embedding=qb.astype(np.float32),
                      database_embedding=dbb.astype(np.float32), query_in_database=c.in_db)
    a = ranking_metrics(binp, 6, 20)
    b = ranking_metrics(float_inputs(qb, dbb, c.ql, c.dl, c.in_db), 6, 20)
    binary_rows = {(n, str(o)): v for _, n, o, v in a.rows}
    float_rows = {(n, str(o)): v for _, n, o, v in b.rows}
    shared = set(binary_rows) & set(float_rows)
    assert len(shared) == len(float_rows) >= 10
    for key in shared:
        assert binary_rows[key] == pytest.approx(float_rows[key], abs=1e-12), key
    # precision within Hamming radius 2 (own item excluded; no item in the ball counts 0)
    ham = (6 - qb.astype(int) @ dbb.T.astype(int)) // 2
    want = []
    for i in range(6):
        ball = np.flatnonzero(ham[i] <= 2)
        ball = ball[ball != c.in_db[i]]
        want.append(((c.dl[ball] @ c.ql[i]) > 0).mean() if ball.size else 0.0)
    assert one(a, "precision@radius2", empty="zero") == pytest.approx(np.mean(want))
    radius = a.curves["pr_radius"]
    assert radius["radius"] == list(range(7)) and len(radius["precision"]) == 7


def test_additive_ranking_uses_the_prefix_and_the_search_metric(cloud):
    c = cloud
    rng = np.random.default_rng(2)
    books = rng.standard_normal((2, 256, 3)).astype(np.float32)
    # distinct first-step codewords: no ties, with or without the prefix
    idx = np.stack([rng.permutation(256)[:150], rng.integers(0, 256, 150)], 1)
    q = c.q
    full = books[0][idx[:, 0]] + books[1][idx[:, 1]]
    first = books[0][idx[:, 0]]

    def inputs(metric):
        return EvalInputs(code_type="additive", query={"features": q}, database={"indices": idx},
                          query_labels=c.ql, database_labels=c.dl, query_embedding=q, database_embedding=full,
                          code_state={"codebooks": books}, search_metric=metric, query_in_database=c.in_db)

    check_against_brute(ranking_metrics(inputs("l2"), 16, None), neg_sq_l2(q, full), c.ql, c.dl, c.in_db, None,
                        ks=(1, 10, 100))
    check_against_brute(ranking_metrics(inputs("l2"), 8, 30, prefix=1), neg_sq_l2(q, first), c.ql, c.dl, c.in_db,
                        30, ks=(1, 10, 100), bits=8)
    ip = q.astype(np.float64) @ full.T.astype(np.float64)
    check_against_brute(ranking_metrics(inputs("ip"), 16, None), ip, c.ql, c.dl, c.in_db, None, ks=(1, 10, 100))


def test_unknown_code_type_has_no_exact_ranking(cloud):
    inp = float_inputs(cloud.q, cloud.db, cloud.ql, cloud.dl)
    inp.code_type = "sparse"
    with pytest.raises(ValueError, match="no exact ranking"):
        ev.tie_groups(inp, slice(0, 2), None)


# ----------------------------------------------------------------------------- evaluate() and speed rows
def test_evaluate_float_with_speed_rows(cloud):
    c = cloud
    inp = float_inputs(c.q, c.db, c.ql, c.dl, c.in_db, query_features=c.q, database_features=c.db)
    res = evaluate(inp, bits=32, map_at=100, n_classes=4, seed=0, speed=True)
    check_against_brute(res, neg_sq_l2(c.q, c.db), c.ql, c.dl, c.in_db, 100, ks=(1, 10, 100), bits=32)
    opts = {"backend": "faiss_flat_l2", "reference": "faiss_flat_l2_features", "threads": 1}
    # the embedding is the reference feature: the fast search returns exactly the exact top 100
    assert one(res, "recall_of_exact@100", **opts) == pytest.approx(1.0)
    assert one(res, "speedup_wallclock@100", **opts) > 0
    assert one(res, "search_seconds@100", **opts) > 0
    assert one(res, "search_seconds@100", backend="faiss_flat_l2", on="features") > 0
    # P@100 of the fast search: its own item is not excluded there
    ref = brute_ranking(neg_sq_l2(c.q, c.db), c.ql, c.dl, None, None, ks=(100,))
    assert one(res, "precision@100", search="faiss_flat_l2") == pytest.approx(ref["p@100"].mean())
    nmi = nmi_metrics.nmi_kmeans(c.q, c.ql, n_clusters=4, seed=0)
    assert np.isfinite(nmi)
    assert one(res, "nmi_kmeans", on="query_embedding") == pytest.approx(nmi)
    assert set(res.curves) == {"pr_rank"} and "ap|map@100" in res.per_query
    quick = evaluate(inp, bits=32, map_at=100, n_classes=4, seed=0, speed=False)
    assert not rows_of(quick, "recall_of_exact@100") and one(quick, "precision@100", ties="expected") == \
        one(res, "precision@100", ties="expected")


def test_speed_rows_of_binary_and_additive_codes(cloud):
    c = cloud
    rng = np.random.default_rng(3)
    qb, dbb = _pm1(rng, 6, 16), _pm1(rng, 150, 16)
    binp = EvalInputs(code_type="binary", query={"bits": qb}, database={"bits": dbb}, query_labels=c.ql,
                      database_labels=c.dl, query_embedding=c.q, database_embedding=c.db,
                      query_features=c.q, database_features=c.db)
    res = ev.speed_metrics_rows(binp, 16, k=10)
    ham = (16 - qb.astype(int) @ dbb.T.astype(int)) // 2
    got_p = one(res, "precision@10", search="faiss_binary_flat")
    # any top-10 by Hamming distance: the k-th distance decides; P@10 between the two tie orders
    lo, hi = [], []
    for i in range(6):
        order = np.argsort(ham[i], kind="stable")
        kth = ham[i][order[9]]
        rel = (c.dl @ c.ql[i]) > 0
        inside = rel[ham[i] < kth].sum()
        border = ham[i] == kth
        need = 10 - (ham[i] < kth).sum()
        lo.append(inside + max(0, need - (~rel[border]).sum()))
        hi.append(inside + min(need, rel[border].sum()))
    assert np.mean(lo) / 10 <= got_p <= np.mean(hi) / 10
    ex = ev._exact_excluding(c.q, c.db, 10, None)
    ref = ev.flat_search.exact_knn(c.q, c.db, 10, metric="l2")[1]
    assert np.array_equal(ex, ref)
    rec = one(res, "recall_of_exact@10", backend="faiss_binary_flat")
    assert 0 <= rec < 1

    books = rng.standard_normal((1, 16, 3)).astype(np.float32)
    idx = rng.integers(0, 16, (150, 1))
    add = EvalInputs(code_type="additive", query={"features": c.q}, database={"indices": idx}, query_labels=c.ql,
                     database_labels=c.dl, query_embedding=c.q, database_embedding=c.db,
                     code_state={"codebooks": books}, search_metric="l2", query_features=c.q, database_features=c.db)
    res = ev.speed_metrics_rows(add, 8, k=10)
    recon = books[0][idx[:, 0]]
    d = -neg_sq_l2(c.q, recon)
    # the LUT top-10 ids have the 10 smallest reconstruction distances (ties broken any way)
    kth = np.sort(d, 1)[:, 9:10]
    rel_lo = [((c.dl[d[i] < kth[i]] @ c.ql[i]) > 0).sum() for i in range(6)]
    rel_hi = [((c.dl[d[i] <= kth[i]] @ c.ql[i]) > 0).sum() for i in range(6)]
    p = one(res, "precision@10", search="lut")
    assert np.mean(rel_lo) / 10 - 1e-12 <= p <= np.mean(rel_hi) / 10 + 1e-12
    assert not ev.speed_metrics_rows(float_inputs(c.q, c.db, c.ql, c.dl), 8).rows   # no reference features


def test_relevance_of_padding_and_multilabel():
    ql = np.array([[1, 0, 1], [0, 1, 0]])
    dl = np.array([[1, 0, 0], [0, 0, 1], [0, 1, 0], [1, 1, 1]])
    ids = np.array([[0, 1, 2, -1], [3, -1, 0, 2]])
    assert ev._relevance_of(ids, ql, dl).tolist() == [[1, 1, 0, 0], [1, 0, 0, 1]]


def test_exact_excluding_removes_only_the_own_item():
    db = np.arange(10, dtype=np.float32)[:, None]
    q = np.array([[3.0], [0.2], [9.0]], np.float32)
    ids = ev._exact_excluding(q, db, 3, np.array([3, -1, 9]))
    assert ids.tolist() == [[2, 4, 1], [0, 1, 2], [8, 7, 6]]
    assert ev._exact_excluding(q, db, 3, None).tolist() == [[3, 2, 4], [0, 1, 2], [9, 8, 7]]
    assert ev._exact_excluding(q, db[:3], 3, np.array([0, -1, 2])).tolist() == [[2, 1, -1], [0, 1, 2], [1, 0, -1]]


def test_n_relevant_excludes_the_query_itself():
    ql = np.array([[1, 0], [0, 1], [1, 1]])
    dl = np.array([[1, 0], [1, 0], [0, 1], [1, 1]])
    assert ev._n_relevant(ql, dl, None).tolist() == [3, 2, 4]
    assert ev._n_relevant(ql, dl, np.array([0, -1, 3])).tolist() == [2, 2, 3]


# ----------------------------------------------------------------------------- sparse codes
def brute_sparse(buckets, scores, emb_q, emb_db, ql, dl, in_db, s, k, rerank=True):
    """Hash-table search by its definition: candidates = items of the query's s best buckets (own
    item removed), next-best buckets added while fewer than k; re-ranked by squared distance
    (stable: bucket order, ascending id within a bucket)."""
    n_db = len(buckets)
    ids_out, n_cand, ranked = [], [], []
    for i in range(len(scores)):
        order = np.argsort(-scores[i], kind="stable")
        cand: list[int] = []
        r = 0
        while r < len(order) and (r < s or len(cand) < k):
            for item in range(n_db):
                if order[r] in buckets[item] and item != in_db[i] and item not in cand:
                    cand.append(item)
            r += 1
        cand_a = np.array(cand, dtype=np.int64)
        if rerank and cand_a.size:
            d = ((emb_db[cand_a].astype(np.float64) - emb_q[i]) ** 2).sum(1)
            cand_a = cand_a[np.argsort(d, kind="stable")]
        n_cand.append(len(cand))
        ranked.append(cand_a)
        top = np.full(k, -1)
        top[: min(k, cand_a.size)] = cand_a[:k]
        ids_out.append(top)
    return np.array(ids_out), np.array(n_cand), ranked


@pytest.fixture(scope="module")
def sparse_case():
    rng = np.random.default_rng(11)
    n_db, d, s = 60, 6, 2
    dl = onehot(rng.integers(0, 3, n_db), 3)
    emb_db = rng.standard_normal((n_db, 4)).astype(np.float32)
    db_scores = rng.standard_normal((n_db, d)).astype(np.float32)
    buckets = np.argsort(-db_scores, 1, kind="stable")[:, :s].astype(np.int64)
    in_db = np.array([3, 17, -1, 40, -1])
    q_scores = rng.standard_normal((5, d)).astype(np.float32)
    emb_q = rng.standard_normal((5, 4)).astype(np.float32)
    ql = onehot(rng.integers(0, 3, 5), 3)
    for i, j in enumerate(in_db):
        if j >= 0:
            q_scores[i], emb_q[i], ql[i] = db_scores[j], emb_db[j], dl[j]
    return SimpleNamespace(dl=dl, ql=ql, emb_db=emb_db, emb_q=emb_q, buckets=buckets, q_scores=q_scores,
                           in_db=in_db, s=s, n_db=n_db)


def sparse_inputs(c, rerank=True, in_db=True, features=False):
    return EvalInputs(code_type="sparse", query={"buckets": None, "bucket_scores": c.q_scores},
                      database={"buckets": c.buckets}, query_labels=c.ql, database_labels=c.dl,
                      query_embedding=c.emb_q, database_embedding=c.emb_db, rerank=rerank,
                      query_in_database=c.in_db if in_db else None,
                      query_features=c.emb_q if features else None, database_features=c.emb_db if features else None)


def _rel(ids, c):
    return np.array([[(j >= 0) and ((c.dl[j] @ c.ql[i]) > 0) for j in row] for i, row in enumerate(ids)], float)


@pytest.mark.parametrize("rerank", [True, False])
def test_sparse_metrics_match_brute_force(sparse_case, rerank):
    c = sparse_case
    res = sparse_metrics(sparse_inputs(c, rerank), bits=6, s=c.s, ks=(1, 4, 16, 100))
    opts = {"rerank": "embedding" if rerank else "none", "s": c.s}
    for k in (1, 4, 16):
        ids, n_cand, _ = brute_sparse(c.buckets, c.q_scores, c.emb_q, c.emb_db, c.ql, c.dl, c.in_db, c.s, k, rerank)
        rel = _rel(ids, c)
        assert one(res, f"precision@{k}", **opts, search="hash_table") == pytest.approx(rel.sum(1).mean() / k)
        assert one(res, f"hit_rate@{k}", **opts, search="hash_table") == pytest.approx((rel.sum(1) > 0).mean())
        assert one(res, f"suf@{k}", **opts) == pytest.approx(c.n_db / n_cand.mean())
        # exhaustive search in the embedding, own item excluded: a shift by one changes these
        d = -neg_sq_l2(c.emb_q, c.emb_db)
        exact = []
        for i in range(len(d)):
            o = np.argsort(d[i], kind="stable")
            exact.append(o[o != c.in_db[i]][:k])
        rel_x = _rel(np.array(exact), c)
        assert one(res, f"precision@{k}", search="exhaustive_embedding") == pytest.approx(rel_x.sum(1).mean() / k)
        assert one(res, f"hit_rate@{k}", search="exhaustive_embedding") == pytest.approx((rel_x.sum(1) > 0).mean())
    assert not rows_of(res, "precision@100")                    # k > N is left out
    # map@candidates over the re-ranked own-bucket list (k = 1 expansion rule)
    _, n_cand, ranked = brute_sparse(c.buckets, c.q_scores, c.emb_q, c.emb_db, c.ql, c.dl, c.in_db, c.s, 1, rerank)
    n_rel = np.array([((c.dl @ c.ql[i]) > 0).sum() - (c.in_db[i] >= 0) for i in range(len(c.ql))])
    ap_rr, ap_all = [], []
    for i, lst in enumerate(ranked):
        rel = ((c.dl[lst] @ c.ql[i]) > 0).astype(float)
        s = (np.cumsum(rel) / np.arange(1, rel.size + 1) * rel).sum()
        ap_rr.append(s / rel.sum() if rel.sum() else 0.0)
        ap_all.append(s / n_rel[i] if n_rel[i] else 0.0)
    assert one(res, "map@candidates", **opts, denominator="relevant_retrieved") == pytest.approx(np.mean(ap_rr))
    assert one(res, "map@candidates", **opts, denominator="all_relevant") == pytest.approx(np.mean(ap_all))
    assert res.per_query["ap|map@candidates"] == pytest.approx(ap_all)
    assert one(res, "candidates_per_query", **opts, expansion="none") == pytest.approx(n_cand.mean())
    want_nmi = nmi_metrics.nmi_buckets(c.buckets, c.dl.argmax(1))
    assert one(res, "nmi_buckets", table="database") == pytest.approx(want_nmi)


def test_sparse_self_exclusion_matters(sparse_case):
    c = sparse_case
    a = sparse_metrics(sparse_inputs(c), bits=6, s=c.s, ks=(1,))
    b = sparse_metrics(sparse_inputs(c, in_db=False), bits=6, s=c.s, ks=(1,))
    # every in-database query finds itself first without exclusion
    assert one(b, "precision@1", search="exhaustive_embedding") > one(a, "precision@1", search="exhaustive_embedding")
    assert one(b, "precision@1", search="hash_table") > one(a, "precision@1", search="hash_table")


def test_sparse_multilabel_database_has_no_bucket_nmi(sparse_case):
    c = sparse_case
    inp = sparse_inputs(c)
    inp.database_labels = c.dl.copy()
    inp.database_labels[0, :] = 1
    res = sparse_metrics(inp, bits=6, s=c.s, ks=(1,))
    assert not rows_of(res, "nmi_buckets")


def test_evaluate_sparse_with_speed_rows(sparse_case):
    c = sparse_case
    res = evaluate(sparse_inputs(c, features=True), bits=6, map_at=None, n_classes=3, seed=0, speed=True)
    assert not rows_of(res, "map@all")                      # sparse codes: hash-table metrics only
    opts = {"rerank": "embedding", "s": c.s, "backend": "hash_table", "threads": 1}
    k = min(ev.SPEED_K, c.n_db)
    ids, _, _ = brute_sparse(c.buckets, c.q_scores, c.emb_q, c.emb_db, c.ql, c.dl, c.in_db, c.s, k)
    for ref, (q, db) in {"embedding": (c.emb_q, c.emb_db), "features": (c.emb_q, c.emb_db)}.items():
        exact = ev._exact_excluding(q, db, k, c.in_db)
        want = ev.speed_metrics.recall_of_exact_topk(ids, exact)
        assert one(res, f"recall_of_exact@{k}", **opts, reference=f"faiss_flat_l2_{ref}") == pytest.approx(want)
        assert one(res, f"speedup_wallclock@{k}", **opts, reference=f"faiss_flat_l2_{ref}") > 0
        assert one(res, f"search_seconds@{k}", backend="faiss_flat_l2", on=ref) > 0
    assert one(res, f"search_seconds@{k}", **opts) > 0
    assert one(res, "nmi_kmeans", on="query_embedding") == pytest.approx(
        nmi_metrics.nmi_kmeans(c.emb_q, c.ql, n_clusters=3, seed=0))
    assert "ap|map@candidates" in res.per_query
    quick = evaluate(sparse_inputs(c), bits=6, map_at=None, n_classes=3, seed=0, speed=False)
    assert not rows_of(quick, f"speedup_wallclock@{k}")


# ----------------------------------------------------------------------------- codes.npz round trip
@pytest.mark.parametrize("code_type", ["binary", "float", "additive", "sparse"])
def test_codes_npz_round_trip_recomputes_the_same_metrics(tmp_path, code_type, sparse_case, cloud):
    c = cloud
    rng = np.random.default_rng(4)
    state = {}
    if code_type == "binary":
        qb, dbb = _pm1(rng, 6, 8), _pm1(rng, 150, 8)
        inp = EvalInputs("binary", {"bits": qb}, {"bits": dbb}, c.ql, c.dl, c.q, c.db, query_in_database=c.in_db)
    elif code_type == "float":
        inp = float_inputs(c.q, c.db, c.ql, c.dl, c.in_db)
    elif code_type == "additive":
        state = {"codebooks": rng.standard_normal((2, 8, 3)).astype(np.float32)}
        inp = EvalInputs("additive", {"indices": rng.integers(0, 8, (6, 2)), "features": c.q},
                         {"indices": rng.integers(0, 8, (150, 2)), "features": c.db}, c.ql, c.dl, c.q, c.db,
                         code_state=state, search_metric="l2", query_in_database=c.in_db)
    else:
        sc = sparse_case
        inp = sparse_inputs(sc, rerank=False)
        inp.query = {"buckets": np.argsort(-sc.q_scores, 1)[:, :2], "bucket_scores": sc.q_scores}
    arrays = runner.codes_npz(inp)
    np.savez(tmp_path / "codes.npz", **arrays)
    with np.load(tmp_path / "codes.npz") as z:
        back = runner.inputs_from_npz(z)
    assert back.code_type == code_type and back.rerank == inp.rerank and back.search_metric == inp.search_metric
    assert np.array_equal(back.query_in_database, inp.query_in_database)
    n_classes = inp.query_labels.shape[1]
    a = evaluate(inp, 8, None, n_classes, 0, speed=False)
    b = evaluate(back, 8, None, n_classes, 0, speed=False)
    assert [(n, o) for _, n, o, _ in a.rows] == [(n, o) for _, n, o, _ in b.rows]
    assert np.allclose([v for *_, v in a.rows], [v for *_, v in b.rows], equal_nan=True)


def test_sparse_edge_cases_k_equal_to_n_float64_embeddings_and_rows_at_the_given_bits(sparse_case):
    """k = N is evaluated, k > N is left out without error, float64 embeddings give the float32
    result (faiss needs float32), and every row carries the code length it was asked for."""
    c = sparse_case
    base = sparse_metrics(sparse_inputs(c), bits=6, s=c.s, ks=(1, c.n_db))
    assert rows_of(base, f"precision@{c.n_db}", search="exhaustive_embedding")
    assert all(b == 6 for b, *_ in base.rows)
    wide = sparse_inputs(c)
    wide.query_embedding = c.emb_q.astype(np.float64)
    wide.database_embedding = c.emb_db.astype(np.float64)
    res = sparse_metrics(wide, bits=6, s=c.s, ks=(1, c.n_db))
    assert [(n, o) for _, n, o, _ in res.rows] == [(n, o) for _, n, o, _ in base.rows]
    assert np.allclose([v for *_, v in res.rows], [v for *_, v in base.rows])
    none = sparse_metrics(sparse_inputs(c), bits=6, s=c.s, ks=(c.n_db + 1,))
    assert not rows_of(none, f"precision@{c.n_db + 1}") and rows_of(none, "map@candidates")


@pytest.mark.parametrize("code_type", ["binary", "additive", "sparse"])
def test_codes_npz_leaves_out_a_database_embedding_equal_to_the_reference_features(tmp_path, code_type,
                                                                                   sparse_case, cloud):
    """Frozen-feature runs: the database embedding is the reference features, so codes.npz keeps a
    marker instead of a second copy, and every metric still recomputes from the file; sparse codes
    (whose re-ranking reads the embedding) and embeddings that differ keep theirs."""
    c, rng = cloud, np.random.default_rng(5)
    if code_type == "sparse":
        inp = sparse_inputs(sparse_case, rerank=True)
        inp.query = {"buckets": np.argsort(-sparse_case.q_scores, 1)[:, :2], "bucket_scores": sparse_case.q_scores}
    elif code_type == "binary":
        inp = EvalInputs("binary", {"bits": _pm1(rng, 6, 8)}, {"bits": _pm1(rng, 150, 8)}, c.ql, c.dl, c.q, c.db)
    else:
        state = {"codebooks": rng.standard_normal((2, 8, 3)).astype(np.float32)}
        inp = EvalInputs("additive", {"indices": rng.integers(0, 8, (6, 2)), "features": c.q},
                         {"indices": rng.integers(0, 8, (150, 2))}, c.ql, c.dl, c.q, c.db, code_state=state)
    inp.query_features, inp.database_features = inp.query_embedding, inp.database_embedding.copy()
    arrays = runner.codes_npz(inp)
    dropped = code_type != "sparse"
    assert ("database_embedding" not in arrays) == dropped
    assert (str(arrays.get("database_embedding_source", "")) == "database_features") == dropped
    np.savez(tmp_path / "codes.npz", **arrays)
    with np.load(tmp_path / "codes.npz") as z:
        back = runner.inputs_from_npz(z)
    assert "embedding_source" not in back.database
    n_classes = inp.query_labels.shape[1]
    a, b = (evaluate(x, 8, None, n_classes, 0, speed=False) for x in (inp, back))
    assert a.rows == b.rows
    inp.database_features = inp.database_features + 1.0  # not the embedding: kept
    assert "database_embedding" in runner.codes_npz(inp)
