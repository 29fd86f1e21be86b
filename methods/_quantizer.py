"""Shared part of the faiss quantiser baselines (PQ, RQ): additive codes with K = 256 per step."""
from __future__ import annotations

import logging
from typing import ClassVar

import numpy as np
import torch

from hashbench.methods._features import to_numpy
from hashbench.methods.base import ADDITIVE, HashingMethod, UnsupportedBitsError

STEP_BITS = 8  # K = 256 codewords per step/sub-space, one byte per code index

log = logging.getLogger("hashbench.methods")
_told: set[str] = set()


def quiet_small_training_set(cp, n_points: int, name: str) -> None:
    """faiss prints "please provide at least N training points" for every k-means it runs (each
    PQ sub-space, each RQ step) when there are fewer than ``cp.min_points_per_centroid`` points
    per centroid: ~130 lines on digits. Unless hashbench's logger is at DEBUG (``--verbose``),
    lower that threshold, which only gates the print (training is unchanged), and log one line
    per method and process instead."""
    need = 2**STEP_BITS * cp.min_points_per_centroid
    if n_points >= need or log.isEnabledFor(logging.DEBUG):
        return
    cp.min_points_per_centroid = 1
    if name not in _told:
        _told.add(name)
        log.warning(f"{name}: {n_points} training points for {2**STEP_BITS} centroids per step (faiss suggests "
                    f"at least {need}); faiss's per-step warnings are silenced, --verbose shows them")


class FaissAdditiveBaseline(HashingMethod):
    """Base of faiss-trained quantisers exposed as additive codes.

    ``bits`` = M · 8 (M steps or sub-spaces of 256 codewords). The codes are the faiss code
    indices (N, M); ``code_state()["codebooks"]`` holds (M, 256, D) codewords whose sum over
    steps reconstructs an item, so the harness searches every quantiser through the same
    asymmetric lookup-table path. Ranking is by −‖q − x̂‖² (``search_metric = "l2"``), which
    is the metric faiss trains these quantisers for.
    """

    code_type = ADDITIVE
    requires_training = False
    search_metric: ClassVar[str] = "l2"

    @classmethod
    def check_bits(cls, bits: int, **hparams) -> None:
        if int(bits) < STEP_BITS or int(bits) % STEP_BITS:
            raise UnsupportedBitsError(f"{cls.name}: bits must be a positive multiple of {STEP_BITS}, got {bits}")

    @property
    def n_steps(self) -> int:
        return self.bits // STEP_BITS

    def _pad(self, x: np.ndarray) -> np.ndarray:
        return x if x.shape[1] == self.dim else np.pad(x, ((0, 0), (0, self.dim - x.shape[1])))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self._pad(to_numpy(x)))

    def encode(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self._pad(to_numpy(x))
        packed = self.quantizer.compute_codes(np.ascontiguousarray(feats))
        return {"indices": torch.from_numpy(packed[:, : self.n_steps].astype(np.int64)),
                "features": torch.from_numpy(feats)}

    def code_state(self) -> dict[str, np.ndarray]:
        return {"codebooks": self.codebooks}
