"""DRQ: deep recurrent quantization (Song, Zhu, Gao, Xu, Liu, Shen, IJCAI 2019), spec ``docs/methods.md`` §4.

One shared codebook ``C ∈ R^{K×D}`` and per-step scalars ``w_1 = 1, w_2..w_M`` quantise a feature
``x`` recurrently: ``r⁽¹⁾ = x``, ``b_m = argmax_k cos(r⁽ᵐ⁾, w_m C_k)``, ``r⁽ᵐ⁺¹⁾ = r⁽ᵐ⁾ − w_m C_{b_m}``.
Every prefix ``(b_1..b_m)`` is a code of ``m·log2 K`` bits reconstructing to ``Σ_{j≤m} w_j C_{b_j}``,
so one training serves every length. Search is asymmetric inner product between the raw query
feature and that reconstruction (``search_metric = "ip"``).

Code lengths: ``codebook_size`` K (default 256, a power of two) fixes ``log2 K`` bits per step;
the number of steps M is ``n_steps`` if given, else ``bits / log2 K``. ``bits`` must be a multiple
of ``log2 K`` and at most ``M·log2 K``; the harness evaluates every prefix m = 1..M.
(Paper setting 2: K = 256, M = 4 → 8/16/24/32 bits.)

Network head (§4.2, on the backbone's ``out_dim`` features): optional hidden fc layers
(ReLU + dropout), then ``fc8 → z8`` (D − D_v dims) and ``fc9: dropout(relu(z8)) → z9`` (D_v dims,
the class vectors' width); the quantised feature is ``x = [z8, z9]`` and ``tanh(z9)`` the semantic
embedding. Class vectors: ``class_vectors`` (C × D_v, word2vec) or None → one-hot class targets
(``hparams["semantic_targets"]`` records which).

Training (Lightning manual optimisation), three stages by epoch (§4.4):
1. encoder only: ``ℓ_s + ℓ_t`` (adaptive-margin semantic + semi-hard triplet);
2. + stage-A codebook step ``τ(E_s⁽¹⁾ + μE_h⁽¹⁾ + νE_j⁽¹⁾)`` over C;
3. + alternating stage A (even batches) / stage B ``τ(E_s + μE_h + νE_j)`` over C and w.
By default (as the original code) the quantisation losses do not reach the network (the
quantiser sees ``x.detach()``); ``end_to_end: true`` is the paper's alternative where they do.
Encoder optimiser: Caffe-style lr multipliers (:meth:`DRQ.encoder_param_groups`), optional
``weight_decay`` on weights only, lr schedule ``lr_schedule`` / ``warmup_steps``
(:meth:`DRQ.encoder_lr_factor`; issue 22).
"""
from __future__ import annotations

from typing import Any, ClassVar, NamedTuple, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hashbench.methods import drq_losses as L
from hashbench.methods import schedules
from hashbench.methods.backbones import mlp_trunk
from hashbench.methods.base import ADDITIVE, HashingMethod, UnsupportedBitsError
from hashbench.methods.registry import register

DEFAULT_CODEBOOK_SIZE = 256


class Quantized(NamedTuple):
    """Output of :func:`recurrent_quantize`: indices (B, M) and soft/hard step outputs (M, B, D)."""

    indices: torch.Tensor
    soft: torch.Tensor
    hard: torch.Tensor


def steps_and_bits(bits: int, codebook_size: int = DEFAULT_CODEBOOK_SIZE,
                   n_steps: int | None = None) -> tuple[int, int]:
    """``(M, log2 K)`` for a requested code length; UnsupportedBitsError unless K is a power of
    two ≥ 2, ``bits`` a positive multiple of ``log2 K`` and ``bits ≤ M·log2 K``
    (M = ``n_steps``, or ``bits / log2 K`` when None)."""
    k = int(codebook_size)
    if k < 2 or k & (k - 1):
        raise UnsupportedBitsError(f"drq: codebook_size must be a power of two >= 2, got {codebook_size}")
    step_bits = k.bit_length() - 1
    bits = int(bits)
    if bits < step_bits or bits % step_bits:
        raise UnsupportedBitsError(
            f"drq: bits must be a positive multiple of log2(K) = {step_bits} (K = {k}), got {bits}")
    m = bits // step_bits if n_steps is None else int(n_steps)
    if m < 1 or bits > m * step_bits:
        raise UnsupportedBitsError(f"drq: {bits} bits exceed n_steps·log2(K) = {m}·{step_bits}")
    return m, step_bits


