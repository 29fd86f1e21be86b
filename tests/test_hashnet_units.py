"""HashNet module pieces the loss tests do not reach (issue 24's mutation testing of
``methods/hashnet.py``): the option parsers, the optimiser and scheduler handed to Lightning, the
schedule scale and β clocks, the relaxed codes, the input guards of the loss helpers, and a
training step's β buffer and logs. Values by hand or by the documented definition."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from hashbench.methods.hashnet import HashNet, pair_weights, similar_pair_ratio


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.out_dim = 4
        self.lin = nn.Linear(6, 4)

    def forward(self, x):
        return self.lin(x)


def make(**hp) -> HashNet:
    torch.manual_seed(0)
    return HashNet(bits=8, n_classes=3, backbone=Tiny(), **hp)


@pytest.mark.parametrize("text, value", [("true", True), ("Yes", True), ("1", True), ("on", True),
                                         ("false", False), ("NO", False), ("0", False), ("off", False)])
def test_boolean_options_read_yaml_and_cli_strings(text, value):
    m = make(nesterov=text, continuation=text, continuous_similarity=text, caffe_grad_scale=text)
    assert (m.nesterov, m.continuation, m.continuous_similarity, m.caffe_grad_scale) == (value,) * 4


def test_bad_option_values_name_the_option():
    with pytest.raises(ValueError, match="nesterov must be a boolean"):
        make(nesterov="maybe")
    with pytest.raises(ValueError, match="pairs must be one of two_stream, in_batch; got 'all'"):
        make(pairs="all")
    assert make(nesterov=0).nesterov is False and make(nesterov=1).nesterov is True


@pytest.mark.parametrize("text", ["none", "None", "null", None])
def test_null_strings_mean_no_value(text):
    m = make(threshold=text, alpha=text, class_num=text)
    assert m.threshold is None and m.alpha == pytest.approx(10 / 8) and math.isnan(float(m.class_num))
    assert make(threshold="12.5").threshold == 12.5


@pytest.mark.parametrize("weighting, want", [(True, "class_num"), ("True", "class_num"), (False, "none"),
                                             ("false", "none"), ("batch_balanced", "batch_balanced")])
def test_weighting_booleans(weighting, want):
    assert make(weighting=weighting).weighting == want


def test_sgd_and_rmsprop_with_their_options_and_a_per_step_scheduler():
    m = make(lr=0.01, momentum=0.7, weight_decay=1e-3, nesterov=True, lr_step=10, lr_gamma=0.5)
    cfg = m.configure_optimizers()
    opt, sched = cfg["optimizer"], cfg["lr_scheduler"]
    assert isinstance(opt, torch.optim.SGD)
    assert all(g["momentum"] == 0.7 and g["nesterov"] is True for g in opt.param_groups)
    assert opt.defaults["weight_decay"] == 1e-3 and opt.defaults["lr"] == 0.01
    assert sched["interval"] == "step" and sched["frequency"] == 1
    assert sched["scheduler"].lr_lambdas[0](25) == pytest.approx(0.25)          # 0.5^⌊25/10⌋
    rms = make(optimizer="RMSprop", lr=1e-5, weight_decay=1e-5).configure_optimizers()["optimizer"]
    assert isinstance(rms, torch.optim.RMSprop) and rms.defaults["lr"] == 1e-5
    assert rms.defaults["weight_decay"] == 1e-5


def test_auto_schedule_scale_is_the_run_length_over_the_original_iterations():
    m = make(schedule_scale="auto", schedule_iterations=1000)
    with pytest.raises(RuntimeError, match="finite number of steps"):
        m.resolved_schedule_scale()
    m._trainer = SimpleNamespace(estimated_stepping_batches=250, max_epochs=5)
    assert m.resolved_schedule_scale() == pytest.approx(0.25)
    m._trainer = SimpleNamespace(estimated_stepping_batches=float("inf"), max_epochs=5)
    assert m.resolved_schedule_scale() == pytest.approx(0.25)                   # resolved once
    bad = make(schedule_scale="auto")
    bad._trainer = SimpleNamespace(estimated_stepping_batches=0, max_epochs=1)
    with pytest.raises(RuntimeError):
        bad.resolved_schedule_scale()
    with pytest.raises(ValueError, match="schedule_scale"):
        make(schedule_scale=0)


def test_beta_clocks_and_total_steps():
    scaled = make(schedule_scale=0.5)                    # β steps every 100 iterations
    assert [scaled.beta_at(t) for t in (99, 100)] == pytest.approx([1.0, math.sqrt(2.0)])
    original = make(schedule_scale=0.5, beta_clock="original")
    assert [original.beta_at(t) for t in (100, 199, 200)] == pytest.approx([1.0, 1.0, math.sqrt(2.0)])
    custom = make(beta_step=10, beta_gamma=0.1, beta_power=1.0)
    assert custom.beta_at(25) == pytest.approx(1 + 0.1 * 10 * 2)
    assert make(beta_schedule="epoch", beta_epoch_step=2).beta_at(0, 4) == pytest.approx(math.sqrt(3.0))
    m = make(lr_schedule="cosine")
    m._trainer = SimpleNamespace(estimated_stepping_batches=40, max_epochs=4)
    assert m.total_steps() == 40
    assert m.lr_factor(20) == pytest.approx(0.5)                                # cosine at half of T = 40


def test_relaxed_codes_use_the_current_beta():
    m = make().eval()
    x = torch.randn(3, 6)
    m.beta.fill_(3.0)
    assert m.current_beta == 3.0
    assert torch.allclose(m.relaxed_codes(x), torch.tanh(3.0 * m.embed(x)))


def test_loss_helper_guards():
    with pytest.raises(ValueError, match="labels must be a non-empty"):
        similar_pair_ratio(np.zeros((0, 3)))
    with pytest.raises(ValueError):
        similar_pair_ratio(np.ones(3))
    assert similar_pair_ratio(np.zeros((3, 2))) == 1.0                          # no similar pair
    assert similar_pair_ratio(np.array([[1, 0], [1, 0], [0, 1]])) == pytest.approx(9 / 5)
    similar = torch.tensor([[True, False]])
    with pytest.raises(ValueError, match="needs class_num"):
        pair_weights(similar, "class_num", None)
    with pytest.raises(ValueError, match="unknown weighting 'x'"):
        pair_weights(similar, "x", 1.0)
    w, norm = pair_weights(torch.tensor([[True, False, False, False]]), "batch_balanced", None)
    assert w.tolist()[0] == pytest.approx([4.0, 4 / 3, 4 / 3, 4 / 3]) and norm.item() == 4.0
    w, norm = pair_weights(torch.tensor([[True, True]]), "batch_balanced", None)   # no dissimilar pair
    assert w.tolist() == [[1.0, 1.0]] and norm.item() == 2.0
    w, norm = pair_weights(similar, "none", 5.0, dtype=torch.float64)
    assert w.dtype == torch.float64 and w.tolist() == [[1.0, 1.0]] and norm.item() == 2.0


def test_training_step_sets_beta_and_logs_beta_lr_saturation_and_loss():
    m = make(lr=0.1, lr_step=4, class_num=2.0, schedule_scale=0.01)            # β steps every 2 iterations
    m._trainer = SimpleNamespace(global_step=5, current_epoch=0)
    logged = {}
    m.log = lambda name, value, **kw: logged.__setitem__(name, (float(torch.as_tensor(value).detach()), kw))
    x = torch.randn(6, 6)
    y = torch.eye(3)[[0, 1, 2, 0, 1, 2]]
    torch.manual_seed(1)
    loss = m.training_step((x, y), 0)
    beta = math.sqrt(1 + 0.005 * 200 * 2)                                       # ⌊5 / 2⌋ = 2 steps
    assert m.current_beta == pytest.approx(beta)
    h = torch.tanh(beta * m.embed(x))
    torch.manual_seed(1)
    assert loss.item() == pytest.approx(m.loss_on(h, y).item(), rel=1e-6)
    assert logged["beta"] == (pytest.approx(beta), {"on_step": True, "on_epoch": False, "prog_bar": True,
                                                    "batch_size": 6})
    assert logged["lr"] == (pytest.approx(0.1 * 0.5 ** 125), {"on_step": True, "on_epoch": False, "batch_size": 6})
    sat = (h.abs() > 0.99).float().mean().item()
    assert logged["train/saturated"] == (pytest.approx(sat), {"on_step": True, "on_epoch": False, "batch_size": 6})
    assert logged["train/loss"] == (pytest.approx(loss.item()), {"on_step": True, "on_epoch": True, "prog_bar": True,
                                                                 "batch_size": 6})
    logged.clear()
    assert m.training_step((x[:1], y[:1]), 0) is None and "train/loss" not in logged   # one item: no pairs
