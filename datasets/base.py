"""Core data types of the dataset layer: loaded arrays, splits, protocols, dataset specs.

Relevance everywhere is "shares at least one label" (``labels @ labels.T > 0``), so single-label
datasets carry one-hot label rows and multi-label datasets carry multi-hot rows.
"""

from __future__ import annotations

import hashlib
import pathlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

KINDS = ("image", "vector", "path")
SPLIT_PARTS = ("query", "train", "val", "database")


class MissingDataError(Exception):
    """Raised when a dataset's files are absent; ``str(e)`` is one line saying what is missing,
    the expected path(s) and how to get the files."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).splitlines()))


@dataclass
class ArrayData:
    """A loaded dataset: items, labels and where they came from.

    ``x``: kind "image" -> uint8 N x H x W x C (C = 1 or 3); kind "vector" -> float32 N x D;
    kind "path" -> array of str absolute file paths.
    ``labels``: uint8 N x C 0/1 matrix (one-hot for single-label data, multi-hot otherwise).
    ``official_split``: int8 per item, 0 = official train, 1 = official test (None if none).
    ``listed``: for list-file datasets only, the item indices each list file names
    (keys among "train", "query", "database", in list order); None otherwise.
    """

    x: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    kind: str
    official_split: np.ndarray | None
    source: str
    listed: dict[str, np.ndarray] | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        n = len(self.x)
        if self.labels.dtype != np.uint8 or self.labels.ndim != 2 or len(self.labels) != n:
            raise ValueError(f"labels must be uint8 of shape ({n}, C), got {self.labels.dtype} {self.labels.shape}")
        if self.labels.shape[1] != len(self.class_names):
            raise ValueError(f"{self.labels.shape[1]} label columns but {len(self.class_names)} class names")
        if self.official_split is not None and (self.official_split.shape != (n,) or self.official_split.dtype != np.int8):
            raise ValueError("official_split must be int8 of shape (N,)")
        if self.kind == "image" and (self.x.dtype != np.uint8 or self.x.ndim != 4 or self.x.shape[3] not in (1, 3)):
            raise ValueError(f"image x must be uint8 N x H x W x C (C in 1, 3), got {self.x.dtype} {self.x.shape}")
        if self.kind == "vector" and (self.x.dtype != np.float32 or self.x.ndim != 2):
            raise ValueError(f"vector x must be float32 N x D, got {self.x.dtype} {self.x.shape}")

    def __len__(self) -> int:
        return len(self.x)

    @property
    def single_label(self) -> bool:
        """True when every item has exactly one label."""
        return bool((self.labels.sum(axis=1) == 1).all())

    def class_index(self) -> np.ndarray:
        """The int64 class of each item (argmax of its one-hot row); ValueError if not single-label."""
        if not self.single_label:
            raise ValueError("class_index() needs single-label (one-hot) data")
        return self.labels.argmax(axis=1).astype(np.int64)


def _index_array(a) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 1 or (a.size and not np.issubdtype(a.dtype, np.integer)):
        raise ValueError(f"split index arrays must be 1-D integer arrays, got {a.dtype} {a.shape}")
    a = a.astype(np.int64, copy=True)
    a.setflags(write=False)
    return a


@dataclass(frozen=True)
class Split:
    """Index arrays (int64, into an ArrayData) of one protocol draw.

    Invariants checked at construction: no index repeats inside a part, and query, train and val
    are pairwise disjoint (the database may overlap train/val/query as the protocol says).
    """

    query: np.ndarray
    train: np.ndarray
    val: np.ndarray
    database: np.ndarray
    protocol: str
    seed: int

    def __post_init__(self):
        for part in SPLIT_PARTS:
            arr = _index_array(getattr(self, part))
            if len(np.unique(arr)) != len(arr):
                raise ValueError(f"split part {part!r} repeats indices")
            object.__setattr__(self, part, arr)
        for a, b in (("query", "train"), ("query", "val"), ("train", "val")):
            if np.intersect1d(getattr(self, a), getattr(self, b)).size:
                raise ValueError(f"split parts {a!r} and {b!r} overlap")

    def sha256(self) -> dict[str, str]:
        """sha256 hex digest of each part's little-endian int64 bytes, keys query/train/val/database."""
        return {p: hashlib.sha256(getattr(self, p).astype("<i8").tobytes()).hexdigest() for p in SPLIT_PARTS}

    def sizes(self) -> dict[str, int]:
        """Number of indices in each part, keys query/train/val/database."""
        return {p: int(len(getattr(self, p))) for p in SPLIT_PARTS}


@dataclass(frozen=True)
class Protocol:
    """A named, seeded way to split a dataset; ``map_at`` is the standard mAP cutoff R (None = all)."""

    name: str
    description: str
    map_at: int | None
    make_split: Callable[[ArrayData, int], Split] = field(repr=False, compare=False)


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset: how to load it and which protocols it offers."""

    name: str
    description: str
    multi_label: bool
    default_protocol: str
    protocols: dict[str, Protocol]
    loader: Callable[..., ArrayData] = field(repr=False, compare=False)

    def __post_init__(self):
        if self.default_protocol not in self.protocols:
            raise ValueError(f"default protocol {self.default_protocol!r} not among {sorted(self.protocols)}")

    def load(self, root: str | pathlib.Path | None, *, download: bool = False) -> ArrayData:
        """Load the dataset from data root ``root`` (may be None); raises MissingDataError when the
        files are absent. ``download=True`` allows a torchvision download where one exists."""
        root = None if root is None else pathlib.Path(root).expanduser()
        return self.loader(root, download=download)

    def protocol(self, name: str | None = None) -> Protocol:
        """The protocol called ``name`` (None -> the default); ValueError listing valid names if unknown."""
        name = self.default_protocol if name is None else name
        if name not in self.protocols:
            raise ValueError(
                f"unknown protocol {name!r} for dataset {self.name!r}; valid: {', '.join(sorted(self.protocols))}"
            )
        return self.protocols[name]
