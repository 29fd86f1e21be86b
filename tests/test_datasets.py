"""Dataset layer: types, registry, split building blocks, protocols, digits and imagefolder."""

from __future__ import annotations

import hashlib
import pathlib
import re
import struct

import numpy as np
import pytest

from hashbench import datasets as D
from hashbench.datasets import splits
from hashbench.datasets.base import ArrayData, Split


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    for var in ("HASHBENCH_LISTS", "HASHBENCH_IMAGEFOLDER", "HASHBENCH_DATA"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HASHBENCH_CACHE", str(tmp_path / "cache"))


def synthetic(per_class_train: int, per_class_test: int, n_classes: int = 10) -> ArrayData:
    """Labels-only data (kind "vector"), classes interleaved in a fixed shuffled order."""
    cls = np.concatenate([np.repeat(np.arange(n_classes), per_class_train), np.repeat(np.arange(n_classes), per_class_test)])
    official = np.concatenate([np.zeros(n_classes * per_class_train), np.ones(n_classes * per_class_test)])
    perm = np.random.default_rng(123).permutation(len(cls))
    return ArrayData(
        x=np.zeros((len(cls), 1), np.float32), labels=np.eye(n_classes, dtype=np.uint8)[cls[perm]],
        class_names=[f"c{i}" for i in range(n_classes)], kind="vector",
        official_split=official[perm].astype(np.int8), source="synthetic",
    )


def per_class(data: ArrayData, idx: np.ndarray) -> np.ndarray:
    return np.bincount(data.class_index()[idx], minlength=data.labels.shape[1])


def assert_disjoint(split: Split):
    for a, b in (("query", "train"), ("query", "val"), ("train", "val")):
        assert not np.intersect1d(getattr(split, a), getattr(split, b)).size, (a, b)


# ---------------------------------------------------------------- types


def test_split_sha256_is_little_endian_int64_and_sizes():
    s = Split(query=[1, 2], train=[0], val=[], database=[0, 3, 4], protocol="p", seed=0)
    assert s.sha256()["query"] == hashlib.sha256(struct.pack("<2q", 1, 2)).hexdigest()
    assert s.sha256()["val"] == hashlib.sha256(b"").hexdigest()
    assert s.sizes() == {"query": 2, "train": 1, "val": 0, "database": 3}
    assert s.query.dtype == np.int64 and not s.query.flags.writeable


@pytest.mark.parametrize("parts", [dict(query=[1], train=[1], val=[]), dict(query=[1], train=[2], val=[1]),
                                   dict(query=[1], train=[2], val=[2]), dict(query=[1, 1], train=[], val=[])])
def test_split_rejects_overlaps_and_repeats(parts):
    with pytest.raises(ValueError):
        Split(database=[0], protocol="p", seed=0, **parts)


def test_missing_data_error_is_one_line():
    assert str(D.MissingDataError("a\nb\n")) == "a b"


def test_array_data_validates_shapes():
    with pytest.raises(ValueError):
        ArrayData(np.zeros((2, 4, 4, 2), np.uint8), np.eye(2, dtype=np.uint8), ["a", "b"], "image", None, "s")
    with pytest.raises(ValueError):
        ArrayData(np.zeros((2, 3), np.float32), np.eye(2, dtype=np.uint8), ["a"], "vector", None, "s")


# ---------------------------------------------------------------- registry and paths


def test_registry_names_and_errors():
    names = D.available()
    assert names == sorted(names)
    assert set(names) == {"digits", "cifar10", "cifar100", "fashion-mnist", "imagenet100", "nuswide21",
                          "nuswide81", "coco", "mirflickr", "voc2012", "imagefolder"}
    with pytest.raises(ValueError) as e:
        D.get_dataset("nope")
    assert str(e.value) == "unknown dataset 'nope'; valid: " + ", ".join(names) + ", imagefolder:<path>, hf:<path>"
    spec = D.get_dataset("cifar10")
    assert spec.protocol(None).name == "query1k-train5k-db54k" == spec.default_protocol
    with pytest.raises(ValueError) as e:
        spec.protocol("bogus")
    assert "query1k-db59k" in str(e.value) and "query10k-db50k" in str(e.value) and "'bogus'" in str(e.value)


def test_map_at_per_protocol():
    expected = {"imagenet100": 1000, "nuswide21": 5000, "nuswide81": 5000, "coco": 5000, "mirflickr": None,
                "voc2012": None, "cifar10": None, "digits": None}
    for name, r in expected.items():
        assert D.get_dataset(name).protocol(None).map_at == r, name
    assert D.get_dataset("coco").protocol("lists-clean").map_at == 5000


def test_data_root_precedence(monkeypatch, tmp_path):
    assert D.data_root() is None
    monkeypatch.setenv("HASHBENCH_DATA", str(tmp_path / "env"))
    assert D.data_root() == tmp_path / "env"
    assert D.data_root(str(tmp_path / "cli")) == tmp_path / "cli"


def test_cache_dir_env_and_default(monkeypatch, tmp_path):
    monkeypatch.setenv("HASHBENCH_CACHE", str(tmp_path / "c1"))
    assert D.cache_dir() == tmp_path / "c1" and (tmp_path / "c1").is_dir()
    monkeypatch.delenv("HASHBENCH_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert D.cache_dir() == tmp_path / "home" / ".cache" / "hashbench" and D.cache_dir().is_dir()


# ---------------------------------------------------------------- split building blocks


@pytest.mark.parametrize("n,expected", [(0, 0), (1, 0), (2, 1), (5, 1), (10, 1), (14, 1), (15, 2), (150, 15), (155, 16)])
def test_fraction_count(n, expected):
    assert splits.fraction_count(n, 0.1) == expected


def test_carve_val_stratified_and_multilabel():
    data = synthetic(20, 0, n_classes=3)
    pool = np.arange(len(data))
    train, val = splits.carve_val(data, pool, np.random.default_rng(0))
    assert per_class(data, val).tolist() == [2, 2, 2]
    assert sorted(np.concatenate([train, val]).tolist()) == pool.tolist()
    multi = ArrayData(np.zeros((30, 1), np.float32), np.ones((30, 2), np.uint8), ["a", "b"], "vector", None, "s")
    train, val = splits.carve_val(multi, np.arange(30), np.random.default_rng(0))
    assert len(val) == 3 and len(train) == 27 and not np.intersect1d(train, val).size


def test_sample_per_class_needs_enough_items():
    cls = np.array([0, 0, 1])
    with pytest.raises(ValueError, match="class 1"):
        splits.sample_per_class(cls, np.arange(3), 2, np.random.default_rng(0))


# ---------------------------------------------------------------- protocols on synthetic data


def test_cifar10_db54k_protocol_sizes_and_structure():
    data = synthetic(5000, 1000)
    s = D.get_dataset("cifar10").protocol("query1k-train5k-db54k").make_split(data, 0)
    assert s.sizes() == {"query": 1000, "train": 4500, "val": 500, "database": 54000}
    assert (per_class(data, s.query) == 100).all() and (per_class(data, s.train) == 450).all()
    assert (per_class(data, s.val) == 50).all() and (per_class(data, s.database) == 5400).all()
    assert_disjoint(s)
    assert not np.intersect1d(s.database, np.concatenate([s.query, s.train, s.val])).size
    assert len(np.unique(np.concatenate([s.query, s.train, s.val, s.database]))) == 60000
    assert s.protocol == "query1k-train5k-db54k" and s.seed == 0


def test_cifar10_db59k_protocol_keeps_train_in_database():
    data = synthetic(5000, 1000)
    s = D.get_dataset("cifar10").protocol("query1k-db59k").make_split(data, 1)
    assert s.sizes() == {"query": 1000, "train": 4500, "val": 500, "database": 59000}
    assert_disjoint(s)
    assert np.array_equal(s.database, np.setdiff1d(np.arange(60000), s.query))
    assert np.isin(s.train, s.database).all() and np.isin(s.val, s.database).all()
    assert (per_class(data, s.val) == 50).all()


def test_cifar10_db50k_protocol_uses_official_split():
    data = synthetic(5000, 1000)
    s = D.get_dataset("cifar10").protocol("query10k-db50k").make_split(data, 0)
    assert s.sizes() == {"query": 10000, "train": 45000, "val": 5000, "database": 50000}
    assert np.array_equal(s.query, np.flatnonzero(data.official_split == 1))
    assert np.array_equal(s.database, np.flatnonzero(data.official_split == 0))
    assert (per_class(data, s.val) == 500).all()
    assert_disjoint(s)
    s2 = D.get_dataset("cifar10").protocol("query10k-db50k").make_split(data, 1)
    assert s2.sha256()["query"] == s.sha256()["query"] and s2.sha256()["val"] != s.sha256()["val"]


def test_fashion_mnist_protocols():
    data = synthetic(6000, 1000)
    spec = D.get_dataset("fashion-mnist")
    s = spec.protocol(None).make_split(data, 0)
    assert s.sizes() == {"query": 10000, "train": 54000, "val": 6000, "database": 60000}
    s = spec.protocol("query1k-train5k-db64k").make_split(data, 0)
    assert s.sizes() == {"query": 1000, "train": 4500, "val": 500, "database": 64000}
    assert not np.intersect1d(s.database, s.val).size and not np.intersect1d(s.database, s.train).size


def test_cifar100_dht_protocol_ignores_seed():
    data = synthetic(500, 100, n_classes=100)
    proto = D.get_dataset("cifar100").protocol("train45k-val5k-test10k")
    s0, s1 = proto.make_split(data, 0), proto.make_split(data, 7)
    assert s0.sizes() == {"query": 10000, "train": 45000, "val": 5000, "database": 45000}
    assert s0.sha256() == s1.sha256() and s0.seed == 40 and "40" in proto.description
    assert (per_class(data, s0.val) == 50).all() and np.array_equal(s0.database, s0.train)
    assert np.array_equal(np.sort(np.concatenate([s0.train, s0.val])), np.flatnonzero(data.official_split == 0))


@pytest.mark.parametrize("dataset,protocol", [("cifar10", "query1k-train5k-db54k"), ("cifar10", "query1k-db59k"),
                                              ("fashion-mnist", "query1k-train5k-db64k")])
def test_random_protocols_deterministic_per_seed(dataset, protocol):
    data = synthetic(600, 100)
    proto = D.get_dataset(dataset).protocol(protocol)
    a, b, c = proto.make_split(data, 3), proto.make_split(data, 3), proto.make_split(data, 4)
    assert a.sha256() == b.sha256()
    assert all(a.sha256()[k] != c.sha256()[k] for k in ("query", "train", "val", "database"))


# ---------------------------------------------------------------- digits


def test_digits_loads_offline_with_protocol():
    spec = D.get_dataset("digits")
    data = spec.load(None)
    assert data.x.shape == (1797, 8, 8, 1) and data.x.dtype == np.uint8 and data.kind == "image"
    assert data.x.min() == 0 and data.x.max() == 255
    allowed = {int(np.round(v * 255 / 16)) for v in range(17)}
    assert set(np.unique(data.x).tolist()) <= allowed
    assert data.labels.sum(0).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    s = spec.protocol(None).make_split(data, 0)
    # val per class = round(0.1 * (n_c - 30)): 15 for every class except digit 8 (144 -> 14).
    assert s.sizes() == {"query": 300, "train": 1348, "val": 149, "database": 1497}
    assert (per_class(data, s.query) == 30).all()
    assert per_class(data, s.val).tolist() == [15] * 8 + [14, 15]
    assert np.array_equal(s.database, np.setdiff1d(np.arange(1797), s.query))
    assert_disjoint(s)
    again = spec.protocol(None).make_split(spec.load(None), 0)
    assert again.sha256() == s.sha256()
    assert spec.protocol(None).make_split(data, 1).sha256()["query"] != s.sha256()["query"]


# ---------------------------------------------------------------- imagefolder


@pytest.fixture
def image_folder(tmp_path):
    from PIL import Image

    root = tmp_path / "imgs"
    for name, count in (("cat", 10), ("ant", 5), ("bee", 1)):
        (root / name).mkdir(parents=True)
        for i in range(count):
            ext = ".png" if i % 2 else ".JPG"
            Image.new("RGB", (4, 4), (i, 0, 0)).save(root / name / f"{i:02d}{ext}", format="PNG" if ext == ".png" else "JPEG")
    (root / "cat" / "notes.txt").write_text("not an image")
    return root


def test_imagefolder_loads_and_splits(image_folder, monkeypatch):
    monkeypatch.setenv("HASHBENCH_IMAGEFOLDER", str(image_folder))
    spec = D.get_dataset("imagefolder")
    data = spec.load(None)
    assert data.kind == "path" and data.class_names == ["ant", "bee", "cat"]
    assert data.labels.sum(0).tolist() == [5, 1, 10]
    assert data.x[0] == str(image_folder / "ant" / "00.JPG") and all(pathlib.Path(p).is_absolute() for p in data.x)
    s = spec.protocol(None).make_split(data, 0)
    # queries: round(0.5)=1 ant, 0 bee (single image), 1 cat; val from the pool: 1 of 4 ants, 1 of 9 cats.
    assert s.sizes() == {"query": 2, "train": 12, "val": 2, "database": 14}
    assert per_class(data, s.query).tolist() == [1, 0, 1]
    assert_disjoint(s)


def test_imagefolder_path_argument_and_root(image_folder, tmp_path):
    data = D.get_dataset(f"imagefolder:{image_folder}").load(None)
    assert len(data) == 16
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "imagefolder").symlink_to(image_folder)
    assert len(D.get_dataset("imagefolder").load(tmp_path / "root")) == 16
    with pytest.raises(D.MissingDataError, match="HASHBENCH_IMAGEFOLDER"):
        D.get_dataset("imagefolder").load(None)
    with pytest.raises(D.MissingDataError, match=re.escape(str(tmp_path / "nothing"))):
        D.get_dataset(f"imagefolder:{tmp_path / 'nothing'}").load(None)
