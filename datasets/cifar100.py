"""CIFAR-100: 60,000 32x32 colour images, 100 fine classes, from torchvision's pickle layout.

Expected files: ``<root>/cifar-100-python/{train,test,meta}`` (dicts with b'data' uint8 N x 3072,
b'fine_labels'; meta with b'fine_label_names'). Items are the official train (50k) then test (10k).
``download=True`` lets torchvision fetch them into the data root.
"""

from __future__ import annotations

import pathlib

import numpy as np

from hashbench.datasets import cache
from hashbench.datasets.base import ArrayData, DatasetSpec, MissingDataError, Protocol, Split
from hashbench.datasets.cifar_pickle import batch_images, missing_files, read_pickle, torchvision_download
from hashbench.datasets.splits import official_protocol

NAME = "cifar100"
PICKLE_DIR = "cifar-100-python"
PICKLE_FILES = ["train", "test", "meta"]
DHT_SEED = 40


def load_pickles(folder: pathlib.Path) -> ArrayData:
    """Read ``<folder>/{train,test,meta}``: official train then test, one-hot over the 100 fine classes."""
    train, test = read_pickle(folder / "train"), read_pickle(folder / "test")
    names = [n.decode() for n in read_pickle(folder / "meta")[b"fine_label_names"]]
    cls = np.concatenate([np.asarray(b[b"fine_labels"], dtype=np.int64) for b in (train, test)])
    n_train = len(train[b"fine_labels"])
    return ArrayData(
        x=np.concatenate([batch_images(train), batch_images(test)]),
        labels=np.eye(len(names), dtype=np.uint8)[cls],
        class_names=names,
        kind="image",
        official_split=(np.arange(len(cls)) >= n_train).astype(np.int8),
        source=f"{folder} (CIFAR-100 python pickles)",
    )


def load_cifar100(root: pathlib.Path | None, *, download: bool = False) -> ArrayData:
    """Load CIFAR-100 from ``<root>/cifar-100-python/`` (via the cache); MissingDataError if absent."""
    if root is not None and (root / PICKLE_DIR).is_dir():
        folder = root / PICKLE_DIR
        missing = missing_files(folder, PICKLE_FILES)
        if missing:
            raise MissingDataError(f"{NAME}: {folder} lacks {', '.join(missing)}; re-fetch cifar-100-python.tar.gz")
        return cache.cached(NAME, cache.source_key(folder / f for f in PICKLE_FILES), lambda: load_pickles(folder))
    if download:
        torchvision_download("CIFAR100", root, NAME)
        return load_cifar100(root, download=False)
    where = "<data root>" if root is None else str(root)
    hint = "" if root is not None else "no data root given (pass --data-root or set HASHBENCH_DATA); "
    raise MissingDataError(
        f"{NAME}: {hint}expected {where}/{PICKLE_DIR}/{{train,test,meta}}; unpack cifar-100-python.tar.gz "
        f"from https://www.cs.toronto.edu/~kriz/cifar.html there, or pass the download flag (torchvision)"
    )


def _dht_split(data: ArrayData, seed: int) -> Split:
    """Official train -> 45k train / 5k val by sklearn train_test_split(test_size=0.1, stratify=labels,
    random_state=40) (the run seed is ignored); queries = official test; database = the 45k train."""
    from sklearn.model_selection import train_test_split

    pool = np.flatnonzero(data.official_split == 0)
    test = np.flatnonzero(data.official_split == 1)
    train, val = train_test_split(
        pool, test_size=0.1, stratify=data.class_index()[pool], random_state=DHT_SEED
    )
    train, val = np.sort(train), np.sort(val)
    return Split(query=test, train=train, val=val, database=train, protocol="train45k-val5k-test10k", seed=DHT_SEED)


SPEC = DatasetSpec(
    name=NAME,
    description="CIFAR-100, 60,000 32x32 colour images, 100 fine classes",
    multi_label=False,
    default_protocol="query10k-db50k",
    protocols={
        p.name: p
        for p in [
            official_protocol(
                "query10k-db50k",
                "queries = official test (10k); training pool = database = official train (50k); val = 10% "
                "of the pool per class, removed from train, kept in the database",
            ),
            Protocol(
                "train45k-val5k-test10k",
                "Deep Hash Table (ICML'18/CVPR'19) split: official train -> 45k train / 5k val with "
                "sklearn train_test_split(test_size=0.1, stratify=labels, random_state=40) - FIXED seed 40, "
                "the run seed is ignored (Split.seed records 40); queries = official test (10k); "
                "database = the 45k train (val not in it)",
                None,
                _dht_split,
            ),
        ]
    },
    loader=load_cifar100,
)
