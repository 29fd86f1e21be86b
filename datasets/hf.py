"""Hugging Face datasets saved on disk as a source: ``--dataset hf:<folder>`` (kind "image").

``<folder>`` is a dataset written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``, or a
folder of parquet files laid out as on the Hub (``<split>-*.parquet``, ``data/<split>-*.parquet``;
Hugging Face's own split-name rules apply). It is read with Hugging Face ``datasets`` (the ``[hf]``
extra), offline (``HF_DATASETS_OFFLINE=1``: never the Hub), and decoded once into the hashbench
cache (:mod:`hashbench.datasets.cache`; the key covers every file's path, size and mtime and the
chosen columns).

**Columns.** The image column is the one column of feature type ``Image``; the label column the one
column that is a ``ClassLabel`` (single-label), a sequence of ``ClassLabel`` or a fixed-length
sequence of 0/1 integers or booleans (multi-hot; multi-label). When several qualify, a column
named ``label``/``labels`` is taken, otherwise name them: ``hf:<folder>?image=img,label=fine_label``.

**Items.** Every split, in the folder's order, concatenated; ``official_split`` marks the items of
split ``test`` (or ``validation`` when there is no ``test``) as official test when a ``train`` split
exists too. Images are decoded with PIL to grey ("L") when every image is grey, else RGB; an image
whose size differs from the most common one is resized to it (bilinear; counted in ``source``).
Multi-label items with no label (and ClassLabel -1, "no label") are dropped: nothing is relevant to
them.

**Protocols** (seeded; val = 10 % of the training pool, stratified by class for single-label data,
removed from train):
  - ``query10pc`` (default): 10 % of each class as queries (multi-label: 10 % of all items,
    uniformly); every other item is the database and the training pool (val kept in the database);
  - ``official``: queries = the official test split; training pool = database = the official train
    split;
  - ``query<Q>-train<T>``: Q queries, then a training pool of T items from the rest, uniformly
    drawn; database = every non-query item;
  - ``query<Q>-train<T>-db<D>``: Q queries, T training-pool items and D database items, disjoint,
    uniformly drawn. Sizes accept a ``k`` suffix (``query1k-train5k-db10k``).
"""

from __future__ import annotations

import collections
import hashlib
import os
import pathlib
import re
import tempfile

import numpy as np

from hashbench.datasets import cache
from hashbench.datasets.base import ArrayData, DatasetSpec, MissingDataError, Protocol, Split
from hashbench.datasets.splits import carve_val, fraction_count, official_protocol, sample_fraction_per_class

NAME = "hf"
PROTOCOL_HELP = "*query10pc, official, query<Q>-train<T>[-db<D>]  (Hugging Face save_to_disk or parquet folder)"
GREY_MODES = {"1", "L", "I", "I;16", "F"}
_SIZED = re.compile(r"query(\d+k?)-train(\d+k?)(?:-db(\d+k?))?")


# ----------------------------------------------------------------------------- reading


def import_hf_datasets():
    """Hugging Face's ``datasets`` module, imported offline; MissingDataError saying how to get it
    when it is absent, or when ``import datasets`` finds another package of that name (hashbench's
    own ``datasets/`` folder when the checkout is the working directory of ``python -m``)."""
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import datasets as hf_datasets
    except ImportError:
        raise MissingDataError(f"{NAME}: Hugging Face `datasets` is not installed; pip install 'hashbench[hf]'") from None
    if not hasattr(hf_datasets, "load_from_disk"):
        raise MissingDataError(
            f"{NAME}: `import datasets` found {getattr(hf_datasets, '__file__', None) or hf_datasets} instead of "
            "Hugging Face `datasets` (a folder named datasets/ comes first on sys.path, e.g. the hashbench checkout as the "
            "working directory of `python -m`); run the `hashbench` console script or from another directory")
    return hf_datasets


