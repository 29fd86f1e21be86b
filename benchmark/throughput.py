"""Training throughput: images per second of the bare backbone and of each method's training
step, per stage, through the harness's own data pipeline — and the ratio, the hashing overhead.

The bare backbone is the same network with a linear classifier and cross-entropy (forward +
backward + SGD step), fed the same batches by the same pipeline. Every measurement runs the
Lightning Trainer for one epoch per stage of ``steps`` batches (DRQ: three stages, the Deep Hash
Table and its cascade: two, stage 2 including the CPU min-cost-flow solver); the rate counts the
batches after the first ``warmup`` of each epoch, timed with the device synchronised at both ends
of that window. Methods report their timers (the flow solver's seconds) over the same window.
On a shared CPU the wall clock follows the other processes' load; the window's CPU time of this
process (``time.process_time``: every thread, the solver included) does not, so with one
intra-op thread ``images_per_cpu_second`` and ``overhead_cpu`` are the comparable numbers there.
"""
from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from torch import nn

from hashbench import methods as method_registry
from hashbench.benchmark import data as data_mod
from hashbench.benchmark.config import resolve_config, split_config
from hashbench.benchmark.train import accelerator_for, set_layout
from hashbench.methods.backbones import build_backbone

#: overrides that give a method one Trainer epoch per training stage
STAGE_EPOCHS: dict[str, tuple[int, dict[str, Any]]] = {
    "drq": (3, {"stage_fractions": [0.34, 0.67]}),
    "dht": (2, {"stage1_fraction": 0.5}),
    "cascade-dht": (2, {"stage1_fraction": 0.5}),
}


class BareBackbone(pl.LightningModule):
    """The reference step: backbone → linear classifier, cross-entropy, SGD (momentum 0.9). It
    answers the part of the method interface the timers read (:class:`HashingMethod`'s ``timers``
    and ``stage``): no counters, one stage."""

    def __init__(self, backbone: nn.Module, n_classes: int, lr: float = 1e-3) -> None:
        super().__init__()
        self.backbone, self.lr = backbone, lr
        self.classifier = nn.Linear(backbone.out_dim, n_classes)
        self.timers: dict[str, float] = {}

    def stage(self, epoch: int) -> int:
        return 1

    def training_step(self, batch, batch_idx: int):
        x, y = batch
        return nn.functional.cross_entropy(self.classifier(self.backbone(x)), y.argmax(1))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)


