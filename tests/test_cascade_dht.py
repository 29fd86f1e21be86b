"""Cascading Deep Hash Table: leaf ids, the hash tree's expansion order (the §3.6 worked example),
dynamic labels, the sibling penalty, and full expansion = exhaustive search."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from hashbench.benchmark.search import sparse
from hashbench.methods.cascade_dht import cascade_class_codes, dynamic_labels, leaf_ids
from hashbench.methods.min_cost_flow import solve_class_codes


def _scores_with_ranks(*ranks):
    """(1, L, d) scores whose descending order at level l is ranks[l]."""
    d = len(ranks[0])
    out = np.zeros((1, len(ranks), d))
    for level, order in enumerate(ranks):
        out[0, level, list(order)] = np.arange(d, 0, -1)
    return out


def test_worked_example_leaves_and_expansion_order():
    # d = 4, L = 2, s = 2; level-1 ranks (2, 0, 3, 1), level-2 ranks (1, 3, 0, 2)
    scores = _scores_with_ranks((2, 0, 3, 1), (1, 3, 0, 2))
    assert leaf_ids(torch.from_numpy(scores), s=2).tolist() == [[9, 11]]
    order = sparse.bucket_order(scores)
    assert order[0, :6].tolist() == [9, 11, 8, 10, 1, 3]
    assert sorted(order[0].tolist()) == list(range(16))            # every leaf exactly once


def test_flat_bucket_order_is_the_descending_argsort():
    assert sparse.bucket_order(np.array([[0.1, 0.7, 0.3]])).tolist() == [[1, 2, 0]]


def test_dynamic_labels_hand_example():
    level1 = np.array([[1, 0], [1, 0], [0, 1]], np.uint8)             # buckets 0, 0, 1
    level2 = np.array([[0, 1, 1, 0], [0, 1, 1, 0], [1, 0, 0, 1]], np.uint8)
    # classes 0 and 1 share bucket 0 at level 1 and the set {1, 2} at level 2: same labels
    labels = dynamic_labels([level1[:, :2], level2])
    assert labels[:, 0].tolist() == [0, 0, 1]
    assert labels[0, 1] == labels[1, 1] != labels[2, 1]


def test_sibling_penalty_keeps_siblings_apart():
    rng = np.random.default_rng(0)
    u = rng.normal(size=(4, 2, 5))
    u[:, 0, 0] += 10.0            # every class picks bucket 0 at level 1: one parent group of 4
    u[:, 1, 3] += 5.0             # and all prefer child 3
    codes = cascade_class_codes(u, s=1, lam_sibling=100.0, lam_global=0.0)
    assert codes[0][:, 0].tolist() == [1, 1, 1, 1]
    assert codes[1].sum(0).max() == 1                               # d = 5 ≥ 4 siblings: all distinct
    loose = cascade_class_codes(u, s=1, lam_sibling=0.0, lam_global=0.0)
    assert loose[1][:, 3].sum() == 4                                # without λ₁ they collide


def test_one_level_is_the_single_level_problem():
    rng = np.random.default_rng(1)
    u = rng.normal(size=(6, 1, 5))
    (codes,) = cascade_class_codes(u, s=2, lam_sibling=100.0, lam_global=0.3)
    assert np.array_equal(codes, solve_class_codes(u[:, 0], 2, 0.3))


def test_second_level_groups_follow_the_first_level_argmax():
    rng = np.random.default_rng(2)
    u = rng.normal(size=(5, 2, 3))
    codes = cascade_class_codes(u, s=2, lam_sibling=0.5, lam_global=0.2)
    parent = codes[0].argmax(1)
    assert np.array_equal(codes[1], solve_class_codes(u[:, 1], 2, 0.2, groups=parent, lam_group=0.5))


@pytest.mark.parametrize("seed", range(5))
def test_full_tree_expansion_equals_exhaustive_rerank(seed):
    rng = np.random.default_rng(seed)
    d, n_levels, s, n, nq = 3, 2, 2, 40, 6
    db_scores = torch.from_numpy(rng.normal(size=(n, n_levels, d)))
    q_scores = rng.normal(size=(nq, n_levels, d))
    table = sparse.InvertedHashTable.build(leaf_ids(db_scores, s).numpy())
    emb_q, emb_db = rng.normal(size=(nq, 4)), rng.normal(size=(n, 4))
    out = sparse.search(table, sparse.bucket_order(q_scores), s, n, emb_q, emb_db)
    brute = np.argsort(((emb_q[:, None] - emb_db[None]) ** 2).sum(2), axis=1, kind="stable")
    assert np.array_equal(out.ids, brute)
    assert (out.n_candidates == n).all()