def read_splits(folder: pathlib.Path) -> dict:
    """The splits (name → ``datasets.Dataset``) of a save_to_disk folder or a folder of parquet files;
    MissingDataError when ``folder`` is neither."""
    if not folder.is_dir():
        raise MissingDataError(f"{NAME}: folder {folder} not found; expected a dataset written by "
                               "Dataset.save_to_disk / DatasetDict.save_to_disk, or a folder of .parquet files")
    hf_datasets = import_hf_datasets()
    saved = any((folder / f).is_file() for f in ("dataset_dict.json", "state.json"))
    if not saved and not any(folder.rglob("*.parquet")):
        raise MissingDataError(f"{NAME}: {folder} holds neither a save_to_disk dataset (dataset_dict.json or "
                               "state.json) nor .parquet files")
    bars = hf_datasets.is_progress_bar_enabled()
    hf_datasets.disable_progress_bars()
    try:
        if saved:
            loaded = hf_datasets.load_from_disk(str(folder))
            return dict(loaded) if isinstance(loaded, hf_datasets.DatasetDict) else {"all": loaded}
        with tempfile.TemporaryDirectory(prefix="hashbench-hf-") as tmp:
            # the parquet builder's Arrow copy goes to a throw-away cache: the decoded arrays are what we keep
            return dict(hf_datasets.load_dataset("parquet", data_dir=str(folder), cache_dir=tmp, keep_in_memory=True))
    finally:
        if bars:
            hf_datasets.enable_progress_bars()


def _sequence_inner(feature):
    """The element feature of a sequence feature (``Sequence``/``List``/``LargeList``), else None."""
    if type(feature).__name__ in ("Sequence", "List", "LargeList"):
        return feature.feature
    return None


def label_kind(feature, hf_datasets) -> str | None:
    """``"classlabel"``, ``"classlabel-seq"`` or ``"multihot"`` for a supported label feature, else None."""
    if isinstance(feature, hf_datasets.ClassLabel):
        return "classlabel"
    inner = _sequence_inner(feature)
    if isinstance(inner, hf_datasets.ClassLabel):
        return "classlabel-seq"
    if isinstance(inner, hf_datasets.Value) and (inner.dtype == "bool" or re.fullmatch(r"u?int\d+", inner.dtype)):
        return "multihot"
    return None


def _one_column(features, wanted: str | None, what: str, qualifies, folder, option: str, preferred=(),
                exclude: str | None = None) -> str:
    columns = ", ".join(f"{c} ({type(f).__name__})" for c, f in features.items())
    if wanted is not None:
        if wanted not in features:
            raise MissingDataError(f"{NAME}: no {what} column {wanted!r} in {folder}; columns: {columns}")
        return wanted
    found = [c for c, f in features.items() if c != exclude and qualifies(f)]
    if len(found) > 1:
        found = [c for c in found if c in preferred] or found
    if not found:
        raise MissingDataError(f"{NAME}: no {what} column in {folder}; columns: {columns}")
    if len(found) > 1:
        raise ValueError(f"{NAME}: several {what} columns in {folder} ({', '.join(found)}); "
                         f"choose one with hf:<folder>?{option}=NAME")
    return found[0]


def choose_columns(features, folder, image: str | None, label: str | None, hf_datasets) -> tuple[str, str, str]:
    """(image column, label column, label kind) of ``features``; clear errors for a missing
    column or a label column of an unsupported type."""
    image = _one_column(features, image, "image", lambda f: isinstance(f, hf_datasets.Image), folder, "image")
    if not isinstance(features[image], hf_datasets.Image):
        raise ValueError(f"{NAME}: column {image!r} of {folder} is {features[image]!r}, not an Image feature")
    label = _one_column(features, label, "label", lambda f: label_kind(f, hf_datasets) is not None, folder, "label",
                        ("label", "labels"), exclude=image)
    kind = label_kind(features[label], hf_datasets)
    if kind is None:
        raise ValueError(
            f"{NAME}: label column {label!r} of {folder} has the unsupported type {features[label]!r}; supported: "
            f"ClassLabel, a sequence of ClassLabel, or a multi-hot sequence of 0/1 integers (a plain integer column "
            f"becomes a ClassLabel with dataset.cast_column({label!r}, ClassLabel(names=[...])))")
    return image, label, kind


