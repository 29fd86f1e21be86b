"""DRQ's losses (Song et al., IJCAI 2019; original code ``cfm-uestc/DRQ``), one small function each.

Notation (``docs/methods.md`` §4.3): ``x`` (B, D) is the feature being quantised; at step m the
soft output is ``q̃⁽ᵐ⁾ = Σ_k p⁽ᵐ⁾_k w_m C_k`` and the hard output ``q⁽ᵐ⁾ = w_m C_{b_m}``; their
running sums are ``Q̃_m = Σ_{j≤m} q̃⁽ʲ⁾`` and ``Q_m = Σ_{j≤m} q⁽ʲ⁾``. ``‖a − b‖²`` below is the
mean squared error over every element of the batch (``mean_{i,d} (a − b)²``), as in the original.
Step outputs are passed stacked as (M, B, D) tensors, step m at index m − 1.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from hashbench.methods import metric_losses


def mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``‖a − b‖² = mean over all elements of (a − b)²``."""
    return (a - b).pow(2).mean()


def soft_quantization_loss(x: torch.Tensor, soft_steps: torch.Tensor, full: bool) -> torch.Tensor:
    """Soft quantisation loss.

    First-step form (``full=False``): ``E_s⁽¹⁾ = ‖x − q̃⁽¹⁾‖²``.
    Full form (``full=True``): ``E_s = Σ_{m=2..M} ‖x − Q̃_m‖²`` (no m = 1 term; 0 when M = 1).
    """
    if not full:
        return mse(x, soft_steps[0])
    partial = soft_steps.cumsum(0)[1:]
    return sum((mse(x, q) for q in partial), x.new_zeros(()))


def hard_quantization_loss(x: torch.Tensor, hard_steps: torch.Tensor, full: bool) -> torch.Tensor:
    """Hard quantisation loss.

    First-step form: ``E_h⁽¹⁾ = ‖x − q⁽¹⁾‖²``; full form: ``E_h = Σ_{m=2..M} ‖x − Q_m‖²``.
    """
    return soft_quantization_loss(x, hard_steps, full)


def joint_central_loss(soft_steps: torch.Tensor, hard_steps: torch.Tensor, full: bool) -> torch.Tensor:
    """Joint central loss between the soft and the hard reconstruction.

    First-step form: ``E_j⁽¹⁾ = ‖q̃⁽¹⁾ − q⁽¹⁾‖²``; full form: ``E_j = ‖Q̃_M − Q_M‖²``.
    """
    if not full:
        return mse(soft_steps[0], hard_steps[0])
    return mse(soft_steps.sum(0), hard_steps.sum(0))


def codebook_objective(x: torch.Tensor, soft_steps: torch.Tensor, hard_steps: torch.Tensor, full: bool,
                       tau: float = 1.0, mu: float = 1.0, nu: float = 0.1) -> dict[str, torch.Tensor]:
    """DRQ's codebook objective ``τ (E_s + μ E_h + ν E_j)``.

    ``full=False`` is stage A (first-step losses, optimised over C only); ``full=True`` is
    stage B (full losses, over C and w_2..w_M). Returns ``{"loss", "soft", "hard", "joint"}``.
    """
    e_s = soft_quantization_loss(x, soft_steps, full)
    e_h = hard_quantization_loss(x, hard_steps, full)
    e_j = joint_central_loss(soft_steps, hard_steps, full)
    return {"loss": tau * (e_s + mu * e_h + nu * e_j), "soft": e_s, "hard": e_h, "joint": e_j}


def adaptive_margin_loss(embedding: torch.Tensor, labels: torch.Tensor, class_vectors: torch.Tensor) -> torch.Tensor:
    """Adaptive-margin semantic loss (DVSQ-style) of the semantic embedding ``e = tanh(z9)``.

    ``ℓ_s = Σ_i Σ_{c∈Y_i} Σ_{c'=1..C} max(0, δ_cc' − cos(e_i, v_c) + cos(e_i, v_c'))
    / (C · Σ_i |Y_i|)`` with ``δ_cc' = 1 − cos(v_c, v_c')``; ``v_c`` is class c's vector (word
    vector, or one-hot in the fallback), ``Y_i`` the labels of item i (0/1 ``labels`` (B, C)).
    The inner sum runs over all classes (c' = c contributes 0; other positives are not
    excluded). A batch with no labels at all gives 0.
    """
    v = F.normalize(class_vectors, dim=1)
    cos_ev = F.normalize(embedding, dim=1) @ v.T                    # (B, C): cos(e_i, v_c)
    delta = 1.0 - v @ v.T                                           # (C, C): δ_cc'
    hinge = (delta[None] - cos_ev[:, :, None] + cos_ev[:, None, :]).clamp_min(0)  # (B, c, c')
    y = labels.to(hinge.dtype)
    n_pos = y.sum()
    total = (hinge.sum(2) * y).sum()
    return total / (class_vectors.shape[0] * n_pos) if n_pos > 0 else total * 0.0


def semihard_triplet_loss(features: torch.Tensor, labels: torch.Tensor, margin: float = 2.5) -> torch.Tensor:
    """Multi-label semi-hard triplet loss (TensorFlow ``triplet_semihard_loss`` recipe).

    On ``g = x / ‖x‖₂`` with squared distances ``d(i,j) = ‖g_i − g_j‖²`` (d(i,i) = 0), positives
    are the pairs sharing a label (``y_i·y_j > 0``), negatives the others. For every ordered
    positive pair (a, p), a ≠ p, the negative distance is ``d_n = min{d(a,n) : n negative,
    d(a,n) > d(a,p)}`` if that set is non-empty, else ``max{d(a,n) : n negative}`` (0 when the
    anchor has no negative, as TF's masked maximum). Loss = mean over positive pairs of
    ``max(0, d(a,p) − d_n + margin)``; 0 when the batch has no positive pair.
    """
    positive, negative = metric_losses.label_masks(labels)
    return metric_losses.semihard_triplet_from_distances(metric_losses.sq_euclidean_normalised(features),
                                                         positive, negative, margin)
