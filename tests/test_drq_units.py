"""DRQ module pieces the loss tests do not reach (issue 24's mutation testing of ``methods/drq.py``):
the optimisers and schedulers that ``configure_optimizers`` hands to Lightning, the learning-rate
decay by hand, the schedule length's sources, the stage rule's guards, the network's feature
layout and the codes and codebooks it exposes. Values by hand or by the documented definition."""
from __future__ import annotations

import math
import re
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hashbench.methods.base import UnsupportedBitsError
from hashbench.methods.drq import DRQ, exponential_decay, recurrent_quantize, stage_of_epoch, steps_and_bits


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(6, 5)
        self.out_dim = 5

    def forward(self, x):
        return self.lin(x)


def make(bits=8, **kw) -> DRQ:
    torch.manual_seed(0)
    kw = {"codebook_size": 4, "feature_dim": 7, **kw}                  # 2 bits per step
    return DRQ(bits=bits, n_classes=3, backbone=Tiny(), **kw).eval()


def test_exponential_decay_by_hand():
    f = exponential_decay(0.5, 10)
    assert f(0) == 1.0 and f(20) == pytest.approx(0.25) and f(5) == pytest.approx(0.5 ** 0.5)


def test_optimisers_and_schedulers_handed_to_lightning():
    m = make(bits=8, lr=0.02, momentum=0.8, codebook_lr=3e-3, lr_decay_rate=0.5, lr_decay_steps=100)
    (enc, opt_a, opt_b), scheds = m.configure_optimizers()
    assert isinstance(enc, torch.optim.SGD) and all(g["momentum"] == 0.8 for g in enc.param_groups)
    assert isinstance(opt_a, torch.optim.Adam) and isinstance(opt_b, torch.optim.Adam)
    assert [p is m.codebook for p in opt_a.param_groups[0]["params"]] == [True]
    b = opt_b.param_groups[0]["params"]                                 # stage B: C and w_2..w_4
    assert len(b) == 2 and b[0] is m.codebook and b[1] is m.step_scales
    assert opt_a.param_groups[0]["lr"] == opt_b.param_groups[0]["lr"] == 3e-3
    assert [s["name"] for s in scheds] == ["encoder", "codebook_A", "codebook_B"]
    assert all(s["interval"] == "step" for s in scheds)
    for s in scheds:                                                   # 0.5^(t/100) on each one's own step
        assert s["scheduler"].lr_lambdas[0](200) == pytest.approx(0.25)
        assert s["scheduler"].optimizer in (enc, opt_a, opt_b)
    assert [s["scheduler"].optimizer for s in scheds] == [enc, opt_a, opt_b]
    adam = make(encoder_optimizer="adam", lr=0.03).configure_optimizers()[0][0]
    assert isinstance(adam, torch.optim.Adam)
    assert {g["name"]: g["lr"] for g in adam.param_groups}["head_bias"] == pytest.approx(0.3)   # ×10


def test_one_step_code_has_no_scales_to_train():
    m = make(bits=2)                                                   # M = 1: w = (1,)
    assert m.step_scales.numel() == 0 and m.scales().tolist() == [1.0]
    opt_b = m.configure_optimizers()[0][2]
    assert [p is m.codebook for p in opt_b.param_groups[0]["params"]] == [True]


def test_encoder_lr_factor_original_decay_after_warmup():
    m = make(lr_decay_rate=0.5, lr_decay_steps=10, warmup_steps=4)
    f = m.encoder_lr_factor()
    assert f(0) == pytest.approx(0.25 * 1.0)                           # (t+1)/W · 0.5^(t/10)
    assert f(2) == pytest.approx(0.75 * 0.5 ** 0.2)
    assert f(20) == pytest.approx(0.25)


def test_total_epochs_from_the_schedule_key_else_the_trainer():
    assert make(schedule_epochs=6).total_epochs() == 6
    m = make()
    with pytest.raises(ValueError, match="schedule_epochs"):
        m.total_epochs()
    m._trainer = SimpleNamespace(max_epochs=5)
    assert m.total_epochs() == 5
    m = make(schedule_epochs=3)
    m._trainer = SimpleNamespace(max_epochs=5)
    assert m.total_epochs() == 3
    with pytest.raises(ValueError):
        make(schedule_epochs=0).total_epochs()


def test_stage_of_epoch_guards_and_boundaries():
    with pytest.raises(ValueError, match="total_epochs"):
        stage_of_epoch(0, 0)
    with pytest.raises(ValueError, match="fractions"):
        stage_of_epoch(0, 8, (0.75, 0.5))
    with pytest.raises(ValueError, match="fractions"):
        stage_of_epoch(0, 8, (0.5, 1.5))
    # f1 = 0: b1 = 0, b2 = 2 of 4; epoch 0 is never skipped, epoch 2 is with skip_boundaries
    assert [stage_of_epoch(e, 4, (0.0, 0.5), True) for e in range(4)] == [2, 2, 0, 3]
    assert [stage_of_epoch(e, 4, (0.0, 0.5)) for e in range(4)] == [2, 2, 3, 3]
    assert [stage_of_epoch(e, 4, (0.5, 1.0), True) for e in range(4)] == [1, 1, 0, 2]
    m = make(schedule_epochs=4, stage_fractions=(0.25, 0.5), skip_boundary_epochs=True)
    assert [m.stage(e) for e in range(4)] == [1, 0, 0, 3]


