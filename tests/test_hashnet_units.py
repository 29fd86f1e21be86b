"""HashNet module pieces the loss tests do not reach (issue 24's mutation testing of
``methods/hashnet.py``): the option parsers, the optimiser and scheduler handed to Lightning, the
schedule scale and β clocks, the relaxed codes, the input guards of the loss helpers, and a
training step's β buffer and logs. Values by hand or by the documented definition."""
from __future__ import annotations

import math
import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from hashbench.methods.hashnet import (
    HashNet,
    epoch_beta,
    pair_weights,
    pairwise_likelihood_loss,
    similar_pair_ratio,
    two_stream_split,
)


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


def _raises_exactly(exc, message: str):
    """``pytest.raises`` on the whole message (a user-facing error says exactly this)."""
    return pytest.raises(exc, match=f"^{re.escape(message)}$")


def test_helper_defaults_and_error_messages():
    assert epoch_beta(19) == 1.0 and epoch_beta(20) == pytest.approx(math.sqrt(2.0))      # step 20 by default
    assert make(beta_schedule="epoch", beta_epoch_step=1).beta_at(7) == 1.0               # epoch 0 by default
    assert similar_pair_ratio(np.array([[1, 0], [0, 0]])) == 4.0                         # 4 pairs, 1 similar (0, 0)
    with _raises_exactly(ValueError, "weighting='class_num' needs class_num"):
        pair_weights(torch.tensor([[True]]), "class_num", None)
    with _raises_exactly(ValueError, "unknown weighting 'x'; valid: class_num, none, batch_balanced"):
        pair_weights(torch.tensor([[True]]), "x", 1.0)
    with _raises_exactly(RuntimeError, "hashnet: class_num is unknown; set it or call on_training_data(labels) first"):
        make().loss_on(torch.zeros(4, 8), torch.eye(3)[[0, 1, 2, 0]])
    m = make(schedule_scale="auto", schedule_iterations=1000)
    with _raises_exactly(RuntimeError, "hashnet: schedule_scale 'auto' needs a Trainer with a finite number of steps"):
        m.resolved_schedule_scale()
    m._trainer = SimpleNamespace(estimated_stepping_batches=1, max_epochs=1)               # a one-step run
    assert m.resolved_schedule_scale() == pytest.approx(1e-3)


def test_batch_balanced_weights_with_exactly_one_dissimilar_pair():
    w, norm = pair_weights(torch.tensor([[True, True], [True, False]]), "batch_balanced", None)
    assert w.tolist() == [pytest.approx([4 / 3, 4 / 3]), pytest.approx([4 / 3, 4.0])] and norm.item() == 4.0


@pytest.mark.parametrize("weighting", ["class_num", "none", "batch_balanced"])
def test_pair_weights_in_the_requested_dtype_on_the_input_device(weighting):
    similar = torch.tensor([[True, False, False], [False, True, True]])
    for dtype in (torch.float64, torch.bfloat16):
        w, norm = pair_weights(similar, weighting, 3.0, dtype=dtype)
        assert (w.dtype, norm.dtype) == (dtype, dtype)
    w, norm = pair_weights(similar.to("meta"), weighting, 3.0)                            # device, no data
    assert (w.device.type, norm.device.type) == ("meta", "meta")
    i1, i2 = two_stream_split(5, device="meta")
    assert (i1.device.type, i2.device.type, len(i1), len(i2)) == ("meta", "meta", 2, 2)


def _pairs64(seed: int = 3):
    g = torch.Generator().manual_seed(seed)
    h1 = torch.randn(4, 6, generator=g, dtype=torch.float64).tanh().requires_grad_()
    h2 = torch.randn(5, 6, generator=g, dtype=torch.float64).tanh().requires_grad_()
    y1 = torch.eye(3)[[0, 1, 2, 0]]                                                       # float32, as loaders give
    y2 = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [1.0, 0.0, 1.0]])
    return h1, h2, y1, y2


def test_pairwise_loss_defaults_weight_every_pair_alike():
    # α = 1: t = (1, 0), s = (1, 0), ℓ = (log(1 + e) − 1, log 2); class_num 1 by default: the plain mean
    h1, h2 = torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    loss = pairwise_likelihood_loss(h1, h2, h1, h2, alpha=1.0)
    assert loss.item() == pytest.approx((math.log1p(math.exp(-1.0)) + math.log(2.0)) / 2, rel=1e-6)


