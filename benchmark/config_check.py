"""Checking a run's configuration before any work is done.

``hashbench run`` calls :func:`check_method_config` for every method it will train, before data
loading or feature extraction, so that a typo in ``--set`` or an impossible value ends with one
``error:`` line (a :class:`ConfigError`) instead of a traceback minutes later, or, worse, a run that
silently ignores the key. Three checks, in order:

1. **keys**: an override must name a harness key (:data:`~hashbench.benchmark.config.HARNESS_KEYS`),
   a keyword parameter of the method's constructor (through its base classes), or a key of the
   method's config file (any block: ``default``, ``datasets.*``, ``variants.*``);
2. **types**: the value must have the type of the key's resolved default (YAML file or constructor
   default) or of its annotation (``float`` accepts integers; ``None`` only where the default or
   annotation allows it);
3. **ranges**: :data:`RANGES` by key name (learning rates > 0, epochs ≥ 1, dropout in [0, 1), …), then
   the method's own checks, by building it once on a tiny stand-in backbone (choices such as
   ``loss``, cross-key rules such as DRQ's stage fractions, ``sparsity`` ≤ ``bits``).
"""
from __future__ import annotations

import inspect
import math
import types
import typing
from typing import Any, Callable

import torch

from hashbench.benchmark.augment import MODES as AUGMENT_MODES
from hashbench.benchmark.config import HARNESS_KEYS, load_spec, resolve_config, split_config
from hashbench.benchmark.data import PIPELINES
from hashbench.methods.backbones import BATCHNORM_POLICIES


class ConfigError(ValueError):
    """A configuration that cannot run; the message is one line naming the key."""


#: Constructor parameters the harness supplies itself (never a ``--set`` key).
_SUPPLIED = ("self", "bits", "n_classes", "backbone", "class_vectors")

_Rule = tuple[str, Callable[[Any], bool]]
_POSITIVE: _Rule = ("> 0", lambda v: v > 0)
_NON_NEGATIVE: _Rule = (">= 0", lambda v: v >= 0)
_AT_LEAST_1: _Rule = (">= 1", lambda v: v >= 1)
_UNIT_OPEN: _Rule = ("in [0, 1)", lambda v: 0 <= v < 1)
_UNIT: _Rule = ("in [0, 1]", lambda v: 0 <= v <= 1)
_UNIT_LEFT_OPEN: _Rule = ("in (0, 1]", lambda v: 0 < v <= 1)

#: Range of a key by exact name (numbers only; ``None`` values are checked by type, not range).
RANGES: dict[str, _Rule] = {
    "lr": _POSITIVE, "epochs": _AT_LEAST_1, "batch_size": _AT_LEAST_1, "images_per_class": _AT_LEAST_1,
    "classes_per_batch": (">= 2", lambda v: v >= 2), "num_workers": _NON_NEGATIVE, "image_size": _AT_LEAST_1,
    "n_iter": _NON_NEGATIVE, "max_beam_size": _AT_LEAST_1, "levels": _AT_LEAST_1, "sparsity": _AT_LEAST_1,
    "codebook_size": (">= 2", lambda v: v >= 2), "n_steps": _AT_LEAST_1, "feature_dim": _AT_LEAST_1,
    "embed_dim": _AT_LEAST_1, "schedule_epochs": _AT_LEAST_1, "warmup_steps": _NON_NEGATIVE,
    "head_warmup_epochs": _NON_NEGATIVE,
    "dropout": _UNIT_OPEN, "momentum": _UNIT, "stage1_fraction": _UNIT_LEFT_OPEN,
    "lr_decay_rate": _UNIT_LEFT_OPEN, "lr_gamma": _UNIT_LEFT_OPEN,
    "tau": _POSITIVE, "mu": _NON_NEGATIVE, "nu": _NON_NEGATIVE, "init_std": _POSITIVE,
    "alpha": _POSITIVE, "threshold": _NON_NEGATIVE, "class_num": _POSITIVE,
    "beta_gamma": _NON_NEGATIVE, "beta_power": _NON_NEGATIVE,
}
#: Range of a key by the end of its name, when it has no exact entry.
SUFFIX_RANGES: tuple[tuple[str, _Rule], ...] = (
    ("_lr", _POSITIVE), ("_mult", _NON_NEGATIVE), ("weight_decay", _NON_NEGATIVE), ("_margin", _NON_NEGATIVE),
    ("_weight", _NON_NEGATIVE), ("_reg", _NON_NEGATIVE), ("_penalty", _NON_NEGATIVE), ("_step", _AT_LEAST_1),
    ("_steps", _AT_LEAST_1), ("_iterations", _AT_LEAST_1),
)
#: Harness keys with a fixed set of values (``map_at`` also takes an integer ≥ 1).
CHOICES: dict[str, tuple[Any, ...]] = {"sampler": ("random", "class_balanced"), "map_at": ("protocol", "all"),
                                       "augment": (False, True, *AUGMENT_MODES), "pipeline": PIPELINES,
                                       "batchnorm": BATCHNORM_POLICIES}


def _init_parameters(cls: type) -> dict[str, inspect.Parameter]:
    """Keyword parameters of the constructors of ``cls`` and its bases (nearest class first)."""
    params: dict[str, inspect.Parameter] = {}
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or klass.__module__.startswith(("torch", "pytorch_lightning", "lightning")):
            continue
        for name, p in inspect.signature(init).parameters.items():
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and name not in _SUPPLIED:
                params.setdefault(name, p)
    return params


