"""List-file datasets (kind "path"): ImageNet-100, NUS-WIDE-21/81, MS-COCO, MIRFlickr-25K, VOC2012.

List format: one image per line, ``relative/path.jpg 0 1 0 ...`` (a path, then a 0/1 label vector;
every line of every list has the same width). A leading ``./`` is dropped from paths.

Expected layout for dataset ``<name>`` under the data root ``<root>``::

    <root>/<name>/                       image root: listed paths are relative to it
    <root>/<name>/lists/train.txt        training list
    <root>/<name>/lists/query.txt        query list (``test.txt`` is accepted as well)
    <root>/<name>/lists/database.txt     database list (optional, see below)

Any list may instead be split into numbered shards (``database0.txt``, ``database1.txt``, ..., in
the list folder or its ``test/`` subfolder, as HashNet ships them); the shards are concatenated in
numeric order. To point at lists kept elsewhere, set env ``HASHBENCH_LISTS`` to a folder holding
either ``<name>/{train,query,database}.txt`` or the extracted ``hashing-split-lists.tar.xz``
(``<owner>+<repo>/...`` folders; which file plays which role is in ``SHARED_LISTS``); images are
still read from ``<root>/<name>/``.

Items are the union of all lists (a path listed twice is one item; its label rows must agree),
in order of first appearance: train, then query, then database. Protocol ``lists``: train, query
and database exactly as listed; val = 10 % of train (stratified by class for single-label
ImageNet-100, random otherwise; seeded), removed from train. When no database list exists (NUS-WIDE
in the shared lists) the database is every listed item not in the query list, i.e. the training
list, val included. MS-COCO's HashNet lists put all queries inside the database; its extra protocol
``lists-clean`` removes them from the database.
"""

from __future__ import annotations

import os
import pathlib
import re
from dataclasses import dataclass

import numpy as np

from hashbench.datasets.base import ArrayData, DatasetSpec, MissingDataError, Protocol, Split
from hashbench.datasets.splits import carve_val

LISTS_ENV = "HASHBENCH_LISTS"
ROLES = ("train", "query", "database")
ROLE_FILES = {"train": ("train",), "query": ("query", "test"), "database": ("database", "db")}
_SHARED_MARK = "swuxyj+DeepHash-pytorch"
_SHARED_PREFIX = re.compile(r"^data/[^/]+/")

# Which folder of the extracted hashing-split-lists.tar.xz supplies each role (files found by
# ``find_list_files``): DeepHash-pytorch lists where they are complete, HashNet's Caffe shards for
# the ImageNet-100 database and for all of MS-COCO (that split has a database list).
SHARED_LISTS = {
    "imagenet100": {
        "train": "swuxyj+DeepHash-pytorch/data/imagenet",
        "query": "swuxyj+DeepHash-pytorch/data/imagenet",
        "database": "thuml+HashNet/caffe/data/imagenet",
    },
    "coco": {role: "thuml+HashNet/caffe/data/coco" for role in ROLES},
    "nuswide21": {"train": "swuxyj+DeepHash-pytorch/data/nuswide_21", "query": "swuxyj+DeepHash-pytorch/data/nuswide_21"},
    "nuswide81": {"train": "thuml+DeepHash/data/nuswide_81", "query": "thuml+DeepHash/data/nuswide_81"},
    "mirflickr": {role: "swuxyj+DeepHash-pytorch/data/mirflickr" for role in ROLES},
    "voc2012": {role: "swuxyj+DeepHash-pytorch/data/voc2012" for role in ROLES},
}


@dataclass(frozen=True)
class ListInfo:
    description: str
    multi_label: bool
    map_at: int | None
    clean_variant: bool = False


DATASETS = {
    "imagenet100": ListInfo("ImageNet-100 (HashNet lists: 13,000 train / 5,000 query / 128,503 database), 100 classes", False, 1000),
    "nuswide21": ListInfo("NUS-WIDE, 21 most frequent concepts (DeepHash-pytorch lists), multi-label", True, 5000),
    "nuswide81": ListInfo("NUS-WIDE, 81 concepts (thuml lists), multi-label", True, 5000),
    "coco": ListInfo("MS-COCO 2014, 80 categories (HashNet lists), multi-label", True, 5000, clean_variant=True),
    "mirflickr": ListInfo("MIRFlickr-25K, 38 labels (DeepHash-pytorch lists), multi-label", True, None),
    "voc2012": ListInfo("PASCAL VOC 2012, 20 classes (DeepHash-pytorch lists), multi-label", True, None),
}


