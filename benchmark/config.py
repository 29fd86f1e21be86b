"""Resolving a method's hyperparameters: YAML defaults ← dataset ← variant ← command line.

``methods/configs/<method>.yaml`` has the sections ``default``, ``datasets: {<name>: ...}`` and
``variants: {<name>: ...}``, and optionally ``base: <method>`` to extend another method's file.
Keys in :data:`HARNESS_KEYS` drive the harness (training length,
data pipeline); every other key is passed to the method's constructor.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

CONFIG_DIR = Path(__file__).resolve().parent.parent / "methods" / "configs"

#: Keys the harness consumes itself, with their defaults.
HARNESS_KEYS: dict[str, Any] = {
    "epochs": 10,
    "batch_size": 64,
    "backbone": None,       # None: the dataset's default feature backbone (see benchmark.data)
    "frozen": True,         # frozen-feature mode: backbone features computed once, cached, head trained
    "pretrained": True,
    "batchnorm": "auto",    # fine-tuned backbone's BatchNorm: auto | train | frozen | frozen_stats | recompute (Backbone.set_batchnorm)
    "head_warmup_epochs": 0,  # fine-tuning: backbone held (new layers on its frozen features) for the first epochs
    "image_size": None,     # None: the backbone's own input size
    "augment": False,       # false | true (= crop) | crop | resized_crop (benchmark.augment)
    "pipeline": "batched",  # batched (device-side, whole batches) | per_item (DataLoader items; benchmark.data)
    "num_workers": 0,       # DataLoader workers of the per_item pipeline
    "precision": "32-true", # Lightning Trainer precision, e.g. bf16-mixed (GPU fine-tuning)
    "channels_last": False, # backbone weights and image batches in channels_last memory format
    "compile": False,       # torch.compile the backbone (nn.Module.compile) before training
    "sampler": "random",    # random | class_balanced
    "classes_per_batch": None,
    "images_per_class": 2,
    "map_at": "protocol",   # mAP cutoff R: "protocol" (the protocol's standard R), "all", or an int
}


def parse_value(text: str) -> Any:
    """A command-line value parsed as YAML (true, [1,2], null), with numbers in any Python
    float spelling (YAML 1.1 reads ``1e-3`` as a string; here it is 0.001)."""
    value = yaml.safe_load(text)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``["a=1", "b=x"]`` → ``{"a": 1, "b": "x"}``; ValueError on an item without '='."""
    out = {}
    for item in pairs:
        if "=" not in item:
            raise ValueError(f"--set expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = parse_value(value)
    return out


@dataclass(frozen=True)
class ScopedOverrides:
    """``--set`` pairs split by scope: ``common`` apply to every method, ``per_method[m]`` to
    method ``m`` only (written ``m.key=value``) and win over common ones."""

    common: dict[str, Any] = field(default_factory=dict)
    per_method: dict[str, dict[str, Any]] = field(default_factory=dict)

    def for_method(self, method: str) -> dict[str, Any]:
        """The overrides that apply to ``method``."""
        return {**self.common, **self.per_method.get(method, {})}

    def scopes(self) -> list[str]:
        """Methods named by a ``method.key`` prefix."""
        return sorted(self.per_method)


def scoped_overrides(pairs: list[str], method_names: list[str]) -> ScopedOverrides:
    """``["epochs=1", "hashnet.lr=0.01"]`` → common ``{"epochs": 1}``, hashnet ``{"lr": 0.01}``:
    a prefix before the first dot that names a method in ``method_names`` scopes the pair to it."""
    known = set(method_names)
    out = ScopedOverrides()
    for key, value in parse_overrides(pairs).items():
        head, _, rest = key.partition(".")
        if rest and head in known:
            out.per_method.setdefault(head, {})[rest] = value
        else:
            out.common[key] = value
    return out


def method_config_file(method: str) -> Path:
    """``methods/configs/<method>.yaml`` for a built-in method; for a plugin method without one,
    the file its class names in ``config_file`` (see :func:`hashbench.methods.config_file`)."""
    path = CONFIG_DIR / f"{method}.yaml"
    if not path.exists():
        from hashbench.methods import config_file

        return config_file(method) or path
    return path


def load_spec(method: str) -> dict[str, Any]:
    """The parsed config file of ``method`` ({} when it has none). A file with ``base: <method>``
    extends that method's file: its ``default``, ``datasets.<name>`` and ``variants.<name>``
    blocks are updated key by key with this file's."""
    path = method_config_file(method)
    spec = (yaml.safe_load(path.read_text()) if path.exists() else {}) or {}
    if not spec.get("base"):
        return spec
    merged = load_spec(spec["base"])
    merged["default"] = {**(merged.get("default") or {}), **(spec.get("default") or {})}
    for section in ("datasets", "variants"):
        blocks = {k: dict(v or {}) for k, v in (merged.get(section) or {}).items()}
        for name, block in (spec.get(section) or {}).items():
            blocks[name] = {**blocks.get(name, {}), **(block or {})}
        merged[section] = blocks
    return merged


def resolve_config(method: str, dataset: str, variant: str | None = None,
                   overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The method's resolved hyperparameters for ``dataset`` (harness keys included).

    Order of precedence, lowest first: :data:`HARNESS_KEYS`, the file's ``default``, its
    ``datasets[dataset]``, its ``variants[variant]``, then ``overrides``. An unknown variant is a
    ValueError listing the valid ones.
    """
    spec = load_spec(method)
    cfg = copy.deepcopy(HARNESS_KEYS)
    cfg.update(spec.get("default") or {})
    cfg.update((spec.get("datasets") or {}).get(dataset) or {})
    if variant:
        variants = spec.get("variants") or {}
        if variant not in variants:
            raise ValueError(f"unknown variant {variant!r} for {method}; valid: {', '.join(sorted(variants)) or '(none)'}")
        cfg.update(variants[variant] or {})
    cfg.update(overrides or {})
    return cfg


def run_config(method: str, dataset: str, variant: str | None = None, overrides: dict[str, Any] | None = None,
               epochs: int | None = None, backbone: str | None = None) -> dict[str, Any]:
    """The config one run trains with: :func:`resolve_config` with the request's ``--epochs`` and
    ``--backbone`` applied (its hash is part of the run's identity)."""
    cfg = resolve_config(method, dataset, variant, overrides)
    if epochs is not None:
        cfg["epochs"] = int(epochs)
    if backbone is not None:
        cfg["backbone"] = backbone
    return cfg


def split_config(cfg: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(harness settings, method constructor kwargs)."""
    harness = {k: cfg[k] for k in HARNESS_KEYS if k in cfg}
    method = {k: v for k, v in cfg.items() if k not in HARNESS_KEYS}
    return harness, method
