"""hashbench datasets: a registry of dataset specs, their loaders and named, seeded split protocols.

A dataset knows nothing of methods or evaluation. ``get_dataset(name).load(data_root(...))`` gives an
``ArrayData``; ``spec.protocol(name).make_split(data, seed)`` gives a ``Split`` of index arrays.
"""

from __future__ import annotations

from hashbench.datasets.base import ArrayData, DatasetSpec, MissingDataError, Protocol, Split
from hashbench.datasets.paths import cache_dir, data_root
from hashbench.datasets import cifar10, cifar100, digits, fashion_mnist, imagefolder, listfile

__all__ = [
    "ArrayData", "DatasetSpec", "MissingDataError", "Protocol", "Split",
    "available", "get_dataset", "data_root", "cache_dir",
]

_REGISTRY: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in [digits.SPEC, cifar10.SPEC, cifar100.SPEC, fashion_mnist.SPEC, *listfile.SPECS, imagefolder.SPEC]
}


def available() -> list[str]:
    """Registered dataset names, sorted."""
    return sorted(_REGISTRY)


def get_dataset(name: str) -> DatasetSpec:
    """The spec registered as ``name``; ``imagefolder:<path>`` gives an image-folder spec bound to
    ``<path>``. Unknown names raise ValueError("unknown dataset 'x'; valid: a, b, c")."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name.startswith(imagefolder.NAME + ":") and len(name) > len(imagefolder.NAME) + 1:
        return imagefolder.make_spec(name[len(imagefolder.NAME) + 1:])
    raise ValueError(f"unknown dataset {name!r}; valid: {', '.join(available())}")
