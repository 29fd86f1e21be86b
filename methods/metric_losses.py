"""Metric-learning losses shared by several methods, each a small function of tensors.

* :func:`semihard_triplet_from_distances`: TensorFlow's ``triplet_semihard_loss`` recipe on any
  pairwise distance matrix (DRQ's triplet, the Deep Hash Table's plain and code-masked triplets);
* :func:`masked_l1_distances`: the Deep Hash Table's distance restricted to active buckets;
* :func:`npairs_loss`: N-pairs softmax loss with an L2 regulariser, optionally code-masked.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def semihard_triplet_from_distances(dist: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor,
                                    margin: float) -> torch.Tensor:
    """Semi-hard triplet loss from a (B, B) distance matrix and boolean masks.

    For every ordered positive pair (a, p) (``positive[a, p]``, a ≠ p) the negative distance is
    ``d_n = min{dist[a, n] : negative[a, n], dist[a, n] > dist[a, p]}`` when that set is
    non-empty, else ``max{dist[a, n] : negative[a, n]}`` (0 when the anchor has no negative,
    as TF's masked maximum). Loss = mean over positive pairs of ``max(0, dist[a, p] − d_n +
    margin)``; 0 (with a gradient path) when there is no positive pair.
    """
    n = dist.shape[0]
    # Each anchor's negative distances in ascending order (non-negatives last, as +inf); the
    # semi-hard negative of (a, p) is the first one > dist(a, p), found by binary search.
    neg_sorted = torch.where(negative, dist, torch.full_like(dist, float("inf"))).sort(1).values
    n_neg = negative.sum(1, keepdim=True)                           # (a, 1)
    first = torch.searchsorted(neg_sorted.detach(), dist.detach().contiguous(), right=True)  # (a, p)
    has_semi_hard = first < n_neg
    semi_hard = neg_sorted.gather(1, first.clamp_max(n - 1))
    hardest = neg_sorted.gather(1, (n_neg - 1).clamp_min(0))        # largest negative distance
    hardest = torch.where(n_neg > 0, hardest, torch.zeros_like(hardest))   # TF: row minimum = 0
    d_n = torch.where(has_semi_hard, semi_hard, hardest.expand_as(semi_hard))
    loss = (dist - d_n + margin).clamp_min(0)
    n_pos = positive.sum()
    return (loss * positive).sum() / n_pos if n_pos > 0 else (dist * 0.0).sum()


def label_masks(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(positive, negative) boolean (B, B) masks from 0/1 labels (B, C) or class ids (B,):
    positives share a label (diagonal excluded), negatives share none."""
    y = labels if labels.ndim == 2 else F.one_hot(labels.long()).to(torch.float32)
    y = y.to(torch.float32)
    eye = torch.eye(len(y), dtype=torch.bool, device=y.device)
    adjacent = (y @ y.T) > 0
    return adjacent & ~eye, ~adjacent & ~eye


def sq_euclidean_normalised(features: torch.Tensor) -> torch.Tensor:
    """``‖g_i − g_j‖²`` of the L2-normalised rows ``g = x / ‖x‖`` (zero diagonal, clamped ≥ 0)."""
    g = F.normalize(features, dim=1)
    dist = (2.0 - 2.0 * g @ g.T).clamp_min(0)
    return dist.masked_fill(torch.eye(len(g), dtype=torch.bool, device=g.device), 0.0)


def masked_l1_distances(g: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Deep Hash Table code-masked distance (methods.md §2.5):
    ``D(i, j) = Σ_q [h_i[q] ∨ h_j[q]] · |g_i[q] − g_j[q]|`` for rows g (B, d) and 0/1 codes (B, d)."""
    h = codes.to(torch.bool)
    union = (h[:, None, :] | h[None, :, :]).to(g.dtype)              # (B, B, d)
    return (union * (g[:, None, :] - g[None, :, :]).abs()).sum(2)


def npairs_loss(anchors: torch.Tensor, positives: torch.Tensor, labels: torch.Tensor, reg: float,
                codes: torch.Tensor | None = None) -> torch.Tensor:
    """N-pairs loss (Sohn 2016) as the Deep Hash Table code uses it (methods.md §2.5).

    ``S(i, j) = Σ_q m_ij[q] · a_i[q] · p_j[q]`` with the mask ``m_ij = h_i ∨ h_j`` of the pair's
    0/1 codes (all ones when ``codes`` is None: the plain N-pairs of stage 1); loss = mean over
    anchors of the softmax cross-entropy of row ``S(i, ·)`` against the same-label indicator
    normalised to sum 1, plus ``0.25 · reg · (mean_i ‖a_i‖² + mean_i ‖p_i‖²)``.
    ``labels`` (B,) class ids of the pairs; ``codes`` (B, d) the code of each pair's class.
    """
    if codes is None:
        sim = anchors @ positives.T
    else:
        h = codes.to(torch.bool)
        union = (h[:, None, :] | h[None, :, :]).to(anchors.dtype)
        sim = (union * anchors[:, None, :] * positives[None, :, :]).sum(2)
    same = (labels[:, None] == labels[None, :]).to(sim.dtype)
    target = same / same.sum(1, keepdim=True)
    xent = -(target * F.log_softmax(sim, dim=1)).sum(1).mean()
    l2 = anchors.pow(2).sum(1).mean() + positives.pow(2).sum(1).mean()
    return xent + 0.25 * reg * l2
