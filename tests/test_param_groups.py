"""Optimiser parameter groups (issue 22): no weight decay on BatchNorm parameters or biases, DHT's
stage-1 decay only on the layers its config names, each method's lr multipliers kept. A tiny
backbone with a biased conv (108 + 4 parameters) and a BatchNorm (4 + 4); every expected group
below is counted by hand as (name, lr, weight_decay, number of scalars)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from hashbench.methods import get_method
from hashbench.methods.backbones import Backbone, InputSpec


def tiny_bn_backbone(policy: str = "train") -> Backbone:
    """conv 3→4 (3×3, bias) → BatchNorm(4) → ReLU → global average pool: 4-d features."""
    body = nn.Sequential(nn.Conv2d(3, 4, 3, bias=True), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten())
    bb = Backbone("tiny-bn", body, 4, InputSpec(8, 3, (0.5,) * 3, (0.5,) * 3), pretrained=True)
    bb.set_batchnorm(policy)
    return bb


def summary(groups) -> list[tuple]:
    return [(g["name"], pytest.approx(g["lr"]), pytest.approx(g["weight_decay"]),
             sum(p.numel() for p in g["params"])) for g in groups]


def test_hashnet_groups():
    m = get_method("hashnet")(bits=8, n_classes=3, backbone=tiny_bn_backbone(), lr=1e-3, weight_decay=5e-4)
    assert summary(m._param_groups()) == [
        ("backbone_weight", 1e-3, 5e-4, 108),      # conv kernel
        ("backbone_norm", 1e-3, 0.0, 4),           # BatchNorm weight: weights' lr, no decay
        ("backbone_bias", 2e-3, 0.0, 8),           # conv bias + BatchNorm bias: ×2, no decay
        ("head_weight", 1e-2, 5e-4, 32),           # fch 4×8, ×10
        ("head_bias", 2e-2, 0.0, 8)]               # fch bias ×20
    frozen = get_method("hashnet")(bits=8, n_classes=3, backbone=tiny_bn_backbone("frozen"), lr=1e-3)
    assert [g[0] for g in summary(frozen._param_groups())] == ["backbone_weight", "backbone_bias", "head_weight",
                                                                 "head_bias"]
    assert summary(frozen._param_groups())[1][3] == 4  # the conv bias only
    opt = m.configure_optimizers()["optimizer"]
    assert [(g["lr"], g["weight_decay"]) for g in opt.param_groups] == [(g["lr"], g["weight_decay"])
                                                                        for g in m._param_groups()]


def test_hashnet_norm_decay_mult_reaches_the_norm_group():
    m = get_method("hashnet")(bits=8, n_classes=3, backbone=tiny_bn_backbone(), lr=1e-3, weight_decay=5e-4,
                              norm_decay_mult=1.0)
    assert summary(m._param_groups())[1] == ("backbone_norm", 1e-3, 5e-4, 4)


@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_drq_encoder_groups(optimizer):
    m = get_method("drq")(bits=16, n_classes=10, backbone=tiny_bn_backbone(), feature_dim=32, lr=1e-3,
                          weight_decay=1e-4, encoder_optimizer=optimizer)
    expected = [("backbone_weight", 5e-4, 1e-4, 108),
                ("backbone_bias", 1e-3, 0.0, 12),       # conv bias, BatchNorm weight and bias
                ("head_weight", 5e-3, 1e-4, 4 * 22 + 22 * 10),   # fc8 4→22, fc9 22→10
                ("head_bias", 1e-2, 0.0, 22 + 10)]
    assert summary(m.encoder_param_groups()) == expected
    enc = m.configure_optimizers()[0][0]
    assert summary(enc.param_groups) == expected


def test_drq_default_has_no_weight_decay():
    m = get_method("drq")(bits=16, n_classes=10, backbone=tiny_bn_backbone(), feature_dim=32)
    assert all(g["weight_decay"] == 0.0 for g in m.configure_optimizers()[0][0].param_groups)


@pytest.mark.parametrize("name, hash_width", [("dht", 16), ("cascade-dht", 32)])
def test_dht_stage_groups(name, hash_width):
    m = get_method(name)(bits=16, n_classes=4, backbone=tiny_bn_backbone(), hidden_dims=[8], lr=1e-3,
                         stage1_lr=1e-4, weight_decay=5e-4, backbone_weight_decay=4e-5, trunk_lr_mult=0.1)
    (opt1, opt2), _ = m.configure_optimizers()
    assert summary(opt1.param_groups) == [
        ("backbone_weight", 1e-4, 4e-5, 108),
        ("backbone_bias", 1e-4, 0.0, 12),
        ("fc_weight", 1e-4, 5e-4, 4 * 8 + 8 * 16),     # trunk fc and Embed: the FC weight decay
        ("fc_bias", 1e-4, 0.0, 8 + 16)]
    assert summary(opt2.param_groups) == [
        ("hash", 1e-3, 0.0, 8 * hash_width + hash_width),
        ("trunk", 1e-4, 0.0, 120 + 40)]
    frozen_copy = {id(p) for p in m.stage1_net.parameters()}
    assert not frozen_copy & {id(p) for o in (opt1, opt2) for g in o.param_groups for p in g["params"]}


def test_dht_default_backbone_is_not_decayed():
    m = get_method("dht")(bits=16, n_classes=4, backbone=tiny_bn_backbone(), hidden_dims=[8])
    groups = {g["name"]: g["weight_decay"] for g in m.stage1_param_groups()}
    assert groups == {"backbone_weight": 0.0, "backbone_bias": 0.0, "fc_weight": 5e-4, "fc_bias": 0.0}
    assert isinstance(m.configure_optimizers()[0][0], torch.optim.Adam)
