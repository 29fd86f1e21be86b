"""hashbench datasets: a registry of dataset specs, their loaders and named, seeded split protocols.

A dataset knows nothing of methods or evaluation. ``get_dataset(name).load(data_root(...))`` gives an
``ArrayData``; ``spec.protocol(name).make_split(data, seed)`` gives a ``Split`` of index arrays.
Installed distributions add datasets through the entry-point group ``hashbench.datasets``.
"""

from __future__ import annotations

from hashbench.datasets.base import ArrayData, DatasetSpec, MissingDataError, Protocol, Split
from hashbench.datasets.paths import cache_dir, data_root
from hashbench.plugins import load_entry_points
from hashbench.datasets import cifar10, cifar100, digits, fashion_mnist, hf, imagefolder, listfile

__all__ = [
    "ArrayData", "DatasetSpec", "MissingDataError", "Protocol", "Split",
    "available", "get_dataset", "data_root", "cache_dir", "load_plugins", "origin", "PLUGIN_ERRORS",
]

ENTRY_POINT_GROUP = "hashbench.datasets"

_REGISTRY: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in [digits.SPEC, cifar10.SPEC, cifar100.SPEC, fashion_mnist.SPEC, *listfile.SPECS, imagefolder.SPEC]
}
#: name → "distribution version" of each dataset a plugin supplied
_ORIGIN: dict[str, str] = {}
#: entry point → one-line reason, for every dataset plugin that failed to load
PLUGIN_ERRORS: dict[str, str] = {}

#: name prefixes that bind a generic loader to a path: ``<prefix>:<path>``
_PREFIXED = {imagefolder.NAME: imagefolder.make_spec, hf.NAME: hf.make_spec}


def available() -> list[str]:
    """Registered dataset names, sorted."""
    return sorted(_REGISTRY)


def origin(name: str) -> str | None:
    """The distribution ("name version") that supplied dataset ``name`` as a plugin; None for built-ins."""
    return _ORIGIN.get(name)


def get_dataset(name: str) -> DatasetSpec:
    """The spec registered as ``name``; ``imagefolder:<path>`` gives an image-folder spec bound to
    ``<path>``, ``hf:<folder>`` a Hugging Face dataset saved on disk (see :mod:`hashbench.datasets.hf`).
    Unknown names raise ValueError("unknown dataset 'x'; valid: a, b, c")."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    prefix, _, rest = name.partition(":")
    if prefix in _PREFIXED and rest:
        return _PREFIXED[prefix](rest)
    raise ValueError(f"unknown dataset {name!r}; valid: {', '.join(available())}, "
                     f"{', '.join(p + ':<path>' for p in _PREFIXED)}")


def _register_plugin(ep, dist: str) -> None:
    obj = ep.load()
    spec = obj if isinstance(obj, DatasetSpec) else obj() if callable(obj) else None
    if not isinstance(spec, DatasetSpec):
        raise TypeError(f"{ep.value} is neither a DatasetSpec nor a callable returning one")
    if spec.name != ep.name:
        raise ValueError(f"entry point name {ep.name!r} differs from the spec's name {spec.name!r}")
    if spec.name in _REGISTRY and _REGISTRY[spec.name] is not spec:
        raise ValueError(f"dataset name {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    _ORIGIN[spec.name] = dist


def load_plugins() -> None:
    """Register the :class:`DatasetSpec` (or zero-argument factory of one) that each entry point of
    group ``hashbench.datasets`` names; its name must equal the spec's. A broken plugin is reported
    in one warning line and skipped. Safe to call again."""
    load_entry_points(ENTRY_POINT_GROUP, _register_plugin, PLUGIN_ERRORS, "dataset")


load_plugins()
