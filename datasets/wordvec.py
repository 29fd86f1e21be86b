"""Class-name word vectors (300-d word2vec, one row per class in label order), the side
information of DVSQ/DTQ/DRQ's adaptive-margin semantic loss.

Looked up under the data root as ``<root>/wordvec/<file>`` or ``<root>/<file>``; the files are
thuml/DeepHash's ``cifar10_wordvec.txt`` and ``nuswide_81_wordvec.txt`` (whitespace-separated
floats, one line per class).
"""
from __future__ import annotations

import pathlib

import numpy as np

#: dataset name → word-vector file name
FILES = {"cifar10": "cifar10_wordvec.txt", "nuswide81": "nuswide_81_wordvec.txt"}


def class_word_vectors(dataset: str, root: pathlib.Path | None, n_classes: int) -> np.ndarray | None:
    """The (n_classes, 300) float32 word vectors of ``dataset``, or None when the dataset has no
    word-vector file or it is not under the data root. A file with the wrong number of rows is
    a ValueError (it would silently mislabel classes)."""
    name = FILES.get(dataset)
    if name is None or root is None:
        return None
    for path in (pathlib.Path(root) / "wordvec" / name, pathlib.Path(root) / name):
        if path.exists():
            vectors = np.loadtxt(path, dtype=np.float32, ndmin=2)
            if vectors.shape[0] != n_classes:
                raise ValueError(f"{path}: {vectors.shape[0]} word vectors for {n_classes} classes")
            return vectors
    return None
