"""Fine-tuning schedules (methods/schedules.py, issue 22): hand-computed learning rates at named
iterations, HashNet's β on its own clock, and the keys lr_schedule / warmup_steps / beta_clock
reaching HashNet, DRQ's encoder and both DHT stages through a real Lightning fit."""
from __future__ import annotations

import math

import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from hashbench.benchmark.config import resolve_config, split_config
from hashbench.benchmark.config_check import ConfigError, check_method_config
from hashbench.methods import get_method
from hashbench.methods import schedules as S

COS45 = 0.5 * (1 + math.cos(math.pi / 4))   # 0.853553...


# --------------------------------------------------------------------------- pure schedules
def test_cosine_with_warmup_by_hand():
    # W = 10, T = 110: ramp 1/10 .. 10/10, then cosine over the 100 steps from t = 10
    got = [S.lr_factor("cosine", t, 110, 10) for t in (0, 4, 9, 10, 35, 60, 109, 110, 500)]
    want = [0.1, 0.5, 1.0, 1.0, COS45, 0.5, 0.5 * (1 + math.cos(math.pi * 99 / 100)), 0.0, 0.0]
    assert got == pytest.approx(want, abs=1e-12)
    assert S.lr_factor("cosine", 0, 100, 0) == 1.0 and S.lr_factor("cosine", 50, 100, 0) == pytest.approx(0.5)


def test_step_with_warmup_by_hand():
    # W = 10, T = 110: ×0.1 once p = (t − 10)/100 reaches 1/2 (t = 60) and again at 3/4 (t = 85)
    got = [S.lr_factor("step", t, 110, 10) for t in (4, 10, 59, 60, 84, 85, 109)]
    assert got == pytest.approx([0.5, 1.0, 1.0, 0.1, 0.1, 0.01, 0.01])


def test_original_schedule_times_warmup_by_hand():
    halve_every_20 = lambda t: 0.5 ** (t // 20)  # noqa: E731
    got = [S.lr_factor("original", t, None, 4, halve_every_20) for t in (0, 3, 19, 20, 45)]
    assert got == pytest.approx([0.25, 1.0, 1.0, 0.5, 0.25])
    assert S.lr_factor("original", 7, None, 0, None) == 1.0


def test_bad_schedule_and_missing_length_fail():
    with pytest.raises(ValueError, match="lr_schedule must be one of"):
        S.check_schedule("x", "linear", 0)
    with pytest.raises(ValueError, match="warmup_steps"):
        S.check_schedule("x", "cosine", -1)
    with pytest.raises(ValueError, match="length"):
        S.lr_factor("cosine", 3, None)
    with pytest.raises(RuntimeError, match="Trainer"):
        S.steps_per_epoch(None)


# --------------------------------------------------------------------------- HashNet β
class Tiny(nn.Module):
    def __init__(self, in_dim: int = 12, out_dim: int = 8) -> None:
        super().__init__()
        self.out_dim = out_dim
        self.lin = nn.Linear(in_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x)


@pytest.mark.parametrize("clock, want", [
    # scaled, s = 510 / 10,000 = 0.051: β steps every 200·s = 10.2 iterations (issue 22: √2 at 11)
    ("scaled", {10: 1.0, 11: math.sqrt(2), 21: math.sqrt(3), 500: math.sqrt(50)}),
    # original: the 200-step rule whatever the scale
    ("original", {11: 1.0, 199: 1.0, 200: math.sqrt(2), 400: math.sqrt(3), 10_000: math.sqrt(51)})])
def test_hashnet_beta_clock_by_hand(clock, want):
    m = get_method("hashnet")(bits=8, n_classes=3, backbone=Tiny(), schedule_scale=0.051, beta_clock=clock)
    assert {t: m.beta_at(t) for t in want} == pytest.approx(want)


# --------------------------------------------------------------------------- through Lightning
class Rates(pl.Callback):
    """Per training batch: the lr of group 0 of every optimiser (before the step) and HashNet's β
    (after it)."""

    def __init__(self):
        self.lrs, self.betas = [], []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.lrs.append([o.param_groups[0]["lr"] for o in trainer.optimizers])

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.betas.append(float(getattr(pl_module, "beta", torch.tensor(float("nan")))))


def _fit(model, epochs: int = 4, n: int = 32, batch: int = 8, n_classes: int = 4) -> Rates:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 12, generator=g)
    y = torch.nn.functional.one_hot(torch.arange(n) % n_classes, n_classes).float()
    rates = Rates()
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[rates])
    trainer.fit(model, DataLoader(TensorDataset(x, y), batch_size=batch))
    return rates


def _cosine_w4_t16(t: int) -> float:
    """Hand values, W = 4, T = 16: (t+1)/4 for t < 4, then ½(1 + cos(π(t − 4)/12))."""
    return (t + 1) / 4 if t < 4 else 0.5 * (1 + math.cos(math.pi * (t - 4) / 12))


