"""Observables of the configuration wiring test (``tests/test_config_wiring.py``, issue 24).

Each function here builds a tiny method from a resolved configuration (digits-sized inputs, a
64 → 16 linear + BatchNorm backbone, few bits) and reads back one *observable* — what a
configuration key may change: the flow solver's arguments (a spy on the call), the loss on a
fixed batch, the optimiser's parameter groups and rates, the schedule at named iterations, the
code layout, the network's shapes, or what the harness hands the Trainer, the loader and the
backbone builder (:func:`harness_probe`). The test changes one key at a time and checks that
exactly the observables its row names change. Nothing here asserts; it only measures.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np
import torch
import yaml
from torch import nn

from hashbench.benchmark import config as config_mod
from hashbench.methods import get_method
from hashbench.methods.backbones import Backbone, InputSpec

#: the Trainer the schedules read: 8 epochs of 25 optimiser steps (200 steps in all)
EPOCHS, STEPS_PER_EPOCH = 8, 25
#: iterations at which every schedule (lr factors, HashNet's β) is read
NAMED_STEPS = (0, 1, 3, 4, 9, 10, 19, 20, 39, 40, 80, 100, 150, 199, 200, 1000, 5000)
#: the tiny batch: 4 classes × 4 items of 64 values (digits-sized)
N_CLASSES, PER_CLASS, IN_DIM = 4, 4, 64
#: code lengths of the tiny models, per method
BITS = {"hashnet": 16, "dht": 8, "dht-th": 8, "dht-vq": 8, "cascade-dht": 4, "drq": 16, "itq": 8, "rq": 16}


# --------------------------------------------------------------------------- the YAML
def config_methods() -> list[str]:
    """Every method with a shipped ``methods/configs/<name>.yaml``."""
    return sorted(p.stem for p in config_mod.CONFIG_DIR.glob("*.yaml"))


def yaml_keys(method: str) -> set[str]:
    """Every key of the method's shipped configuration (its ``base`` file's included): the
    ``default`` block and every ``datasets.*`` and ``variants.*`` block."""
    spec = config_mod.load_spec(method)
    keys = set(spec.get("default") or {})
    for section in ("datasets", "variants"):
        for block in (spec.get(section) or {}).values():
            keys |= set(block or {})
    return keys


def raw_yaml_keys(method: str) -> set[str]:
    """The keys written in the method's own file (without its base), for messages."""
    spec = yaml.safe_load(config_mod.method_config_file(method).read_text()) or {}
    keys = set(spec.get("default") or {})
    for section in ("datasets", "variants"):
        for block in (spec.get(section) or {}).values():
            keys |= set(block or {})
    return keys


# --------------------------------------------------------------------------- tiny inputs
def tiny_backbone() -> Backbone:
    """64 → 16 linear + BatchNorm1d: a backbone with weights, biases and normalisation scales."""
    body = nn.Sequential(nn.Linear(IN_DIM, 16), nn.BatchNorm1d(16))
    return Backbone("tiny", body, 16, InputSpec(None, 1, (0.0,), (1.0,)))


def tiny_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """(x (16, 64), one-hot labels (16, 4)): 4 classes × 4 items, fixed values."""
    g = torch.Generator().manual_seed(1234)
    ids = torch.arange(N_CLASSES).repeat_interleave(PER_CLASS)
    centres = torch.randn(N_CLASSES, IN_DIM, generator=g) * 2
    x = centres[ids] + torch.randn(len(ids), IN_DIM, generator=g)
    return x, nn.functional.one_hot(ids, N_CLASSES).float()


def fake_trainer() -> SimpleNamespace:
    """What the schedules read of a Trainer: ``max_epochs`` and ``estimated_stepping_batches``."""
    return SimpleNamespace(max_epochs=EPOCHS, estimated_stepping_batches=EPOCHS * STEPS_PER_EPOCH)


