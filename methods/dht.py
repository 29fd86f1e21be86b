"""Deep Hash Table (Jeong & Song, ICML 2018), spec ``docs/methods.md`` §2, and its baselines.

The code of an item is an ``s``-sparse binary vector over ``d`` buckets (``bits`` = d, the
``sparsity`` s): the indicator of the s largest coordinates of the hash output ``f(x) ∈ R^d``.
The item is stored in those s buckets of an inverted table; a query looks up its own top-s
buckets (the harness's ``sparse`` search, with expansion and re-ranking).

Network: the backbone's features → ``hidden_dims`` fc layers (ReLU, dropout) = the trunk, whose
ReLU output feeds two parallel heads: ``Embed`` (m outputs, stage 1) and ``Hash`` (d outputs,
stage 2). On CPU the backbone is frozen ImageNet features; ``backbone: nin`` with
``hidden_dims: []`` is the paper's NIN-style CNN trained from scratch on 32×32 images.

Training, two stages over the harness's epochs E (``stage1_fraction`` f → the first ⌊f·E⌉ epochs):

1. metric pre-training of trunk + Embed: semi-hard triplet on the L2-normalised embedding
   (squared Euclidean, margin ``metric_margin``) or N-pairs with its regulariser; Adam with the
   FC weight decay (``weight_decay`` on the trunk and Embed weights, ``backbone_weight_decay`` on
   the backbone's, none on biases or BatchNorm: :meth:`DeepHashTable.stage1_param_groups`). The
   stage-1 network is then frozen as a copy: it is the faithful re-ranking representation
   (``rerank: stage1``).
2. hash fine-tuning with class-balanced batches: per batch, the class-mean unaries of the hash
   output (L2-normalised rows for triplet, raw for N-pairs) → the exact class codes by min-cost
   flow (``methods.min_cost_flow``, penalty λ = ``pairwise_penalty``) → each sample gets its
   class's code → the code-masked triplet or N-pairs loss; Adam with Hash at ``lr`` and the trunk
   at ``trunk_lr_mult``·lr. One forward pass per step by default (the unaries and the loss come
   from the same pass); ``two_pass: true`` is the original's second, fresh forward pass.

Learning rates of both stages: ``lr_schedule`` (``original`` stair decay ×``lr_decay_rate`` every
``lr_decay_steps``, or ``cosine`` / ``step`` over each stage's length) after ``warmup_steps`` of
linear warm-up, each stage on its own step count (:meth:`DeepHashTable.stage_lr_factor`).

Model selection: stage-2 epochs only, on the validation split (the harness's hash-table P@1 of
validation items against the training items). The original selected runs on the test set.

Baselines from the same stage-1 embedding (§2.9), registered as ``dht-th`` and ``dht-vq``: they
run only stage 1 — identical to ``dht``'s stage 1 under the same seed and config, since the Hash
layer is initialised from its own generator — and take the final stage-1 network.
"""
from __future__ import annotations

import copy
import time
from typing import Any, ClassVar, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hashbench.methods import metric_losses as ML
from hashbench.methods import schedules
from hashbench.methods.backbones import mlp_trunk
from hashbench.methods.base import SPARSE, HashingMethod, UnsupportedBitsError
from hashbench.methods.min_cost_flow import solve_class_codes
from hashbench.methods.registry import register

LOSSES = ("triplet", "npairs")
RERANK = ("stage1", "hash", "none")
#: The original code's pairwise penalty λ by loss (CIFAR-100 configs).
DEFAULT_PENALTY = {"triplet": 1.0, "npairs": 0.3}


def stage1_epochs(total_epochs: int, fraction: float) -> int:
    """Epochs of stage 1: ``round(fraction · E)``, at least 1, and at most E − 1 when E ≥ 2 (so
    that stage 2 always gets an epoch)."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"stage1_fraction must be in (0, 1], got {fraction}")
    n = max(1, int(round(fraction * total_epochs)))
    return min(n, total_epochs - 1) if total_epochs >= 2 else n


def class_means(values: torch.Tensor, class_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(means (n_c, D), inverse (B,)): the mean row of each distinct class in ``class_ids``
    (ascending class id) and each sample's row index into it."""
    classes, inverse = torch.unique(class_ids, return_inverse=True)
    sums = torch.zeros(len(classes), values.shape[1], dtype=values.dtype, device=values.device)
    sums.index_add_(0, inverse, values)
    counts = torch.bincount(inverse, minlength=len(classes)).to(values.dtype)
    return sums / counts[:, None], inverse


