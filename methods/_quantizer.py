"""Shared part of the faiss quantiser baselines (PQ, RQ): additive codes with K = 256 per step."""
from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch

from hashbench.methods._features import to_numpy
from hashbench.methods.base import ADDITIVE, HashingMethod, UnsupportedBitsError

STEP_BITS = 8  # K = 256 codewords per step/sub-space, one byte per code index


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