@pytest.mark.parametrize("scale", [2.0, 3.2])
def test_grad_scale_multiplies_the_float64_gradient_exactly(scale):
    h1, h2, y1, y2 = _pairs64()
    kw = dict(alpha=0.625, class_num=2.0, continuous_similarity=False)
    plain = torch.autograd.grad(pairwise_likelihood_loss(h1, h2, y1, y2, **kw), (h1, h2))
    scaled = torch.autograd.grad(pairwise_likelihood_loss(h1, h2, y1, y2, grad_scale=scale, **kw), (h1, h2))
    for g, p in zip(scaled, plain):
        torch.testing.assert_close(g, scale * p, rtol=1e-13, atol=0.0)                  # 3.2 not rounded to float32


def test_float64_codes_with_the_loaders_float32_labels():
    h1, h2, y1, y2 = _pairs64(seed=4)
    kw = dict(alpha=0.625, class_num=2.0, continuous_similarity=True, grad_scale=3.2)
    loss32 = pairwise_likelihood_loss(h1, h2, y1, y2, **kw)
    loss64 = pairwise_likelihood_loss(h1, h2, y1.double(), y2.double(), **kw)
    assert loss32.dtype == torch.float64 and loss32.item() == loss64.item()
    for g, want in zip(torch.autograd.grad(loss32, (h1, h2)), torch.autograd.grad(loss64, (h1, h2))):
        assert torch.equal(g, want)


def test_softplus_without_threshold_is_exact_in_float64():
    # threshold None: ℓ = log(1 + e^t) at t = 21 (dissimilar), which exceeds t by e^−21 ≈ 7.6e-10
    one = torch.tensor([[1.0]], dtype=torch.float64)
    loss = pairwise_likelihood_loss(21 * one, one, torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]),
                                    alpha=1.0, threshold=None, weighting="none")
    assert loss.item() == pytest.approx(math.log1p(math.exp(21.0)), rel=1e-14, abs=0.0)
    assert loss.item() != 21.0


class _Identity(nn.Module):
    out_dim = 4

    def forward(self, x):
        return x


def _atanh_099() -> float:
    """A float32 z with tanh(z) = 0.99 exactly in this torch build: the middle of the run of
    neighbours of atanh(0.99) (about 13 float32 values) that tanh maps to float32(0.99)."""
    z = [torch.tensor(math.atanh(0.99))]
    for _ in range(20):
        z = [torch.nextafter(z[0], torch.tensor(0.0))] + z + [torch.nextafter(z[-1], torch.tensor(9.0))]
    z = torch.stack(z)
    hits = (torch.tanh(z) == torch.tensor(0.99)).nonzero().flatten()
    assert len(hits) > 0
    return z[hits[len(hits) // 2]].item()


def test_training_step_logs_per_item_batch_size_and_strict_saturation():
    m = HashNet(bits=4, n_classes=3, backbone=_Identity(), class_num=2.0)
    with torch.no_grad():
        m.fch.weight.copy_(torch.eye(4))                                                  # z = x exactly, β = 1
    x = torch.tensor([[_atanh_099(), -_atanh_099(), 3.0, 0.0]] * 3)                       # 3 items of 4 values
    m._trainer = SimpleNamespace(global_step=0, current_epoch=0)
    logged = {}
    m.log = lambda name, value, **kw: logged.__setitem__(name, (float(torch.as_tensor(value).detach()), kw))
    m.training_step((x, torch.eye(3)), 0)
    assert (m.relaxed_codes(x).abs() == 0.99).sum() == 6                                  # the boundary is reached
    assert logged["train/saturated"][0] == 0.25                                           # |h| > 0.99: only tanh(3)
    assert {name: kw["batch_size"] for name, (_, kw) in logged.items()} == dict.fromkeys(logged, 3)


def test_training_step_reads_beta_by_epoch():
    m = make(beta_schedule="epoch", class_num=2.0)
    m._trainer = SimpleNamespace(global_step=0, current_epoch=20)
    m.log = lambda *a, **kw: None
    m.training_step((torch.randn(4, 6), torch.eye(3)[[0, 1, 2, 0]]), 0)
    assert m.current_beta == pytest.approx(math.sqrt(2.0))                                # ⌊20 / 20⌋ + 1 = 2


class _WithMatrixBias(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.out_dim = 4
        self.lin = nn.Linear(6, 4)
        self.pos_bias = nn.Parameter(torch.zeros(2, 4))                                   # 2-d, named *bias

    def forward(self, x):
        return self.lin(x)


def test_a_parameter_named_bias_is_a_bias_whatever_its_shape():
    m = HashNet(bits=8, n_classes=3, backbone=_WithMatrixBias(), lr=0.1)
    groups = {g["name"]: {id(p) for p in g["params"]} for g in m._param_groups()}
    b = m.backbone
    assert groups["backbone_weight"] == {id(b.lin.weight)}
    assert groups["backbone_bias"] == {id(b.lin.bias), id(b.pos_bias)}