def anchor_positive_pairs(class_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(anchors, positives) index tensors for N-pairs: within each class, in batch order, items
    0–1, 2–3, … form (anchor, positive) pairs (an odd one out is left unpaired)."""
    order = torch.sort(class_ids, stable=True).indices
    c = class_ids[order]
    first = torch.ones_like(c, dtype=torch.bool)
    first[1:] = c[1:] != c[:-1]
    start = torch.cummax(torch.where(first, torch.arange(len(c), device=c.device), torch.zeros_like(c)), 0).values
    rank = torch.arange(len(c), device=c.device) - start
    nxt = torch.arange(len(c), device=c.device) + 1
    ok = (rank % 2 == 0) & (nxt < len(c))
    ok[ok.clone()] &= c[nxt[ok]] == c[ok]
    return order[ok], order[nxt[ok]]


def top_s(scores: torch.Tensor, s: int) -> torch.Tensor:
    """The s largest coordinates of each row, best first, as int64 bucket ids (B, s)."""
    return scores.topk(s, dim=1).indices.to(torch.int64)


def _xavier_from(generator: torch.Generator, layer: nn.Linear) -> None:
    """Xavier-uniform weights and zero bias drawn from ``generator`` (not the global RNG)."""
    bound = float(np.sqrt(6.0 / (layer.in_features + layer.out_features)))
    with torch.no_grad():
        layer.weight.copy_((torch.rand(layer.weight.shape, generator=generator) * 2 - 1) * bound)
        layer.bias.zero_()


@register
class DeepHashTable(HashingMethod):
    """Deep Hash Table: s-sparse codes over d = ``bits`` buckets, exact per-batch class codes by
    min-cost flow, searched through an inverted hash table with stage-1 re-ranking."""

    name = "dht"
    code_type = SPARSE
    description = "Deep Hash Table: sparse codes by exact min-cost flow (Jeong & Song 2018)"
    #: stage-1-only subclasses (the Th and VQ baselines) stop after stage 1
    stage1_only: ClassVar[bool] = False

    def __init__(self, bits: int, n_classes: int, backbone: nn.Module, *, sparsity: int = 1,
                 loss: str = "triplet", embed_dim: int | None = None, hidden_dims: Sequence[int] = (512,),
                 dropout: float = 0.5, lr: float = 1e-3, stage1_lr: float | None = None,
                 trunk_lr_mult: float = 0.1, weight_decay: float = 5e-4, backbone_weight_decay: float = 0.0,
                 lr_decay_rate: float = 0.3, lr_decay_steps: int = 20000,
                 lr_schedule: str = "original", warmup_steps: int = 0,
                 metric_margin: float = 0.3, hash_margin: float = 1.0,
                 npairs_reg: float = 0.003, hash_npairs_reg: float = 0.003,
                 pairwise_penalty: float | None = None, stage1_fraction: float = 0.5,
                 two_pass: bool = False, rerank: str = "stage1") -> None:
        self.check_bits(bits, sparsity=sparsity)
        schedules.check_schedule(self.name, lr_schedule, warmup_steps)
        if loss not in LOSSES:
            raise ValueError(f"{self.name}: loss must be one of {LOSSES}, got {loss!r}")
        if rerank not in RERANK:
            raise ValueError(f"{self.name}: rerank must be one of {RERANK}, got {rerank!r}")
        super().__init__(bits, n_classes, backbone, sparsity=sparsity)
        self.save_hyperparameters(ignore=["backbone"])
        self.hparams["pairwise_penalty"] = DEFAULT_PENALTY[loss] if pairwise_penalty is None else float(pairwise_penalty)
        self.d, self.s, self.loss_name, self.rerank = int(bits), int(sparsity), loss, rerank
        self.trunk, width = mlp_trunk(backbone.out_dim, hidden_dims, dropout)
        self.embed_head = nn.Linear(width, int(embed_dim or bits))
        # The Hash layer comes from its own generator so that the global RNG (hence stage 1) is
        # the same for dht, dht-th and dht-vq under one seed.
        with torch.random.fork_rng(devices=[]):           # nn.Linear's own init must not draw either
            self.hash_head = nn.Linear(width, self.hash_width())
        _xavier_from(torch.Generator().manual_seed(torch.initial_seed() % 2**63), self.hash_head)
        self.stage1_net = nn.Sequential(copy.deepcopy(backbone), copy.deepcopy(self.trunk), nn.ReLU(),
                                        copy.deepcopy(self.embed_head))
        self.stage1_net.requires_grad_(False)
        self.register_buffer("stage1_frozen", torch.tensor(False))
        self.timers = {"flow_solver": 0.0}  # cumulative seconds, read per epoch by the harness
        self.automatic_optimization = False

    # ----------------------------------------------------------------- code lengths
    @classmethod
    def check_bits(cls, bits: int, sparsity: int = 1, **_: Any) -> None:
        """``bits`` is the number of buckets d; it must hold the s = ``sparsity`` active ones."""
        super().check_bits(bits)
        if not 1 <= int(sparsity) <= int(bits):
            raise UnsupportedBitsError(f"{cls.name}: sparsity must satisfy 1 <= s <= d = bits = {bits}, got {sparsity}")

    def hash_width(self) -> int:
        """Outputs of the Hash layer (d; the cascade has L·d)."""
        return self.d

    # ----------------------------------------------------------------- network
    def head_input(self, x: torch.Tensor) -> torch.Tensor:
        """ReLU of the trunk's output on the backbone's features (the input of both heads)."""
        return F.relu(self.trunk(self.backbone(x)))

    def stage1_embedding(self, x: torch.Tensor) -> torch.Tensor:
        """The stage-1 embedding: the frozen copy once stage 1 has ended, else the live Embed
        head; L2-normalised for the triplet loss (the space it was trained in), raw for N-pairs."""
        e = self.stage1_net(x) if bool(self.stage1_frozen) else self.embed_head(self.head_input(x))
        return F.normalize(e, dim=1) if self.loss_name == "triplet" else e

    def hash_output(self, x: torch.Tensor) -> torch.Tensor:
        """The Hash layer's output f(x) (B, hash_width)."""
        return self.hash_head(self.head_input(x))

    def bucket_scores(self, x: torch.Tensor) -> torch.Tensor:
        """Per-bucket scores that order a query's buckets (best first) and give an item's code."""
        return self.hash_output(x)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The re-ranking representation: the stage-1 embedding (``rerank: stage1`` or ``none``)
        or the fine-tuned hash output, L2-normalised for triplet (``rerank: hash``)."""
        if self.rerank == "hash":
            f = self.hash_output(x)
            return F.normalize(f, dim=1) if self.loss_name == "triplet" else f
        return self.stage1_embedding(x)

    def encode(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        scores = self.bucket_scores(x)
        return {"buckets": top_s(scores, self.s), "bucket_scores": scores}

    @property
    def reranks(self) -> bool:
        """Whether the harness re-ranks the candidates by :meth:`embed` (``rerank != none``)."""
        return self.rerank != "none"

    # ----------------------------------------------------------------- schedule
    def n_stage1_epochs(self) -> int:
        return stage1_epochs(int(self.trainer.max_epochs), float(self.hparams.stage1_fraction))

    def stage(self, epoch: int) -> int:
        """1 (metric pre-training) or 2 (hash fine-tuning) for a 0-based epoch."""
        return 1 if epoch < self.n_stage1_epochs() else 2

    def selectable_epoch(self, epoch: int) -> bool:
        """Model selection considers stage-2 epochs only (stage 1 has an untrained Hash layer)."""
        return self.stage(epoch) == 2

    def freeze_stage1(self) -> None:
        """Copy the live backbone/trunk/Embed into the frozen stage-1 network."""
        self.stage1_net[0].load_state_dict(self.backbone.state_dict())
        self.stage1_net[1].load_state_dict(self.trunk.state_dict())
        self.stage1_net[3].load_state_dict(self.embed_head.state_dict())
        self.stage1_frozen.fill_(True)

    def on_train_epoch_start(self) -> None:
        if self.stage(self.current_epoch) == 2 and not bool(self.stage1_frozen):
            self.freeze_stage1()

    def on_train_epoch_end(self) -> None:
        if self.stage1_only and self.current_epoch + 1 >= self.n_stage1_epochs():
            self.freeze_stage1()
            self.trainer.should_stop = True

    # ----------------------------------------------------------------- losses
    def metric_loss(self, x: torch.Tensor, class_ids: torch.Tensor) -> torch.Tensor:
        """Stage 1: semi-hard triplet on the L2-normalised embedding, or N-pairs."""
        e = self.embed_head(self.head_input(x))
        if self.loss_name == "triplet":
            pos, neg = ML.label_masks(class_ids)
            return ML.semihard_triplet_from_distances(ML.sq_euclidean_normalised(e), pos, neg,
                                                      float(self.hparams.metric_margin))
        a, p = anchor_positive_pairs(class_ids)
        return ML.npairs_loss(e[a], e[p], class_ids[a], float(self.hparams.npairs_reg))

    def unaries(self, f: torch.Tensor, class_ids: torch.Tensor) -> tuple[np.ndarray, torch.Tensor]:
        """Class-mean unaries (n_c, width) of a batch — of the L2-normalised rows for triplet (per
        level for the cascade), raw for N-pairs — and each sample's class row. Computed from the
        float32 output, autocast off: a mixed-precision step gives the solver the same unaries as
        a float32 step would from the same output."""
        with torch.autocast(f.device.type, enabled=False):
            f = f.detach().float()
            rows = self.normalise_levels(f) if self.loss_name == "triplet" else f
            means, inverse = class_means(rows.double(), class_ids)
        return means.cpu().numpy(), inverse

    def normalise_levels(self, f: torch.Tensor) -> torch.Tensor:
        """L2-normalised rows (the cascade normalises each level's slice)."""
        return F.normalize(f, dim=1)

    def solve_codes(self, unaries: np.ndarray) -> list[np.ndarray]:
        """The exact class codes of a batch, one (n_c, d) array per level (one level here)."""
        return [solve_class_codes(unaries, self.s, float(self.hparams.pairwise_penalty))]

    def code_labels(self, codes: list[np.ndarray], class_ids: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
        """The labels the masked loss uses: the class labels."""
        return class_ids

    def batch_codes(self, f: torch.Tensor, class_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(codes (B, width) 0/1 of each sample's class, labels used by the loss): the exact
        class codes of the batch by min-cost flow (timed into ``timers["flow_solver"]``), broadcast to
        the samples."""
        u, inverse = self.unaries(f, class_ids)
        t0 = time.perf_counter()
        codes = self.solve_codes(u)
        self.timers["flow_solver"] += time.perf_counter() - t0
        h = torch.from_numpy(np.concatenate(codes, 1)).to(f.device, f.dtype)[inverse]
        return h, self.code_labels(codes, class_ids, inverse)

    def masked_loss(self, f: torch.Tensor, class_ids: torch.Tensor, labels: torch.Tensor,
                    codes: torch.Tensor) -> torch.Tensor:
        """Stage 2: code-masked triplet on the L2-normalised output (positives = same ``labels``),
        or code-masked N-pairs (pairs formed within each class, targets from ``labels``)."""
        if self.loss_name == "triplet":
            pos, neg = ML.label_masks(labels)
            dist = ML.masked_l1_distances(F.normalize(f, dim=1), codes)
            return ML.semihard_triplet_from_distances(dist, pos, neg, float(self.hparams.hash_margin))
        a, p = anchor_positive_pairs(class_ids)
        return ML.npairs_loss(f[a], f[p], labels[a], float(self.hparams.hash_npairs_reg), codes=codes[a])

    def hash_loss(self, x: torch.Tensor, class_ids: torch.Tensor) -> torch.Tensor:
        f = self.hash_output(x)
        codes, labels = self.batch_codes(f, class_ids)
        if self.hparams.two_pass:
            f = self.hash_output(x)       # fresh dropout (and augmentation, when the batch has it)
        return self.masked_loss(f, class_ids, labels, codes)

    # ----------------------------------------------------------------- training
    def training_step(self, batch, batch_idx: int):
        x, y = batch
        class_ids = y.argmax(1)
        stage = self.stage(self.current_epoch)
        opt1, opt2 = self.optimizers()
        sch1, sch2 = self.lr_schedulers()
        opt, sch = (opt1, sch1) if stage == 1 else (opt2, sch2)
        loss = self.metric_loss(x, class_ids) if stage == 1 else self.hash_loss(x, class_ids)
        opt.zero_grad()
        self.manual_backward(loss)
        opt.step()
        sch.step()
        self.log("train/loss", loss.detach(), on_step=True, on_epoch=True, prog_bar=True)
        self.log("train/stage", float(stage), on_step=True, on_epoch=False)
        return loss.detach()

    def stage1_param_groups(self) -> list[dict[str, Any]]:
        """Stage-1 Adam groups, all at ``stage1_lr`` (or ``lr``): the "FC weight decay"
        ``weight_decay`` on the weights (> 1-d) of the trunk's fc layers and Embed;
        ``backbone_weight_decay`` on the backbone's weights (> 1-d: conv/fc kernels); no decay on
        any 1-d parameter (biases, BatchNorm scales and shifts). Trainable parameters only."""
        hp = self.hparams
        lr1 = float(hp.stage1_lr or hp.lr)
        parts = (("backbone", [self.backbone], float(hp.backbone_weight_decay)),
                 ("fc", [self.trunk, self.embed_head], float(hp.weight_decay)))
        groups = []
        for part, modules, wd in parts:
            params = [p for m in modules for p in m.parameters() if p.requires_grad]
            groups += [{"params": [p for p in params if p.ndim > 1], "lr": lr1, "weight_decay": wd, "name": f"{part}_weight"},
                       {"params": [p for p in params if p.ndim <= 1], "lr": lr1, "weight_decay": 0.0, "name": f"{part}_bias"}]
        return [g for g in groups if g["params"]]

    def stage2_param_groups(self) -> list[dict[str, Any]]:
        """Stage-2 Adam groups, no weight decay (the original's stage-2 loss has none): Hash at
        ``lr``; backbone and trunk at ``trunk_lr_mult``·lr. Trainable parameters only."""
        hp = self.hparams
        shared = [p for m in (self.backbone, self.trunk) for p in m.parameters() if p.requires_grad]
        groups = [{"params": list(self.hash_head.parameters()), "lr": float(hp.lr), "weight_decay": 0.0, "name": "hash"},
                  {"params": shared, "lr": float(hp.lr) * float(hp.trunk_lr_mult), "weight_decay": 0.0, "name": "trunk"}]
        return [g for g in groups if g["params"]]

    def stage_lr_factor(self, stage: int):
        """The lr multiplier of a stage's optimiser at its own step t (each stage counts its own
        steps): ``lr_schedule: original`` is ``lr_decay_rate^⌊t / lr_decay_steps⌋``; ``cosine`` /
        ``step`` decay over the stage's T = steps per epoch × its epochs; each after
        ``warmup_steps`` of linear warm-up (:func:`methods.schedules.lr_factor`)."""
        hp = self.hparams
        decay = lambda t: float(hp.lr_decay_rate) ** (t // int(hp.lr_decay_steps))  # noqa: E731
        total = None
        if hp.lr_schedule != "original":
            n1 = self.n_stage1_epochs()
            epochs = n1 if stage == 1 else int(self.trainer.max_epochs) - n1
            total = int(round(schedules.steps_per_epoch(self._trainer) * epochs))
        return lambda t: schedules.lr_factor(hp.lr_schedule, t, total, int(hp.warmup_steps), decay)

    def configure_optimizers(self):
        opt1 = torch.optim.Adam(self.stage1_param_groups())
        opt2 = torch.optim.Adam(self.stage2_param_groups())
        return [opt1, opt2], [torch.optim.lr_scheduler.LambdaLR(opt1, self.stage_lr_factor(1)),
                              torch.optim.lr_scheduler.LambdaLR(opt2, self.stage_lr_factor(2))]


@register
class DHTThreshold(DeepHashTable):
    """Th baseline (§2.9): stage 1 only; an item's code is the top-s coordinates of its stage-1
    embedding (m = d), which also order a query's buckets."""

    name = "dht-th"
    description = "DHT baseline: top-s coordinates of the stage-1 metric embedding"
    stage1_only = True
    model_selection = False

    def selectable_epoch(self, epoch: int) -> bool:
        return True

    def bucket_scores(self, x: torch.Tensor) -> torch.Tensor:
        return self.stage1_embedding(x)


@register
class DHTVectorQuantization(DeepHashTable):
    """VQ baseline (§2.9): stage 1 only; k-means with d centroids on the training items' stage-1
    embeddings (scikit-learn, ``random_state`` = seed); an item's code is its s nearest centroids,
    a query's buckets are ordered by negative squared distance to the centroids. (The original
    fits k-means on each table's own items; here it is fitted on the training split.)"""

    name = "dht-vq"
    description = "DHT baseline: s nearest k-means centroids of the stage-1 metric embedding"
    stage1_only = True
    model_selection = False

    def __init__(self, bits: int, n_classes: int, backbone: nn.Module, **hparams: Any) -> None:
        super().__init__(bits, n_classes, backbone, **hparams)
        self.register_buffer("centroids", torch.zeros(self.d, self.embed_head.out_features))

    def selectable_epoch(self, epoch: int) -> bool:
        return True

    def fit_after_training(self, loader, seed: int) -> None:
        """k-means (d clusters) on the stage-1 embeddings of the training items in ``loader``."""
        from sklearn.cluster import KMeans

        self.eval()
        with torch.inference_mode():
            emb = torch.cat([self.stage1_embedding(x.to(self.device)).cpu() for x, _ in loader]).double().numpy()
        km = KMeans(n_clusters=self.d, n_init=1, random_state=int(seed)).fit(emb)
        self.centroids.copy_(torch.from_numpy(km.cluster_centers_).to(self.centroids.dtype))

    def bucket_scores(self, x: torch.Tensor) -> torch.Tensor:
        e = self.stage1_embedding(x)
        return -torch.cdist(e.to(self.centroids.dtype), self.centroids).pow(2)