def _file_keys(method: str) -> set[str]:
    spec = load_spec(method)
    keys = set(spec.get("default") or {})
    for section in ("datasets", "variants"):
        for block in (spec.get(section) or {}).values():
            keys |= set(block or {})
    return keys


def valid_keys(cls: type, method: str) -> list[str]:
    """Every key ``--set`` accepts for ``method``: harness keys, constructor parameters, file keys."""
    return sorted(set(HARNESS_KEYS) | set(_init_parameters(cls)) | _file_keys(method))


def _annotation_types(cls: type, key: str) -> tuple[set[type], bool] | None:
    """(allowed Python types, None allowed) from the constructor annotation of ``key``."""
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or key not in inspect.signature(init).parameters:
            continue
        try:
            hint = typing.get_type_hints(init).get(key)
        except Exception:  # noqa: BLE001 - an annotation that does not resolve: fall back to the default's type
            return None
        if hint is None:
            return None
        args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
        types_, optional = set(), False
        for a in args:
            if a is type(None):
                optional = True
            else:
                origin = typing.get_origin(a) or a
                types_.add(origin if isinstance(origin, type) else object)
        return types_, optional
    return None


def _type_name(types_: set[type]) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", dict: "a mapping"}
    return " or ".join(sorted(names.get(t, "a list" if t in (list, tuple) or issubclass(t, typing.Sequence) and t is not str
                                       else t.__name__) for t in types_))


def _matches(value: Any, types_: set[type]) -> bool:
    if object in types_:
        return True
    if isinstance(value, bool):
        return bool in types_
    if isinstance(value, int):
        return int in types_ or float in types_
    if isinstance(value, float):
        return float in types_
    if isinstance(value, str):
        return str in types_
    if isinstance(value, (list, tuple)):
        return any(t in (list, tuple) or (t is not str and issubclass(t, typing.Sequence)) for t in types_)
    if isinstance(value, dict):
        return any(issubclass(t, typing.Mapping) for t in types_)
    return False


def check_value(cls: type, method: str, key: str, value: Any, default: Any) -> None:
    """Type and range of one override; ConfigError naming ``key`` otherwise."""
    where = f"--set {key}={value!r} for {method}"
    # a key the harness supplies to the constructor (the backbone's name -> the module) is typed
    # by its configured value, not by the constructor's annotation
    annotated = None if key in _SUPPLIED else _annotation_types(cls, key)
    if annotated is not None:
        types_, optional = annotated
    elif default is not None:
        types_, optional = {type(default)}, False
    else:
        types_, optional = {object}, True
    if default is not None and not isinstance(default, bool) and isinstance(default, (int, float)):
        types_ = types_ | {type(default)}
    if default is None:
        optional = True
    if key in CHOICES:
        # same type and value: True is not the choice 1, nor 1 the choice True
        ok = any(type(value) is type(c) and value == c for c in CHOICES[key]) \
            or (key == "map_at" and type(value) is int and value >= 1)
        if not ok:
            extra = " or an integer >= 1" if key == "map_at" else ""
            names = ", ".join(str(c).lower() if isinstance(c, bool) else str(c) for c in CHOICES[key])
            raise ConfigError(f"{where}: must be one of {names}{extra}")
        return
    if value is None:
        if not optional:
            raise ConfigError(f"{where}: must be {_type_name(types_)}, not null")
        return
    if not _matches(value, types_):
        raise ConfigError(f"{where}: must be {_type_name(types_)}, got {type(value).__name__}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ConfigError(f"{where}: must be finite")
        rule = RANGES.get(key) or next((r for suffix, r in SUFFIX_RANGES if key.endswith(suffix)), None)
        if rule is not None and not rule[1](value):
            raise ConfigError(f"{where}: must be {rule[0]}")


def _dry_build(cls: type, method: str, bits: int, kwargs: dict[str, Any]) -> None:
    """Construct the method once on a tiny stand-in backbone so its own checks run now."""
    from hashbench.methods.backbones import build_backbone

    with torch.random.fork_rng(devices=[]):
        try:
            cls(bits=bits, n_classes=2, backbone=build_backbone("identity", in_dim=8), **kwargs)
        except (ValueError, TypeError) as err:
            raise ConfigError(f"{method}: {err}".replace(f"{method}: {method}: ", f"{method}: ")) from None


def check_method_config(cls: type, method: str, dataset: str, variant: str | None,
                        overrides: dict[str, Any], bits: list[int]) -> None:
    """Every check above for one method; ConfigError with a one-line message on the first problem.

    ``overrides`` are the parsed ``--set`` pairs that apply to this method; ``bits`` the code
    lengths it will be trained at (the constructor is tried at each)."""
    keys = valid_keys(cls, method)
    unknown = [k for k in overrides if k not in keys]
    if unknown:
        raise ConfigError(f"unknown --set key {unknown[0]!r} for {method} (scope a key to the methods that take it "
                          f"with METHOD.{unknown[0]}=…); valid keys: {', '.join(keys)}")
    base = resolve_config(method, dataset, variant, None)
    params = _init_parameters(cls)
    for key, value in overrides.items():
        default = base.get(key)
        if default is None and key in params and params[key].default is not inspect.Parameter.empty:
            default = params[key].default
        check_value(cls, method, key, value, default)
    if not cls.requires_training:
        return
    _, kwargs = split_config(resolve_config(method, dataset, variant, overrides))
    from hashbench.methods.base import UnsupportedBitsError

    for b in bits:
        try:
            cls.check_bits(b, **kwargs)
        except UnsupportedBitsError:
            continue  # the caller skips (--method all) or reports this length
        _dry_build(cls, method, b, kwargs)
