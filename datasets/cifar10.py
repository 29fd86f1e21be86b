"""CIFAR-10: 60,000 32x32 colour images, 10 classes, from one of three layouts under the data root.

Looked up in this order under ``<root>``:
  (a) ``cifar-10-batches-py/`` - torchvision's pickle layout (data_batch_1..5, test_batch, batches.meta);
  (b) ``cifar10-jpg/{train,test}/<class>/*.jpg`` - one JPEG per image;
  (c) ``cifar10-jpg.tar.gz`` - a tarball holding layout (b), streamed with ``tarfile`` (never
      extracted, so the data root may be read-only).
Items are train first, then test. For (b)/(c) files are sorted by their path inside the split
(``<class>/<file name>``); class order is the standard one, which is alphabetical. Decoding 60k
JPEGs takes a while, so decoded arrays are cached in ``cache_dir()/cifar10/`` (see datasets.cache).
``download=True`` lets torchvision fetch layout (a) into the data root.
"""

from __future__ import annotations

import io
import pathlib
import re
import tarfile

import numpy as np

from hashbench.datasets import cache
from hashbench.datasets.base import ArrayData, DatasetSpec, MissingDataError, Protocol, Split
from hashbench.datasets.cifar_pickle import batch_images, missing_files, read_pickle, torchvision_download
from hashbench.datasets.splits import carve_val, official_protocol, sample_per_class, sampled_protocol

NAME = "cifar10"
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
PICKLE_DIR = "cifar-10-batches-py"
PICKLE_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]
JPEG_DIR = "cifar10-jpg"
JPEG_TARBALL = "cifar10-jpg.tar.gz"
_SPLITS = ("train", "test")
_MEMBER = re.compile(r"^(?:\./)?cifar10-jpg/(train|test)/([^/]+)/([^/]+\.jpe?g)$", re.IGNORECASE)


def decode_image(data: bytes) -> np.ndarray:
    """Decode one encoded image file's bytes to uint8 H x W x 3 RGB (Pillow)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def _assemble(items: dict[tuple[str, str, str], bytes], source: str) -> ArrayData:
    """Decode {(split, class, file name): bytes} into ArrayData, train before test, sorted by class/name."""
    keys = sorted(items, key=lambda k: (_SPLITS.index(k[0]), k[1], k[2]))
    unknown = sorted({k[1] for k in keys} - set(CLASSES))
    if unknown:
        raise ValueError(f"{source}: class folders {unknown} are not CIFAR-10 classes {CLASSES}")
    if not keys:
        raise MissingDataError(f"{NAME}: no JPEG files found in {source}")
    images = [decode_image(items[k]) for k in keys]
    shapes = {im.shape for im in images}
    if len(shapes) != 1:
        raise ValueError(f"{source}: images have different shapes {sorted(shapes)}")
    cls = np.array([CLASSES.index(k[1]) for k in keys])
    return ArrayData(
        x=np.stack(images),
        labels=np.eye(len(CLASSES), dtype=np.uint8)[cls],
        class_names=list(CLASSES),
        kind="image",
        official_split=np.array([_SPLITS.index(k[0]) for k in keys], dtype=np.int8),
        source=source,
    )


def load_pickles(folder: pathlib.Path) -> ArrayData:
    """Layout (a): torchvision's ``cifar-10-batches-py`` pickles, train batches 1..5 then test_batch."""
    batches = [read_pickle(folder / f) for f in PICKLE_FILES[:-1]]
    names = [n.decode() for n in read_pickle(folder / "batches.meta")[b"label_names"]]
    if names != CLASSES:
        raise ValueError(f"{folder}: label names {names} differ from the standard order {CLASSES}")
    cls = np.concatenate([np.asarray(b[b"labels"], dtype=np.int64) for b in batches])
    split = np.concatenate([np.full(len(b[b"labels"]), int(f == "test_batch"), np.int8) for f, b in zip(PICKLE_FILES, batches)])
    return ArrayData(
        x=np.concatenate([batch_images(b) for b in batches]),
        labels=np.eye(len(CLASSES), dtype=np.uint8)[cls],
        class_names=list(CLASSES),
        kind="image",
        official_split=split,
        source=f"{folder} (CIFAR-10 python pickles)",
    )


def _folder_files(folder: pathlib.Path) -> list[pathlib.Path]:
    return sorted(p for s in _SPLITS for p in (folder / s).glob("*/*") if p.suffix.lower() in (".jpg", ".jpeg"))


def load_jpeg_folder(folder: pathlib.Path) -> ArrayData:
    """Layout (b): ``<folder>/{train,test}/<class>/*.jpg`` decoded with Pillow."""
    items = {(p.parent.parent.name, p.parent.name, p.name): p.read_bytes() for p in _folder_files(folder)}
    return _assemble(items, f"{folder} (CIFAR-10 JPEG folder)")


