"""The one-pass evaluation engine: every metric equal, bit for bit, to the per-metric functions of
the spec (``benchmark.metrics.ranking``) and to brute force over all tie orders; dense-score tie
groups equal to ``score_tie_groups``; both engines of ``ranking_metrics`` agree; the float reference
search is timed once per run and repeats stay within their budget."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from hashbench.benchmark import evaluate as ev
from hashbench.benchmark.metrics import dense_groups, onepass, ranking
from hashbench.benchmark.search import timing
from test_metrics_ranking import all_orders, ap_of_sequence, random_groups

KS = (1, 2, 3, 5, 7, 10, 20, 50, 200)
VARIANTS = ev.MAP_VARIANTS + [{"ties": "optimistic", "denominator": "all_relevant", "empty": "skip"},
                              {"ties": "pessimistic", "denominator": "min_k_all_relevant", "empty": "skip_no_relevant_in_database"}]


def random_table(rng, q_max=40, g_max=50):
    """Tie groups with large ties, singletons, empty groups, queries without relevant items."""
    q, g = int(rng.integers(1, q_max)), int(rng.integers(1, g_max))
    n = rng.integers(0, 6, (q, g))
    n[rng.random((q, g)) < 0.3] = 1
    r = rng.binomial(n, rng.random((q, 1)))
    r[rng.random(q) < 0.15] = 0
    return n, r


def assert_table_equals_per_metric_functions(n, r, map_at, radius=2):
    out = onepass.ranking_table(n, r, map_at, VARIANTS, KS, radius=radius, threads=2)
    for opts, got in zip(VARIANTS, out["ap"]):
        want = ranking.average_precision(n, r, k=map_at, **opts)
        assert np.array_equal(got, want, equal_nan=True), (opts, map_at)
    for k in KS:
        assert np.array_equal(out["precision"][k], ranking.precision_at_k(n, r, k))
        assert np.array_equal(out["recall"][k], ranking.recall_at_k(n, r, k), equal_nan=True)
    assert np.array_equal(out["radius"], ranking.precision_within_radius(n, r, radius))


@pytest.mark.parametrize("map_at", [None, 1, 3, 10, 25, 1000])
def test_onepass_equals_the_per_metric_functions_bit_for_bit(map_at):
    rng = np.random.default_rng(map_at or 0)
    for _ in range(60):
        assert_table_equals_per_metric_functions(*random_table(rng), map_at)


def test_onepass_blocks_of_queries_and_wide_tables(monkeypatch):
    """Blocks of a few queries (as for tables with one group per score) and the k + 2 shortcut."""
    monkeypatch.setattr(ranking, "_ROW_BLOCK_ELEMS", 64)
    rng = np.random.default_rng(7)
    for map_at in (None, 4, 30):
        for _ in range(8):
            assert_table_equals_per_metric_functions(*random_table(rng, q_max=20, g_max=150), map_at)
    n = np.ones((5, 300), dtype=np.int64)  # singletons, one row shorter (zero padding)
    n[2, 100:] = 0
    r = (rng.random((5, 300)) < 0.2).astype(np.int64) * n
    for map_at in (None, 5, 150, 299):
        assert_table_equals_per_metric_functions(n, r, map_at)


def test_onepass_against_brute_force_over_all_tie_orders():
    rng = np.random.default_rng(3)
    for _ in range(120):
        n, r = random_groups(rng)
        k = None if rng.random() < 0.3 else int(rng.integers(1, n.sum() + 3))
        orders = list(all_orders(n, r))
        out = onepass.ranking_table(n[None], r[None], k, ev.MAP_VARIANTS, [1, 2, 4, 9])
        for opts, got in zip(ev.MAP_VARIANTS, out["ap"]):
            if opts["ties"] != "expected":
                continue
            values = np.array([ap_of_sequence(o, r.sum(), k, opts["denominator"], opts["empty"]) for o in orders])
            want = np.nanmean(values) if np.isfinite(values).any() else np.nan
            np.testing.assert_allclose(got[0], want, rtol=1e-12, atol=1e-14)
        for c in (1, 2, 4, 9):
            hits = np.mean([o[:c].sum() for o in orders])
            assert out["precision"][c][0] == pytest.approx(hits / c, abs=1e-14)
            if r.sum():
                assert out["recall"][c][0] == pytest.approx(hits / r.sum(), abs=1e-14)


def test_onepass_refuses_what_it_does_not_compute():
    n = r = np.ones((2, 3), dtype=np.int64)
    with pytest.raises(ValueError, match="ties"):
        onepass.ranking_table(n, r, None, [{"ties": "index"}], [1])
    with pytest.raises(ValueError, match="0 ≤ r ≤ n"):
        onepass.ranking_table(n, r + 1, None, ev.MAP_VARIANTS, [1])
    with pytest.raises(ValueError, match="positive"):
        onepass.ranking_table(n, r, 0, ev.MAP_VARIANTS, [1])


# ----------------------------------------------------------------------------- dense tie groups

def random_scores(rng, q, nn):
    s = rng.integers(-3, 4, size=(q, nn)).astype(np.float32) * np.float32(0.5)  # many ties
    s[rng.random((q, nn)) < 0.1] = -0.0  # equal to +0.0
    s += rng.standard_normal((q, nn)).astype(np.float32) * (rng.random((q, nn)) < 0.5)
    return s


@pytest.mark.parametrize("multi_label", [False, True])
def test_dense_tie_groups_equal_score_tie_groups(monkeypatch, multi_label):
    monkeypatch.setattr(dense_groups, "_BLOCK_ELEMS", 100)  # several blocks of different widths
    monkeypatch.setattr(dense_groups, "_DEVICE_BLOCK_ELEMS", 100)
    rng = np.random.default_rng(int(multi_label))
    for trial in range(40):
        q, nn = int(rng.integers(1, 25)), int(rng.integers(1, 60))
        s = random_scores(rng, q, nn)
        ql, dl = ((rng.integers(0, 2, (q, 4)), rng.integers(0, 2, (nn, 4))) if multi_label
                  else (rng.integers(0, 3, q), rng.integers(0, 3, nn)))
        excl = None if trial % 4 == 0 else np.where(rng.random(q) < 0.5, rng.integers(0, nn, q), -1)
        want = ranking.score_tie_groups(s, ql, dl, self_exclusion=excl)
        for device in (None, "cpu"):  # numpy sort; torch sort (the CUDA code path, on the CPU)
            got = dense_groups.dense_tie_groups(s, ql, dl, self_exclusion=excl, threads=2, device=device)
            assert got[0].shape == want[0].shape and np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
        d = np.abs(s.astype(np.float64))  # distances: lower is better
        want = ranking.score_tie_groups(-d, ql, dl, self_exclusion=excl)
        got = dense_groups.dense_tie_groups(d, ql, dl, dense_groups.nonnegative_float64_rank_keys, self_exclusion=excl)
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])


def test_rank_keys_order_and_ties():
    s = np.array([[3.0, -0.0, 0.0, -2.5, np.inf, -np.inf, 1e-40, -1e-40]], dtype=np.float32)
    keys = dense_groups.float32_rank_keys(s)[0]
    assert list(np.argsort(keys, kind="stable")) == [4, 0, 6, 1, 2, 7, 3, 5]  # decreasing score
    assert keys[1] == keys[2] and keys.max() < 2 ** 33
    up = dense_groups.float32_rank_keys(s, higher_is_better=False)[0]
    assert list(np.argsort(up, kind="stable")) == [5, 3, 7, 1, 2, 6, 0, 4]
    d = dense_groups.nonnegative_float64_rank_keys(np.array([[2.0, 0.0, -0.0, 1e300, 5e-324]]))[0]
    assert list(np.argsort(d, kind="stable")) == [1, 2, 4, 0, 3] and d[1] == d[2]
    with pytest.raises(ValueError, match="NaN"):
        dense_groups.float32_rank_keys(np.array([[np.nan]], dtype=np.float32))
    with pytest.raises(ValueError, match="non-negative"):
        dense_groups.nonnegative_float64_rank_keys(np.array([[-1.0]]))


# ----------------------------------------------------------------------------- ranking_metrics

def code_inputs(code_type: str, rng, q=30, nn=400, multi=False, in_db=True) -> ev.EvalInputs:
    dim = 8
    xq, xdb = rng.standard_normal((q, dim)).astype(np.float32), rng.standard_normal((nn, dim)).astype(np.float32)
    if multi:
        ql, dl = rng.integers(0, 2, (q, 5)), rng.integers(0, 2, (nn, 5))
    else:
        ql, dl = np.eye(4, dtype=np.int64)[rng.integers(0, 4, q)], np.eye(4, dtype=np.int64)[rng.integers(0, 4, nn)]
    common = dict(query_labels=ql, database_labels=dl, query_embedding=xq, database_embedding=xdb,
                  query_in_database=np.where(rng.random(q) < 0.5, rng.integers(0, nn, q), -1) if in_db else None)
    if code_type == "binary":
        bq, bdb = (np.where(x[:, :6] >= 0, 1, -1).astype(np.int8) for x in (xq, xdb))
        return ev.EvalInputs("binary", {"bits": bq}, {"bits": bdb}, **common)
    if code_type == "additive":
        books = rng.standard_normal((3, 4, dim)).astype(np.float32)  # 64 codes for 400 items: ties
        return ev.EvalInputs("additive", {"features": xq}, {"indices": rng.integers(0, 4, (nn, 3))},
                             code_state={"codebooks": books}, search_metric="l2", **common)
    xdb[:nn // 2:7] = xdb[1:nn // 2:7]  # duplicated items: tied distances
    return ev.EvalInputs("float", {"embedding": xq}, {"embedding": xdb}, **common)


@pytest.mark.parametrize("code_type", ["binary", "additive", "float"])
@pytest.mark.parametrize("multi", [False, True])
def test_ranking_metrics_engines_agree_bit_for_bit(code_type, multi):
    rng = np.random.default_rng(11)
    inp = code_inputs(code_type, rng, multi=multi)
    for map_at, prefix in ((None, None), (17, 2 if code_type == "additive" else None)):
        new = ev.ranking_metrics(inp, 12, map_at, prefix=prefix, chunk=7)
        old = ev.ranking_metrics(inp, 12, map_at, prefix=prefix, chunk=7, engine="reference")
        assert [x[:3] for x in new.rows] == [x[:3] for x in old.rows]
        assert np.array_equal([x[3] for x in new.rows], [x[3] for x in old.rows], equal_nan=True)
        assert new.curves == old.curves
        assert new.per_query.keys() == old.per_query.keys()
        assert all(np.array_equal(new.per_query[k], old.per_query[k], equal_nan=True) for k in new.per_query)
    with pytest.raises(ValueError, match="engine"):
        ev.ranking_metrics(inp, 12, None, engine="fast")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("code_type", ["binary", "additive", "float"])
def test_ranking_metrics_on_cuda_equal_the_cpu(code_type):
    inp = code_inputs(code_type, np.random.default_rng(5), q=50, nn=3000)
    gpu = ev.ranking_metrics(inp, 12, None, device="cuda")
    cpu = ev.ranking_metrics(inp, 12, None, device=None)
    assert np.array_equal([x[3] for x in gpu.rows], [x[3] for x in cpu.rows], equal_nan=True)


# ----------------------------------------------------------------------------- speed rows

def test_float_reference_is_timed_once_per_run(monkeypatch):
    inp = code_inputs("additive", np.random.default_rng(2), in_db=False)
    inp.query_features, inp.database_features = inp.query_embedding, inp.database_embedding
    calls = []
    real = ev.flat_search.exact_knn
    monkeypatch.setattr(ev.flat_search, "exact_knn", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    first = ev.speed_metrics_rows(inp, 3, prefix=1, budget_s=0.0)
    ev.speed_metrics_rows(inp, 6, prefix=2, budget_s=0.0)
    assert len(calls) == 1  # one timed call (budget 0), reused for the second prefix
    ref = [v for _, m, o, v in first.rows if m == "search_seconds@100" and o.get("on") == "features"]
    again = ev.speed_metrics_rows(inp, 9, prefix=3)
    assert [v for _, m, o, v in again.rows if m == "search_seconds@100" and o.get("on") == "features"] == ref


def test_time_within_stops_at_the_budget():
    calls = []
    assert len(timing.time_within(lambda: calls.append(1), budget_s=0.0, max_repeats=5, warmup=2)["all_s"]) == 1
    assert len(calls) == 3  # two warm-ups, one timed call
    assert len(timing.time_within(lambda: None, budget_s=60.0, max_repeats=4)["all_s"]) == 4
    with pytest.raises(ValueError):
        timing.time_within(lambda: None, budget_s=1.0, max_repeats=0)


def test_nmi_is_computed_once_per_run(monkeypatch):
    inp = code_inputs("float", np.random.default_rng(4), in_db=False)
    calls = []
    real = ev.nmi_metrics.nmi_kmeans
    monkeypatch.setattr(ev.nmi_metrics, "nmi_kmeans", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    values = [ev.nmi_rows(inp, b, 4, seed=0).rows[0][3] for b in (8, 16)]
    assert len(calls) == 1 and values[0] == values[1]
    ev.nmi_rows(inp, 8, 4, seed=1)  # another seed is another k-means
    assert len(calls) == 2