class WindowTimer(Callback):
    """Per epoch: images and seconds of the batches after the first ``warmup``, and the growth
    of every ``method.timers`` counter over the same window (CUDA synchronised at its ends)."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.epochs = int(warmup), []

    def _now(self, pl_module) -> tuple[float, float]:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        return time.perf_counter(), time.process_time()

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._t0, self._samples, self._timers0, self._steps = None, 0, {}, []
        self._last = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = time.perf_counter()
        if self._t0 is not None:
            self._steps.append((now - self._last, len(batch[0])))
        self._last = now
        if batch_idx + 1 == self.warmup or (self.warmup == 0 and self._t0 is None):
            self._t0 = self._now(pl_module)
            self._timers0 = dict(pl_module.timers)
            return
        if self._t0 is not None:
            self._samples += len(batch[0])
            self._t1 = self._now(pl_module)
            self._timers1 = dict(pl_module.timers)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        seconds, cpu_seconds = self._t1[0] - self._t0[0], self._t1[1] - self._t0[1]
        # the median step: robust to a shared machine's load bursts (unsynchronised on CUDA, where
        # only the window's total is exact)
        step, size = (float(np.median([s for s, _ in self._steps])), float(np.median([n for _, n in self._steps]))) \
            if self._steps else (float("nan"), 0.0)
        row = {"epoch": int(trainer.current_epoch), "images": self._samples, "seconds": seconds,
               "cpu_seconds": cpu_seconds,
               "median_images_per_second": size / step if step > 0 else float("nan"),
               "stage": int(pl_module.stage(trainer.current_epoch))}
        for k, v in self._timers1.items():
            row[f"{k}_share"] = (float(v) - float(self._timers0.get(k, 0.0))) / seconds
        self.epochs.append(row)


@dataclass
class Setup:
    """What every measurement of one comparison shares."""

    backbone: str = "efficientnet-lite0"
    image_size: int = 160
    batch: int = 32
    steps: int = 100
    warmup: int = 5
    device: str = "cpu"
    pipeline: str = "batched"
    num_workers: int = 0
    precision: str = "32-true"
    channels_last: bool = False
    compile: bool = False
    augment: Any = "crop"
    seed: int = 0


def _harness(setup: Setup) -> dict[str, Any]:
    return {"pipeline": setup.pipeline, "augment": setup.augment, "channels_last": setup.channels_last}


def measure(method: str, data, setup: Setup, dataset: str = "cifar10", variant: str | None = "finetune",
            pretrained: bool = True) -> list[dict[str, Any]]:
    """Rows (one per stage) of images/s of ``method``'s training step (``"bare"``: the bare
    backbone), fine-tuned as in its ``variant`` config with ``setup``'s backbone, side, batch,
    pipeline and precision, on ``steps`` batches drawn from the first items of a seeded
    permutation of ``data``."""
    pl.seed_everything(setup.seed, workers=True, verbose=False)
    backbone = build_backbone(setup.backbone, pretrained=pretrained, image_size=setup.image_size,
                              in_channels=data_mod.in_channels_of(data))
    n_classes = data.labels.shape[1]
    epochs, sampler, cpb, ipc = 1, "random", None, 2
    if method == "bare":
        model: pl.LightningModule = BareBackbone(backbone, n_classes)
    else:
        cls = method_registry.get_method(method)
        epochs, extra = STAGE_EPOCHS.get(method, (1, {}))
        cfg = resolve_config(method, dataset, variant, {**extra, "epochs": epochs})
        harness, hparams = split_config(cfg)
        sampler, cpb = harness["sampler"], harness["classes_per_batch"] or n_classes
        ipc = max(1, setup.batch // cpb) if sampler == "class_balanced" else 2
        bits = 16 if cls.code_type == "sparse" else 32
        model = cls(bits=bits, n_classes=n_classes, backbone=backbone, **hparams)
    n = setup.steps * (cpb * ipc if sampler == "class_balanced" else setup.batch)
    idx = np.random.default_rng(setup.seed).permutation(len(data.labels))[:n]
    if method != "bare":
        model.on_training_data(data.labels[idx])
    device = "cuda" if accelerator_for(setup.device) == "gpu" else "cpu"
    items = data_mod.image_items(dataset, data, backbone.input_spec, _harness(setup), setup.seed, device)
    loader = data_mod.make_loader(items(idx, aug=setup.augment), data.labels[idx], setup.batch, True, setup.seed,
                                  sampler, cpb, ipc, setup.num_workers)
    set_layout(model, setup.channels_last, setup.compile)
    timer = WindowTimer(setup.warmup)
    with tempfile.TemporaryDirectory(prefix="hashbench-throughput-") as tmp:
        trainer = pl.Trainer(max_epochs=epochs, accelerator=accelerator_for(setup.device), devices=1,
                             precision=setup.precision, logger=False, enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                             callbacks=[timer], default_root_dir=tmp)
        trainer.fit(model, train_dataloaders=loader)
    rows = []
    for r in timer.epochs:
        row = {"method": method, "stage": r["stage"], "images": r["images"], "seconds": round(r["seconds"], 3),
               "images_per_second": round(r["images"] / r["seconds"], 2) if r["seconds"] > 0 else float("nan"),
               "median_images_per_second": round(r["median_images_per_second"], 2),
               "images_per_cpu_second": round(r["images"] / r["cpu_seconds"], 2) if r["cpu_seconds"] > 0 else float("nan")}
        row.update({k: round(v, 4) for k, v in r.items() if k.endswith("_share")})
        rows.append(row)
    return rows


def loader_rate(data, setup: Setup, dataset: str = "cifar10") -> dict[str, Any]:
    """The input pipeline alone (``method`` ``"loader"``): images/s and images per CPU-second of
    drawing ``steps`` training batches (gather, augmentation, resize, normalisation, on the
    device) after ``warmup`` batches, without any training step."""
    spec = build_backbone(setup.backbone, pretrained=False, image_size=setup.image_size,
                          in_channels=data_mod.in_channels_of(data)).input_spec
    device = "cuda" if accelerator_for(setup.device) == "gpu" else "cpu"
    idx = np.random.default_rng(setup.seed).permutation(len(data.labels))[:setup.steps * setup.batch]
    items = data_mod.image_items(dataset, data, spec, _harness(setup), setup.seed, device)
    loader = data_mod.make_loader(items(idx, aug=setup.augment), data.labels[idx], setup.batch, True, setup.seed,
                                  num_workers=setup.num_workers)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    images = 0
    for i, (x, _) in enumerate(loader):
        x = x.to(device, non_blocking=True)
        if i + 1 == setup.warmup:
            sync()
            t0, c0 = time.perf_counter(), time.process_time()
        elif i + 1 > setup.warmup:
            images += len(x)
    sync()
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"method": "loader", "stage": 0, "images": images, "seconds": round(seconds, 3),
            "images_per_second": round(images / seconds, 2), "median_images_per_second": float("nan"),
            "images_per_cpu_second": round(images / cpu, 2) if cpu > 0 else float("nan")}


def overhead(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` with ``overhead``: the bare backbone's images/s over each row's (1.0 = none), of
    the window's mean, (``overhead_median``) of the median step and (``overhead_cpu``) of the
    process's CPU time."""
    bare = [r for r in rows if r["method"] == "bare"]
    for r in rows:
        for rate, name in (("images_per_second", "overhead"), ("median_images_per_second", "overhead_median"),
                           ("images_per_cpu_second", "overhead_cpu")):
            r[name] = round(bare[0][rate] / r[rate], 3) if bare and r[rate] > 0 else float("nan")
    return rows
