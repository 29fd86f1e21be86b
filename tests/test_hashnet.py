"""HashNet (methods/hashnet.py): loss against hand-computed values, schedules, gradients, training."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import yaml
from torch import nn

from hashbench.methods.hashnet import (
    HashNet,
    continuation_beta,
    continuous_similarity_factor,
    default_alpha,
    epoch_beta,
    pairwise_likelihood_loss,
    similar_pair_ratio,
    step_lr_factor,
    two_stream_split,
)
from hashbench.benchmark.config import HARNESS_KEYS
from hashbench.methods.registry import get_method

LOG2 = math.log(2.0)


class TinyBackbone(nn.Module):
    def __init__(self, in_dim: int = 12, out_dim: int = 8) -> None:
        super().__init__()
        self.out_dim = out_dim
        self.net = nn.Sequential(nn.Linear(in_dim, out_dim), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def d(rows):  # float64 tensor
    return torch.tensor(rows, dtype=torch.float64)


# --------------------------------------------------------------------------- loss values
def test_loss_two_pairs_class_num_weighting():
    # t = α⟨h1, h2_j⟩ = [1, 0]; s = [1, 0]; ℓ = [log(1+e)−1, log 2]; w = [3, 1]
    loss = pairwise_likelihood_loss(d([[1, 0]]), d([[1, 0], [0, 1]]), d([[1, 0]]), d([[1, 0], [0, 1]]),
                                    alpha=1.0, class_num=3.0)
    expected = (3 * math.log1p(math.exp(-1.0)) + LOG2) / 4
    assert loss.item() == pytest.approx(expected, abs=1e-12)
    assert expected == pytest.approx(0.408233, abs=1e-6)


def test_loss_multilabel_overlap_and_threshold_branch():
    # y1 = {0,1}; y2 rows {1,2}, {2}, {0} → overlaps 1, 0, 1 → s = [1, 0, 1]
    # α = 1, h1 = [2, 1], h2 rows → t = [3, 0.5, −3]; threshold 1 → t = 3 takes t·(1 − s) = 0
    h1, h2 = d([[2, 1]]), d([[1, 1], [0, 0.5], [-1, -1]])
    y1, y2 = d([[1, 1, 0]]), d([[0, 1, 1], [0, 0, 1], [1, 0, 0]])
    loss = pairwise_likelihood_loss(h1, h2, y1, y2, alpha=1.0, class_num=2.0, threshold=1.0)
    expected = (2 * 0.0 + math.log1p(math.exp(0.5)) + 2 * (math.log1p(math.exp(-3.0)) + 3.0)) / (2 + 1 + 2)
    assert loss.item() == pytest.approx(expected, abs=1e-12)
    # without the threshold the first pair costs log(1+e³) − 3 = 0.04859 instead of 0
    no_thr = pairwise_likelihood_loss(h1, h2, y1, y2, alpha=1.0, class_num=2.0, threshold=None)
    assert no_thr.item() == pytest.approx(expected + 2 * math.log1p(math.exp(-3.0)) / 5, abs=1e-12)


def test_threshold_15_is_inclusive_and_exact():
    # t = 15 (s = 0) → exactly 15, not log(1+e^15) = 15 + 3.06e-7; t = 16 (s = 1) → exactly 0
    h1, h2 = d([[1.0]]), d([[15.0], [16.0]])
    loss = pairwise_likelihood_loss(h1, h2, d([[1, 0]]), d([[0, 1], [1, 0]]), alpha=1.0, class_num=1.0)
    assert loss.item() == pytest.approx((15.0 + 0.0) / 2, abs=1e-12)
    just_below = pairwise_likelihood_loss(h1, d([[14.5]]), d([[1, 0]]), d([[0, 1]]), alpha=1.0, class_num=1.0)
    assert just_below.item() == pytest.approx(math.log1p(math.exp(14.5)), abs=1e-12)


def test_weighting_none_and_batch_balanced_in_batch():
    h, y = d([[1, 0], [0, 1], [1, 0]]), d([[1, 0], [0, 1], [0, 1]])
    # in-batch 3×3 with self-pairs: t = h hᵀ, s = y yᵀ > 0
    t = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 1]], float)
    s = np.array([[1, 0, 0], [0, 1, 1], [0, 1, 1]], float)
    ell = np.log1p(np.exp(t)) - s * t
    none = pairwise_likelihood_loss(h, h, y, y, alpha=1.0, weighting="none")
    assert none.item() == pytest.approx(ell.mean(), abs=1e-12)
    # |S| = 9, |S1| = 5, |S0| = 4: w = 9/5 on similar, 9/4 on dissimilar, divided by |S|
    bal = pairwise_likelihood_loss(h, h, y, y, alpha=1.0, weighting="batch_balanced", threshold=None)
    expected = (9 / 5 * (ell * s).sum() + 9 / 4 * (ell * (1 - s)).sum()) / 9
    assert bal.item() == pytest.approx(expected, abs=1e-12)


def test_unlabelled_item_is_similar_to_nothing():
    h = d([[1, 0], [1, 0]])
    y = d([[0, 0], [0, 0]])  # no labels: y·y = 0, even for itself
    loss = pairwise_likelihood_loss(h, h, y, y, alpha=1.0, class_num=5.0)
    assert loss.item() == pytest.approx(math.log1p(math.exp(1.0)), abs=1e-12)  # 4 dissimilar pairs, t = 1


def test_similar_pair_ratio_by_hand():
    # items {0}, {1}, {0,1}, {}: similar ordered pairs = 3 diagonal + (0,2),(2,0),(1,2),(2,1) = 7 of 16
    labels = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    assert similar_pair_ratio(labels) == pytest.approx(16 / 7)
    # 10 balanced single-label classes → 10 (100 classes × 130 images → 100, the ImageNet class_num)
    assert similar_pair_ratio(np.repeat(np.eye(10), 7, axis=0)) == pytest.approx(10.0)
    assert similar_pair_ratio(np.repeat(np.eye(100), 130, axis=0)) == pytest.approx(100.0)


def test_similar_pair_ratio_matches_brute_force():
    rng = np.random.default_rng(0)
    labels = (rng.random((60, 5)) < 0.25).astype(np.int64)
    brute = 60 * 60 / ((labels @ labels.T) > 0).sum()
    assert similar_pair_ratio(labels) == pytest.approx(brute)


# --------------------------------------------------------------------------- schedules and α
def test_beta_schedule_at_documented_iterations():
    assert continuation_beta(0) == 1.0
    assert continuation_beta(199) == 1.0
    assert continuation_beta(200) == pytest.approx(math.sqrt(2.0))
    assert continuation_beta(10_000) == pytest.approx(math.sqrt(51.0))
    assert continuation_beta(4_799) < 5.0 <= continuation_beta(4_800)


def test_schedule_scale_keeps_the_shape():
    s = 0.05  # β step every 10 iterations, lr step every 100; 500 iterations ≡ 10,000
    for t in (0, 9, 10, 199, 240, 500):
        assert continuation_beta(t, schedule_scale=s) == pytest.approx(continuation_beta(round(t / s)))
    assert step_lr_factor(99, s) == 1.0 and step_lr_factor(100, s) == 0.5 and step_lr_factor(500, s) == 0.5**5
    assert step_lr_factor(1999) == 1.0 and step_lr_factor(2000) == 0.5 and step_lr_factor(10_000) == 0.5**5


def test_beta_options_on_the_module():
    m = HashNet(bits=8, n_classes=3, backbone=TinyBackbone())
    assert [m.beta_at(t) for t in (0, 199, 200)] == pytest.approx([1.0, 1.0, math.sqrt(2.0)])
    assert HashNet(bits=8, n_classes=3, backbone=TinyBackbone(), continuation=False).beta_at(10_000) == 1.0
    ep = HashNet(bits=8, n_classes=3, backbone=TinyBackbone(), beta_schedule="epoch")
    assert [ep.beta_at(999, e) for e in (0, 19, 20, 140)] == pytest.approx([1, 1, math.sqrt(2), math.sqrt(8)])
    assert epoch_beta(39) == pytest.approx(math.sqrt(2.0))


def test_alpha_is_ten_over_bits():
    alphas = {k: HashNet(bits=k, n_classes=3, backbone=TinyBackbone()).alpha for k in (16, 32, 48, 64)}
    assert alphas == pytest.approx({16: 0.625, 32: 0.3125, 48: 10 / 48, 64: 0.15625})
    assert default_alpha(48) == pytest.approx(0.2083333)
    assert HashNet(bits=48, n_classes=3, backbone=TinyBackbone(), alpha=0.1).alpha == 0.1


# --------------------------------------------------------------------------- gradients
def _random_pairs(seed: int = 0, n: int = 5, k: int = 6, c: int = 4):
    g = torch.Generator().manual_seed(seed)
    h1 = torch.tanh(torch.randn(n, k, generator=g, dtype=torch.float64)).requires_grad_()
    h2 = torch.tanh(torch.randn(n + 1, k, generator=g, dtype=torch.float64)).requires_grad_()
    y1 = (torch.rand(n, c, generator=g) < 0.4).double()
    y2 = (torch.rand(n + 1, c, generator=g) < 0.4).double()
    y1[0] = y2[0] = torch.tensor([1.0, 1, 0, 0])  # at least one similar pair
    y2[1] = torch.tensor([1.0, 1, 1, 1])
    return h1, h2, y1, y2


def _analytic_grads(h1, h2, y1, y2, alpha, class_num, factor=None):
    """∂L/∂h1 = α·G·h2, ∂L/∂h2 = α·Gᵀ·h1 with G = w(σ(t) − s)/Σw (·factor)."""
    s = ((y1 @ y2.T) > 0).double()
    t = alpha * h1.detach() @ h2.detach().T
    w = torch.where(s > 0, torch.full_like(s, class_num), torch.ones_like(s))
    g = w * (torch.sigmoid(t) - s) / w.sum()
    if factor is not None:
        g = g * factor
    return alpha * g @ h2.detach(), alpha * g.T @ h1.detach()


def test_autograd_equals_analytic_gradient_and_gradcheck():
    h1, h2, y1, y2 = _random_pairs()
    kw = dict(alpha=10 / 6, class_num=3.0, continuous_similarity=False)
    assert torch.autograd.gradcheck(lambda a, b: pairwise_likelihood_loss(a, b, y1, y2, **kw), (h1, h2))
    g1, g2 = torch.autograd.grad(pairwise_likelihood_loss(h1, h2, y1, y2, **kw), (h1, h2))
    a1, a2 = _analytic_grads(h1, h2, y1, y2, 10 / 6, 3.0)
    torch.testing.assert_close(g1, a1, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(g2, a2, rtol=1e-10, atol=1e-12)


def test_continuous_similarity_touches_only_the_backward_pass():
    h1, h2, y1, y2 = _random_pairs(seed=1)
    kw = dict(alpha=10 / 6, class_num=3.0)
    off = pairwise_likelihood_loss(h1, h2, y1, y2, continuous_similarity=False, **kw)
    on = pairwise_likelihood_loss(h1, h2, y1, y2, continuous_similarity=True, **kw)
    assert on.item() == off.item()  # the forward value is unchanged
    g1, g2 = torch.autograd.grad(on, (h1, h2))
    factor = continuous_similarity_factor(y1, y2)
    a1, a2 = _analytic_grads(h1, h2, y1, y2, 10 / 6, 3.0, factor=factor)
    torch.testing.assert_close(g1, a1, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(g2, a2, rtol=1e-10, atol=1e-12)
    # so the backward no longer matches finite differences of the forward
    assert not torch.autograd.gradcheck(
        lambda a, b: pairwise_likelihood_loss(a, b, y1, y2, continuous_similarity=True, **kw), (h1, h2),
        raise_exception=False)


def test_continuous_similarity_factor_by_hand():
    y1 = d([[1, 1, 0], [1, 0, 0]])
    y2 = d([[0, 1, 1], [1, 1, 1], [0, 0, 1], [1, 0, 0], [0, 0, 0]])
    # row 0: overlap 1 → 4·1/(2·2) = 1; overlap 2 → 4·4/(2·3) = 8/3; none → 1; overlap 1 → 4·1/(2·1) = 2;
    # unlabelled → 1.  Row 1 (single label): {0} vs {0} → 4 (×4 on similar single-label pairs).
    expected = d([[1, 8 / 3, 1, 2, 1], [1, 4 / 3, 1, 4, 1]])
    torch.testing.assert_close(continuous_similarity_factor(y1, y2), expected)


def test_caffe_grad_scale_is_two_over_alpha_backward_only():
    h1, h2, y1, y2 = _random_pairs(seed=2)
    alpha = 10 / 6
    plain = pairwise_likelihood_loss(h1, h2, y1, y2, alpha=alpha, class_num=2.0)
    scaled = pairwise_likelihood_loss(h1, h2, y1, y2, alpha=alpha, class_num=2.0, grad_scale=2 / alpha)
    assert scaled.item() == plain.item()
    gp = torch.autograd.grad(plain, h1)[0]
    gs = torch.autograd.grad(scaled, h1)[0]
    torch.testing.assert_close(gs, gp * 2 / alpha)


def test_threshold_branch_gradient_is_one_minus_s():
    h1, h2 = d([[2.0]]).requires_grad_(), d([[10.0], [10.0]])
    y1, y2 = d([[1, 0]]), d([[1, 0], [0, 1]])  # t = 20 ≥ 15 for both; s = [1, 0]
    loss = pairwise_likelihood_loss(h1, h2, y1, y2, alpha=1.0, class_num=1.0)
    (g,) = torch.autograd.grad(loss, h1)
    assert g.item() == pytest.approx((0 * 10 + 1 * 10) / 2)  # Σ_j w(1 − s)·h2_j / Σw
    assert torch.isfinite(g).all()


# --------------------------------------------------------------------------- the module
def test_two_stream_split_is_a_disjoint_random_halving():
    g = torch.Generator().manual_seed(0)
    a, b = two_stream_split(9, generator=g)
    assert len(a) == len(b) == 4
    assert len(set(a.tolist()) | set(b.tolist())) == 8
    a2, _ = two_stream_split(9, generator=g)
    assert a.tolist() != a2.tolist()  # a fresh permutation every call


def test_class_num_measured_or_given():
    labels = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    m = HashNet(bits=8, n_classes=2, backbone=TinyBackbone())
    assert math.isnan(float(m.class_num))
    m.on_training_data(labels)
    assert float(m.class_num) == pytest.approx(16 / 7)
    fixed = HashNet(bits=8, n_classes=2, backbone=TinyBackbone(), class_num=5)
    fixed.on_training_data(labels)
    assert float(fixed.class_num) == 5.0
    with pytest.raises(RuntimeError, match="class_num"):
        m2 = HashNet(bits=8, n_classes=2, backbone=TinyBackbone())
        m2.loss_on(torch.zeros(4, 8), torch.ones(4, 2))


def test_encode_is_pm1_int8_of_width_k_with_sign0_plus1():
    m = HashNet(bits=16, n_classes=3, backbone=TinyBackbone()).eval()
    x = torch.randn(7, 12)
    with torch.inference_mode():
        bits = m.encode(x)["bits"]
        z = m.embed(x)
    assert bits.dtype == torch.int8 and bits.shape == (7, 16)
    assert set(bits.unique().tolist()) <= {-1, 1}
    assert torch.equal(bits, torch.where(z >= 0, 1, -1).to(torch.int8))
    nn.init.zeros_(m.fch.weight)
    nn.init.zeros_(m.fch.bias)
    with torch.inference_mode():
        assert (m.encode(x)["bits"] == 1).all()
    assert get_method("hashnet") is HashNet and HashNet.code_type == "binary"


def test_optimizer_groups_follow_caffe_multipliers():
    m = HashNet(bits=8, n_classes=3, backbone=TinyBackbone(), lr=1e-3, weight_decay=5e-4)
    groups = m._param_groups()
    got = sorted((round(g["lr"], 12), round(g["weight_decay"], 12), sum(p.numel() for p in g["params"]))
                 for g in groups)
    # backbone weights ×1, backbone biases ×2 without decay, fch weights ×10, fch bias ×20 without decay
    assert got == [(1e-3, 5e-4, 12 * 8), (2e-3, 0.0, 8), (1e-2, 5e-4, 8 * 8), (2e-2, 0.0, 8)]


def test_lightning_training_steps_change_parameters_without_nans():
    pl.seed_everything(0)
    n, c = 64, 4
    y = torch.nn.functional.one_hot(torch.arange(n) % c, c).float()
    x = torch.randn(n, 12) + 2 * y @ torch.randn(c, 12)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16, shuffle=True)
    m = HashNet(bits=8, n_classes=c, backbone=TinyBackbone(), lr=1e-2, schedule_scale="auto")
    m.on_training_data(y.numpy())
    before = {k: v.clone() for k, v in m.state_dict().items()}
    trainer = pl.Trainer(max_steps=5, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(m, loader)
    after = m.state_dict()
    for k in ("fch.weight", "fch.bias", "backbone.net.0.weight"):
        assert torch.isfinite(after[k]).all()
        assert not torch.equal(before[k], after[k])
    # auto: 5 steps ≡ 10,000 → s = 5e-4: β steps every 0.1 iteration, lr halves every iteration
    assert m.resolved_schedule_scale() == pytest.approx(5e-4)
    assert float(trainer.callback_metrics["beta"]) == pytest.approx(math.sqrt(1 + 40))  # t = 4
    assert m.current_beta == pytest.approx(math.sqrt(41))
    assert math.isfinite(float(trainer.callback_metrics["train/loss_step"]))
    lrs = sorted(g["lr"] for g in trainer.optimizers[0].param_groups)
    assert lrs == pytest.approx([lr * 0.5**5 for lr in (1e-2, 2e-2, 1e-1, 2e-1)])


def test_yaml_config_keys_are_constructor_arguments():
    cfg = yaml.safe_load((Path(__file__).parents[1] / "methods" / "configs" / "hashnet.yaml").read_text())
    assert {"imagenet100", "nuswide21", "nuswide81", "coco", "cifar10", "digits"} <= set(cfg["datasets"])
    assert "deephash-pytorch" in cfg["variants"]
    blocks = [cfg["default"]] + list(cfg["datasets"].values()) + list(cfg["variants"].values())
    for block in blocks:
        hp = {k: v for k, v in {**cfg["default"], **block}.items() if k not in HARNESS_KEYS}
        HashNet(bits=16, n_classes=3, backbone=TinyBackbone(), **hp)  # raises on a typo or bad value
    dh = {**cfg["default"], **cfg["variants"]["deephash-pytorch"]}
    m = HashNet(bits=48, n_classes=3, backbone=TinyBackbone(), **{k: v for k, v in dh.items() if k not in HARNESS_KEYS})
    assert (m.alpha, m.pairs, m.weighting, m.beta_schedule, m.optimizer_name) == (
        0.1, "in_batch", "batch_balanced", "epoch", "rmsprop")


def test_cifar10_config_uses_the_reference_features():
    """The CPU CIFAR-10 block must train on the harness's cached reference features (the ones
    LSH/ITQ use), not trigger a second extraction at another image size."""
    from hashbench.benchmark.data import DEFAULT_FEATURE_SIZE

    cfg = yaml.safe_load((Path(__file__).parents[1] / "methods" / "configs" / "hashnet.yaml").read_text())
    block = {**cfg["default"], **cfg["datasets"]["cifar10"]}
    assert (block["backbone"], block["image_size"], block["frozen"]) == ("efficientnet-lite0", DEFAULT_FEATURE_SIZE, True)
