"""scikit-learn's bundled digits: 1,797 8x8 grey images of 10 classes, available offline.

Pixels are rescaled from 0..16 to uint8 0..255 (``round(v * 255 / 16)``); kind "image", C = 1.
"""

from __future__ import annotations

import numpy as np

from hashbench.datasets.base import ArrayData, DatasetSpec
from hashbench.datasets.splits import holdout_protocol


def load_digits_data(root=None, *, download: bool = False) -> ArrayData:
    """The 1,797 digits as uint8 N x 8 x 8 x 1 with one-hot labels over classes "0".."9" (root unused)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    labels = np.eye(10, dtype=np.uint8)[bunch.target]
    return ArrayData(
        x=x, labels=labels, class_names=[str(c) for c in range(10)], kind="image", official_split=None,
        source="sklearn.datasets.load_digits (bundled with scikit-learn)",
    )


SPEC = DatasetSpec(
    name="digits",
    description="scikit-learn digits, 1,797 8x8 grey images, 10 classes (offline default)",
    multi_label=False,
    default_protocol="query300-db1497",
    protocols={
        p.name: p
        for p in [
            holdout_protocol(
                "query300-db1497",
                "30 random queries per class (300); the other 1,497 are the database and the training "
                "pool; val = 10% of the pool per class, removed from train, kept in the database",
                query_per_class=30,
            )
        ]
    },
    loader=load_digits_data,
)