def test_hashnet_cosine_and_original_beta_clock_in_a_fit():
    torch.manual_seed(0)
    m = get_method("hashnet")(bits=8, n_classes=4, backbone=Tiny(), lr=1e-2, lr_schedule="cosine", warmup_steps=4,
                              schedule_scale="auto", beta_clock="original")
    m.on_training_data(torch.eye(4).numpy())
    r = _fit(m)                                           # 4 epochs × 4 batches: T = 16
    assert len(r.lrs) == 16
    assert [lr[0] for lr in r.lrs] == pytest.approx([1e-2 * _cosine_w4_t16(t) for t in range(16)])
    assert r.lrs[10][0] == pytest.approx(0.5e-2) and r.lrs[7][0] == pytest.approx(1e-2 * COS45)
    assert r.betas == [1.0] * 16                          # original clock: β = 1 before t = 200


def test_hashnet_scaled_beta_clock_in_a_fit():
    torch.manual_seed(0)
    m = get_method("hashnet")(bits=8, n_classes=4, backbone=Tiny(), lr=1e-2, schedule_scale="auto")
    m.on_training_data(torch.eye(4).numpy())
    r = _fit(m)                                           # s = 16 / 10,000: β steps every 0.32 iterations
    assert r.betas[0] == 1.0 and r.betas[1] == pytest.approx(2.0) and r.betas[15] == pytest.approx(math.sqrt(47))
    # original step rule: ×0.5 every 2000·s = 3.2 iterations
    assert [lr[0] for lr in r.lrs] == pytest.approx([1e-2 * 0.5 ** math.floor(t / 3.2 + 1e-9) for t in range(16)])


def test_drq_encoder_cosine_in_a_fit():
    torch.manual_seed(0)
    m = get_method("drq")(bits=16, n_classes=4, backbone=Tiny(), feature_dim=16, lr=1e-2, codebook_lr=1e-3,
                          lr_schedule="cosine", warmup_steps=4, lr_multipliers={"backbone_weight": 1.0})
    r = _fit(m)
    enc = [lr[0] for lr in r.lrs]                         # group 0 = backbone weights, ×1
    assert enc == pytest.approx([1e-2 * _cosine_w4_t16(t) for t in range(16)])
    # the codebook optimisers keep the original decay 0.9^(t/10000) on their own steps
    assert r.lrs[-1][1] == pytest.approx(1e-3 * 0.9 ** (6 / 10000))


def test_dht_stages_each_get_their_own_cosine_in_a_fit():
    torch.manual_seed(0)
    m = get_method("dht")(bits=8, n_classes=4, backbone=Tiny(), hidden_dims=[8], lr=1e-2, stage1_lr=1e-3,
                          lr_schedule="cosine", warmup_steps=2, dropout=0.0)
    r = _fit(m)                                           # stage 1 = epochs 0-1 (8 steps), stage 2 = 2-3 (8)

    def hand(t):                                          # W = 2, T = 8
        return (t + 1) / 2 if t < 2 else 0.5 * (1 + math.cos(math.pi * (t - 2) / 6))

    assert [lr[0] for lr in r.lrs[:8]] == pytest.approx([1e-3 * hand(t) for t in range(8)])
    assert [lr[1] for lr in r.lrs[8:]] == pytest.approx([1e-2 * hand(t) for t in range(8)])
    assert r.lrs[8][0] == pytest.approx(0.0)              # stage 1 ended at the end of its cosine


@pytest.mark.parametrize("method", ["hashnet", "drq", "dht", "cascade-dht"])
def test_finetune_variants_choose_batchnorm_cosine_warmup_and_reach_the_constructor(method):
    cfg = resolve_config(method, "cifar10", "finetune", None)
    harness, hparams = split_config(cfg)
    assert harness["batchnorm"] == "frozen"
    assert hparams["lr_schedule"] == "cosine" and hparams["warmup_steps"] > 0
    m = get_method(method)(bits=32 if method == "drq" else 16, n_classes=10, backbone=Tiny(1280, 1280), **hparams)
    if method == "hashnet":
        assert (m.lr_schedule, m.warmup_steps, m.beta_clock) == ("cosine", hparams["warmup_steps"], "original")
    else:
        assert (m.hparams["lr_schedule"], m.hparams["warmup_steps"]) == ("cosine", hparams["warmup_steps"])


def test_config_check_accepts_zero_warmup_and_rejects_an_unknown_schedule():
    cls = get_method("hashnet")
    check_method_config(cls, "hashnet", "digits", None, {"warmup_steps": 0, "lr_schedule": "cosine"}, [16])
    with pytest.raises(ConfigError, match="lr_schedule"):
        check_method_config(cls, "hashnet", "digits", None, {"lr_schedule": "linear"}, [16])
    with pytest.raises(ConfigError, match="beta_clock"):
        check_method_config(cls, "hashnet", "digits", None, {"beta_clock": "fast"}, [16])
    with pytest.raises(ConfigError, match="warmup_steps"):
        check_method_config(get_method("drq"), "drq", "digits", None, {"warmup_steps": -3}, [16])