def resolved(method: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """The method's digits configuration with ``overrides`` (the ``--set`` layer)."""
    return config_mod.resolve_config(method, "digits", None, overrides)


def build(method: str, overrides: dict[str, Any], bits: int | None = None):
    """The method built from its resolved digits config on the tiny backbone (seed 0), its
    Trainer faked (:func:`fake_trainer`)."""
    _, hparams = config_mod.split_config(resolved(method, overrides))
    torch.manual_seed(0)
    model = get_method(method)(bits=bits or BITS[method], n_classes=N_CLASSES, backbone=tiny_backbone(), **hparams)
    model._trainer = fake_trainer()
    return model.eval()


# --------------------------------------------------------------------------- shared observables
def network(model: nn.Module) -> list[tuple]:
    """(module name, type, own parameter/buffer shapes, dropout p) of every module."""
    out = []
    for name, mod in model.named_modules():
        shapes = tuple((n, tuple(t.shape)) for n, t in [*mod.named_parameters(recurse=False),
                                                         *mod.named_buffers(recurse=False)])
        out.append((name, type(mod).__name__, shapes, getattr(mod, "p", None)))
    return out


def layout(model, x: torch.Tensor) -> dict[str, Any]:
    """The code layout: each encoded array's shape and dtype, the evaluated code lengths, the
    shared arrays' shapes."""
    with torch.no_grad():
        codes = model.encode(x)
    return {"codes": {k: (tuple(v.shape), str(v.dtype)) for k, v in codes.items()},
            "lengths": model.evaluation_lengths(),
            "state": {k: v.shape for k, v in model.code_state().items()}}


def optimiser_record(opt: torch.optim.Optimizer) -> dict[str, Any]:
    """An optimiser's class, its hyperparameters and every group's name, base lr (before a
    scheduler's first factor), decay and size."""
    keep = ("momentum", "nesterov", "betas", "alpha", "eps", "dampening")
    groups = [(g.get("name"), float(g.get("initial_lr", g["lr"])), float(g["weight_decay"]), len(g["params"]),
               sum(p.numel() for p in g["params"]), {k: g[k] for k in keep if k in g}) for g in opt.param_groups]
    return {"class": type(opt).__name__, "groups": groups}


def lambda_factors(scheduler, steps=NAMED_STEPS) -> list[float]:
    """A ``LambdaLR``'s multiplier of each group at the named steps."""
    return [[float(f(t)) for f in scheduler.lr_lambdas] for t in steps]


def values(x) -> Any:
    """Tensors → nested Python floats (exact), for comparison and messages."""
    if torch.is_tensor(x):
        return x.detach().double().tolist()
    if isinstance(x, dict):
        return {k: values(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [values(v) for v in x]
    return x


# --------------------------------------------------------------------------- HashNet
def hashnet_codes(bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed relaxed codes h = tanh(3·N(0, 1)) (16, bits) and the tiny batch's labels."""
    g = torch.Generator().manual_seed(7)
    return torch.tanh(3 * torch.randn(N_CLASSES * PER_CLASS, bits, generator=g)), tiny_batch()[1]


def hashnet_observables(model) -> dict[str, Any]:
    """HashNet: network, layout, optimiser groups, lr factors and β at the named steps and
    epochs, and the loss and its gradient on fixed relaxed codes h (16 × 16, |h| ≈ 0.9)."""
    x, y = tiny_batch()
    opt = model.configure_optimizers()
    h = hashnet_codes(model.bits)[0].requires_grad_(True)
    model.on_training_data(y.numpy())
    torch.manual_seed(3)                      # the two-stream permutation
    loss = model.loss_on(h, y)
    loss.backward()
    loss = loss.detach()
    return {"network": network(model), "layout": layout(model, x),
            "optim": optimiser_record(opt["optimizer"]),
            "schedule": lambda_factors(opt["lr_scheduler"]["scheduler"]),
            "beta": [model.beta_at(t, e) for t in NAMED_STEPS for e in (0, 19, 20, 45)],
            "loss": float(loss), "grad": values(h.grad)}


# --------------------------------------------------------------------------- Deep Hash Tables
@dataclass
class SolverSpy:
    """Records every call of ``solve_class_codes`` (its scalar arguments) and passes it on."""

    real: Callable
    calls: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, unaries, s, lam, groups=None, lam_group=0.0, **kw):
        self.calls.append({"n_classes": len(unaries), "width": unaries.shape[1], "s": int(s), "lam": float(lam),
                           "grouped": groups is not None, "lam_group": float(lam_group)})
        return self.real(unaries, s, lam, groups=groups, lam_group=lam_group, **kw)


@contextlib.contextmanager
def solver_spy():
    """Replace the flow solver where the Deep Hash Tables call it; yields the :class:`SolverSpy`."""
    from hashbench.methods import cascade_dht, dht, min_cost_flow

    spy = SolverSpy(min_cost_flow.solve_class_codes)
    saved = dht.solve_class_codes, cascade_dht.solve_class_codes
    dht.solve_class_codes = cascade_dht.solve_class_codes = spy
    try:
        yield spy
    finally:
        dht.solve_class_codes, cascade_dht.solve_class_codes = saved


def dht_observables(model) -> dict[str, Any]:
    """The Deep Hash Tables: network, layout, both stages' optimiser groups and lr factors at
    the named steps, the stage of each epoch, the stage-1 loss, and one stage-2 step on the tiny
    batch: the solver's arguments, the codes and labels the masked loss receives, its value, the
    forward passes it took; the re-ranking embedding."""
    x, y = tiny_batch()
    class_ids = y.argmax(1)
    opts, scheds = model.configure_optimizers()
    seen, passes = {}, [0]
    real_masked, real_hash = model.masked_loss, model.hash_output

    def masked(f, cids, labels, codes):
        seen.update(labels=values(labels), codes=values(codes))
        return real_masked(f, cids, labels, codes)

    def hash_output(inp):
        passes[0] += 1
        return real_hash(inp)

    model.masked_loss, model.hash_output = masked, hash_output
    with torch.no_grad(), solver_spy() as spy:
        loss1 = float(model.metric_loss(x, class_ids))
        loss2 = float(model.hash_loss(x, class_ids))
        n_passes = passes[0]
        embedding = model.embed(x)
    del model.masked_loss, model.hash_output
    return {"network": network(model), "layout": layout(model, x),
            "optim1": optimiser_record(opts[0]), "optim2": optimiser_record(opts[1]),
            "schedule1": lambda_factors(scheds[0]), "schedule2": lambda_factors(scheds[1]),
            "stages": [(model.stage(e), model.selectable_epoch(e)) for e in range(EPOCHS)],
            "loss1": loss1, "loss2": loss2, "solver": spy.calls, "codes": seen["codes"],
            "labels": seen["labels"], "passes": n_passes,
            "embed": (tuple(embedding.shape), values(embedding), model.reranks)}


# --------------------------------------------------------------------------- DRQ
def drq_observables(model) -> dict[str, Any]:
    """DRQ: network, initial codebook and scales, layout, the three optimisers' groups, the lr
    factors at the named steps, the stage and selectability of each epoch, every stage's loss
    parts on the tiny batch (1, 2, 3 stage A, 3 stage B) and the gradient of the stage-2 loss
    with respect to the quantised feature."""
    x, y = tiny_batch()
    opts, scheds = model.configure_optimizers()
    with torch.no_grad():
        feats, z9 = model.features(x)
    losses = {}
    for tag, stage, full in (("1", 1, False), ("2", 2, False), ("3A", 3, False), ("3B", 3, True)):
        with torch.no_grad():
            loss, logs = model.training_loss(feats, z9, y, stage, full)
        losses[tag] = {"loss": float(loss), **{k: float(v) for k, v in logs.items()}}
    leaf = feats.clone().requires_grad_(True)
    model.training_loss(leaf, z9, y, 2, False)[0].backward()
    return {"network": network(model), "layout": layout(model, x),
            "init": (float(model.codebook.detach().std()), values(model.step_scales)),
            "optim": [optimiser_record(o) for o in opts],
            "schedule": [lambda_factors(s["scheduler"]) for s in scheds],
            "stages": [(model.stage(e), model.selectable_epoch(e)) for e in range(EPOCHS)],
            "loss": losses, "grad": values(leaf.grad)}


# --------------------------------------------------------------------------- closed form
def closed_form_observables(model) -> dict[str, Any]:
    """ITQ / RQ: fitted on 300 fixed 16-d features (seed 0): the codes of 50 of them, the
    layout, and the fitted parameters (ITQ's rotation, RQ's codebooks)."""
    g = np.random.default_rng(5)
    feats = (g.standard_normal((300, 16)) * np.linspace(3, 0.5, 16)).astype(np.float32)
    labels = np.eye(N_CLASSES)[g.integers(0, N_CLASSES, 300)]
    model.fit_closed_form(feats, labels, seed=0)
    x = torch.from_numpy(feats[:50])
    fitted = getattr(model, "rotation", None)
    fitted = fitted if fitted is not None else model.code_state()["codebooks"]
    return {"layout": layout(model, x), "codes": values(model.encode(x)),
            "fitted": np.asarray(fitted).round(6).tolist()}


OBSERVABLES = {"hashnet": hashnet_observables, "dht": dht_observables, "dht-th": dht_observables,
               "dht-vq": dht_observables, "cascade-dht": dht_observables, "drq": drq_observables,
               "itq": closed_form_observables, "rq": closed_form_observables}


def method_observables(method: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """Every observable of ``method`` built with its digits config and ``overrides``."""
    return OBSERVABLES[method](build(method, overrides))


# --------------------------------------------------------------------------- the harness
class StopProbe(Exception):
    """Raised by the probe's stand-ins once what the harness hands on is recorded."""


@contextlib.contextmanager
def _patched(obj, name: str, wrapper_of: Callable[[Callable], Callable]):
    real = getattr(obj, name)
    setattr(obj, name, wrapper_of(real))
    try:
        yield
    finally:
        setattr(obj, name, real)


def _dataset_record(ds) -> tuple:
    """What a loader's dataset is: its class, its augmentation mode and memory format."""
    aug = getattr(ds, "augment", None)
    aug = getattr(aug, "mode", aug)
    return (type(ds).__name__, aug, getattr(ds, "channels_last", None))


def first_batch(loader) -> tuple[int, int, tuple]:
    """(items, distinct classes, one item's shape) of a training loader's first batch."""
    xb, yb = next(iter(loader))
    return len(yb), int((yb.sum(0) > 0).sum()), tuple(xb.shape[1:])


def harness_probe(method: str, overrides: dict[str, Any], loaded, out_dir, until: str = "fit") -> dict[str, Any]:
    """Run ``benchmark.runner``'s real run of ``method`` on digits (``loaded``) with
    ``overrides``, the tiny way: everything up to the Trainer runs (configuration resolution,
    backbone builds, BatchNorm policy, data pipeline, loaders, layout), then ``fit`` is replaced
    by a recorder that stops the run (``until="fit"``) or returns an untrained model whose codes
    the run encodes until it computes the mAP cutoff (``until="map"``). Returns what reached
    ``build_backbone``, ``Backbone.set_batchnorm``, ``make_loader`` (its arguments, the loader's
    workers, the training loader's first batch), ``set_layout``, ``fit`` and the mAP cutoff."""
    from hashbench.benchmark import runner

    rec: dict[str, Any] = {"build": [], "loaders": []}

    def on_build(real):
        def build_backbone(name, **kw):
            rec["build"].append((name, kw.get("pretrained"), kw.get("image_size")))
            return real(name, **kw)
        return build_backbone

    def on_batchnorm(real):
        def set_batchnorm(self, policy):
            rec["batchnorm"] = (policy, real(self, policy))
            return rec["batchnorm"][1]
        return set_batchnorm

    def on_loader(real):
        def make_loader(x, labels, batch_size, shuffle, seed, sampler="random", classes_per_batch=None,
                        images_per_class=2, num_workers=0):
            loader = real(x, labels, batch_size, shuffle, seed, sampler, classes_per_batch, images_per_class, num_workers)
            rec["loaders"].append((_dataset_record(x), batch_size, shuffle, sampler, classes_per_batch,
                                   images_per_class, num_workers, loader.num_workers))
            if shuffle:
                rec["train_batch"] = first_batch(loader)
            return loader
        return make_loader

    def on_layout(real):
        def set_layout(m, channels_last=False, compile=False):
            rec["layout"] = (channels_last, compile)
        return set_layout

    def on_fit(real):
        def fit(m, loader, run_path, epochs, device, devices, score_fn=None, **kw):
            rec["loaders_at_fit"] = len(rec["loaders"])
            rec["fit"] = {"epochs": epochs, "precision": kw.get("precision"),
                          "head_warmup_epochs": kw.get("head_warmup_epochs"),
                          "batchnorm_loader": kw.get("batchnorm_loader") is not None,
                          "method_backbone": (m.backbone.name, m.backbone.out_dim)}
            if until == "fit":
                raise StopProbe
            return {"global_rank": 0, "global_step": 0}
        return fit

    def on_cutoff(real):
        def map_cutoff(setting, protocol, n_db):
            rec["map_at"] = (setting, real(setting, protocol, n_db))
            raise StopProbe
        return map_cutoff

    req = runner.RunRequest(method=method, dataset="digits", bits=BITS[method], overrides=dict(overrides),
                            out_dir=out_dir, speed=False, device="cpu")
    with contextlib.ExitStack() as stack:
        for obj, name, wrap in ((runner, "build_backbone", on_build), (Backbone, "set_batchnorm", on_batchnorm),
                                (runner.data_mod, "make_loader", on_loader), (runner, "set_layout", on_layout),
                                (runner, "fit", on_fit), (runner, "_map_cutoff", on_cutoff)):
            stack.enter_context(_patched(obj, name, wrap))
        try:
            runner._run(req, loaded, None)
        except StopProbe:
            pass
    return rec