def read_list_file(path: pathlib.Path) -> tuple[list[str], np.ndarray]:
    """Parse one list file into (paths with any leading "./" removed, uint8 N x C 0/1 labels);
    ValueError naming file and line if widths differ or a label is not 0/1."""
    with open(path, encoding="utf-8") as fh:
        parts = [line.split(None, 1) for line in fh]
    parts = [p if len(p) == 2 else p + [""] for p in parts if p]
    paths = [p[0][2:] if p[0].startswith("./") else p[0] for p in parts]
    widths = np.array([len(p[1].split()) for p in parts], dtype=np.int64)
    width = int(widths[0]) if len(widths) else 0
    if (widths != width).any():
        line = int(np.flatnonzero(widths != width)[0])
        raise ValueError(f"{path}:{line + 1}: {widths[line]} labels, the first line has {width}")
    try:
        values = np.fromstring(" ".join(p[1] for p in parts), dtype=np.int64, sep=" ") if width else np.zeros(0, np.int64)
    except ValueError:
        values = None
    if values is None or values.size != len(paths) * width:
        raise ValueError(f"{path}: labels must be integers 0/1")
    labels = values.reshape(len(paths), width)
    if labels.size and (labels.min() < 0 or labels.max() > 1):
        row = int(np.flatnonzero(((labels < 0) | (labels > 1)).any(axis=1))[0])
        raise ValueError(f"{path}:{row + 1}: labels must be 0/1")
    return paths, labels.astype(np.uint8)


def _shard_number(path: pathlib.Path) -> int:
    return int(re.search(r"(\d+)$", path.stem).group(1))


def find_list_files(folder: pathlib.Path, role: str) -> list[pathlib.Path]:
    """The list file(s) for ``role`` in ``folder``: ``<alias>.txt`` if present, else the numbered
    shards ``<alias><n>.txt`` in ``folder`` or ``folder/test`` in numeric order; [] if none."""
    for alias in ROLE_FILES[role]:
        if (folder / f"{alias}.txt").is_file():
            return [folder / f"{alias}.txt"]
    for alias in ROLE_FILES[role]:
        for sub in (folder, folder / "test"):
            shards = [p for p in sub.glob(f"{alias}*.txt") if re.fullmatch(rf"{alias}\d+", p.stem)]
            if shards:
                return sorted(shards, key=_shard_number)
    return []


def shared_list_files(extracted: pathlib.Path, name: str) -> dict[str, list[pathlib.Path]]:
    """The files of the extracted hashing-split-lists.tar.xz that give ``name``'s roles (SHARED_LISTS)."""
    return {role: find_list_files(extracted / folder, role) for role, folder in SHARED_LISTS[name].items()}


@dataclass
class Listed:
    """The parsed lists of one dataset: unique relative paths, their labels, and each role's indices."""

    paths: list[str]
    labels: np.ndarray
    roles: dict[str, np.ndarray]


def _first_occurrences(idx: np.ndarray) -> np.ndarray:
    """``idx`` without repeats, each value kept at its first position."""
    return idx[np.sort(np.unique(idx, return_index=True)[1])]


def read_lists(files: dict[str, list[pathlib.Path]], strip_shared_prefix: bool = False) -> Listed:
    """Parse the list files of each role (concatenating shards) into unique items in order of first
    appearance (train, query, database); with ``strip_shared_prefix`` also drop HashNet's
    ``data/<dataset>/`` path prefix. ValueError if label widths differ or a repeated path's labels differ."""
    all_paths, all_labels, role_of = [], [], []
    for role in ROLES:
        for f in files.get(role) or []:
            paths, labels = read_list_file(f)
            if all_labels and labels.shape[1] != all_labels[0].shape[1]:
                raise ValueError(f"{f}: {labels.shape[1]} labels per line, earlier lists have {all_labels[0].shape[1]}")
            all_paths += [_SHARED_PREFIX.sub("", p) for p in paths] if strip_shared_prefix else paths
            all_labels.append(labels)
            role_of += [role] * len(paths)
    if not all_labels:
        raise ValueError("no list files given")
    labels = np.concatenate(all_labels)
    first: dict[str, int] = {}
    for i, p in enumerate(all_paths):
        first.setdefault(p, i)
    occurrence_first = np.fromiter((first[p] for p in all_paths), np.int64, len(all_paths))
    unique_first = np.unique(occurrence_first)  # ascending = order of first appearance
    item = np.searchsorted(unique_first, occurrence_first)
    clash = np.flatnonzero((labels != labels[unique_first][item]).any(axis=1))
    if clash.size:
        raise ValueError(f"{all_paths[clash[0]]} is listed again with different labels")
    role_of = np.asarray(role_of)
    roles = {r: _first_occurrences(item[role_of == r]) for r in ROLES if (role_of == r).any()}
    return Listed(paths=[all_paths[i] for i in unique_first], labels=labels[unique_first], roles=roles)


def to_array_data(listed: Listed, image_root: pathlib.Path, source: str, class_names: list[str] | None = None) -> ArrayData:
    """ArrayData of kind "path" (absolute paths under ``image_root``) with ``listed`` role indices."""
    root = os.path.abspath(image_root).rstrip("/") + "/"
    width = listed.labels.shape[1]
    return ArrayData(
        x=np.asarray([p if p.startswith("/") else root + p for p in listed.paths], dtype=str),
        labels=listed.labels,
        class_names=class_names or [f"label_{i:03d}" for i in range(width)],
        kind="path",
        official_split=None,
        source=source,
        listed=dict(listed.roles),
    )


