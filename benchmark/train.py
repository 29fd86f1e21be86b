"""Training with Lightning: the Trainer, validation-split model selection, and a NaN guard."""
from __future__ import annotations

import logging
import math
import random
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger

from hashbench.methods.backbones import recompute_batchnorm

VAL_METRIC = "val/map"
#: The logged validation score of an epoch the method excludes from selection (below any score).
NOT_SELECTABLE = -1.0


class DeviceUnavailableError(ValueError):
    """The requested accelerator is not available on this machine."""


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss; the run is stopped and nothing is kept."""


class NonFiniteLossGuard(Callback):
    """Stops training at the first non-finite loss returned by ``training_step``."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None and torch.is_tensor(loss) and not torch.isfinite(loss).all():
            raise NonFiniteLossError(f"non-finite loss {loss.item()} at step {trainer.global_step}")


class HeadWarmStart(Callback):
    """Harness key ``head_warmup_epochs`` = N: during the first N epochs the method's backbone is
    held (:meth:`Backbone.hold <hashbench.methods.backbones.Backbone.hold>`: its parameters out of
    training, eval mode), so the new layers train on the pretrained backbone's features; from
    epoch N on the backbone trains as configured. Re-applied at every epoch start (also after a
    resume); released at the end of training."""

    def __init__(self, epochs: int) -> None:
        self.epochs = int(epochs)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        pl_module.backbone.hold(trainer.current_epoch < self.epochs)

    def on_train_end(self, trainer, pl_module) -> None:
        pl_module.backbone.hold(False)


class RecomputeBatchNorm(Callback):
    """``batchnorm: recompute``: at every epoch's end, before validation and checkpointing, the
    method's backbone re-estimates its BatchNorm running statistics on ``loader`` (the training
    items, unaugmented, in order: :func:`~hashbench.methods.backbones.recompute_batchnorm`), so the
    validated, selected and encoded model normalises with statistics of its final weights."""

    def __init__(self, loader) -> None:
        self.loader = loader

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        recompute_batchnorm(pl_module.backbone, self.loader, pl_module.device)


class ValidationRetrieval(Callback):
    """Logs ``val/map``: mAP@all (default variant) of the validation split's codes searched
    against the training split's codes, every ``every`` epochs. Model selection uses this,
    never the queries. ``score_fn(method) -> float`` is supplied by the runner."""

    def __init__(self, score_fn: Callable[[pl.LightningModule], float], every: int = 1) -> None:
        self.score_fn, self.every = score_fn, max(1, int(every))

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        last = trainer.current_epoch + 1 >= (trainer.max_epochs or 0)
        if (trainer.current_epoch + 1) % self.every and not last:
            return
        if not pl_module.selectable_epoch(trainer.current_epoch):
            # not a candidate for selection (e.g. an earlier stage): never better than a real score
            pl_module.log(VAL_METRIC, NOT_SELECTABLE, prog_bar=True)
            return
        was_training = pl_module.training
        pl_module.eval()
        try:
            value = float(self.score_fn(pl_module))
        finally:
            pl_module.train(was_training)
        pl_module.log(VAL_METRIC, value if math.isfinite(value) else 0.0, prog_bar=True)


class EpochTimer(Callback):
    """Per training epoch: wall-clock seconds of the training batches (from the epoch's start to
    its last batch, so validation retrieval is excluded), samples seen, images per second, the
    method's stage (:meth:`HashingMethod.stage`) and the per-epoch increase of every
    cumulative counter in ``method.timers`` (e.g. the Deep Hash Table's flow-solver seconds)."""

    def __init__(self) -> None:
        self.epochs: list[dict[str, Any]] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._t0 = self._t_last = time.perf_counter()
        self._samples = 0
        self._timers0 = dict(pl_module.timers)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        self._samples += int(len(x))
        self._t_last = time.perf_counter()

    def state_dict(self) -> dict[str, Any]:
        return {"epochs": list(self.epochs)}  # a resumed run keeps the epochs timed before the kill

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epochs = list(state.get("epochs", []))

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        seconds = self._t_last - self._t0
        row: dict[str, Any] = {"epoch": int(trainer.current_epoch), "seconds": round(seconds, 4),
                               "samples": self._samples,
                               "images_per_second": round(self._samples / seconds, 2) if seconds > 0 else None}
        row["stage"] = int(pl_module.stage(trainer.current_epoch))
        for name, total in pl_module.timers.items():
            row[f"{name}_seconds"] = round(float(total) - float(self._timers0.get(name, 0.0)), 4)
        self.epochs.append(row)


