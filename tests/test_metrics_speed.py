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
