"""Small helpers shared by the closed-form baselines (they work on feature vectors)."""
from __future__ import annotations

import numpy as np
import torch


def to_numpy(x: torch.Tensor) -> np.ndarray:
    """A batch as a float32 (B, D) numpy array (inputs are flattened)."""
    return x.detach().reshape(x.shape[0], -1).float().cpu().numpy()


def sign_pm1(z: np.ndarray) -> np.ndarray:
    """±1 int8 signs with sign(0) = +1 (a zero must still yield a valid bit)."""
    return np.where(z >= 0, 1, -1).astype(np.int8)