def _missing_lists(name: str, root: pathlib.Path | None, what: str) -> MissingDataError:
    where = "<data root>" if root is None else str(root)
    return MissingDataError(
        f"{name}: {what}; expected {where}/{name}/lists/{{train,query,database}}.txt (query may be test.txt, "
        f"database optional) with images under {where}/{name}/ at the listed relative paths, or env "
        f"{LISTS_ENV} pointing at a folder with {name}/{{train,query,database}}.txt or the extracted "
        f"hashing-split-lists.tar.xz; the images themselves come from the dataset's official site"
    )


def locate_lists(name: str, root: pathlib.Path | None) -> tuple[dict[str, list[pathlib.Path]], bool]:
    """(list files per role, whether they are the shared tarball's) for ``name``; MissingDataError if
    the train or query list is absent. Env HASHBENCH_LISTS wins over ``<root>/<name>/lists``."""
    env = os.environ.get(LISTS_ENV)
    if env:
        base = pathlib.Path(env).expanduser()
        if (base / name).is_dir():
            folder, shared = base / name, False
        elif (base / _SHARED_MARK).is_dir():
            files = shared_list_files(base, name)
            if not (files.get("train") and files.get("query")):
                raise _missing_lists(name, root, f"the shared lists under {base} lack {name}'s train/query files")
            return files, True
        else:
            raise _missing_lists(name, root, f"{LISTS_ENV}={base} holds neither {name}/ nor the shared lists")
    elif root is not None:
        folder, shared = root / name / "lists", False
    else:
        raise _missing_lists(name, root, "no data root given (pass --data-root or set HASHBENCH_DATA)")
    files = {role: find_list_files(folder, role) for role in ROLES}
    if not (files["train"] and files["query"]):
        raise _missing_lists(name, root, f"no train and query lists in {folder}")
    return files, shared


def load_list_dataset(name: str, root: pathlib.Path | None) -> ArrayData:
    """Parse ``name``'s lists and check that every listed image exists under ``<root>/<name>/``."""
    files, shared = locate_lists(name, root)
    if root is None or not (root / name).is_dir():
        where = "<data root>" if root is None else str(root)
        raise _missing_lists(name, root, f"image root {where}/{name}/ not found")
    image_root = root / name
    listed = read_lists(files, strip_shared_prefix=shared)
    absent = [p for p in listed.paths if not (image_root / p).is_file()]
    if absent:
        raise MissingDataError(
            f"{name}: {len(absent)} of {len(listed.paths)} listed images are missing under {image_root}/ "
            f"(first: {absent[0]}); put the dataset's images there at the listed relative paths"
        )
    names_file = files["train"][0].parent / "classes.txt"
    class_names = names_file.read_text().split("\n") if names_file.is_file() else None
    if class_names is not None:
        class_names = [c.strip() for c in class_names if c.strip()]
    listed_from = ", ".join(str(f) for role in ROLES for f in files.get(role, [])[:1])
    return to_array_data(listed, image_root, f"{image_root} (list files {listed_from} ...)", class_names)


def lists_protocol(name: str, map_at: int | None, clean: bool = False) -> Protocol:
    """Protocol ``lists`` (or ``lists-clean``: database minus the queries), see module docstring."""
    pname = "lists-clean" if clean else "lists"

    def make_split(data: ArrayData, seed: int) -> Split:
        if data.listed is None:
            raise ValueError(f"protocol {pname!r} needs data loaded from list files")
        query, pool = data.listed["query"], data.listed["train"]
        database = data.listed.get("database")
        if database is None:
            database = np.setdiff1d(np.arange(len(data), dtype=np.int64), query)
        if clean:
            database = database[~np.isin(database, query)]
        train, val = carve_val(data, pool, np.random.default_rng(seed))
        return Split(query=query, train=train, val=val, database=database, protocol=pname, seed=seed)

    if clean:
        desc = ("the listed train/query lists; database = the database list minus every query item (clean "
                "variant: no query retrieves itself); val = 10% of train, removed from train")
    else:
        desc = ("train/query/database exactly as listed (database = every listed non-query item when no "
                "database list exists); val = 10% of train (seeded), removed from train")
    return Protocol(pname, desc, map_at, make_split)


def _spec(name: str, info: ListInfo) -> DatasetSpec:
    protocols = [lists_protocol(name, info.map_at)]
    if info.clean_variant:
        protocols.append(lists_protocol(name, info.map_at, clean=True))
    return DatasetSpec(
        name=name,
        description=info.description,
        multi_label=info.multi_label,
        default_protocol="lists",
        protocols={p.name: p for p in protocols},
        loader=lambda root, download=False: load_list_dataset(name, root),
    )


SPECS = [_spec(name, info) for name, info in DATASETS.items()]
