"""LSH: sign of random Gaussian projections (Charikar 2002) of mean-centred features."""
from __future__ import annotations

import numpy as np
import torch

from hashbench.methods._features import sign_pm1, to_numpy
from hashbench.methods.base import BINARY, HashingMethod
from hashbench.methods.registry import register


@register
class LSH(HashingMethod):
    """bits_k = sign(w_kᵀ(x − μ)), w_k ~ N(0, I) seeded, μ the training mean; sign(0) = +1."""

    name = "lsh"
    code_type = BINARY
    requires_training = False
    description = "sign of random Gaussian projections (data-independent baseline)"

    def fit_closed_form(self, features: np.ndarray, labels: np.ndarray, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.mean = features.mean(axis=0).astype(np.float32)
        self.projection = rng.standard_normal((features.shape[1], self.bits)).astype(np.float32)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy((to_numpy(x) - self.mean) @ self.projection)

    def encode(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"bits": torch.from_numpy(sign_pm1(self.embed(x).numpy()))}