def load_jpeg_tarball(path: pathlib.Path) -> ArrayData:
    """Layout (c): a ``.tar.gz`` holding ``cifar10-jpg/{train,test}/<class>/*.jpg``, streamed, not extracted."""
    items = {}
    with tarfile.open(path, mode="r|*") as tar:
        for member in tar:
            m = _MEMBER.match(member.name)
            if m and member.isfile():
                items[m.groups()] = tar.extractfile(member).read()
    return _assemble(items, f"{path} (CIFAR-10 JPEG tarball)")


def missing_message(root: pathlib.Path | None) -> str:
    """The one-line MissingDataError text for CIFAR-10 under ``root``."""
    where = "<data root>" if root is None else str(root)
    hint = "" if root is not None else "no data root given (pass --data-root or set HASHBENCH_DATA); "
    return (
        f"{NAME}: {hint}expected one of {where}/{PICKLE_DIR}/ (torchvision pickles), "
        f"{where}/{JPEG_DIR}/{{train,test}}/<class>/*.jpg, or {where}/{JPEG_TARBALL}; "
        f"point the data root at a folder holding one of them (e.g. the shared data folder with "
        f"{JPEG_TARBALL}) or pass the download flag to fetch the pickles with torchvision"
    )


def load_cifar10(root: pathlib.Path | None, *, download: bool = False) -> ArrayData:
    """Load CIFAR-10 from the first layout found under ``root`` (see module docstring), via the cache."""
    if root is not None:
        pickles, folder, tarball = root / PICKLE_DIR, root / JPEG_DIR, root / JPEG_TARBALL
        if pickles.is_dir():
            missing = missing_files(pickles, PICKLE_FILES)
            if missing:
                raise MissingDataError(f"{NAME}: {pickles} lacks {', '.join(missing)}; re-fetch cifar-10-python.tar.gz")
            return cache.cached(NAME, cache.source_key(pickles / f for f in PICKLE_FILES), lambda: load_pickles(pickles))
        if folder.is_dir():
            files = _folder_files(folder)
            if not files:
                raise MissingDataError(f"{NAME}: {folder} holds no {{train,test}}/<class>/*.jpg files; {missing_message(root)}")
            return cache.cached(NAME, cache.source_key(files), lambda: load_jpeg_folder(folder))
        if tarball.is_file():
            return cache.cached(NAME, cache.source_key([tarball]), lambda: load_jpeg_tarball(tarball))
    if download:
        torchvision_download("CIFAR10", root, NAME)
        return load_cifar10(root, download=False)
    raise MissingDataError(missing_message(root))


_WHOLE = "val = 10% of the training pool per class, removed from train"


def subset_protocol(name: str, query_per_class: int, train_per_class: int, database_per_class: int) -> Protocol:
    """A small sampled protocol (the CPU regression suite's and the CPU fine-tune protocol's,
    results/finetune-cpu): per class, ``query_per_class``
    queries from all items, then ``train_per_class`` training-pool items and
    ``database_per_class`` database items from the rest, the three disjoint; val = 10% of the
    pool per class, removed from train (never in the database)."""

    def make_split(data: ArrayData, seed: int) -> Split:
        rng = np.random.default_rng(seed)
        cls = data.class_index()
        everything = np.arange(len(data), dtype=np.int64)
        query = sample_per_class(cls, everything, query_per_class, rng)
        rest = np.setdiff1d(everything, query)
        pool = sample_per_class(cls, rest, train_per_class, rng)
        database = sample_per_class(cls, np.setdiff1d(rest, pool), database_per_class, rng)
        train, val = carve_val(data, pool, rng)
        return Split(query=query, train=train, val=val, database=database, protocol=name, seed=seed)

    description = (f"small subset for the CPU regression suite and the CPU fine-tune protocol: "
                   f"{query_per_class} queries, {train_per_class} training-pool and {database_per_class} database "
                   f"images per class, disjoint, drawn from all 60k; val = 10% of the pool per class, removed from train")
    return Protocol(name, description, None, make_split)

SPEC = DatasetSpec(
    name=NAME,
    description="CIFAR-10, 60,000 32x32 colour images, 10 classes",
    multi_label=False,
    default_protocol="query1k-train5k-db54k",
    protocols={
        p.name: p
        for p in [
            sampled_protocol(
                "query1k-train5k-db54k",
                "DTQ/DRQ setting 2: 100 queries and 500 training-pool images per class drawn from all "
                f"60k; database = the other 54,000 (training pool not in it); {_WHOLE} and not in the database",
                query_per_class=100, train_per_class=500, train_in_database=False,
            ),
            sampled_protocol(
                "query1k-db59k",
                "DeepHash-pytorch 'cifar10-1': 100 queries per class from all 60k, 500 training-pool images "
                f"per class from the rest; database = all 59,000 non-queries (training pool included); {_WHOLE}, "
                "kept in the database",
                query_per_class=100, train_per_class=500, train_in_database=True,
            ),
            official_protocol(
                "query10k-db50k",
                "DeepHash-pytorch 'cifar10-2': queries = official test (10k); training pool = database = "
                f"official train (50k); {_WHOLE}, kept in the database",
            ),
            subset_protocol("query500-train2k-db10k", query_per_class=50, train_per_class=200, database_per_class=1000),
        ]
    },
    loader=load_cifar10,
)