class RngState(Callback):
    """Carries the random state across a resume: the checkpoint keeps the global generators
    (torch, numpy, random) and the training loader's own generators (its shuffling), so a run
    continued from its last checkpoint draws what the uninterrupted run would have drawn."""

    def __init__(self, loader) -> None:
        self.loader = loader

    def _generators(self) -> dict[str, Any]:
        """Every generator the loader draws from, each once, by where it is first found: its
        samplers and the samplers they wrap (the batched image pipeline hands a DataLoader a
        ``BatchSampler`` over a seeded ``RandomSampler`` as its ``sampler``), the DataLoader's
        own ``generator``, and the dataset's batch augmentation (``dataset.augment.gen``)."""
        found: dict[str, Any] = {}
        seen: set[int] = set()

        def visit(name: str, obj: Any, depth: int = 0) -> None:
            if obj is None or depth > 3:
                return
            if isinstance(obj, (torch.Generator, np.random.Generator)):
                if id(obj) not in seen:
                    seen.add(id(obj))
                    found[name] = obj
                return
            for attr in ("generator", "rng", "gen"):
                visit(f"{name}.{attr}", getattr(obj, attr, None), depth + 1)
            visit(f"{name}.sampler", getattr(obj, "sampler", None), depth + 1)

        for owner in ("sampler", "batch_sampler"):
            visit(owner, getattr(self.loader, owner, None))
        visit("generator", getattr(self.loader, "generator", None))
        visit("dataset.augment", getattr(getattr(self.loader, "dataset", None), "augment", None))
        return found

    def state_dict(self) -> dict[str, Any]:
        gens = {k: (g.get_state() if isinstance(g, torch.Generator) else g.bit_generator.state)
                for k, g in self._generators().items()}
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        # plain types only: Lightning loads checkpoints with torch.load(weights_only=True)
        return {"torch": torch.get_rng_state(), "numpy": [kind, keys.tolist(), pos, has_gauss, gauss],
                "random": random.getstate(), "loader": gens}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        torch.set_rng_state(state["torch"])
        kind, keys, pos, has_gauss, gauss = state["numpy"]
        np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, gauss))
        random.setstate(state["random"])
        for k, g in self._generators().items():
            if k in state["loader"]:
                if isinstance(g, torch.Generator):
                    g.set_state(state["loader"][k])
                else:
                    g.bit_generator.state = state["loader"][k]