def label_matrix(values: list, feature, kind: str, hf_datasets) -> tuple[np.ndarray, list[str]]:
    """(uint8 N x C 0/1 labels, class names) of a label column's values."""
    if kind == "classlabel":
        names = list(feature.names)
        ids = np.asarray(values, dtype=np.int64)
        labels = np.zeros((len(ids), len(names)), np.uint8)
        has = ids >= 0
        labels[np.flatnonzero(has), ids[has]] = 1
        return labels, names
    if kind == "classlabel-seq":
        names = list(_sequence_inner(feature).names)
        labels = np.zeros((len(values), len(names)), np.uint8)
        for i, row in enumerate(values):
            labels[i, [c for c in row if c >= 0]] = 1
        return labels, names
    widths = {len(row) for row in values}
    if len(widths) != 1:
        raise ValueError(f"{NAME}: multi-hot label rows have different lengths {sorted(widths)[:5]}")
    labels = np.asarray(values, dtype=np.int64)
    if labels.size and (labels.min() < 0 or labels.max() > 1):
        raise ValueError(f"{NAME}: multi-hot labels must be 0/1, found values in [{labels.min()}, {labels.max()}]")
    return labels.astype(np.uint8), [f"label_{i:03d}" for i in range(labels.shape[1])]


def decode_images(images: list) -> tuple[np.ndarray, int]:
    """uint8 N x H x W x C of PIL images (grey when all are, else RGB), every image at the most
    common size; returns (array, number of images resized)."""
    from PIL import Image

    mode = "L" if all(im.mode in GREY_MODES for im in images) else "RGB"
    size = collections.Counter(im.size for im in images).most_common(1)[0][0]
    resized = 0
    out = np.empty((len(images), size[1], size[0], 1 if mode == "L" else 3), np.uint8)
    for i, im in enumerate(images):
        im = im.convert(mode)
        if im.size != size:
            im, resized = im.resize(size, Image.BILINEAR), resized + 1
        out[i] = np.asarray(im).reshape(out.shape[1:])
    return out, resized


def official_marks(split_names: list[str], lengths: list[int]) -> np.ndarray | None:
    """int8 per item: 1 for the items of split "test" (else "validation"), 0 for the rest; None
    without both a train split and such a test split."""
    test = "test" if "test" in split_names else "validation" if "validation" in split_names else None
    if test is None or "train" not in split_names:
        return None
    return np.concatenate([np.full(n, int(s == test), np.int8) for s, n in zip(split_names, lengths)])


def load_hf_folder(folder: pathlib.Path, image: str | None = None, label: str | None = None) -> ArrayData:
    """Decode a save_to_disk or parquet folder into an ArrayData (see the module docstring)."""
    splits = read_splits(folder)
    hf_datasets = import_hf_datasets()
    names = list(splits)
    features = splits[names[0]].features
    for s in names[1:]:
        if splits[s].features != features:
            raise ValueError(f"{NAME}: split {s!r} of {folder} has other columns than split {names[0]!r}")
    image, label, kind = choose_columns(features, folder, image, label, hf_datasets)
    pictures, values = [], []
    for s in names:
        for batch in splits[s].select_columns([image, label]).iter(batch_size=1000):
            pictures += batch[image]
            values += batch[label]
    if not pictures:
        raise MissingDataError(f"{NAME}: {folder} has no items")
    x, resized = decode_images(pictures)
    labels, class_names = label_matrix(values, features[label], kind, hf_datasets)
    official = official_marks(names, [len(splits[s]) for s in names])
    keep = labels.any(axis=1)
    note = f", {int((~keep).sum())} items without a label dropped" if not keep.all() else ""
    note += f", {resized} images resized to {x.shape[2]}x{x.shape[1]}" if resized else ""
    return ArrayData(
        x=x[keep], labels=labels[keep], class_names=class_names, kind="image",
        official_split=None if official is None else official[keep],
        source=f"{folder} (Hugging Face dataset, splits {', '.join(names)}; image column {image!r}, label column "
               f"{label!r} ({kind}){note})",
    )


def parse_name(rest: str) -> tuple[pathlib.Path, dict[str, str]]:
    """``<folder>?image=a,label=b`` → (folder, {"image": "a", "label": "b"}); ValueError on other keys."""
    path, _, query = rest.partition("?")
    options = dict(item.split("=", 1) if "=" in item else (item, "") for item in query.split(",") if item)
    unknown = sorted(set(options) - {"image", "label"})
    if unknown or any(not v for v in options.values()):
        raise ValueError(f"{NAME}: options are image=COLUMN and label=COLUMN (comma-separated), got {query!r}")
    return pathlib.Path(path).expanduser(), options


