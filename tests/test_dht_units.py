"""Deep Hash Table module pieces the loss tests do not reach (issue 24's mutation testing of
``methods/dht.py``): pair order of N-pairs on a batch large enough for an unstable sort to differ,
the re-ranking representation of each ``rerank`` option, the stage and model-selection rules at
named epochs, the Hash layer's Xavier initialisation, the Th/VQ baselines' scores and k-means
fit, and the optimiser/scheduler hand-over in a training step. Values by hand or by definition."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hashbench.methods.backbones import build_backbone
from hashbench.methods.base import UnsupportedBitsError
from hashbench.methods.dht import (DeepHashTable, DHTThreshold, DHTVectorQuantization, anchor_positive_pairs,
                                   stage1_epochs, top_s)


def _model(cls=DeepHashTable, **hp):
    torch.manual_seed(0)
    m = cls(bits=6, n_classes=3, backbone=build_backbone("identity", in_dim=5), hidden_dims=[8], **hp)
    return m.eval()


def _attach(m, max_epochs: int):
    """The part of a Trainer the schedule and the epoch hooks read."""
    m._trainer = SimpleNamespace(max_epochs=max_epochs, current_epoch=0, should_stop=False)
    return m


# ----------------------------------------------------------------------------- pairs
def test_anchor_positive_pairs_keep_batch_order_within_each_class_on_a_large_batch():
    # 100 items of 3 classes: an unstable sort reorders ties at this size (torch's CPU sort does)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 3, (100,), generator=g)
    a, p = anchor_positive_pairs(ids)
    want_a, want_p = [], []
    for c in range(3):                                   # by definition: items 0-1, 2-3, … of each class
        members = [i for i in range(100) if ids[i] == c]
        want_a += members[0:len(members) - 1:2]
        want_p += members[1:len(members):2]
    assert a.tolist() == want_a and p.tolist() == want_p


def test_anchor_positive_pairs_never_pair_across_classes():
    # classes sorted: 0 0 0 | 1 1 1 (batch order 1 3 5 | 0 2 4): the third class-0 item is left
    # unpaired, it must not be paired with the first class-1 item
    a, p = anchor_positive_pairs(torch.tensor([1, 0, 1, 0, 1, 0]))
    assert a.tolist() == [1, 0] and p.tolist() == [3, 2]


def test_stage1_epochs_rejects_fractions_outside_the_unit_interval():
    for bad in (0.0, -0.1, 1.01):
        with pytest.raises(ValueError, match="stage1_fraction"):
            stage1_epochs(10, bad)
    assert stage1_epochs(10, 1.0) == 9 and stage1_epochs(1, 1.0) == 1
    assert stage1_epochs(2, 1.0) == 1                       # two epochs: stage 2 keeps one


def test_top_s_is_best_first_int64():
    out = top_s(torch.tensor([[0.1, 0.9, 0.5, -1.0]]), 3)
    assert out.dtype == torch.int64 and out.tolist() == [[1, 2, 0]]


def test_sparsity_bounds_and_the_positive_bits_check():
    with pytest.raises(UnsupportedBitsError, match="sparsity"):
        DeepHashTable.check_bits(4, sparsity=0)
    with pytest.raises(UnsupportedBitsError):
        DeepHashTable.check_bits(0, sparsity=1)
    DeepHashTable.check_bits(4, sparsity=1)
    DeepHashTable.check_bits(1)                             # default sparsity 1: one bucket is enough


# ----------------------------------------------------------------------------- representations
@pytest.mark.parametrize("loss", ["triplet", "npairs"])
def test_rerank_hash_is_the_hash_output_normalised_for_triplet_only(loss):
    m = _model(rerank="hash", loss=loss)
    x = torch.randn(4, 5)
    f = m.hash_output(x)
    want = F.normalize(f, dim=1) if loss == "triplet" else f
    assert torch.allclose(m.embed(x), want)
    if loss == "npairs":
        assert not torch.allclose(f.norm(dim=1), torch.ones(4))   # raw: rows are not unit norm
    assert m.reranks


@pytest.mark.parametrize("rerank, reranks", [("stage1", True), ("none", False)])
def test_rerank_stage1_and_none_use_the_stage1_embedding(rerank, reranks):
    m = _model(rerank=rerank)
    x = torch.randn(4, 5)
    assert torch.allclose(m.embed(x), F.normalize(m.embed_head(m.head_input(x)), dim=1))
    assert m.reranks is reranks


def test_stage1_embedding_is_raw_for_npairs_and_the_code_is_top_s_of_the_hash_output():
    m = _model(loss="npairs", sparsity=2)
    x = torch.randn(4, 5)
    e = m.embed_head(m.head_input(x))
    assert torch.allclose(m.stage1_embedding(x), e)
    out = m.encode(x)
    f = m.hash_output(x)
    assert torch.allclose(out["bucket_scores"], f)
    assert torch.equal(out["buckets"], f.topk(2, dim=1).indices)
    assert torch.allclose(m.head_input(x), F.relu(m.trunk(x)))


def test_hash_layer_is_xavier_uniform_with_zero_bias():
    m = _model()
    bound = math.sqrt(6.0 / (8 + 6))                      # fan_in 8 (hidden), fan_out 6 (buckets)
    w = m.hash_head.weight
    assert w.abs().max().item() <= bound and w.abs().max().item() > 0.8 * bound
    assert w.min().item() < 0 < w.max().item()
    assert torch.equal(m.hash_head.bias, torch.zeros(6))


# ----------------------------------------------------------------------------- schedule
def test_stages_and_selectable_epochs_at_named_epochs():
    m = _attach(_model(stage1_fraction=0.5), max_epochs=4)      # stage 1: epochs 0-1, stage 2: 2-3
    assert m.n_stage1_epochs() == 2
    assert [m.stage(e) for e in range(4)] == [1, 1, 2, 2]
    assert [m.selectable_epoch(e) for e in range(4)] == [False, False, True, True]
    m = _attach(_model(stage1_fraction=0.25), max_epochs=8)
    assert [m.stage(e) for e in range(8)] == [1, 1, 2, 2, 2, 2, 2, 2]


@pytest.mark.parametrize("cls", [DHTThreshold, DHTVectorQuantization])
def test_baselines_select_every_epoch(cls):
    m = _attach(_model(cls), max_epochs=4)
    assert all(m.selectable_epoch(e) for e in range(4))


def test_epoch_hooks_freeze_at_stage_2_and_stop_stage1_only_baselines():
    m = _attach(_model(), max_epochs=4)
    m._trainer.current_epoch = 1
    m.on_train_epoch_start()
    assert not bool(m.stage1_frozen)                            # epoch 1 is stage 1
    m.on_train_epoch_end()
    assert m._trainer.should_stop is False                      # dht trains on
    m._trainer.current_epoch = 2
    with torch.no_grad():
        m.embed_head.weight.add_(1.0)
    m.on_train_epoch_start()
    assert bool(m.stage1_frozen)
    frozen = m.embed_head.weight.detach().clone()
    assert torch.equal(m.stage1_net[3].weight, frozen)
    m._trainer.current_epoch = 3                                # frozen once: a later epoch copies nothing
    with torch.no_grad():
        m.embed_head.weight.add_(1.0)
    m.on_train_epoch_start()
    assert torch.equal(m.stage1_net[3].weight, frozen)
    th = _attach(_model(DHTThreshold), max_epochs=4)
    th.on_train_epoch_end()                                     # epoch 0 of 2 stage-1 epochs
    assert th._trainer.should_stop is False and not bool(th.stage1_frozen)
    th._trainer.current_epoch = 1                               # the last stage-1 epoch
    th.on_train_epoch_end()
    assert th._trainer.should_stop is True and bool(th.stage1_frozen)


# ----------------------------------------------------------------------------- baselines
def test_threshold_codes_are_the_top_s_of_the_stage1_embedding():
    m = _model(DHTThreshold, sparsity=2)
    x = torch.randn(5, 5)
    e = F.normalize(m.embed_head(m.head_input(x)), dim=1)
    out = m.encode(x)
    assert torch.allclose(out["bucket_scores"], e)
    assert torch.equal(out["buckets"], e.topk(2, dim=1).indices)


def test_vq_kmeans_is_seeded_single_init_on_the_stage1_embeddings():
    from sklearn.cluster import KMeans

    g = torch.Generator().manual_seed(1)
    loader = [(torch.randn(12, 5, generator=g), torch.zeros(12, 3)) for _ in range(3)]
    m = _model(DHTVectorQuantization)
    m.freeze_stage1()
    m.fit_after_training(loader, seed=3)
    emb = torch.cat([m.stage1_embedding(x) for x, _ in loader]).double().numpy()
    want = KMeans(n_clusters=6, n_init=1, random_state=3).fit(emb).cluster_centers_
    assert np.allclose(m.centroids.numpy(), want, atol=1e-6)
    other = _model(DHTVectorQuantization)
    other.freeze_stage1()
    other.fit_after_training(loader, seed=4)
    assert not np.allclose(other.centroids.numpy(), want, atol=1e-3)      # the seed reaches k-means
    # a query's bucket scores are the negative squared distances to the centroids (documented values)
    q = torch.randn(3, 5, generator=g)
    e = m.stage1_embedding(q).double().numpy()
    d2 = ((e[:, None, :] - m.centroids.double().numpy()[None]) ** 2).sum(2)
    assert np.allclose(m.encode(q)["bucket_scores"].detach().numpy(), -d2, atol=1e-5)


# ----------------------------------------------------------------------------- training step
def _stepped(m):
    """Run the module's own training_step outside a Trainer: its optimisers and schedulers from
    configure_optimizers, backward in place, ``self.log`` recorded."""
    opts, scheds = m.configure_optimizers()
    m.optimizers = lambda: opts
    m.lr_schedulers = lambda: scheds
    m.manual_backward = lambda loss: loss.backward()
    logged = []
    m.log = lambda name, value, **kw: logged.append((name, float(value), kw))
    return scheds, logged


def test_training_step_steps_only_the_current_stage_optimiser_and_logs_loss_and_stage():
    m = _attach(_model(dropout=0.0, stage1_fraction=0.5), max_epochs=4).train()
    (sch1, sch2), logged = _stepped(m)
    x = torch.randn(6, 5)
    y = F.one_hot(torch.tensor([0, 1, 2, 0, 1, 2]), 3).float()
    cls = y.argmax(1)
    want = m.metric_loss(x, cls).item()
    embed0, hash0 = m.embed_head.weight.detach().clone(), m.hash_head.weight.detach().clone()
    loss = m.training_step((x, y), 0)                           # epoch 0: stage 1
    assert loss.item() == pytest.approx(want, abs=1e-6) and not loss.requires_grad
    assert not torch.equal(m.embed_head.weight, embed0) and torch.equal(m.hash_head.weight, hash0)
    assert (sch1.last_epoch, sch2.last_epoch) == (1, 0)
    assert logged == [("train/loss", pytest.approx(want, abs=1e-6), {"on_step": True, "on_epoch": True, "prog_bar": True}),
                      ("train/stage", 1.0, {"on_step": True, "on_epoch": False})]
    m._trainer.current_epoch = 2                                # stage 2
    logged.clear()
    want = m.hash_loss(x, cls).item()
    embed0, hash0 = m.embed_head.weight.detach().clone(), m.hash_head.weight.detach().clone()
    loss = m.training_step((x, y), 0)
    assert loss.item() == pytest.approx(want, abs=1e-6)
    assert torch.equal(m.embed_head.weight, embed0) and not torch.equal(m.hash_head.weight, hash0)
    assert (sch1.last_epoch, sch2.last_epoch) == (1, 1)
    assert [(n, v) for n, v, _ in logged][1] == ("train/stage", 2.0)


def test_stage_lr_factor_original_is_a_stair_decay_of_each_stage_own_steps():
    m = _attach(_model(lr_decay_rate=0.5, lr_decay_steps=10, warmup_steps=2), max_epochs=4)
    f = m.stage_lr_factor(1)
    # warm-up (t+1)/2 at t = 0, then 0.5^⌊t/10⌋
    assert [f(t) for t in (0, 1, 9, 10, 15, 25)] == pytest.approx([0.5, 1.0, 1.0, 0.5, 0.5, 0.25])
    assert m.stage_lr_factor(2)(10) == pytest.approx(0.5)


def test_stage_lr_factor_cosine_spans_each_stage_own_length():
    # 4 epochs of 10 steps, stage 1 = the first epoch (fraction 0.25): T1 = 10, T2 = 30
    m = _model(lr_schedule="cosine", stage1_fraction=0.25)
    m._trainer = SimpleNamespace(max_epochs=4, estimated_stepping_batches=40, current_epoch=0)
    f1, f2 = m.stage_lr_factor(1), m.stage_lr_factor(2)
    assert f1(5) == pytest.approx(0.5) and f1(10) == pytest.approx(0.0, abs=1e-12)
    assert f2(15) == pytest.approx(0.5) and f2(10) == pytest.approx(0.5 * (1 + math.cos(math.pi / 3)))
    _, (s1, s2) = m.configure_optimizers()                  # each optimiser gets its own stage's factor
    assert s1.lr_lambdas[0](5) == pytest.approx(0.5) and s2.lr_lambdas[0](15) == pytest.approx(0.5)


def test_npairs_unaries_are_raw_class_means_and_solver_time_accumulates():
    m = _model(loss="npairs")
    f = torch.tensor([[3.0, 4.0, 0, 0, 0, 0], [1.0, 0, 0, 0, 0, 0], [0, 0, 2.0, 0, 0, 0]])
    u, inverse = m.unaries(f, torch.tensor([5, 5, 2]))
    # classes in ascending id: 2 -> row 2; 5 -> mean of rows 0 and 1 (raw, not L2-normalised)
    assert np.allclose(u, [[0, 0, 2.0, 0, 0, 0], [2.0, 2.0, 0, 0, 0, 0]]) and inverse.tolist() == [1, 1, 0]
    tri = _model(loss="triplet")
    u, _ = tri.unaries(f, torch.tensor([5, 5, 2]))
    assert np.allclose(u, [[0, 0, 1.0, 0, 0, 0], [0.8, 0.4, 0, 0, 0, 0]])          # means of unit rows
    m.timers["flow_solver"] = 100.0
    m.batch_codes(f, torch.tensor([5, 5, 2]))
    assert m.timers["flow_solver"] > 100.0                      # cumulative over batches


def test_stage1_embedding_follows_the_live_network_until_frozen():
    m = _model()
    x = torch.randn(4, 5)
    with torch.no_grad():
        m.embed_head.weight.mul_(-2.0)                          # stage-1 training moved the live head
    live = F.normalize(m.embed_head(m.head_input(x)), dim=1)
    assert torch.allclose(m.stage1_embedding(x), live)
    assert not torch.allclose(m.stage1_net(x), m.embed_head(m.head_input(x)))   # the copy is still the initial one