def scaled_codebooks(codebook: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """The per-step codebooks ``C⁽ᵐ⁾ = w_m · C``, shape (M, K, D)."""
    return scales[:, None, None] * codebook[None]


def recurrent_quantize(x: torch.Tensor, codebook: torch.Tensor, scales: torch.Tensor) -> Quantized:
    """DRQ's recurrent quantiser (§4.1–4.3) over M = len(scales) steps.

    ``r⁽¹⁾ = x``; at step m, with ``s_k = cos(r⁽ᵐ⁾, w_m C_k)``: ``b_m = argmax_k s_k``, soft
    output ``q̃⁽ᵐ⁾ = Σ_k softmax(s)_k w_m C_k`` (no temperature), hard output
    ``q⁽ᵐ⁾ = w_m C_{b_m}``, residual ``r⁽ᵐ⁺¹⁾ = r⁽ᵐ⁾ − q⁽ᵐ⁾`` (always the hard output).
    The argmax is norm-blind; the reconstruction uses the scaled codeword. Always float32, also
    inside a mixed-precision (autocast) training step: the assignment is exact.
    """
    with torch.autocast(x.device.type, enabled=False):
        books = scaled_codebooks(codebook.float(), scales.float())
        r = x.float()
        idx, soft, hard = [], [], []
        for cm in books:
            cos = F.normalize(r, dim=1) @ F.normalize(cm, dim=1).T      # (B, K)
            b = cos.argmax(1)
            q = cm[b]
            soft.append(cos.softmax(1) @ cm)
            hard.append(q)
            idx.append(b)
            r = r - q
        return Quantized(torch.stack(idx, 1), torch.stack(soft), torch.stack(hard))


#: checkpoint-selection rules (``selection``): see :meth:`DRQ.selectable_epoch`
SELECTION = ("final_stage", "any_epoch")
ENCODER_OPTIMIZERS = ("momentum", "adam")


def stage_of_epoch(epoch: int, total_epochs: int, fractions: Sequence[float] = (0.5, 0.75),
                   skip_boundaries: bool = False) -> int:
    """Training stage (1, 2 or 3) of a 0-based epoch, or 0 for an epoch that is skipped.

    With ``b1 = ⌊f1·E⌋``, ``b2 = ⌊f2·E⌋``: stage 1 for epoch < b1, stage 2 for b1 ≤ epoch < b2,
    stage 3 from b2 on. ``skip_boundaries=True`` reproduces the original's ``range`` off-by-one:
    epochs b1 and b2 do nothing (E = 64: stages 0–31, 33–47, 49–63).
    """
    if total_epochs < 1:
        raise ValueError(f"total_epochs must be >= 1, got {total_epochs}")
    b1, b2 = int(fractions[0] * total_epochs), int(fractions[1] * total_epochs)
    if not 0 <= b1 <= b2 <= total_epochs:
        raise ValueError(f"stage fractions must satisfy 0 <= f1 <= f2 <= 1, got {tuple(fractions)}")
    if skip_boundaries and epoch in (b1, b2) and 0 < epoch:
        return 0
    return 1 if epoch < b1 else 2 if epoch < b2 else 3


def exponential_decay(rate: float, every: float):
    """Learning-rate factor ``rate^(step / every)`` (TF ``exponential_decay``, not staircase)."""
    return lambda step: rate ** (step / every)


@register
class DRQ(HashingMethod):
    """Deep recurrent quantization: one shared codebook with per-step scales, cosine-argmax
    residual encoding, every prefix a valid code; asymmetric inner-product search."""

    name = "drq"
    code_type = ADDITIVE
    search_metric: ClassVar[str] = "ip"
    prefix_codes = True  # every prefix (b_1..b_m) is a valid shorter code
    description = "deep recurrent quantization, one training for every code length (Song et al. 2019)"

    def __init__(self, bits: int, n_classes: int, backbone: nn.Module, *,
                 codebook_size: int = DEFAULT_CODEBOOK_SIZE, n_steps: int | None = None,
                 feature_dim: int = 512, hidden_dims: Sequence[int] = (), dropout: float = 0.5,
                 class_vectors: np.ndarray | None = None,
                 triplet_margin: float = 2.5, semantic_weight: float = 1.0, triplet_weight: float = 1.0,
                 tau: float = 1.0, mu: float = 1.0, nu: float = 0.1,
                 encoder_optimizer: str = "momentum", lr: float = 0.01, momentum: float = 0.9,
                 lr_multipliers: dict[str, float] | None = None, weight_decay: float = 0.0,
                 codebook_lr: float = 1e-4, lr_decay_rate: float = 0.9, lr_decay_steps: float = 10000,
                 lr_schedule: str = "original", warmup_steps: int = 0,
                 init_std: float = 0.01, schedule_epochs: int | None = None,
                 stage_fractions: Sequence[float] = (0.5, 0.75), skip_boundary_epochs: bool = False,
                 end_to_end: bool = False, selection: str = "final_stage") -> None:
        if selection not in SELECTION:
            raise ValueError(f"drq: selection must be one of {SELECTION}, got {selection!r}")
        if encoder_optimizer not in ENCODER_OPTIMIZERS:
            raise ValueError(f"drq: encoder_optimizer must be one of {ENCODER_OPTIMIZERS}, got {encoder_optimizer!r}")
        schedules.check_schedule("drq", lr_schedule, warmup_steps)
        m, step_bits = steps_and_bits(bits, codebook_size, n_steps)
        super().__init__(bits, n_classes, backbone, codebook_size=codebook_size, n_steps=n_steps)
        self.n_steps, self.step_bits, self.codebook_size = m, step_bits, int(codebook_size)
        self.save_hyperparameters(ignore=["backbone", "class_vectors"])
        if class_vectors is None:
            vectors, targets = torch.eye(n_classes), "one_hot"
        else:
            vectors, targets = torch.as_tensor(np.asarray(class_vectors), dtype=torch.float32), "word_vectors"
            if vectors.ndim != 2 or vectors.shape[0] != n_classes:
                raise ValueError(f"drq: class_vectors must be ({n_classes}, d), got {tuple(vectors.shape)}")
        self.hparams["semantic_targets"] = targets
        self.hparams["n_steps"] = m
        self.register_buffer("class_vectors", vectors)
        sem_dim = vectors.shape[1]
        if feature_dim <= sem_dim:
            raise ValueError(f"drq: feature_dim {feature_dim} must exceed the semantic width {sem_dim}")

        self.hidden, width = mlp_trunk(backbone.out_dim, hidden_dims, dropout)
        self.fc8 = nn.Linear(width, feature_dim - sem_dim)
        self.fc9 = nn.Linear(feature_dim - sem_dim, sem_dim)
        self.drop = nn.Dropout(dropout)
        self.codebook = nn.Parameter(torch.randn(self.codebook_size, feature_dim) * init_std)
        self.step_scales = nn.Parameter(torch.randn(m - 1) * init_std)   # w_2..w_M; w_1 = 1
        self.automatic_optimization = False

    # ----------------------------------------------------------------- code lengths
    @classmethod
    def check_bits(cls, bits: int, codebook_size: int = DEFAULT_CODEBOOK_SIZE, n_steps: int | None = None,
                   **_: Any) -> None:
        """UnsupportedBitsError unless ``bits`` is a multiple of log2 K and ≤ M·log2 K (see module doc)."""
        steps_and_bits(bits, codebook_size, n_steps)

    def evaluation_lengths(self) -> dict[int, dict[str, Any]]:
        """Every prefix of the one trained code: ``{m·log2 K: {"prefix": m}}`` for m = 1..M."""
        return {m * self.step_bits: {"prefix": m} for m in range(1, self.n_steps + 1)}

    # ----------------------------------------------------------------- network and codes
    def scales(self) -> torch.Tensor:
        """``(w_1, …, w_M)`` with ``w_1 = 1``."""
        return torch.cat([self.step_scales.new_ones(1), self.step_scales])

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, z9)``: the quantised feature ``[z8, z9]`` (B, D) and the semantic pre-activation."""
        h = self.hidden(self.backbone(x).flatten(1))
        z8 = self.fc8(h)
        z9 = self.fc9(self.drop(F.relu(z8)))
        return torch.cat([z8, z9], 1), z9

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The un-quantised feature ``x = [z8, z9]`` (B, D)."""
        return self.features(x)[0]

    def encode(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``indices`` (B, M) int64 of the recurrent quantiser (every step) and the query-side
        ``features`` (B, D)."""
        feats = self.embed(x)
        q = recurrent_quantize(feats, self.codebook, self.scales())
        return {"indices": q.indices.to(torch.int64), "features": feats}

    def code_state(self) -> dict[str, np.ndarray]:
        """``{"codebooks": (M, K, D)}`` with ``codebooks[m] = w_m · C`` (float32)."""
        with torch.no_grad():
            books = scaled_codebooks(self.codebook, self.scales())
        return {"codebooks": books.detach().cpu().float().numpy()}

    # ----------------------------------------------------------------- training
    def total_epochs(self) -> int:
        """E of the stage schedule: ``schedule_epochs``, else the Trainer's ``max_epochs``."""
        e = self.hparams.schedule_epochs
        if e is None and self._trainer is not None:
            e = self.trainer.max_epochs
        if e is None or e < 1:
            raise ValueError("drq: the stage schedule needs schedule_epochs or Trainer(max_epochs=...)")
        return int(e)

    def stage(self, epoch: int) -> int:
        """Stage (0 = skipped, 1, 2, 3) of a 0-based epoch under this run's schedule."""
        hp = self.hparams
        return stage_of_epoch(epoch, self.total_epochs(), hp.stage_fractions, hp.skip_boundary_epochs)

    def selectable_epoch(self, epoch: int) -> bool:
        """``selection: final_stage`` (default): model selection considers epochs of the
        schedule's final stage only (stage 3 by default): before it the codebook (stage 1) or the
        scales w (stage 2) are untrained, and an early epoch whose codes happen to score well on
        validation is not the trained model. ``any_epoch``: every trained epoch (the harness's
        plain rule; it picked stage-2 checkpoints with w at its initial values on CIFAR-10)."""
        if self.hparams.selection == "any_epoch":
            return self.stage(epoch) != 0
        final = self.stage(self.total_epochs() - 1)
        return self.stage(epoch) == final and final != 0

    def training_loss(self, feats: torch.Tensor, z9: torch.Tensor, y: torch.Tensor, stage: int,
                      full: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(loss, logged parts) of one training step of ``stage`` (1, 2, 3) on the features
        ``x = [z8, z9]`` of a batch with 0/1 labels ``y``: ``semantic_weight·ℓ_s(tanh z9) +
        triplet_weight·ℓ_t(x)``, plus from stage 2 on the codebook objective on x (detached
        unless ``end_to_end``): stage A's first-step losses, or with ``full`` (odd batches of
        stage 3) stage B's full losses over every step."""
        hp = self.hparams
        l_sem = L.adaptive_margin_loss(torch.tanh(z9), y, self.class_vectors)
        l_tri = L.semihard_triplet_loss(feats, y, hp.triplet_margin)
        loss = hp.semantic_weight * l_sem + hp.triplet_weight * l_tri
        logs = {"train/loss_semantic": l_sem, "train/loss_triplet": l_tri}
        if stage >= 2:
            qx = feats if hp.end_to_end else feats.detach()
            m = self.n_steps if full else 1
            q = recurrent_quantize(qx, self.codebook, self.scales()[:m])
            obj = L.codebook_objective(qx, q.soft, q.hard, full, hp.tau, hp.mu, hp.nu)
            loss = loss + obj["loss"]
            tag = "B" if full else "A"
            logs.update({f"train/E_soft_{tag}": obj["soft"], f"train/E_hard_{tag}": obj["hard"],
                         f"train/E_joint_{tag}": obj["joint"], f"train/loss_codebook_{tag}": obj["loss"]})
        return loss, logs

    def training_step(self, batch, batch_idx: int):
        """One manual-optimisation step of the current stage (see the module docstring)."""
        stage = self.stage(self.current_epoch)
        self.log("train/stage", float(stage), on_step=True, on_epoch=False)
        if stage == 0:
            return None
        x, y = batch
        opt_enc, opt_a, opt_b = self.optimizers()
        sch_enc, sch_a, sch_b = self.lr_schedulers()
        feats, z9 = self.features(x)
        full = stage == 3 and batch_idx % 2 == 1
        loss, logs = self.training_loss(feats, z9, y, stage, full)
        codebook_opt = None
        if stage >= 2:
            codebook_opt, codebook_sch = (opt_b, sch_b) if full else (opt_a, sch_a)

        for opt in (opt_enc, opt_a, opt_b):
            opt.zero_grad()
        self.manual_backward(loss)
        opt_enc.step()
        sch_enc.step()
        if codebook_opt is not None:
            codebook_opt.step()
            codebook_sch.step()
        logs["train/loss"] = loss.detach()
        for g in opt_enc.param_groups:
            logs[f"train/lr_{g['name']}"] = g["lr"]
        logs["train/lr_codebook_A"] = sch_a.get_last_lr()[0]
        logs["train/lr_codebook_B"] = sch_b.get_last_lr()[0]
        self.log_dict(logs, on_step=True, on_epoch=False)
        return loss.detach()

    def encoder_param_groups(self) -> list[dict[str, Any]]:
        """Encoder parameters grouped with the original's Caffe-style multipliers of the learning
        rate: pretrained (backbone) weights ×0.5, biases ×1; new head layers weights ×5, biases ×10.
        "Weights" are the parameters with more than one dimension (conv and fc kernels); "biases"
        every 1-d parameter (biases and BatchNorm scales and shifts). ``weight_decay`` applies to
        the weights only. Trainable parameters only; empty groups are left out."""
        mult = {"backbone_weight": 0.5, "backbone_bias": 1.0, "head_weight": 5.0, "head_bias": 10.0}
        mult.update(self.hparams.lr_multipliers or {})
        groups: dict[str, list[nn.Parameter]] = {k: [] for k in mult}
        head = [self.hidden, self.fc8, self.fc9]
        for part, modules in (("backbone", [self.backbone]), ("head", head)):
            for mod in modules:
                for p in mod.parameters():
                    if p.requires_grad:
                        groups[f"{part}_{'weight' if p.ndim > 1 else 'bias'}"].append(p)
        lr, wd = self.hparams.lr, float(self.hparams.weight_decay)
        return [{"params": ps, "lr": lr * mult[k], "weight_decay": wd if k.endswith("_weight") else 0.0, "name": k}
                for k, ps in groups.items() if ps]

    def configure_optimizers(self):
        """Encoder (momentum SGD, or Adam with ``encoder_optimizer: adam``) and two Adam codebook
        optimisers (A: C; B: C and w_2..w_M), each with its own ``rate^(own_step/steps)`` decay."""
        hp = self.hparams
        groups = self.encoder_param_groups()
        if hp.encoder_optimizer == "momentum":
            enc = torch.optim.SGD(groups, lr=hp.lr, momentum=hp.momentum)
        elif hp.encoder_optimizer == "adam":
            enc = torch.optim.Adam(groups, lr=hp.lr)
        else:
            raise ValueError(f"drq: encoder_optimizer must be 'momentum' or 'adam', got {hp.encoder_optimizer!r}")
        opt_a = torch.optim.Adam([self.codebook], lr=hp.codebook_lr)
        b_params = [self.codebook] + ([self.step_scales] if self.step_scales.numel() else [])
        opt_b = torch.optim.Adam(b_params, lr=hp.codebook_lr)
        decay = exponential_decay(hp.lr_decay_rate, hp.lr_decay_steps)
        scheds = [{"scheduler": torch.optim.lr_scheduler.LambdaLR(o, f), "interval": "step", "name": n}
                  for o, f, n in ((enc, self.encoder_lr_factor(), "encoder"), (opt_a, decay, "codebook_A"),
                                  (opt_b, decay, "codebook_B"))]
        return [enc, opt_a, opt_b], scheds

    def encoder_lr_factor(self):
        """The encoder's lr multiplier of its own step t: ``lr_schedule: original`` is
        ``lr_decay_rate^(t / lr_decay_steps)``; ``cosine`` / ``step`` decay over the run's
        T = steps per epoch × the schedule's epochs; each after ``warmup_steps`` of linear warm-up
        (:func:`methods.schedules.lr_factor`). The codebook optimisers keep the original decay."""
        hp = self.hparams
        decay = exponential_decay(hp.lr_decay_rate, hp.lr_decay_steps)
        total = None
        if hp.lr_schedule != "original":
            total = int(round(schedules.steps_per_epoch(self._trainer) * self.total_epochs()))
        return lambda t: schedules.lr_factor(hp.lr_schedule, t, total, int(hp.warmup_steps), decay)