def throughput_by_stage(epochs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per stage (``"all"`` when the method has none): epochs, samples, seconds, images per
    second (= samples / seconds over the stage's epochs) and, for every timer, its seconds and
    its share of the stage's training seconds."""
    out: dict[str, dict[str, float]] = {}
    for row in epochs:
        key = str(row.get("stage", "all"))
        agg = out.setdefault(key, {"epochs": 0, "samples": 0, "seconds": 0.0})
        agg["epochs"] += 1
        agg["samples"] += row["samples"]
        agg["seconds"] += row["seconds"]
        for k, v in row.items():
            if k.endswith("_seconds") and k != "seconds":
                agg[k] = agg.get(k, 0.0) + v
    for agg in out.values():
        secs = agg["seconds"]
        agg["images_per_second"] = round(agg["samples"] / secs, 2) if secs > 0 else float("nan")
        for k in [k for k in agg if k.endswith("_seconds")]:
            agg[k.replace("_seconds", "_share")] = round(agg[k] / secs, 4) if secs > 0 else float("nan")
        agg["seconds"] = round(secs, 4)
    return out


def accelerator_for(device: str) -> str:
    """Lightning accelerator name for ``--device auto|cpu|gpu``."""
    if device == "auto":
        return "gpu" if torch.cuda.is_available() else "cpu"
    if device == "gpu" and not torch.cuda.is_available():
        raise DeviceUnavailableError("--device gpu was requested but no CUDA device is available "
                                     "(torch.cuda.is_available() is False); use --device cpu or auto")
    return device


def set_layout(method: torch.nn.Module, channels_last: bool = False, compile: bool = False) -> None:
    """Harness keys ``channels_last`` (the method's weights in channels_last memory format; the
    batched pipeline delivers its batches so too) and ``compile`` (``torch.compile`` of the
    backbone in place, ``nn.Module.compile``, so parameter names and checkpoints are unchanged)."""
    if channels_last:
        method.to(memory_format=torch.channels_last)
    if compile and getattr(method, "backbone", None) is not None:
        method.backbone.compile()


def fit(method: pl.LightningModule, train_loader, run_path: Path, epochs: int, device: str, devices: int,
        score_fn: Callable[[pl.LightningModule], float] | None, val_every: int = 1,
        progress: bool = True, loggers: list | None = None, resume_from: Path | None = None,
        save_last: bool = False, precision: str = "32-true", head_warmup_epochs: int = 0,
        batchnorm_loader=None) -> dict[str, Any]:
    """Train ``method`` for ``epochs`` epochs; keep the checkpoint with the best validation mAP
    and load it back. Returns ``{"best_score", "best_checkpoint", "accelerator", "global_step",
    "global_rank", "world_size", "epochs", "throughput", "resumed_from_epoch"}`` (per-epoch timing from
    :class:`EpochTimer`).

    ``loggers``: Lightning loggers (default: the CSV log ``<run>/logs/``; see
    :mod:`hashbench.benchmark.loggers`). ``devices > 1`` trains with Lightning's DDP, on GPUs
    (NCCL) or on CPU processes (gloo). ``save_last`` writes ``checkpoints/last.ckpt`` after every
    epoch (with the random state, :class:`RngState`); ``resume_from`` continues from such a
    checkpoint. ``precision``: Lightning's (``32-true``; ``bf16-mixed`` autocasts the training
    steps, the weights stay float32). ``head_warmup_epochs``: :class:`HeadWarmStart` (one device only).
    ``batchnorm_loader``: :class:`RecomputeBatchNorm` on it (``batchnorm: recompute``)."""
    accelerator = accelerator_for(device)
    timer = EpochTimer()
    callbacks: list[Callback] = [NonFiniteLossGuard(), timer, RngState(train_loader)]
    if head_warmup_epochs > 0:
        if devices > 1:
            raise ValueError("head_warmup_epochs needs one device (DDP cannot change the trained parameters mid-run)")
        callbacks.append(HeadWarmStart(head_warmup_epochs))
    if batchnorm_loader is not None:  # before validation and checkpointing
        callbacks.append(RecomputeBatchNorm(batchnorm_loader))
    ckpt = last = None
    if score_fn is not None:
        callbacks.append(ValidationRetrieval(score_fn, val_every))
        ckpt = ModelCheckpoint(dirpath=run_path / "checkpoints", filename="best-{epoch}", monitor=VAL_METRIC,
                               mode="max", save_top_k=1, save_on_train_epoch_end=True, save_last=save_last)
        callbacks.append(ckpt)
    elif save_last:
        last = ModelCheckpoint(dirpath=run_path / "checkpoints", save_top_k=0, save_last=True,
                               save_on_train_epoch_end=True)
        callbacks.append(last)
    strategy: Any = "auto"
    if devices > 1:
        from pytorch_lightning.strategies import DDPStrategy

        # one process per device (also across SLURM nodes through Lightning's own environment
        # detection); on CPU the processes talk through gloo
        strategy = DDPStrategy(process_group_backend="gloo" if accelerator == "cpu" else "nccl")
    trainer = pl.Trainer(
        max_epochs=epochs, accelerator=accelerator, devices=devices, strategy=strategy,
        logger=loggers if loggers else CSVLogger(str(run_path), name="logs", version=""), callbacks=callbacks,
        enable_checkpointing=ckpt is not None or last is not None, deterministic=accelerator == "cpu",
        enable_progress_bar=progress, enable_model_summary=False, log_every_n_steps=1,
        num_sanity_val_steps=0, precision=precision,
    )
    resumed_epoch = None
    if resume_from is not None:
        try:
            resumed_epoch = int(torch.load(resume_from, map_location="cpu", weights_only=False)["epoch"])
        except Exception as err:  # noqa: BLE001  (killed while Lightning was writing it)
            logging.getLogger("hashbench").warning("%s is unreadable (%s): training starts over", resume_from, err)
            resume_from = None
    trainer.fit(method, train_dataloaders=train_loader, ckpt_path=str(resume_from) if resume_from else None)
    best = None
    if ckpt is not None and ckpt.best_model_path:
        state = torch.load(ckpt.best_model_path, map_location="cpu", weights_only=False)
        method.load_state_dict(state["state_dict"])
        best = float(ckpt.best_model_score) if ckpt.best_model_score is not None else None
    # relative to the run directory: the directory is renamed into place after training
    # (Lightning resolves its dirpath to an absolute path; a relative, '~' or symlinked run path
    # is resolved the same way before comparing)
    best_path = (str(Path(ckpt.best_model_path).resolve().relative_to(Path(run_path).expanduser().resolve()))
                 if ckpt and ckpt.best_model_path else None)
    return {"best_score": best, "best_checkpoint": best_path,
            "accelerator": accelerator, "global_step": int(trainer.global_step),
            "global_rank": int(trainer.global_rank), "world_size": int(trainer.world_size), "epochs": timer.epochs,
            "throughput": throughput_by_stage(timer.epochs), "resumed_from_epoch": resumed_epoch}


def encode_batches(method, loader, device: str = "cpu") -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Codes (``method.encode``) and embeddings (``method.embed``) of every item, in order,
    always in float32: autocast is switched off here, so codes computed inside a mixed-precision
    training loop (validation) are the same as outside it."""
    method.eval()
    method.to(device)
    codes: dict[str, list[np.ndarray]] = {}
    embs = []
    with torch.inference_mode(), torch.autocast(torch.device(device).type, enabled=False):
        for x, _ in loader:
            x = x.to(device)
            for k, v in method.encode(x).items():
                codes.setdefault(k, []).append(v.detach().cpu().numpy())
            embs.append(method.embed(x).detach().float().cpu().numpy())
    return {k: np.concatenate(v) for k, v in codes.items()}, np.concatenate(embs)
