"""RQ: residual quantisation (Chen et al. 2010), trained by faiss with beam search encoding."""
from __future__ import annotations

import faiss
import numpy as np

from hashbench.methods._quantizer import STEP_BITS, FaissAdditiveBaseline, quiet_small_training_set
from hashbench.methods.registry import register


@register
class RQ(FaissAdditiveBaseline):
    """M = bits/8 residual steps of 256 full-dimensional codewords (faiss ``ResidualQuantizer``,
    beam size ``max_beam_size``, default 5); reconstruction x̂ = Σ_m codebooks[m, b_m]."""

    name = "rq"
    description = "residual quantisation, 256 codewords per step (faiss)"

    def fit_closed_form(self, features: np.ndarray, labels: np.ndarray, seed: int) -> None:
        self.dim = features.shape[1]
        rq = faiss.ResidualQuantizer(self.dim, self.n_steps, STEP_BITS)
        rq.max_beam_size = int(self.hparams.get("max_beam_size", 5))
        rq.cp.seed = int(seed)
        quiet_small_training_set(rq.cp, len(features), self.name)
        rq.train(np.ascontiguousarray(features.astype(np.float32)))
        self.quantizer = rq
        self.codebooks = faiss.vector_to_array(rq.codebooks).reshape(self.n_steps, 2**STEP_BITS, self.dim)
