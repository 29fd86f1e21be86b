"""HashNet: deep learning to hash by continuation (Cao, Long, Wang, Yu, ICCV 2017).

Specification: ``docs/methods.md`` §5, read against the original code (thuml/HashNet
@ 85387b8: Caffe ``pairwise_loss_layer.cu`` / ``scale_tanh_layer.cu`` and the PyTorch port
``pytorch/src/{loss,network,train}.py``). Every default below is the paper's (Caffe) setting;
each departure is a named, documented option.

Model
    ``z = fch(φ(x))`` (a linear layer, K outputs, Gaussian σ = 0.01 init, zero bias, on the
    backbone feature φ); training output ``h = tanh(β·z)``; the code is ``sign(z)`` as ±1 int8
    with sign(0) = +1 (the same as sign(tanh(βz)) for any β > 0); ``embed`` returns z.

Loss (weighted pairwise maximum likelihood, :func:`pairwise_likelihood_loss`)
    ``s_ij = [y_iᵀy_j > 0]`` (multi-label overlap; an unlabelled item is similar to nothing),
    ``t_ij = α⟨h_i, h_j⟩`` with the adaptive sigmoid ``α = 10/K`` (recomputed for every K;
    the hparam ``alpha`` overrides it), ``ℓ_ij = log(1 + e^t) − s·t`` or ``t·(1 − s)`` when
    ``t ≥ 15`` (``threshold``; Caffe ``l_threshold``). Note |t| ≤ α·K = 10 when α = 10/K, so the
    threshold branch only matters for a larger α. Weights ``w_ij = class_num`` on similar and 1 on
    dissimilar pairs, ``L = Σ w·ℓ / Σ w`` (normalised by the weighted pair count).
    ``class_num`` default: ``#pairs / #similar pairs`` on the training labels, measured in
    :meth:`HashNet.on_training_data` (the original README's rule; it gives 100 for the
    ImageNet-100 lists); the hparam ``class_num`` overrides it (the per-dataset YAML entries set
    the paper's 100 / 5 / 1).

Pairs: two independently shuffled streams from one harness batch
    The original concatenates two data layers (Caffe) / two loaders (PyTorch) over the same
    training list, each shuffled independently, and scores all pairs (i ∈ stream 1, j ∈ stream 2)
    — never pairs within a stream. Here one harness batch of B items is permuted by a fresh
    random permutation (independent of the loader's order) and split into halves of ⌊B/2⌋; the
    pairs are half 1 × half 2. Each half is then a uniform random subset of the training set,
    like a batch of an independently shuffled loader, and the two halves are as independent as
    sampling without replacement allows. Differences from two loaders: the halves never share an
    item within an iteration (the original has ≈ n²/N coincident items, e.g. 5 of 256 on
    ImageNet-100, giving a few self-pairs), and an epoch of the harness is half as many
    stream-1 + stream-2 passes. The extra permutation matters when the harness uses a
    class-balanced sampler whose batches are grouped by class. Set ``batch_size`` = 2× the
    original stream batch (Caffe 2×256 → 512; PyTorch port 2×36 → 72). ``pairs: in_batch``
    scores all B×B pairs of the batch including self-pairs (DeepHash-pytorch).

Continuation (:func:`continuation_beta`)
    ``β_t = (1 + 0.005·200·⌊t / 200⌋)^0.5`` (Caffe ``ScaleTanH``: init_scale 1, gamma 0.005,
    power 0.5, step_size 200), t = completed training iterations (``self.global_step``, so the
    first iteration runs at t = 0): β = 1 up to t = 199, √2 at t = 200, √51 ≈ 7.14 at t = 10,000.
    β is stored in the ``beta`` buffer (it travels with checkpoints) and logged as ``beta`` at
    every training step. ``continuation: false`` fixes β = 1 (the paper's "no continuation"
    ablation; codes are still sign(z)).

``schedule_scale`` (CPU configs)
    The 200-iteration β step and the 2,000-iteration lr step are both multiplied by s, i.e. the
    schedules are evaluated on the original clock τ = t/s: ``β = (1 + 0.005·200·⌊t/(200 s)⌋)^0.5``
    and ``lr = base·0.5^⌊t/(2000 s)⌋``. A run of 10,000·s iterations thus has exactly the shape
    of the original 10,000 (5 lr halvings, β from 1 to √51); β ≥ 5 needs t ≥ 4,800·s.
    ``schedule_scale: auto`` sets s = (the Trainer's total optimiser steps) / 10,000
    (``schedule_iterations``), so whatever the dataset size and epoch count, the run maps onto
    the original 10,000 iterations and ends at β = √51. s need not make 200·s an integer.

Fine-tuning schedules (issue 22; ``methods/schedules.py``)
    ``lr_schedule``: ``original`` (default: the step rule above) | ``cosine`` | ``step`` (decay
    over the run's real length T = the Trainer's optimiser steps), each after ``warmup_steps``
    (default 0) of linear warm-up: lr(t) = base·min(1, (t+1)/W)·decay(t). ``beta_clock``:
    ``scaled`` (default: β on the clock τ = t/s above, so ``schedule_scale: auto`` on a 510-step
    run puts β at √2 from step 11) | ``original`` (β on the unscaled clock, s = 1: β = 1 up to
    t = 199, √2 from 200, √3 from 400 — never faster than the original 200-step rule, whatever
    ``schedule_scale`` does to the lr).

Options (defaults = the paper's Caffe behaviour)
    ``continuous_similarity`` (default true: on in all three shipped Caffe prototxts): in the
    backward pass only, each pair's gradient is multiplied by 4·c_ij with
    c_ij = (y_iᵀy_j)² / (‖y_i‖²‖y_j‖²) (zero norms read as 1) when y_iᵀy_j > 0, and 0.25
    otherwise: ×4·cos²(y_i, y_j) on similar pairs, ×1 on dissimilar ones. The forward loss is
    unchanged. Implemented as a custom autograd Function on t (identity forward).
    ``caffe_grad_scale`` (default true): Caffe's backward is 2·(σ(t) − s)·w/Σw·h_j — a factor 2
    over the analytic gradient, and without α: its ``caffe_gpu_scal(outer_num_, sigmoid_param_,
    bottom_diff)`` scales only the first outer_num_ (= 256) of the 256·K gradient entries (about 5
    of 256 items at 48 bits), so α is in effect missing. This option multiplies the loss
    gradient by 2/α (= K/5: ×3.2 at 16 bits, ×9.6 at 48, ×12.8 at 64), reproducing Caffe's
    effective gradient on all items (the few α-scaled entries are not reproduced), backward only
    like Caffe. The PyTorch port has neither factor; that is ``caffe_grad_scale: false`` with
    ``continuous_similarity: false``. Caffe's backward also ignores the t ≥ 15 branch
    (σ(t) − s instead of 1 − s; they differ by < 3.1e-7); not reproduced.
    ``weighting``: ``class_num`` (default) | ``none`` (all weights 1, L = mean ℓ: the paper's
    "no weighting" ablation; ``false`` is accepted) | ``batch_balanced`` (DeepHash-pytorch:
    w = |S|/|S₁| on similar, |S|/|S₀| on dissimilar pairs of the batch, L = Σ w·ℓ / |S|).
    ``pairs``: ``two_stream`` (default) | ``in_batch``. ``beta_schedule``: ``iteration``
    (default) | ``epoch`` (DeepHash-pytorch: β = √(⌊epoch / beta_epoch_step⌋ + 1), step 20).
    ``threshold: null`` drops the t ≥ 15 branch (softplus everywhere, DeepHash-pytorch).

Optimisation
    SGD momentum 0.9 (Caffe: no Nesterov; the PyTorch port's ``nesterov: true`` is an option),
    weight decay 5e-4, ``lr = base·0.5^⌊t/2000⌋`` (a step-interval ``LambdaLR``), logged as
    ``lr``. Caffe's lr multipliers: backbone weights ×1, backbone biases ×2 (no decay), fch
    weights ×10, fch bias ×20 (no decay); hparams ``head_lr_mult`` (10), ``bias_lr_mult`` (2),
    ``bias_decay_mult`` (0); a parameter is a bias when its name ends in ``bias``. The other 1-d
    parameters (normalisation scales: BatchNorm weights, absent from AlexNet) keep the weights'
    lr and get no decay (``norm_decay_mult``, 0; issue 22). Parameters
    with ``requires_grad = False`` (a frozen backbone) are left out. ``optimizer: rmsprop``
    (DeepHash-pytorch) uses torch's RMSprop defaults with ``lr`` and ``weight_decay``.

Variant ``deephash-pytorch`` (``methods/configs/hashnet.yaml``): swuxyj/DeepHash-pytorch's
``HashNet.py`` — α = 0.1 fixed, β = √(⌊epoch/20⌋ + 1), RMSprop lr 1e-5 and weight decay 1e-5 on
all parameters alike, no lr decay, in-batch pairs with self-pairs, batch-balanced weights, no
threshold, no continuous similarity, batch 64, 150 epochs. It is a different configuration of
the method, not the paper's.

Diagnostics: :attr:`HashNet.current_beta` and :meth:`HashNet.relaxed_codes` (tanh(βz) at the
current β) let the harness measure how binary the relaxed outputs are (the fraction of
|tanh(βz)| > 0.99); the method computes no metric itself.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from hashbench.methods import schedules
from hashbench.methods.base import BINARY, HashingMethod
from hashbench.methods.registry import register

#: the original schedule's length in iterations (``schedule_scale: auto`` maps a run onto it)
ORIGINAL_ITERATIONS = 10_000

_WEIGHTINGS = ("class_num", "none", "batch_balanced")
_PAIRS = ("two_stream", "in_batch")
_BETA_SCHEDULES = ("iteration", "epoch")
_OPTIMIZERS = ("sgd", "rmsprop")
_BETA_CLOCKS = ("scaled", "original")


# --------------------------------------------------------------------------- schedules
def continuation_beta(t: int, schedule_scale: float = 1.0, step: int = 200, gamma: float = 0.005,
                      power: float = 0.5, init: float = 1.0) -> float:
    """β after t completed iterations: ``init·(1 + gamma·step·⌊t / (step·s)⌋)^power``.

    With s = 1 this is Caffe's ``ScaleTanH`` schedule, β = √(1 + 0.005·200·⌊t/200⌋): 1 for
    t < 200, √2 at 200, √51 at 10,000. s rescales the clock (see the module docstring).
    """
    n_steps = math.floor(t / (step * schedule_scale) + 1e-9)
    return float(init * (1.0 + gamma * step * n_steps) ** power)


def epoch_beta(epoch: int, epoch_step: int = 20) -> float:
    """DeepHash-pytorch's β for a 0-based epoch: ``√(⌊epoch / epoch_step⌋ + 1)``."""
    return float(math.sqrt(epoch // epoch_step + 1))


def step_lr_factor(t: int, schedule_scale: float = 1.0, step: int = 2000, gamma: float = 0.5) -> float:
    """The lr multiplier after t iterations: ``gamma^⌊t / (step·s)⌋`` (Caffe ``lr_policy: step``)."""
    return float(gamma ** math.floor(t / (step * schedule_scale) + 1e-9))


def default_alpha(bits: int) -> float:
    """HashNet's adaptive sigmoid parameter α = 10 / K (``sigmoid_param``; 0.2 at 48 bits)."""
    return 10.0 / int(bits)


def similar_pair_ratio(labels: np.ndarray) -> float:
    """``class_num`` by the original README's rule: #pairs / #similar pairs on a label set.

    Pairs are the N² ordered pairs (i, j) of the N items, self-pairs included (the two-stream
    construction draws them), similar when ``y_iᵀy_j > 0``. Computed on the distinct label rows
    weighted by their counts. Returns 1.0 when no pair is similar (no re-weighting possible).
    """
    y = np.asarray(labels) > 0
    if y.ndim != 2 or y.shape[0] == 0:
        raise ValueError(f"labels must be a non-empty (N, C) 0/1 array, got shape {y.shape}")
    rows, counts = np.unique(y, axis=0, return_counts=True)
    overlap = (rows.astype(np.float64) @ rows.T.astype(np.float64)) > 0
    c = counts.astype(np.float64)
    n_similar = float(c @ overlap @ c)
    return float(y.shape[0] ** 2 / n_similar) if n_similar > 0 else 1.0


# --------------------------------------------------------------------------- loss
def continuous_similarity_factor(y1: torch.Tensor, y2: torch.Tensor) -> torch.Tensor:
    """Caffe's backward multiplier 4·c_ij: c = (y_iᵀy_j)² / (‖y_i‖²‖y_j‖²) (a zero norm read as 1)
    where y_iᵀy_j ≠ 0, else 0.25 — so ×4·cos²(y_i, y_j) on similar pairs and ×1 on dissimilar."""
    dot = y1 @ y2.T
    n1 = (y1 * y1).sum(1)
    n2 = (y2 * y2).sum(1)
    n1 = torch.where(n1 == 0, torch.ones_like(n1), n1)
    n2 = torch.where(n2 == 0, torch.ones_like(n2), n2)
    c = dot * dot / (n1[:, None] * n2[None, :])
    return 4.0 * torch.where(c == 0, torch.full_like(c, 0.25), c)


class _ScaleGradient(torch.autograd.Function):
    """Identity in the forward pass; multiplies the incoming gradient by ``factor`` in the
    backward pass (how Caffe's continuous similarity and gradient scale act)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(factor)
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (factor,) = ctx.saved_tensors
        return grad * factor, None


def pair_weights(similar: torch.Tensor, weighting: str, class_num: float | None,
                 dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pair weights w and the normaliser of ``Σ w·ℓ``.

    ``class_num``: w = class_num on similar, 1 on dissimilar pairs; normaliser Σ w.
    ``none``: w = 1; normaliser = #pairs. ``batch_balanced`` (DeepHash-pytorch): w = |S|/|S₁| on
    similar, |S|/|S₀| on dissimilar pairs; normaliser |S| (the number of pairs).
    """
    s = similar.to(dtype)
    n_pairs = torch.tensor(float(s.numel()), dtype=s.dtype, device=s.device)
    if weighting == "class_num":
        if class_num is None:
            raise ValueError("weighting='class_num' needs class_num")
        w = torch.where(similar, torch.full_like(s, float(class_num)), torch.ones_like(s))
        return w, w.sum()
    if weighting == "none":
        return torch.ones_like(s), n_pairs
    if weighting == "batch_balanced":
        n1 = s.sum()
        n0 = n_pairs - n1
        w = torch.where(similar, n_pairs / n1.clamp(min=1), n_pairs / n0.clamp(min=1))
        return w, n_pairs
    raise ValueError(f"unknown weighting {weighting!r}; valid: {', '.join(_WEIGHTINGS)}")


def pairwise_likelihood_loss(h1: torch.Tensor, h2: torch.Tensor, y1: torch.Tensor, y2: torch.Tensor,
                             alpha: float, *, class_num: float | None = 1.0, threshold: float | None = 15.0,
                             weighting: str = "class_num", continuous_similarity: bool = False,
                             grad_scale: float = 1.0) -> torch.Tensor:
    """HashNet's weighted pairwise negative log-likelihood over all pairs (i of h1, j of h2).

    ``s_ij = [y1_iᵀy2_j > 0]``, ``t_ij = alpha·⟨h1_i, h2_j⟩``,
    ``ℓ_ij = t_ij·(1 − s_ij)`` if ``threshold`` is not None and ``t_ij ≥ threshold``, else
    ``log(1 + e^{t_ij}) − s_ij·t_ij``; returns ``Σ w_ij·ℓ_ij / normaliser`` with the weights
    and normaliser of :func:`pair_weights`. Its gradient is
    ``∂L/∂t_ij = w_ij·(σ(t_ij) − s_ij) / normaliser`` (``w_ij·(1 − s_ij) / normaliser`` on the
    threshold branch). Backward only: ``continuous_similarity`` multiplies ∂L/∂t_ij by
    :func:`continuous_similarity_factor` and ``grad_scale`` multiplies it by a constant.
    """
    similar = (y1 @ y2.T) > 0
    s = similar.to(h1.dtype)
    t = alpha * (h1 @ h2.T)
    factor = torch.ones((), dtype=t.dtype, device=t.device) * float(grad_scale)
    if continuous_similarity:
        factor = factor * continuous_similarity_factor(y1.to(t.dtype), y2.to(t.dtype))
    if continuous_similarity or grad_scale != 1.0:
        t = _ScaleGradient.apply(t, factor)
    if threshold is None:
        pair_loss = nn.functional.softplus(t, beta=1.0, threshold=50.0) - s * t
    else:
        # the log branch on clamped t, so the unselected branch never produces inf/NaN gradients
        log_branch = torch.log1p(torch.exp(t.clamp(max=threshold))) - s * t
        pair_loss = torch.where(t >= threshold, t * (1 - s), log_branch)
    w, norm = pair_weights(similar, weighting, class_num, dtype=t.dtype)
    return (w * pair_loss).sum() / norm


def two_stream_split(n: int, device: torch.device | str | None = None,
                     generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the two streams for a batch of n items: a random permutation split into the
    first and second ⌊n/2⌋ (an odd item out is unused). See the module docstring."""
    perm = torch.randperm(n, generator=generator).to(device)
    half = n // 2
    return perm[:half], perm[half:2 * half]


# --------------------------------------------------------------------------- the method
def _choice(name: str, value: Any, valid: tuple[str, ...]) -> str:
    value = str(value)
    if value not in valid:
        raise ValueError(f"hashnet: {name} must be one of {', '.join(valid)}; got {value!r}")
    return value


def _as_bool(name: str, value: Any) -> bool:
    if isinstance(value, str):
        if value.lower() in ("true", "1", "yes", "on"):
            return True
        if value.lower() in ("false", "0", "no", "off"):
            return False
        raise ValueError(f"hashnet: {name} must be a boolean; got {value!r}")
    return bool(value)


def _optional_float(value: Any) -> float | None:
    return None if value is None or (isinstance(value, str) and value.lower() in ("none", "null")) else float(value)


@register
class HashNet(HashingMethod):
    """HashNet: backbone → fch (K) → tanh(βz) with β by continuation; weighted pairwise
    likelihood loss with α = 10/K; codes sign(z). See the module docstring for every option."""

    name = "hashnet"
    code_type = BINARY
    description = "HashNet: pairwise likelihood with continuation tanh(βz) (Cao et al. ICCV 2017)"

    def __init__(self, bits: int, n_classes: int, backbone: nn.Module, *,
                 lr: float = 2e-4, momentum: float = 0.9, weight_decay: float = 5e-4, nesterov: bool = False,
                 optimizer: str = "sgd", head_lr_mult: float = 10.0, bias_lr_mult: float = 2.0,
                 bias_decay_mult: float = 0.0, norm_decay_mult: float = 0.0, lr_step: int = 2000, lr_gamma: float = 0.5,
                 schedule_scale: float | str = 1.0, schedule_iterations: int = ORIGINAL_ITERATIONS,
                 lr_schedule: str = "original", warmup_steps: int = 0, beta_clock: str = "scaled",
                 alpha: float | None = None, threshold: float | None = 15.0, class_num: float | None = None,
                 weighting: str | bool = "class_num", pairs: str = "two_stream",
                 continuation: bool = True, beta_schedule: str = "iteration", beta_step: int = 200,
                 beta_gamma: float = 0.005, beta_power: float = 0.5, beta_epoch_step: int = 20,
                 continuous_similarity: bool = True, caffe_grad_scale: bool = True) -> None:
        hp = dict(locals())
        for key in ("self", "bits", "n_classes", "backbone", "__class__"):
            hp.pop(key, None)
        super().__init__(bits, n_classes, backbone, **hp)
        out_dim = getattr(backbone, "out_dim", None)
        if out_dim is None:
            raise TypeError("hashnet: the backbone must have an out_dim attribute")
        self.fch = nn.Linear(int(out_dim), self.bits)
        nn.init.normal_(self.fch.weight, 0.0, 0.01)
        nn.init.zeros_(self.fch.bias)

        self.lr = float(lr)
        self.momentum = float(momentum)
        self.weight_decay = float(weight_decay)
        self.nesterov = _as_bool("nesterov", nesterov)
        self.optimizer_name = _choice("optimizer", str(optimizer).lower(), _OPTIMIZERS)
        self.head_lr_mult = float(head_lr_mult)
        self.bias_lr_mult = float(bias_lr_mult)
        self.bias_decay_mult = float(bias_decay_mult)
        self.norm_decay_mult = float(norm_decay_mult)
        self.lr_step = int(lr_step)
        self.lr_gamma = float(lr_gamma)
        if isinstance(schedule_scale, str) and schedule_scale.lower() == "auto":
            self.schedule_scale: float | str = "auto"
        else:
            self.schedule_scale = float(schedule_scale)
            if self.schedule_scale <= 0:
                raise ValueError(f"hashnet: schedule_scale must be > 0 or 'auto'; got {schedule_scale!r}")
        self.schedule_iterations = int(schedule_iterations)
        self.lr_schedule = schedules.check_schedule("hashnet", str(lr_schedule), int(warmup_steps))
        self.warmup_steps = int(warmup_steps)
        self.beta_clock = _choice("beta_clock", beta_clock, _BETA_CLOCKS)
        self._total_steps: int | None = None
        self._resolved_scale: float | None = None if self.schedule_scale == "auto" else float(self.schedule_scale)

        alpha_value = _optional_float(alpha)
        self.alpha = default_alpha(self.bits) if alpha_value is None else alpha_value
        self.threshold = _optional_float(threshold)
        if weighting is True or (isinstance(weighting, str) and weighting.lower() == "true"):
            weighting = "class_num"
        elif weighting is False or (isinstance(weighting, str) and weighting.lower() == "false"):
            weighting = "none"
        self.weighting = _choice("weighting", weighting, _WEIGHTINGS)
        self.pairs = _choice("pairs", pairs, _PAIRS)
        self.continuation = _as_bool("continuation", continuation)
        self.beta_schedule = _choice("beta_schedule", beta_schedule, _BETA_SCHEDULES)
        self.beta_step = int(beta_step)
        self.beta_gamma = float(beta_gamma)
        self.beta_power = float(beta_power)
        self.beta_epoch_step = int(beta_epoch_step)
        self.continuous_similarity = _as_bool("continuous_similarity", continuous_similarity)
        self.caffe_grad_scale = _as_bool("caffe_grad_scale", caffe_grad_scale)

        given = _optional_float(class_num)
        self._class_num_given = given is not None
        # NaN until measured by on_training_data (or given); a buffer, so it travels with checkpoints
        self.register_buffer("class_num", torch.tensor(float("nan") if given is None else given))
        self.register_buffer("beta", torch.tensor(1.0))

    # ----------------------------------------------------------------- training data statistics
    def on_training_data(self, labels: np.ndarray) -> None:
        """Measure class_num = #pairs / #similar pairs on the training labels (unless given)."""
        if not self._class_num_given:
            self.class_num.fill_(similar_pair_ratio(labels))

    # ----------------------------------------------------------------- schedules
    def resolved_schedule_scale(self) -> float:
        """s: the number given, or for ``auto`` the Trainer's total steps / schedule_iterations."""
        if self._resolved_scale is None:
            trainer = self._trainer
            total = float(trainer.estimated_stepping_batches) if trainer is not None else float("inf")
            if not math.isfinite(total) or total <= 0:
                raise RuntimeError("hashnet: schedule_scale 'auto' needs a Trainer with a finite number of steps")
            self._resolved_scale = total / self.schedule_iterations
        return self._resolved_scale

    def beta_at(self, step: int, epoch: int = 0) -> float:
        """β for a training iteration (0-based completed steps) and epoch under this config."""
        if not self.continuation:
            return 1.0
        if self.beta_schedule == "epoch":
            return epoch_beta(epoch, self.beta_epoch_step)
        scale = 1.0 if self.beta_clock == "original" else self.resolved_schedule_scale()
        return continuation_beta(step, scale, self.beta_step, self.beta_gamma, self.beta_power)

    @property
    def current_beta(self) -> float:
        """β of the last training step (1 before training); stored in the ``beta`` buffer."""
        return float(self.beta)

    def total_steps(self) -> int:
        """T, the run's optimiser steps (the Trainer's ``estimated_stepping_batches``)."""
        if self._total_steps is None:
            self._total_steps = int(round(schedules.steps_per_epoch(self._trainer) * self._trainer.max_epochs))
        return self._total_steps

    def lr_factor(self, step: int) -> float:
        """Multiplier of every group's lr at a training iteration: ``lr_schedule: original`` is
        lr_gamma^⌊t/(lr_step·s)⌋; ``cosine`` / ``step`` decay over the run's T steps; each after
        ``warmup_steps`` of linear warm-up (:func:`methods.schedules.lr_factor`)."""
        original = lambda t: step_lr_factor(t, self.resolved_schedule_scale(), self.lr_step, self.lr_gamma)  # noqa: E731
        total = None if self.lr_schedule == "original" else self.total_steps()
        return schedules.lr_factor(self.lr_schedule, step, total, self.warmup_steps, original)

    # ----------------------------------------------------------------- interface
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """z = fch(φ(x)), the pre-activation hash layer output (B, K)."""
        return self.fch(self.backbone(x).flatten(1))

    def relaxed_codes(self, x: torch.Tensor) -> torch.Tensor:
        """tanh(β·z) at the current β: the relaxed codes the training loss sees."""
        return torch.tanh(self.current_beta * self.embed(x))

    def encode(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """bits = sign(z) as ±1 int8 (B, K), sign(0) = +1."""
        z = self.embed(x)
        return {"bits": torch.where(z >= 0, 1, -1).to(torch.int8)}

    # ----------------------------------------------------------------- training
    def loss_on(self, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor | None:
        """The configured HashNet loss on a batch of relaxed codes h (B, K) and labels y (B, C);
        None when the batch has too few items to form two streams."""
        if self.pairs == "two_stream":
            if h.shape[0] < 2:
                return None
            i1, i2 = two_stream_split(h.shape[0], device=h.device)
            h1, h2, y1, y2 = h[i1], h[i2], y[i1], y[i2]
        else:
            h1, h2, y1, y2 = h, h, y, y
        class_num = None
        if self.weighting == "class_num":
            class_num = float(self.class_num)
            if math.isnan(class_num):
                raise RuntimeError("hashnet: class_num is unknown; set it or call on_training_data(labels) first")
        return pairwise_likelihood_loss(
            h1, h2, y1, y2, self.alpha, class_num=class_num, threshold=self.threshold, weighting=self.weighting,
            continuous_similarity=self.continuous_similarity,
            grad_scale=2.0 / self.alpha if self.caffe_grad_scale else 1.0)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor | None:
        x, y = batch
        beta = self.beta_at(self.global_step, self.current_epoch)
        self.beta.fill_(beta)
        h = torch.tanh(beta * self.embed(x))
        loss = self.loss_on(h, y.to(h.dtype))
        n = x.shape[0]
        self.log("beta", beta, on_step=True, on_epoch=False, prog_bar=True, batch_size=n)
        self.log("lr", self.lr * self.lr_factor(self.global_step), on_step=True, on_epoch=False, batch_size=n)
        self.log("train/saturated", (h.detach().abs() > 0.99).float().mean(), on_step=True, on_epoch=False,
                 batch_size=n)
        if loss is not None:
            self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=n)
        return loss

    def _param_groups(self) -> list[dict[str, Any]]:
        """Caffe's lr/decay multipliers, each part's (backbone ×1, fch ×head_lr_mult) lr times:
        weights (lr ×1, decay ×1); biases, named ``*bias`` (×bias_lr_mult, ×bias_decay_mult);
        normalisation scales, the other 1-d parameters such as BatchNorm weights (×1,
        ×norm_decay_mult). Trainable parameters only; empty groups are left out."""
        groups = []
        for part, module, lr_mult in (("backbone", self.backbone, 1.0), ("head", self.fch, self.head_lr_mult)):
            named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
            kinds = {
                "weight": ([p for n, p in named if not n.endswith("bias") and p.ndim > 1], 1.0, 1.0),
                "norm": ([p for n, p in named if not n.endswith("bias") and p.ndim <= 1], 1.0, self.norm_decay_mult),
                "bias": ([p for n, p in named if n.endswith("bias")], self.bias_lr_mult, self.bias_decay_mult)}
            for kind, (params, lm, dm) in kinds.items():
                if params:
                    groups.append({"params": params, "lr": self.lr * lr_mult * lm,
                                   "weight_decay": self.weight_decay * dm, "name": f"{part}_{kind}"})
        return groups

    def configure_optimizers(self) -> dict[str, Any]:
        groups = self._param_groups()
        if self.optimizer_name == "sgd":
            opt = torch.optim.SGD(groups, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay,
                                  nesterov=self.nesterov)
        else:
            opt = torch.optim.RMSprop(groups, lr=self.lr, weight_decay=self.weight_decay)
        self.resolved_schedule_scale()
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: self.lr_factor(step))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step", "frequency": 1}}