def test_steps_and_bits_guards():
    assert steps_and_bits(6, 4) == (3, 2) and steps_and_bits(4, 4, n_steps=3) == (3, 2)
    for bits, k, n in ((8, 6, None), (8, 1, None), (3, 4, None), (0, 4, None), (8, 4, 3), (2, 4, 0)):
        with pytest.raises(UnsupportedBitsError):
            steps_and_bits(bits, k, n)
    with pytest.raises(UnsupportedBitsError):
        DRQ.check_bits(10, codebook_size=256)
    DRQ.check_bits(16, codebook_size=256)


def test_features_are_z8_then_z9_of_the_relu_of_z8():
    m = make()
    x = torch.randn(3, 6)
    feats, z9 = m.features(x)
    z8 = m.fc8(m.backbone(x))
    assert feats.shape == (3, 7) and z9.shape == (3, 3)                 # D = 7, D_v = 3 (one-hot)
    assert torch.allclose(feats[:, :4], z8) and torch.allclose(z9, m.fc9(F.relu(z8)))
    assert torch.allclose(feats[:, 4:], z9) and torch.allclose(m.embed(x), feats)


def test_codes_and_codebooks_exposed_to_the_harness():
    m = make(bits=6)
    with torch.no_grad():
        m.step_scales.copy_(torch.tensor([0.5, -2.0]))
    assert m.scales().tolist() == [1.0, 0.5, -2.0]
    books = m.code_state()["codebooks"]
    assert books.shape == (3, 4, 7) and books.dtype.name == "float32"
    assert torch.allclose(torch.from_numpy(books[2]), -2.0 * m.codebook.detach())
    x = torch.randn(5, 6)
    out = m.encode(x)
    assert out["indices"].dtype == torch.int64
    assert torch.equal(out["indices"], recurrent_quantize(m.embed(x), m.codebook, m.scales()).indices)
    assert torch.allclose(out["features"], m.embed(x))
    assert m.evaluation_lengths() == {2: {"prefix": 1}, 4: {"prefix": 2}, 6: {"prefix": 3}}


def _stepped(m, epoch: int):
    """Run the module's own training_step outside a Trainer: its optimisers and schedulers from
    configure_optimizers, backward in place, ``self.log`` / ``self.log_dict`` recorded."""
    opts, scheds = m.configure_optimizers()
    m.optimizers = lambda: opts
    m.lr_schedulers = lambda: [s["scheduler"] for s in scheds]
    m.manual_backward = lambda loss: loss.backward()
    m._trainer = SimpleNamespace(current_epoch=epoch, max_epochs=None)
    logged = {}
    num = lambda v: float(v.detach()) if torch.is_tensor(v) else float(v)      # noqa: E731
    m.log = lambda name, value, **kw: logged.__setitem__(name, (num(value), kw))
    m.log_dict = lambda d, **kw: logged.update({k: (num(v), kw) for k, v in d.items()})
    return [s["scheduler"] for s in scheds], logged


@pytest.mark.parametrize("epoch, batch_idx, stage, stepped", [
    (0, 0, 1, (1, 0, 0)),            # stage 1: the encoder only
    (2, 0, 2, (1, 1, 0)),            # stage 2: + codebook step A
    (3, 0, 3, (1, 1, 0)),            # stage 3, even batch: A
    (3, 1, 3, (1, 0, 1)),            # stage 3, odd batch: B (C and w)
])
def test_training_step_steps_the_optimisers_of_its_stage_and_logs(epoch, batch_idx, stage, stepped):
    m = make(bits=4, schedule_epochs=4, dropout=0.0, lr=0.05, codebook_lr=0.05).train()   # stages 1 1 2 3
    scheds, logged = _stepped(m, epoch)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(6, 6, generator=g)
    y = F.one_hot(torch.tensor([0, 1, 2, 0, 1, 2]), 3).float()
    feats, z9 = m.features(x)
    want = m.training_loss(feats, z9, y, stage, stage == 3 and batch_idx == 1)[0].item()
    c0, w0, fc0 = m.codebook.detach().clone(), m.step_scales.detach().clone(), m.fc8.weight.detach().clone()
    loss = m.training_step((x, y), batch_idx)
    assert loss.item() == pytest.approx(want, rel=1e-6) and not loss.requires_grad
    assert tuple(s.last_epoch for s in scheds) == stepped
    assert not torch.equal(m.fc8.weight, fc0)
    assert torch.equal(m.codebook, c0) is (stage == 1)
    assert torch.equal(m.step_scales, w0) is (stepped[2] == 0)
    assert logged["train/stage"] == (float(stage), {"on_step": True, "on_epoch": False})
    assert logged["train/loss"] == (pytest.approx(want, rel=1e-6), {"on_step": True, "on_epoch": False})
    assert logged["train/lr_head_weight"][0] == pytest.approx(0.05 * 5 * 0.9 ** (1 / 10000))   # after one step
    assert logged["train/lr_codebook_A"][0] == pytest.approx(0.05 * 0.9 ** (stepped[1] / 10000))
    assert logged["train/lr_codebook_B"][0] == pytest.approx(0.05 * 0.9 ** (stepped[2] / 10000))
    assert ("train/E_soft_B" in logged) is (stepped[2] == 1) and ("train/E_soft_A" in logged) is (stepped[1] == 1)


