"""Exhaustive float search vs numpy, and the timing helper's protocol and thread handling."""

import time

import faiss
import numpy as np
import pytest
import torch

from hashbench.benchmark.search.flat import exact_knn
from hashbench.benchmark.search.timing import time_call


def test_exact_knn_hand_values():
    db = np.array([[0, 0], [3, 0], [0, 1], [-2, -2]], dtype=np.float32)
    q = np.array([[1, 0]], dtype=np.float32)
    d, i = exact_knn(q, db, 3, metric="l2")
    np.testing.assert_array_equal(i, [[0, 2, 1]])
    np.testing.assert_allclose(d, [[1, 2, 4]])
    s, i = exact_knn(q, db, 2, metric="ip")
    np.testing.assert_array_equal(i, [[1, 0]])  # <q, x> = 3, 0, 0, -2: tie 0/2 -> lower id first
    np.testing.assert_allclose(s, [[3, 0]])


@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_exact_knn_equals_brute_force(metric):
    rng = np.random.default_rng(0)
    db = rng.standard_normal((700, 24)).astype(np.float32)
    q = rng.standard_normal((30, 24)).astype(np.float32)
    if metric == "l2":
        full = ((q[:, None].astype(np.float64) - db[None]) ** 2).sum(-1)
        expect = np.argsort(full, axis=1)[:, :12]
    else:
        full = q.astype(np.float64) @ db.T
        expect = np.argsort(-full, axis=1)[:, :12]
    scores, ids = exact_knn(q, db, 12, metric=metric)
    np.testing.assert_array_equal(ids, expect)
    np.testing.assert_allclose(scores, np.take_along_axis(full, expect, 1), rtol=1e-4, atol=1e-4)


def test_exact_knn_pads_when_k_exceeds_database():
    _, ids = exact_knn(np.zeros((1, 2), np.float32), np.ones((2, 2), np.float32), 4)
    np.testing.assert_array_equal(ids, [[0, 1, -1, -1]])
    with pytest.raises(ValueError):
        exact_knn(np.zeros((1, 3)), np.ones((2, 2)), 1)


@pytest.fixture(autouse=True)
def keep_thread_settings():
    before = faiss.omp_get_max_threads(), torch.get_num_threads()
    yield
    faiss.omp_set_num_threads(before[0])
    torch.set_num_threads(before[1])


def test_time_call_protocol_and_thread_restore():
    calls, seen = [], []

    def fn():
        calls.append(1)
        seen.append((faiss.omp_get_max_threads(), torch.get_num_threads()))

    faiss.omp_set_num_threads(2)
    torch_before = torch.get_num_threads()
    out = time_call(fn, repeats=4, warmup=2, threads=1)
    assert len(calls) == 6
    assert set(seen) == {(1, 1)}
    assert (faiss.omp_get_max_threads(), torch.get_num_threads()) == (2, torch_before)
    assert len(out["all_s"]) == 4 and out["threads"] == 1
    assert out["best_s"] == min(out["all_s"]) <= out["median_s"] <= max(out["all_s"])
    assert out["median_s"] == float(np.median(out["all_s"]))


def test_time_call_restores_threads_on_error_and_measures_time():
    faiss.omp_set_num_threads(2)

    def boom():
        raise RuntimeError("x")

    with pytest.raises(RuntimeError):
        time_call(boom, threads=1)
    assert faiss.omp_get_max_threads() == 2
    out = time_call(lambda: time.sleep(0.01), repeats=2, warmup=0, threads=None)
    assert out["threads"] is None and out["best_s"] >= 0.009
