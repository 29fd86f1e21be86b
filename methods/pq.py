"""PQ: product quantisation (Jégou et al., TPAMI 2011), trained by faiss."""
from __future__ import annotations

import faiss
import numpy as np

from hashbench.methods._quantizer import STEP_BITS, FaissAdditiveBaseline, quiet_small_training_set
from hashbench.methods.registry import register


@register
class PQ(FaissAdditiveBaseline):
    """M = bits/8 sub-spaces of 256 centroids (faiss ``ProductQuantizer``); features are
    zero-padded to a multiple of M. Each sub-space's centroids, zero-padded to the full
    dimension, form one additive codebook, so Σ_m codebooks[m, b_m] is the PQ reconstruction."""

    name = "pq"
    description = "product quantisation, 256 centroids per sub-space (faiss)"

    def fit_closed_form(self, features: np.ndarray, labels: np.ndarray, seed: int) -> None:
        m = self.n_steps
        self.dim = -(-features.shape[1] // m) * m
        pq = faiss.ProductQuantizer(self.dim, m, STEP_BITS)
        pq.cp.seed = int(seed)
        quiet_small_training_set(pq.cp, len(features), self.name)
        pq.train(np.ascontiguousarray(self._pad(features.astype(np.float32))))
        self.quantizer = pq
        dsub = self.dim // m
        cents = faiss.vector_to_array(pq.centroids).reshape(m, 2**STEP_BITS, dsub)
        books = np.zeros((m, 2**STEP_BITS, self.dim), np.float32)
        for j in range(m):
            books[j, :, j * dsub:(j + 1) * dsub] = cents[j]
        self.codebooks = books
