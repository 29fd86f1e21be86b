"""Generic ImageNet-style folder ``<folder>/<class>/*.{jpg,jpeg,png}`` (kind "path", single-label).

The folder is, in order: the path in a dataset name ``imagefolder:<path>`` (see
``datasets.get_dataset``), env ``HASHBENCH_IMAGEFOLDER``, or ``<data root>/imagefolder``. Classes are
the sub-folder names sorted; files are sorted by name within each class (extension case ignored).
Protocol ``query10pc``: 10 % of each class are queries (at least 1 when the class has >= 2 images),
every other image is the database and the training pool; val = 10 % of the pool per class,
removed from train, kept in the database.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np

from hashbench.datasets.base import ArrayData, DatasetSpec, MissingDataError
from hashbench.datasets.splits import holdout_protocol

NAME = "imagefolder"
FOLDER_ENV = "HASHBENCH_IMAGEFOLDER"
EXTENSIONS = (".jpg", ".jpeg", ".png")


def load_folder(folder: pathlib.Path) -> ArrayData:
    """Absolute image paths and one-hot labels of ``<folder>/<class>/*.{jpg,jpeg,png}``."""
    folder = pathlib.Path(os.path.abspath(folder))
    if not folder.is_dir():
        raise MissingDataError(
            f"{NAME}: folder {folder} not found; expected {folder}/<class>/*.jpg|png "
            f"(set {FOLDER_ENV}, use the name 'imagefolder:<path>', or put it at <data root>/imagefolder)"
        )
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir())
    paths, cls = [], []
    for c, name in enumerate(classes):
        files = sorted(p.name for p in (folder / name).iterdir() if p.suffix.lower() in EXTENSIONS and p.is_file())
        paths += [str(folder / name / f) for f in files]
        cls += [c] * len(files)
    if not paths:
        raise MissingDataError(f"{NAME}: no <class>/*.jpg|jpeg|png images under {folder}")
    return ArrayData(
        x=np.asarray(paths, dtype=str),
        labels=np.eye(len(classes), dtype=np.uint8)[np.asarray(cls)],
        class_names=classes,
        kind="path",
        official_split=None,
        source=f"{folder} (image folder, {len(classes)} classes)",
    )


def resolve_folder(root: pathlib.Path | None) -> pathlib.Path:
    """Env HASHBENCH_IMAGEFOLDER if set, else ``<root>/imagefolder``; MissingDataError if neither."""
    env = os.environ.get(FOLDER_ENV)
    if env:
        return pathlib.Path(env).expanduser()
    if root is None:
        raise MissingDataError(
            f"{NAME}: no folder given; set {FOLDER_ENV}=<folder> holding <class>/*.jpg|png, use the "
            f"dataset name 'imagefolder:<folder>', or put it at <data root>/imagefolder"
        )
    return root / NAME


QUERY10PC = holdout_protocol(
    "query10pc",
    "10% of each class as queries (at least 1 per class with >= 2 images); the rest is the database and the "
    "training pool; val = 10% of the pool per class, removed from train, kept in the database",
    query_fraction=0.1,
)


def make_spec(folder: str | pathlib.Path | None = None) -> DatasetSpec:
    """The imagefolder spec; with ``folder`` given it loads that folder whatever the data root."""
    if folder is None:
        loader = lambda root, download=False: load_folder(resolve_folder(root))  # noqa: E731
        name = NAME
    else:
        folder = pathlib.Path(folder).expanduser()
        loader = lambda root, download=False: load_folder(folder)  # noqa: E731
        name = f"{NAME}:{folder}"
    return DatasetSpec(
        name=name,
        description="generic <folder>/<class>/*.{jpg,jpeg,png} image folder (paths)",
        multi_label=False,
        default_protocol=QUERY10PC.name,
        protocols={QUERY10PC.name: QUERY10PC},
        loader=loader,
    )


SPEC = make_spec()
