"""Cascading Deep Hash Table (Jeong, Kim & Song, CVPR 2019), spec ``docs/methods.md`` §3.

The Hash layer outputs L levels of width d (``bits`` = d, ``levels`` = L). Levels 1..L−1 are
1-sparse (argmax), level L is s-sparse (top-s): an item is stored under s **leaves** of a tree with
d^L leaves, leaf id ``(…(a_1·d + a_2)·d + … + a_{L−1})·d + b`` for its argmax path a and each
of its top-s last-level buckets b (sparse codes keyed by leaf id: the harness's inverted table
never allocates d^L). Search is the hash tree: the query's own s leaves, then leaves in
lexicographic order of its per-level ranks (``benchmark.search.sparse.bucket_order``).

Training is the Deep Hash Table's two stages (``methods/dht.py``); in stage 2 the class codes are
solved level by level (:func:`cascade_class_codes`): level 1 by the ICML'18 flow with sparsity 1
and the global penalty λ₂ (``pairwise_penalty``); level l ≥ 2 by the grouped flow with each
class's parent group (its path of earlier argmaxes), the sibling penalty λ₁
(``sibling_penalty``) and λ₂; the last level with sparsity s. The loss is the sum over levels of
the code-masked loss on that level's slice. Labels inside each level's loss are ``dynamic`` (the
original code's default: the chosen bucket at levels < L, the set of active buckets at level L,
so classes sharing a bucket are positives there) or ``static`` (class labels).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hashbench.methods.base import UnsupportedBitsError
from hashbench.methods.dht import DeepHashTable, top_s
from hashbench.methods.min_cost_flow import solve_class_codes
from hashbench.methods.registry import register

LABELS = ("dynamic", "static")


def cascade_class_codes(unaries: np.ndarray, s: int, lam_sibling: float, lam_global: float) -> list[np.ndarray]:
    """Per-level class codes (L arrays (n_c, d) uint8) of the cascaded problem (§3.4), greedy
    over levels: level 1 exactly with sparsity 1 (s when L = 1) and penalty ``lam_global``;
    level l ≥ 2 exactly given the parents fixed by levels < l (group = the class's argmax path),
    with ``lam_sibling`` on classes of one group sharing a bucket and ``lam_global`` on any;
    sparsity 1 below the last level, s at the last. ``unaries`` (n_c, L, d)."""
    n_c, n_levels, d = unaries.shape
    parent = np.zeros(n_c, dtype=np.int64)
    codes = []
    for level in range(n_levels):
        s_l = s if level == n_levels - 1 else 1
        if level == 0:
            h = solve_class_codes(unaries[:, 0], s_l, lam_global)
        else:
            h = solve_class_codes(unaries[:, level], s_l, lam_global, groups=parent, lam_group=lam_sibling)
        codes.append(h)
        parent = parent * d + h.argmax(1)
    return codes


def dynamic_labels(codes: list[np.ndarray]) -> np.ndarray:
    """(n_c, L) labels of each class at each level (§3.5, the original's ``--label dynamic``):
    at a level < L the index of the class's active bucket; at level L the id of its set of
    active buckets (classes with the same set share it)."""
    cols = [c.argmax(1) for c in codes[:-1]]
    cols.append(np.unique(codes[-1], axis=0, return_inverse=True)[1].reshape(-1))
    return np.stack(cols, 1).astype(np.int64)


def leaf_ids(level_scores: torch.Tensor, s: int) -> torch.Tensor:
    """(B, s) int64 leaves of each item from its per-level scores (B, L, d): the argmax path of
    levels < L followed by each of the top-s buckets of level L (best first)."""
    b, n_levels, d = level_scores.shape
    prefix = torch.zeros(b, dtype=torch.int64, device=level_scores.device)
    for level in range(n_levels - 1):
        prefix = prefix * d + level_scores[:, level].argmax(1)
    return prefix[:, None] * d + top_s(level_scores[:, -1], s)


@register
class CascadeDHT(DeepHashTable):
    """Cascading Deep Hash Table: hierarchical sparse codes over d^L leaves by level-wise exact
    min-cost flow, searched in a hash tree."""

    name = "cascade-dht"
    description = "cascading Deep Hash Table: level-wise exact min-cost flow, hash tree (Jeong et al. 2019)"

    def __init__(self, bits: int, n_classes: int, backbone: nn.Module, *, levels: int = 2,
                 sibling_penalty: float = 100.0, labels: str = "dynamic", **hparams: Any) -> None:
        if labels not in LABELS:
            raise ValueError(f"cascade-dht: labels must be one of {LABELS}, got {labels!r}")
        self.levels = int(levels)
        self.check_bits(bits, sparsity=hparams.get("sparsity", 1), levels=levels)
        super().__init__(bits, n_classes, backbone, **hparams)
        self.hparams["levels"], self.hparams["sibling_penalty"], self.hparams["labels"] = self.levels, float(sibling_penalty), labels

    @classmethod
    def check_bits(cls, bits: int, sparsity: int = 1, levels: int = 2, **_: Any) -> None:
        """``bits`` = d, the width of each level; d^L leaf ids must fit in int64."""
        super().check_bits(bits, sparsity=sparsity)
        if int(levels) < 1 or int(bits) ** int(levels) >= 2**62:
            raise UnsupportedBitsError(f"cascade-dht: need levels >= 1 and d^L < 2^62, got d={bits}, L={levels}")

    def hash_width(self) -> int:
        return self.levels * self.d

    def bucket_scores(self, x: torch.Tensor) -> torch.Tensor:
        """The hash output as (B, L, d): per-level scores (the hash tree orders leaves by them)."""
        return self.hash_output(x).reshape(len(x), self.levels, self.d)

    def encode(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        scores = self.bucket_scores(x)
        return {"buckets": leaf_ids(scores, self.s), "bucket_scores": scores}

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        if self.rerank == "hash":      # each level L2-normalised for triplet, as in its loss
            f = self.hash_output(x)
            return self.normalise_levels(f) if self.loss_name == "triplet" else f
        return self.stage1_embedding(x)

    def normalise_levels(self, f: torch.Tensor) -> torch.Tensor:
        return F.normalize(f.reshape(len(f), self.levels, self.d), dim=2).reshape(len(f), -1)

    def solve_codes(self, unaries: np.ndarray) -> list[np.ndarray]:
        """The cascaded class codes, level by level (:func:`cascade_class_codes`)."""
        return cascade_class_codes(unaries.reshape(len(unaries), self.levels, self.d), self.s,
                                   float(self.hparams.sibling_penalty), float(self.hparams.pairwise_penalty))

    def code_labels(self, codes: list[np.ndarray], class_ids: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
        """(B, L) labels of each sample at each level: dynamic (§3.5) or the class labels."""
        if self.hparams.labels == "dynamic":
            return torch.from_numpy(dynamic_labels(codes)).to(class_ids.device)[inverse]
        return class_ids[:, None].expand(-1, self.levels)

    def masked_loss(self, f: torch.Tensor, class_ids: torch.Tensor, labels: torch.Tensor,
                    codes: torch.Tensor) -> torch.Tensor:
        """Σ over levels of the Deep Hash Table's code-masked loss on that level's slice."""
        total = f.new_zeros(())
        for level in range(self.levels):
            sl = slice(level * self.d, (level + 1) * self.d)
            total = total + super().masked_loss(f[:, sl], class_ids, labels[:, level], codes[:, sl])
        return total
