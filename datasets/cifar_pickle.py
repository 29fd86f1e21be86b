"""Readers for the CIFAR python-pickle layout and the optional torchvision download."""

from __future__ import annotations

import pathlib
import pickle

import numpy as np

from hashbench.datasets.base import MissingDataError


def read_pickle(path: pathlib.Path) -> dict:
    """Unpickle one CIFAR batch/meta file (bytes keys, as written by the CIFAR authors)."""
    with open(path, "rb") as fh:
        return pickle.load(fh, encoding="bytes")


def batch_images(batch: dict) -> np.ndarray:
    """A batch's b'data' (uint8 N x 3072, planes R, G, B of 32x32) as uint8 N x 32 x 32 x 3."""
    data = np.asarray(batch[b"data"], dtype=np.uint8)
    return np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


def missing_files(folder: pathlib.Path, names: list[str]) -> list[str]:
    """The entries of ``names`` that are not files inside ``folder``."""
    return [n for n in names if not (folder / n).is_file()]


def torchvision_download(cls_name: str, root: pathlib.Path | None, dataset: str) -> None:
    """Fetch a dataset with ``torchvision.datasets.<cls_name>(root, download=True)`` (train and test);
    any failure (e.g. no network) becomes a one-line MissingDataError."""
    if root is None:
        raise MissingDataError(f"{dataset}: download needs a data root; pass --data-root or set HASHBENCH_DATA")
    try:
        from torchvision import datasets as tv_datasets

        cls = getattr(tv_datasets, cls_name)
        for train in (True, False):
            cls(str(root), train=train, download=True)
    except Exception as e:  # offline, read-only root, checksum mismatch, ...
        raise MissingDataError(
            f"{dataset}: torchvision download into {root} failed ({type(e).__name__}: {e}); "
            f"copy the files there by hand instead"
        ) from e
