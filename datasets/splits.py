"""Split building blocks and the protocol families shared by several datasets.

Every draw uses ``np.random.default_rng(seed)``, so the same (data, seed) gives identical indices.
Index arrays of random protocols are sorted ascending. The validation part is always carved out of
the protocol's training pool (``carve_val``) and removed from ``train``; it never meets ``query``.
"""

from __future__ import annotations

import numpy as np

from hashbench.datasets.base import ArrayData, Protocol, Split

VAL_FRACTION = 0.1


def fraction_count(n: int, frac: float) -> int:
    """round(frac * n) (halves round up), but at least 1 when n >= 2 and at most n - 1 when n >= 2
    (so both sides of the cut keep an item when possible); 0 when n < 2."""
    if n < 2:
        return 0
    return int(min(max(int(np.floor(frac * n + 0.5)), 1), n - 1))


def sample_per_class(cls: np.ndarray, pool: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices: ``per_class`` items drawn without replacement from ``pool`` for every class
    0..max(cls) (classes visited in order); ValueError if a class has fewer items in the pool."""
    out = []
    for c in range(int(cls.max()) + 1):
        members = pool[cls[pool] == c]
        if len(members) < per_class:
            raise ValueError(f"class {c} has {len(members)} items in the pool; the protocol needs {per_class}")
        out.append(rng.choice(members, per_class, replace=False))
    return np.sort(np.concatenate(out)).astype(np.int64)


def sample_fraction_per_class(cls: np.ndarray, pool: np.ndarray, frac: float, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices: ``fraction_count(n_c, frac)`` items drawn without replacement from each class's
    ``n_c`` members of ``pool`` (classes visited in order)."""
    out = [np.empty(0, np.int64)]
    for c in range(int(cls.max()) + 1):
        members = pool[cls[pool] == c]
        out.append(rng.choice(members, fraction_count(len(members), frac), replace=False))
    return np.sort(np.concatenate(out)).astype(np.int64)


def carve_val(
    data: ArrayData, pool: np.ndarray, rng: np.random.Generator, frac: float = VAL_FRACTION
) -> tuple[np.ndarray, np.ndarray]:
    """Split a training pool into (train, val): val is ``frac`` of the pool, stratified by class for
    single-label data (``fraction_count`` per class) and a plain random ``fraction_count(len(pool))``
    draw for multi-label data; val is sorted, train keeps the pool's order minus val."""
    pool = np.asarray(pool, dtype=np.int64)
    if data.single_label:
        val = sample_fraction_per_class(data.class_index(), pool, frac, rng)
    else:
        val = np.sort(rng.choice(pool, fraction_count(len(pool), frac), replace=False)).astype(np.int64)
    return pool[~np.isin(pool, val)], val


def _official(data: ArrayData) -> tuple[np.ndarray, np.ndarray]:
    if data.official_split is None:
        raise ValueError("this protocol needs the dataset's official train/test split")
    return np.flatnonzero(data.official_split == 0), np.flatnonzero(data.official_split == 1)


def official_protocol(name: str, description: str, map_at: int | None = None) -> Protocol:
    """Query = the official test set; train pool = database = the official train set; val = 10 % of
    the pool (stratified), removed from train but kept in the database."""

    def make_split(data: ArrayData, seed: int) -> Split:
        pool, test = _official(data)
        train, val = carve_val(data, pool, np.random.default_rng(seed))
        return Split(query=test, train=train, val=val, database=pool, protocol=name, seed=seed)

    return Protocol(name, description, map_at, make_split)


def sampled_protocol(
    name: str, description: str, query_per_class: int, train_per_class: int, train_in_database: bool,
    map_at: int | None = None,
) -> Protocol:
    """From all items: ``query_per_class`` queries per class, then ``train_per_class`` training-pool
    items per class from the rest; val = 10 % of that pool (stratified), removed from train.
    Database = every non-query item if ``train_in_database`` (val included), else every item in
    neither query nor the training pool (val excluded)."""

    def make_split(data: ArrayData, seed: int) -> Split:
        rng = np.random.default_rng(seed)
        cls = data.class_index()
        everything = np.arange(len(data), dtype=np.int64)
        query = sample_per_class(cls, everything, query_per_class, rng)
        rest = np.setdiff1d(everything, query)
        pool = sample_per_class(cls, rest, train_per_class, rng)
        train, val = carve_val(data, pool, rng)
        database = rest if train_in_database else np.setdiff1d(rest, pool)
        return Split(query=query, train=train, val=val, database=database, protocol=name, seed=seed)

    return Protocol(name, description, map_at, make_split)


def holdout_protocol(
    name: str, description: str, query_per_class: int | None = None, query_fraction: float | None = None,
    map_at: int | None = None,
) -> Protocol:
    """Query = ``query_per_class`` items per class (or ``fraction_count(n_c, query_fraction)`` per
    class); every other item is both the database and the training pool; val = 10 % of the pool
    (stratified), removed from train but kept in the database."""
    if (query_per_class is None) == (query_fraction is None):
        raise ValueError("give exactly one of query_per_class, query_fraction")

    def make_split(data: ArrayData, seed: int) -> Split:
        rng = np.random.default_rng(seed)
        cls = data.class_index()
        everything = np.arange(len(data), dtype=np.int64)
        if query_per_class is not None:
            query = sample_per_class(cls, everything, query_per_class, rng)
        else:
            query = sample_fraction_per_class(cls, everything, query_fraction, rng)
        pool = np.setdiff1d(everything, query)
        train, val = carve_val(data, pool, rng)
        return Split(query=query, train=train, val=val, database=pool, protocol=name, seed=seed)

    return Protocol(name, description, map_at, make_split)
