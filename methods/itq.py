"""ITQ: iterative quantization (Gong & Lazebnik, CVPR 2011) on PCA-projected features."""
from __future__ import annotations

import numpy as np
import torch
from sklearn.decomposition import PCA

from hashbench.methods._features import sign_pm1, to_numpy
from hashbench.methods.base import BINARY, HashingMethod
from hashbench.methods.registry import register


def itq_rotation(v: np.ndarray, n_iter: int, rng: np.random.Generator) -> np.ndarray:
    """The orthogonal R minimising ‖B − VR‖_F by alternation (B = sign(VR); R = Ŝ Sᵀ from
    the SVD Bᵀ V = S Ω Ŝᵀ), started from a random orthogonal matrix."""
    k = v.shape[1]
    r, _ = np.linalg.qr(rng.standard_normal((k, k)))
    for _ in range(n_iter):
        b = np.where(v @ r >= 0, 1.0, -1.0)
        u, _, vt = np.linalg.svd(b.T @ v)
        r = vt.T @ u.T
    return r


@register
class ITQ(HashingMethod):
    """bits = sign(PCA_K(x − μ) · R), R learned by ITQ's alternating minimisation (50 iterations)."""

    name = "itq"
    code_type = BINARY
    requires_training = False
    description = "PCA + learned orthogonal rotation (Gong & Lazebnik 2011)"

    def fit_closed_form(self, features: np.ndarray, labels: np.ndarray, seed: int) -> None:
        if self.bits > min(features.shape):
            raise ValueError(
                f"itq: {self.bits} bits need at least {self.bits} feature dimensions and training items "
                f"(have {features.shape[1]} dims, {features.shape[0]} items)")
        rng = np.random.default_rng(seed)
        self.pca = PCA(n_components=self.bits, random_state=seed).fit(features)
        v = self.pca.transform(features)
        self.rotation = itq_rotation(v, int(self.hparams.get("n_iter", 50)), rng).astype(np.float32)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy((self.pca.transform(to_numpy(x)) @ self.rotation).astype(np.float32))

    def encode(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"bits": torch.from_numpy(sign_pm1(self.embed(x).numpy()))}
