"""The one interface every hashing method implements.

A method is a ``LightningModule`` that declares its **code type** and implements two things:

* ``embed(x)``: the continuous representation the codes quantise (used for k-means NMI and,
  for sparse codes, for re-ranking);
* ``encode(x)``: the codes of a batch, as a dict of tensors whose keys depend on the code type
  (see :data:`CODE_KEYS`).

The harness (``benchmark/``) picks distances, metric variants and the search backend from
``code_type``; a method never evaluates itself. Classical baselines (LSH, ITQ, PQ, RQ, the float
embedding) implement the same interface with ``requires_training = False`` and fit in closed
form on features through :meth:`HashingMethod.fit_closed_form`.
"""
from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn

BINARY = "binary"
SPARSE = "sparse"
ADDITIVE = "additive"
FLOAT = "float"

#: Per-item arrays that ``encode`` returns, by code type.
CODE_KEYS: dict[str, tuple[str, ...]] = {
    # ±1 int8 bits, (B, K)
    BINARY: ("bits",),
    # active bucket ids (B, s) int64, and the continuous per-bucket scores (B, d) that order a
    # query's buckets (best first) for lookup and expansion
    SPARSE: ("buckets", "bucket_scores"),
    # codebook indices (B, M) int64 into ``code_state()["codebooks"]`` (M, K, D), and the
    # un-quantised feature (B, D) used on the query side of asymmetric search
    ADDITIVE: ("indices", "features"),
    # a float embedding searched exhaustively (the "no hashing" reference)
    FLOAT: ("embedding",),
}


class UnsupportedBitsError(ValueError):
    """A method was asked for a code length it cannot produce."""


class HashingMethod(pl.LightningModule):
    """Base class of every registered method.

    Subclasses set ``name``, ``code_type`` and (for closed-form baselines)
    ``requires_training = False``, and implement :meth:`embed` and :meth:`encode`.
    Trainable methods implement ``training_step`` and ``configure_optimizers`` as any
    LightningModule; the harness's Trainer drives them.
    """

    name: ClassVar[str] = ""
    code_type: ClassVar[str] = ""
    requires_training: ClassVar[bool] = True
    #: True when one trained model serves every shorter length as a prefix of its code (DRQ):
    #: ``benchmark run`` then trains once at the longest requested length.
    prefix_codes: ClassVar[bool] = False
    description: ClassVar[str] = ""
    #: False: the harness keeps the final weights (no checkpoint selection on validation).
    model_selection: ClassVar[bool] = True
    #: A plugin method's YAML config (absolute path, e.g. ``Path(__file__).with_name("m.yaml")``);
    #: built-in methods keep theirs in ``methods/configs/<name>.yaml``.
    config_file: ClassVar[str | None] = None
    #: The similarity the harness searches ``embed`` outputs (float search, re-ranking, additive
    #: reconstructions) with: ``"ip"`` (inner product) or ``"l2"`` (−squared Euclidean distance).
    search_metric: ClassVar[str] = "ip"
    #: Whether the harness re-ranks a hash lookup's candidates by :meth:`embed` (the ``rerank``
    #: rows); a method may make it a property of its hyperparameters (DHT's ``rerank: none``).
    reranks: bool = True

    # The instance attributes the harness reads, set here (subclasses may reassign them):
    #   ``bits``, ``n_classes``; ``backbone``: the :class:`~hashbench.methods.backbones.Backbone`
    #   the harness built (its ``batchnorm`` policy is recorded in the run's config);
    #   ``hparams``: Lightning's hyperparameter record, holding at least every keyword argument
    #   passed here (a method calling ``save_hyperparameters`` replaces it with its own init
    #   arguments): the run's ``config.yaml`` stores it as ``method_hparams``;
    #   ``timers``: cumulative seconds by name (e.g. DHT's ``flow_solver``), read by the harness
    #   at every epoch boundary into the training info's per-epoch rows. Default: none.
    def __init__(self, bits: int, n_classes: int, backbone: nn.Module, **hparams: Any) -> None:
        super().__init__()
        self.check_bits(bits, **hparams)
        self.bits = int(bits)
        self.n_classes = int(n_classes)
        self.backbone = backbone
        self.hparams.update(hparams)
        self.timers: dict[str, float] = {}

    # ----------------------------------------------------------------- code lengths
    @classmethod
    def check_bits(cls, bits: int, **hparams: Any) -> None:
        """Raise :class:`UnsupportedBitsError` when ``bits`` cannot be produced with these
        hyperparameters (default: any ≥ 1)."""
        if int(bits) < 1:
            raise UnsupportedBitsError(f"{cls.name}: bits must be a positive integer, got {bits}")

    def evaluation_lengths(self) -> dict[int, dict[str, Any]]:
        """Code lengths the harness evaluates from this one trained model, with options for each.

        Default: just ``self.bits``. Additive methods whose every prefix is a valid code (DRQ)
        return ``{bits_m: {"prefix": m}}`` for each prefix length m.
        """
        return {self.bits: {}}

    # ----------------------------------------------------------------- interface
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Continuous embedding of a batch (B, D)."""
        raise NotImplementedError

    def encode(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Codes of a batch: a dict with the keys ``CODE_KEYS[self.code_type]``."""
        raise NotImplementedError

    def code_state(self) -> dict[str, np.ndarray]:
        """Arrays shared by all codes (additive: ``{"codebooks": (M, K, D)}``); default none."""
        return {}

    def on_training_data(self, labels: np.ndarray) -> None:
        """Called by the harness before training with the training set's 0/1 labels (N, C).

        For statistics a method's loss needs from the whole training set (e.g. HashNet's
        similar-pair ratio). Default: nothing.
        """

    def stage(self, epoch: int) -> int:
        """The 1-based stage of a multi-stage schedule that 0-based ``epoch`` belongs to (DHT:
        metric pre-training, then hashing), recorded per epoch in the training info. Default: 1."""
        return 1

    def selectable_epoch(self, epoch: int) -> bool:
        """Whether the checkpoint after 0-based ``epoch`` may be selected on validation (e.g. only
        a schedule's last stage); the harness skips validation of the others. Default: all."""
        return True

    def fit_after_training(self, loader, seed: int) -> None:
        """Called by the harness after gradient training with a loader of (x, y) batches of the
        training split in order, for parts of a model fitted in closed form on the trained
        network's output (e.g. k-means centroids). Default: nothing."""

    def fit_closed_form(self, features: np.ndarray, labels: np.ndarray, seed: int) -> None:
        """Fit a non-trainable method on training features (N, D) and 0/1 labels (N, C)."""
        raise NotImplementedError(f"{self.name} is trained by the Lightning Trainer, not in closed form")

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - Lightning convention
        return self.embed(x)