def test_a_skipped_epoch_trains_nothing():
    m = make(bits=4, schedule_epochs=4, stage_fractions=(0.5, 0.75), skip_boundary_epochs=True)
    scheds, logged = _stepped(m, 2)                                    # epoch b1 = 2: skipped
    fc0 = m.fc8.weight.detach().clone()
    assert m.training_step((torch.randn(4, 6), torch.eye(3)[[0, 1, 2, 0]]), 0) is None
    assert torch.equal(m.fc8.weight, fc0) and all(s.last_epoch == 0 for s in scheds)
    assert logged == {"train/stage": (0.0, {"on_step": True, "on_epoch": False})}


def _raises_exactly(exc, message: str):
    """``pytest.raises`` on the whole message (a user-facing error says exactly this)."""
    return pytest.raises(exc, match=f"^{re.escape(message)}$")


def test_steps_and_bits_at_their_bounds_and_their_messages():
    assert steps_and_bits(1, 2) == (1, 1) and steps_and_bits(3, 2) == (3, 1)   # K = 2: one bit a step
    assert steps_and_bits(24, 256, n_steps=4) == (4, 8)
    with _raises_exactly(UnsupportedBitsError, "drq: codebook_size must be a power of two >= 2, got 6"):
        steps_and_bits(8, 6)
    # 12 bits at K = 256 is no multiple of 8, also when n_steps = 4 would leave room for 32 bits
    for n_steps in (None, 4):
        with _raises_exactly(UnsupportedBitsError,
                             "drq: bits must be a positive multiple of log2(K) = 8 (K = 256), got 12"):
            steps_and_bits(12, 256, n_steps)
    with _raises_exactly(UnsupportedBitsError, "drq: bits must be a positive multiple of log2(K) = 2 (K = 4), got 0"):
        steps_and_bits(0, 4, n_steps=3)
    with _raises_exactly(UnsupportedBitsError, "drq: 24 bits exceed n_steps·log2(K) = 2·8"):
        steps_and_bits(24, 256, n_steps=2)


def test_soft_output_uses_each_rows_own_cosines():
    # C = (e1, e2), one step: cos(r_i, C_k) = r_ik / ‖r_i‖, so the rows (3, 4) and (0, −2) have cosines
    # (0.6, 0.8) and (0, −1) whatever the other row's norm; soft = softmax(cos) @ C, hard = C[argmax]
    x = torch.tensor([[3.0, 4.0], [0.0, -2.0]])
    q = recurrent_quantize(x, torch.eye(2), torch.tensor([1.0]))
    e = math.exp
    want = [[e(0.6) / (e(0.6) + e(0.8)), e(0.8) / (e(0.6) + e(0.8))], [e(0.0) / (e(0.0) + e(-1.0)), e(-1.0) / (e(0.0) + e(-1.0))]]
    assert q.soft[0].tolist() == [pytest.approx(r, rel=1e-6) for r in want]
    assert q.indices.tolist() == [[1], [0]] and q.hard[0].tolist() == [[0.0, 1.0], [1.0, 0.0]]


def test_schedule_error_message():
    with _raises_exactly(ValueError, "drq: the stage schedule needs schedule_epochs or Trainer(max_epochs=...)"):
        make().total_epochs()


@pytest.mark.parametrize("fractions, skip, want", [
    ((0.5, 0.75), False, [False, False, False, True]),   # stages 1 1 2 3: the last epoch alone starts stage 3
    ((1.0, 1.0), False, [True] * 4),                     # stage 1 throughout: it is the final stage
    ((0.5, 0.75), True, [False] * 4),                    # stages 1 1 0 0: the last epoch is skipped, none selectable
])
def test_selectable_epochs_follow_the_last_epochs_stage(fractions, skip, want):
    m = make(schedule_epochs=4, stage_fractions=fractions, skip_boundary_epochs=skip)
    assert [m.selectable_epoch(e) for e in range(4)] == want


def test_unknown_encoder_optimizer_set_after_construction_is_refused_by_name():
    m = make()
    m.hparams.encoder_optimizer = "sgd"
    with _raises_exactly(ValueError, "drq: encoder_optimizer must be 'momentum' or 'adam', got 'sgd'"):
        m.configure_optimizers()
