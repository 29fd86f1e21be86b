"""The exhaustive float baseline: no hashing, the features themselves searched exhaustively."""
from __future__ import annotations

import numpy as np
import torch

from hashbench.methods._features import to_numpy
from hashbench.methods.base import FLOAT, HashingMethod
from hashbench.methods.registry import register


@register
class Exhaustive(HashingMethod):
    """embedding = the input features; ranked by Euclidean distance (faiss ``IndexFlatL2``).
    The upper reference for every code; ``bits`` only names the table column it is shown in."""

    name = "exhaustive"
    code_type = FLOAT
    requires_training = False
    description = "exhaustive float search on the features (reference, no hashing)"

    def fit_closed_form(self, features: np.ndarray, labels: np.ndarray, seed: int) -> None:
        """Nothing to fit."""

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(to_numpy(x))

    def encode(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"embedding": self.embed(x)}
