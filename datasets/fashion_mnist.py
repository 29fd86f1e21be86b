"""Fashion-MNIST: 70,000 28x28 grey images, 10 classes, from IDX files (plain or ``.gz``).

Looked up in this order: ``<root>/FashionMNIST/raw/`` (torchvision's layout), ``<root>/fashion-mnist/``,
then ``/usr/share/datasets/fashion-mnist/`` (Debian package ``dataset-fashion-mnist``). Each folder
must hold ``{train,t10k}-{images-idx3,labels-idx1}-ubyte`` with or without ``.gz``. Items are the
official train (60k) then test (10k); kind "image", C = 1.
"""

from __future__ import annotations

import gzip
import pathlib

import numpy as np

from hashbench.datasets.base import ArrayData, DatasetSpec, MissingDataError
from hashbench.datasets.cifar_pickle import torchvision_download
from hashbench.datasets.splits import official_protocol, sampled_protocol

NAME = "fashion-mnist"
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
DEBIAN_DIR = pathlib.Path("/usr/share/datasets/fashion-mnist")
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: pathlib.Path) -> np.ndarray:
    """Parse an IDX file (gzip if the name ends in .gz): 2 zero bytes, a type byte, a rank byte,
    ``rank`` big-endian uint32 dimensions, then the values in row-major order."""
    with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as fh:
        raw = fh.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path}: not an IDX file (magic {raw[:4]!r})")
    rank = raw[3]
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=rank, offset=4))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    count = int(np.prod(dims)) if dims else 0
    if len(raw) != 4 + 4 * rank + count * dtype.itemsize:
        raise ValueError(f"{path}: size {len(raw)} does not match the header dimensions {dims}")
    return np.frombuffer(raw, dtype, count=count, offset=4 + 4 * rank).reshape(dims).astype(dtype.newbyteorder("="))


def _find(folder: pathlib.Path, stem: str) -> pathlib.Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def candidate_dirs(root: pathlib.Path | None) -> list[pathlib.Path]:
    """Folders searched, in order (see module docstring)."""
    dirs = [] if root is None else [root / "FashionMNIST" / "raw", root / "fashion-mnist"]
    return dirs + [DEBIAN_DIR]


def load_folder(folder: pathlib.Path) -> ArrayData:
    """Read the four IDX files of ``folder``: official train then test, one-hot labels."""
    arrays = {k: read_idx(_find(folder, stem)) for k, stem in FILES.items()}
    cls = np.concatenate([arrays["train_labels"], arrays["test_labels"]]).astype(np.int64)
    x = np.concatenate([arrays["train_images"], arrays["test_images"]]).astype(np.uint8)[..., None]
    if len(x) != len(cls):
        raise ValueError(f"{folder}: {len(x)} images but {len(cls)} labels")
    return ArrayData(
        x=x,
        labels=np.eye(len(CLASSES), dtype=np.uint8)[cls],
        class_names=list(CLASSES),
        kind="image",
        official_split=(np.arange(len(cls)) >= len(arrays["train_labels"])).astype(np.int8),
        source=f"{folder} (Fashion-MNIST IDX files)",
    )


def load_fashion_mnist(root: pathlib.Path | None, *, download: bool = False) -> ArrayData:
    """Load Fashion-MNIST from the first candidate folder holding all four files."""
    for folder in candidate_dirs(root):
        if all(_find(folder, stem) for stem in FILES.values()):
            return load_folder(folder)
    if download and root is not None:
        torchvision_download("FashionMNIST", root, NAME)
        return load_fashion_mnist(root, download=False)
    raise MissingDataError(
        f"{NAME}: no folder among {', '.join(map(str, candidate_dirs(root)))} holds "
        f"{', '.join(FILES.values())} (plain or .gz); run 'apt-get install dataset-fashion-mnist', "
        f"or copy the files to <data root>/FashionMNIST/raw/, or pass the download flag (torchvision)"
    )


SPEC = DatasetSpec(
    name=NAME,
    description="Fashion-MNIST, 70,000 28x28 grey images, 10 classes",
    multi_label=False,
    default_protocol="query10k-db60k",
    protocols={
        p.name: p
        for p in [
            official_protocol(
                "query10k-db60k",
                "queries = official test (10k); training pool = database = official train (60k); val = 10% "
                "of the pool per class, removed from train, kept in the database",
            ),
            sampled_protocol(
                "query1k-train5k-db64k",
                "100 queries and 500 training-pool images per class drawn from all 70k; database = the other "
                "64,000 (training pool not in it); val = 10% of the pool per class, removed from train",
                query_per_class=100, train_per_class=500, train_in_database=False,
            ),
        ]
    },
    loader=load_fashion_mnist,
)
