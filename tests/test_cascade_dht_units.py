"""Cascading Deep Hash Table module pieces the loss tests do not reach (issue 24's mutation testing
of ``methods/cascade_dht.py``): leaf ids of three levels by hand, the d^L bound, the per-level
layout of the Hash output, the hand-over of the configured penalties to the level-wise solver (a
spy), dynamic labels broadcast to samples, and the level-wise groups of a three-level problem."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hashbench.methods import cascade_dht as C
from hashbench.methods.backbones import build_backbone
from hashbench.methods.base import UnsupportedBitsError
from hashbench.methods.min_cost_flow import solve_class_codes


def _model(**hp):
    torch.manual_seed(0)
    hp = {"levels": 2, **hp}
    return C.CascadeDHT(bits=3, n_classes=4, backbone=build_backbone("identity", in_dim=5), hidden_dims=[8],
                        **hp).eval()


def test_leaf_ids_of_three_levels_by_hand():
    # d = 3: argmax path (2, 1), last level ranks 0 > 2 > 1 -> leaves (2·3 + 1)·3 + b = 21 + b
    scores = torch.tensor([[[0.0, 0.1, 0.9], [0.2, 0.8, 0.1], [0.7, 0.1, 0.5]]])
    assert C.leaf_ids(scores, 2).tolist() == [[21, 23]]
    assert C.leaf_ids(scores, 1).tolist() == [[21]]
    assert C.leaf_ids(scores[:, :1], 2).tolist() == [[2, 1]]            # one level: the flat top-s


def test_leaf_ids_must_fit_int64_and_levels_are_positive():
    C.CascadeDHT.check_bits(2, sparsity=1, levels=61)                    # 2^61 < 2^62
    C.CascadeDHT.check_bits(4, sparsity=1, levels=1)                     # one level is allowed
    C.CascadeDHT.check_bits(1)                                           # defaults s = 1 ...
    C.CascadeDHT.check_bits(2**21)                                       # ... and L = 2: 2^42 leaves
    with pytest.raises(UnsupportedBitsError, match="d\\^L"):
        C.CascadeDHT.check_bits(2, sparsity=1, levels=62)
    with pytest.raises(UnsupportedBitsError):
        C.CascadeDHT.check_bits(4, sparsity=1, levels=0)
    with pytest.raises(UnsupportedBitsError, match="sparsity"):
        C.CascadeDHT.check_bits(4, sparsity=5, levels=2)
    with pytest.raises(ValueError, match="labels"):
        _model(labels="both")


def test_hash_output_is_laid_out_level_by_level():
    m = _model(levels=2, sparsity=2)
    assert m.hash_width() == 6 and m.hash_head.out_features == 6
    x = torch.randn(4, 5)
    f = m.hash_output(x)
    scores = m.bucket_scores(x)
    assert scores.shape == (4, 2, 3) and torch.equal(scores[:, 1], f[:, 3:])
    out = m.encode(x)
    assert torch.equal(out["bucket_scores"], scores)
    assert torch.equal(out["buckets"], C.leaf_ids(scores, 2))


def test_normalise_levels_by_hand():
    m = _model(levels=2)
    f = torch.tensor([[3.0, 4.0, 0.0, 0.0, 0.0, 2.0]])
    assert torch.allclose(m.normalise_levels(f), torch.tensor([[0.6, 0.8, 0.0, 0.0, 0.0, 1.0]]))


@pytest.mark.parametrize("loss", ["triplet", "npairs"])
def test_rerank_hash_normalises_each_level_for_triplet_only(loss):
    m = _model(rerank="hash", loss=loss)
    x = torch.randn(4, 5)
    f = m.hash_output(x)
    want = torch.cat([F.normalize(f[:, :3], dim=1), F.normalize(f[:, 3:], dim=1)], 1) if loss == "triplet" else f
    assert torch.allclose(m.embed(x), want)
    stage1 = _model(rerank="stage1", loss=loss)
    assert torch.allclose(stage1.embed(x), stage1.stage1_embedding(x))


def test_configured_penalties_and_sparsity_reach_the_level_wise_solver(monkeypatch):
    calls = []

    def spy(unaries, s, lam_sibling, lam_global):
        calls.append((unaries.shape, s, lam_sibling, lam_global))
        return [np.eye(3, dtype=np.uint8)[: len(unaries)]] * 2

    monkeypatch.setattr(C, "cascade_class_codes", spy)
    m = _model(levels=2, sparsity=2, sibling_penalty=7.0, pairwise_penalty=0.25)
    m.solve_codes(np.zeros((3, 6)))
    assert calls == [((3, 2, 3), 2, 7.0, 0.25)]


def test_solve_codes_splits_the_unaries_by_level():
    rng = np.random.default_rng(4)
    u = rng.normal(size=(4, 6))
    m = _model(levels=2, sparsity=2, sibling_penalty=3.0, pairwise_penalty=0.5)
    got = m.solve_codes(u)
    want = C.cascade_class_codes(u.reshape(4, 2, 3), 2, 3.0, 0.5)
    assert all(np.array_equal(a, b) for a, b in zip(got, want))


def test_dynamic_labels_are_broadcast_to_the_samples():
    m = _model(levels=2, labels="dynamic")
    codes = [np.array([[1, 0, 0], [1, 0, 0], [0, 0, 1]]), np.array([[0, 1, 1], [1, 1, 0], [0, 1, 1]])]
    inverse = torch.tensor([2, 0, 1, 0])
    labels = m.code_labels(codes, torch.tensor([7, 5, 6, 5]), inverse)
    # level 1: buckets 0 0 2 per class; level 2: sets {1,2} {0,1} {1,2} -> ids 0 1 0 (the
    # distinct rows in sorted order: 011 < 110); samples take their class's row
    assert labels.tolist() == [[2, 0], [0, 0], [0, 1], [0, 0]]


def test_three_level_codes_group_by_the_argmax_path_and_use_s_at_the_last_level_only():
    rng = np.random.default_rng(5)
    u = rng.normal(size=(6, 3, 2))
    codes = C.cascade_class_codes(u, s=2, lam_sibling=0.5, lam_global=0.1)
    assert [c.sum(1).tolist() for c in codes] == [[1] * 6, [1] * 6, [2] * 6]
    path = codes[0].argmax(1) * 2 + codes[1].argmax(1)                  # the level-3 parent group
    assert np.array_equal(codes[2], solve_class_codes(u[:, 2], 2, 0.1, groups=path, lam_group=0.5))
    assert np.array_equal(codes[0], solve_class_codes(u[:, 0], 1, 0.1))


def test_dynamic_labels_of_three_levels_take_the_set_id_from_the_last_level():
    level1 = np.array([[1, 0], [1, 0], [0, 1]])
    level2 = np.array([[1, 0], [0, 1], [0, 1]])                 # argmax 0 1 1
    level3 = np.array([[1, 1], [1, 1], [1, 0]])                 # sets {0,1} {0,1} {0}: ids 1 1 0
    labels = C.dynamic_labels([level1, level2, level3])
    assert labels.dtype == np.int64
    assert labels.tolist() == [[0, 0, 1], [0, 1, 1], [1, 1, 0]]