def cached_load(folder: pathlib.Path, image: str | None, label: str | None) -> ArrayData:
    """:func:`load_hf_folder` through the decoded-array cache."""
    folder = pathlib.Path(os.path.abspath(folder))
    if not folder.is_dir():
        read_splits(folder)  # raises the missing-folder error
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    key = hashlib.sha256(f"{cache.source_key(files)}|{image}|{label}".encode()).hexdigest()[:20]

    def build() -> ArrayData:
        data = load_hf_folder(folder, image, label)
        data.source += f" [source key {key}]"  # feature caches key on the source: a changed folder is new data
        return data

    return cache.cached(NAME, key, build)


# ----------------------------------------------------------------------------- protocols


def fraction_protocol(name: str, description: str, query_fraction: float) -> Protocol:
    """Query = ``fraction_count(n_c, f)`` items of each class (multi-label: of all items, uniformly);
    every other item is the database and the training pool; val = 10 % of the pool, removed from train."""

    def make_split(data: ArrayData, seed: int) -> Split:
        rng = np.random.default_rng(seed)
        everything = np.arange(len(data), dtype=np.int64)
        if data.single_label:
            query = sample_fraction_per_class(data.class_index(), everything, query_fraction, rng)
        else:
            query = np.sort(rng.choice(everything, fraction_count(len(data), query_fraction), replace=False))
        pool = np.setdiff1d(everything, query)
        train, val = carve_val(data, pool, rng)
        return Split(query=query, train=train, val=val, database=pool, protocol=name, seed=seed)

    return Protocol(name, description, None, make_split)


def _size(text: str) -> int:
    return int(text[:-1]) * 1000 if text.endswith("k") else int(text)


def sized_protocol(name: str) -> Protocol | None:
    """The protocol ``query<Q>-train<T>[-db<D>]`` (see the module docstring), or None if ``name``
    is not of that form."""
    match = _SIZED.fullmatch(name)
    if match is None:
        return None
    n_query, n_train = _size(match.group(1)), _size(match.group(2))
    n_db = None if match.group(3) is None else _size(match.group(3))

    def make_split(data: ArrayData, seed: int) -> Split:
        need = n_query + n_train + (n_db or 0)
        if need > len(data) or n_query < 1 or n_train < 2:
            raise ValueError(f"protocol {name} needs {need} items (at least 1 query and 2 training items); "
                             f"the dataset has {len(data)}")
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(data)).astype(np.int64)
        query, pool = np.sort(order[:n_query]), np.sort(order[n_query:n_query + n_train])
        train, val = carve_val(data, pool, rng)
        database = np.sort(order[n_query:]) if n_db is None else np.sort(order[n_query + n_train:need])
        return Split(query=query, train=train, val=val, database=database, protocol=name, seed=seed)

    where = "every non-query item" if n_db is None else f"{n_db} other items (disjoint from queries and the pool)"
    return Protocol(name, f"{n_query} queries and a training pool of {n_train} drawn uniformly; database = {where}; "
                          "val = 10% of the pool, removed from train", None, make_split)


QUERY10PC = fraction_protocol(
    "query10pc", "10% of each class as queries (multi-label: 10% of all items); the rest is the database and the "
    "training pool; val = 10% of the pool, removed from train, kept in the database", 0.1)
OFFICIAL = official_protocol(
    "official", "queries = the official test split; training pool = database = the official train split; val = "
    "10% of the pool, removed from train, kept in the database")


class HFDatasetSpec(DatasetSpec):
    """A spec whose protocols also include the sized family ``query<Q>-train<T>[-db<D>]``."""

    def protocol(self, name: str | None = None) -> Protocol:
        sized = sized_protocol(name) if name else None
        if sized is not None:
            return sized
        if name is not None and name not in self.protocols:
            raise ValueError(f"unknown protocol {name!r} for dataset {self.name!r}; valid: "
                             f"{', '.join(sorted(self.protocols))}, query<Q>-train<T>[-db<D>]")
        return super().protocol(name)


def make_spec(rest: str) -> DatasetSpec:
    """The spec of ``hf:<rest>``, ``rest`` = ``<folder>[?image=COLUMN,label=COLUMN]``."""
    folder, options = parse_name(rest)
    return HFDatasetSpec(
        name=f"{NAME}:{rest}",
        description="a Hugging Face dataset saved with save_to_disk, or a folder of parquet files (offline)",
        multi_label=False,  # not known before loading; the protocols handle both
        default_protocol=QUERY10PC.name,
        protocols={p.name: p for p in (QUERY10PC, OFFICIAL)},
        loader=lambda root, download=False: cached_load(folder, options.get("image"), options.get("label")),
    )
