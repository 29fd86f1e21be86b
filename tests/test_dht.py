"""Deep Hash Table: its losses on hand examples, batch codes, the stage schedule, the Th/VQ
baselines sharing its stage 1, and the candidate-list AP."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hashbench.benchmark.metrics.candidates import average_precision_of_lists
from hashbench.methods import metric_losses as ML
from hashbench.methods.backbones import build_backbone
from hashbench.methods.dht import (DeepHashTable, DHTVectorQuantization, anchor_positive_pairs,
                         class_means, stage1_epochs, top_s)
from hashbench.methods.base import UnsupportedBitsError
from hashbench.methods.cascade_dht import CascadeDHT

# 4 samples, classes A A B B, codes h_A = e0, h_B = e1 (rows already unit norm)
G = torch.tensor([[1.0, 0.0, 0.0], [0.8, 0.6, 0.0], [0.0, 1.0, 0.0], [0.0, 0.6, 0.8]])
LABELS = torch.tensor([0, 0, 1, 1])
CODES = torch.tensor([[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 1, 0]])


def test_masked_l1_distance_hand_values():
    d = ML.masked_l1_distances(G, CODES)
    expected = torch.tensor([[0.0, 0.2, 2.0, 1.6],
                             [0.2, 0.0, 1.2, 0.8],
                             [2.0, 1.2, 0.0, 0.4],
                             [1.6, 0.8, 0.4, 0.0]])
    assert torch.allclose(d, expected, atol=1e-6)


def test_masked_triplet_hand_value():
    # (a,p): d_ap, semi-hard negative, hinge with margin 1:
    # (0,1) 0.2 vs 1.6 → 0; (1,0) 0.2 vs 0.8 → 0.4; (2,3) 0.4 vs 1.2 → 0.2; (3,2) 0.4 vs 0.8 → 0.6
    pos, neg = ML.label_masks(LABELS)
    loss = ML.semihard_triplet_from_distances(ML.masked_l1_distances(G, CODES), pos, neg, margin=1.0)
    assert loss.item() == pytest.approx(0.3, abs=1e-6)


def test_triplet_falls_back_to_the_hardest_negative():
    # anchor 0's only negative is closer than its positive: d_n = max negative distance
    dist = torch.tensor([[0.0, 0.9, 0.5], [0.9, 0.0, 0.7], [0.5, 0.7, 0.0]])
    pos, neg = ML.label_masks(torch.tensor([0, 0, 1]))
    # (0,1): 0.9 − 0.5 + 0.1 = 0.5; (1,0): 0.9 − 0.7 + 0.1 = 0.3
    loss = ML.semihard_triplet_from_distances(dist, pos, neg, margin=0.1)
    assert loss.item() == pytest.approx(0.4, abs=1e-6)


def test_masked_npairs_hand_values():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    p = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    y = torch.tensor([0, 1])
    # codes e0, e1 → S = [[1, .5], [0, .5]]: each row's CE = log(1 + e^-0.5)
    ce = math.log(1 + math.exp(-0.5))
    h = torch.tensor([[1, 0], [0, 1]])
    assert ML.npairs_loss(a, p, y, reg=0.0, codes=h).item() == pytest.approx(ce, abs=1e-6)
    # regulariser 0.25·λ·(mean‖a‖² + mean‖p‖²) = 0.25·0.1·(1 + 0.75)
    assert ML.npairs_loss(a, p, y, reg=0.1, codes=h).item() == pytest.approx(ce + 0.04375, abs=1e-6)
    # both codes e0 → S = [[1, .5], [0, 0]]: rows ce and log 2; the mask hides a_1·p_1
    h0 = torch.tensor([[1, 0], [1, 0]])
    assert ML.npairs_loss(a, p, y, reg=0.0, codes=h0).item() == pytest.approx((ce + math.log(2)) / 2, abs=1e-6)
    assert ML.npairs_loss(a, p, y, reg=0.0).item() == pytest.approx(ce, abs=1e-6)   # unmasked = a·pᵀ


def test_class_means_pairs_and_top_s():
    values = torch.tensor([[1.0, 0.0], [3.0, 2.0], [5.0, 5.0], [0.0, 4.0]])
    means, inverse = class_means(values, torch.tensor([7, 2, 7, 2]))
    assert torch.equal(means, torch.tensor([[1.5, 3.0], [3.0, 2.5]]))
    assert inverse.tolist() == [1, 0, 1, 0]
    a, p = anchor_positive_pairs(torch.tensor([3, 1, 3, 1, 3]))
    assert sorted(zip(a.tolist(), p.tolist())) == [(0, 2), (1, 3)]
    assert top_s(torch.tensor([[0.1, 0.9, 0.5]]), 2).tolist() == [[1, 2]]


@pytest.mark.parametrize("total,fraction,expected", [(1, 0.5, 1), (2, 0.5, 1), (30, 0.5, 15), (10, 0.9, 9),
                                                     (10, 1.0, 9), (5, 0.1, 1)])
def test_stage1_epochs(total, fraction, expected):
    assert stage1_epochs(total, fraction) == expected


def test_bits_is_the_bucket_count():
    with pytest.raises(UnsupportedBitsError):
        DeepHashTable.check_bits(4, sparsity=5)
    DeepHashTable.check_bits(4, sparsity=4)


def _model(cls=DeepHashTable, **hp):
    torch.manual_seed(0)
    return cls(bits=6, n_classes=3, backbone=build_backbone("identity", in_dim=5), hidden_dims=[8], **hp)


def test_batch_codes_are_the_flow_optimum_broadcast_to_samples():
    m = _model(sparsity=2, pairwise_penalty=10.0)
    f = torch.randn(6, 6)
    cls = torch.tensor([0, 0, 1, 1, 2, 2])
    codes, labels = m.batch_codes(f, cls)
    assert codes.sum(1).tolist() == [2.0] * 6                      # s active buckets per sample
    assert torch.equal(codes[0], codes[1]) and torch.equal(codes[2], codes[3])
    assert codes[::2].sum(0).max().item() == 1.0                   # λ large: 3 classes × 2 in 6 buckets, no sharing
    assert torch.equal(labels, cls)


def test_solver_time_is_counted_in_stage_2_only(tmp_path):
    from torch.utils.data import DataLoader, TensorDataset

    from hashbench.benchmark.train import fit

    m = _model()
    x = torch.randn(24, 5)
    y = torch.nn.functional.one_hot(torch.arange(24) % 3, 3).float()
    info = fit(m, DataLoader(TensorDataset(x, y), batch_size=6), tmp_path, epochs=2, device="cpu", devices=1,
               score_fn=None, progress=False)
    first, second = info["epochs"]
    assert (first["stage"], second["stage"]) == (1, 2)
    assert first["flow_solver_seconds"] == 0.0 < second["flow_solver_seconds"] < second["seconds"]
    assert 0 < info["throughput"]["2"]["flow_solver_share"] < 1


def test_hash_layer_does_not_touch_the_global_rng():
    torch.manual_seed(0)
    a = DeepHashTable(bits=6, n_classes=3, backbone=build_backbone("identity", in_dim=5), hidden_dims=[8])
    after_a = torch.rand(1)
    torch.manual_seed(0)
    b = CascadeDHT(bits=6, n_classes=3, backbone=build_backbone("identity", in_dim=5), hidden_dims=[8], levels=3)
    after_b = torch.rand(1)
    assert torch.equal(after_a, after_b)
    assert torch.equal(a.embed_head.weight, b.embed_head.weight) and torch.equal(a.trunk[0].weight, b.trunk[0].weight)


def test_stage1_embedding_is_frozen_at_the_stage_boundary():
    m = _model()
    x = torch.randn(4, 5)
    m.eval()
    live = m.stage1_embedding(x)
    m.freeze_stage1()
    with torch.no_grad():
        m.embed_head.weight.add_(1.0)                              # stage 2 never trains Embed, but check the copy
        m.trunk[0].weight.mul_(2.0)
    assert torch.allclose(m.embed(x), live)
    assert not torch.allclose(m.embed_head(m.head_input(x)), live)


def test_vq_codes_are_the_nearest_centroids():
    m = _model(DHTVectorQuantization, sparsity=2)
    m.freeze_stage1()
    loader = [(torch.randn(10, 5), torch.zeros(10, 3)) for _ in range(3)]
    m.fit_after_training(loader, seed=0)
    x = torch.randn(7, 5)
    e = m.stage1_embedding(x).double()
    d2 = ((e[:, None, :] - m.centroids[None].double()) ** 2).sum(2)
    assert torch.equal(m.encode(x)["buckets"], d2.argsort(1)[:, :2])


def test_average_precision_of_lists_hand_values():
    # query 0: ranked flags 1 0 1 → (1/1 + 2/3)/2; query 1: nothing relevant retrieved; query 2: one
    # relevant item at rank 2 → (1/2)/1; queries 3 and 4: empty lists (the last one too)
    offsets = np.array([0, 3, 5, 7, 7, 7])
    rel = np.array([1, 0, 1, 0, 0, 0, 1], dtype=bool)
    n_rel = np.array([4, 2, 3, 1, 0])
    ap = average_precision_of_lists(offsets, rel, n_rel, "relevant_retrieved")
    assert ap.shape == (5,) and np.allclose(ap, [(1 + 2 / 3) / 2, 0.0, 0.5, 0.0, 0.0])
    ap = average_precision_of_lists(offsets, rel, n_rel, "all_relevant")
    assert ap.shape == (5,) and np.allclose(ap, [(1 + 2 / 3) / 4, 0.0, 0.5 / 3, 0.0, 0.0])


@pytest.mark.parametrize("method", ["dht", "dht-th", "dht-vq", "cascade-dht"])
def test_every_shipped_config_block_builds_the_method(method):
    """Each dataset block and variant of the method's YAML resolves and constructs the method
    (the paper-scale blocks shrunk to a 5-d identity backbone)."""
    import yaml

    from hashbench import methods
    from hashbench.benchmark.config import CONFIG_DIR, resolve_config, split_config

    cls = methods.get_method(method)
    raw = yaml.safe_load((CONFIG_DIR / f"{method}.yaml").read_text())
    base = yaml.safe_load((CONFIG_DIR / f"{raw['base']}.yaml").read_text()) if "base" in raw else {}
    datasets = set((raw.get("datasets") or {}) | (base.get("datasets") or {})) | {"digits"}
    variants = [None] + sorted(set((raw.get("variants") or {}) | (base.get("variants") or {})))
    for dataset in sorted(datasets):
        for variant in variants:
            _, hp = split_config(resolve_config(method, dataset, variant, None))
            bits = 64 if hp.get("sparsity", 1) > 2 else 16
            cls.check_bits(bits, **hp)
            m = cls(bits=bits, n_classes=10, backbone=build_backbone("identity", in_dim=5), **hp)
            assert m.encode(torch.randn(2, 5))["buckets"].shape[1] == hp.get("sparsity", 1)
