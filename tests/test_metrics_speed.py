"""Golden values for the hardware-free speed metrics (SUF, recall of the exact top-k)."""
import numpy as np
import pytest

from hashbench.benchmark.metrics.speed import recall_of_exact_topk, search_speedup_factor


def test_search_speedup_factor_golden():
    # N = 1000, candidates 10 and 30 → mean 20 → SUF = 1000 / 20 = 50
    assert search_speedup_factor(1000, [10, 30]) == pytest.approx(50.0)
    assert search_speedup_factor(1000, [1000, 1000]) == pytest.approx(1.0)  # linear scan
    assert search_speedup_factor(10, [0, 0]) == float("inf")
    with pytest.raises(ValueError):
        search_speedup_factor(10, [])


def test_recall_of_exact_topk_golden():
    # q0: {1,2,3} ∩ {3,2,9} = 2 of 3; q1: {4,5} (−1 padding) ∩ {5,6,7} = 1 of 3 → mean 1/2
    approx = np.array([[1, 2, 3], [4, 5, -1]])
    exact = np.array([[3, 2, 9], [5, 6, 7]])
    assert recall_of_exact_topk(approx, exact) == pytest.approx(0.5)
    # duplicates count once: {2} ∩ {2,3,4} = 1 of 3
    assert recall_of_exact_topk(np.array([[2, 2, 2]]), np.array([[2, 3, 4]])) == pytest.approx(1 / 3)
    # exact top-k padded (database smaller than k): |E| = 1
    assert recall_of_exact_topk(np.array([[1, 2, 3]]), np.array([[1, -1, -1]])) == pytest.approx(1.0)
    # ids equal across queries are not confused: q0 finds q1's id only
    assert recall_of_exact_topk(np.array([[7], [8]]), np.array([[8], [8]])) == pytest.approx(0.5)


def test_search_speedup_factor_below_one_candidate_per_query():
    # mean 0.5 candidates → SUF = 10 / 0.5 = 20 (not "no candidates at all")
    assert search_speedup_factor(10, [0, 1]) == pytest.approx(20.0)
    assert search_speedup_factor(10, np.array([[2], [2]])) == pytest.approx(5.0)  # any shape of counts


def test_recall_of_exact_topk_edge_ids_and_empty_queries():
    # id 0 is an id like any other: {0,5} ∩ {0,3} = 1 of 2
    assert recall_of_exact_topk(np.array([[0, 5]]), np.array([[0, 3]])) == pytest.approx(0.5)
    # a query whose exact list is all padding is left out, wherever it is: (1/1 + 0/1) / 2
    approx = np.array([[4, -1], [1, 2], [9, -1]])
    exact = np.array([[4, -1], [-1, -1], [8, -1]])
    assert recall_of_exact_topk(approx, exact) == pytest.approx(0.5)
    exact_last_empty = np.array([[4, -1], [8, -1], [-1, -1]])
    assert recall_of_exact_topk(approx, exact_last_empty) == pytest.approx(0.5)
    # approximate ids beyond every exact id do not collide with the next query's keys
    assert recall_of_exact_topk(np.array([[3, 100], [100, 3]]), np.array([[3, -1], [4, -1]])) == pytest.approx(0.5)
    # every query empty: NaN
    assert np.isnan(recall_of_exact_topk(np.array([[1]]), np.array([[-1]])))
