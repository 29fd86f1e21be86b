"""CIFAR-10 (three layouts, cache), CIFAR-100 pickles and Fashion-MNIST IDX loaders, on tiny files
written here; plus the real CIFAR-10 / Fashion-MNIST when present (marked ``data``)."""

from __future__ import annotations

import gzip
import os
import pathlib
import pickle
import re
import sys
import tarfile
import types
import urllib.error

import numpy as np
import pytest

from hashbench import datasets as D
from hashbench.datasets import cache, cifar10, fashion_mnist

CLASSES = cifar10.CLASSES


@pytest.fixture(autouse=True)
def _tmp_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("HASHBENCH_CACHE", str(tmp_path / "cache"))


# ---------------------------------------------------------------- CIFAR-10 pickles


def write_cifar10_pickles(root: pathlib.Path, per_class: int = 3) -> np.ndarray:
    """torchvision layout with ``per_class`` images per class in each of the 6 batches; returns the
    N x 32 x 32 x 3 images in load order. Image i has R plane = i % 256, G = 7, B = 200."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    images, n = [], 0
    for f in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = list(np.tile(np.arange(10), per_class))
        data = np.zeros((len(labels), 3, 32, 32), np.uint8)
        data[:, 0] = ((n + np.arange(len(labels))) % 256)[:, None, None]
        data[:, 1], data[:, 2] = 7, 200
        n += len(labels)
        with open(folder / f, "wb") as fh:
            pickle.dump({b"data": data.reshape(len(labels), 3072), b"labels": labels}, fh)
        images.append(data.transpose(0, 2, 3, 1))
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({b"label_names": [c.encode() for c in CLASSES]}, fh)
    return np.concatenate(images)


def test_cifar10_pickle_layout(tmp_path):
    expected = write_cifar10_pickles(tmp_path)
    data = D.get_dataset("cifar10").load(tmp_path)
    assert data.x.shape == (180, 32, 32, 3) and np.array_equal(data.x, expected)
    assert data.x[5, 3, 4].tolist() == [5, 7, 200]
    assert data.labels.argmax(1).tolist() == list(np.tile(np.arange(10), 18))
    assert data.official_split.tolist() == [0] * 150 + [1] * 30
    assert data.class_names == CLASSES and "pickle" in data.source


def test_cifar10_pickle_layout_incomplete(tmp_path):
    write_cifar10_pickles(tmp_path)
    os.unlink(tmp_path / "cifar-10-batches-py" / "data_batch_3")
    with pytest.raises(D.MissingDataError, match="data_batch_3"):
        D.get_dataset("cifar10").load(tmp_path)


# ---------------------------------------------------------------- CIFAR-10 JPEG folder / tarball


def colour(split: str, c: int, i: int) -> tuple[int, int, int]:
    return (20 * c + 10, 60 * i + 30, 200 if split == "train" else 40)


def write_cifar10_jpegs(root: pathlib.Path, n_train: int = 3, n_test: int = 1) -> pathlib.Path:
    """``root/cifar10-jpg/{train,test}/<class>/NNNN.jpg``, solid colours (JPEG keeps them within +-3)."""
    from PIL import Image

    for split, n in (("train", n_train), ("test", n_test)):
        for c, name in enumerate(CLASSES):
            d = root / "cifar10-jpg" / split / name
            d.mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (32, 32), colour(split, c, i)).save(d / f"{i:04d}.jpg", quality=95)
    return root / "cifar10-jpg"


def check_jpeg_data(data):
    assert data.x.shape == (40, 32, 32, 3) and data.x.dtype == np.uint8
    order = [(s, c, i) for s, n in (("train", 3), ("test", 1)) for c in range(10) for i in range(n)]
    expected = np.array([colour(*k) for k in order])
    assert np.abs(data.x.reshape(40, -1, 3).astype(int) - expected[:, None, :]).max() <= 3
    assert data.labels.argmax(1).tolist() == [c for _, c, _ in order]
    assert data.official_split.tolist() == [0] * 30 + [1] * 10


def test_cifar10_jpeg_folder_layout(tmp_path):
    write_cifar10_jpegs(tmp_path)
    data = D.get_dataset("cifar10").load(tmp_path)
    check_jpeg_data(data)
    assert "JPEG folder" in data.source


def make_tarball(tmp_path) -> pathlib.Path:
    src = tmp_path / "src"
    write_cifar10_jpegs(src)
    root = tmp_path / "root"
    root.mkdir()
    with tarfile.open(root / "cifar10-jpg.tar.gz", "w:gz") as tar:
        tar.add(src / "cifar10-jpg", arcname="cifar10-jpg")
    return root


def test_cifar10_tarball_matches_folder_and_extracts_nothing(tmp_path):
    root = make_tarball(tmp_path)
    before = sorted(os.listdir(root))
    data = D.get_dataset("cifar10").load(root)
    check_jpeg_data(data)
    assert sorted(os.listdir(root)) == before
    folder_data = cifar10.load_jpeg_folder(tmp_path / "src" / "cifar10-jpg")
    assert np.array_equal(data.x, folder_data.x) and np.array_equal(data.labels, folder_data.labels)


def test_cifar10_cache_hit_skips_decoding_and_miss_on_change(tmp_path, monkeypatch):
    root = make_tarball(tmp_path)
    spec = D.get_dataset("cifar10")
    calls = []
    real = cifar10.decode_image
    monkeypatch.setattr(cifar10, "decode_image", lambda b: calls.append(1) or real(b))
    first = spec.load(root)
    assert len(calls) == 40
    entries = list((tmp_path / "cache" / "cifar10").iterdir())
    assert len(entries) == 1 and entries[0].suffix == ".npz"  # no temp file left behind

    def boom(_):
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(cifar10, "decode_image", boom)
    second = spec.load(root)
    assert np.array_equal(first.x, second.x) and np.array_equal(first.official_split, second.official_split)
    assert second.class_names == CLASSES and "cached" in second.source
    st = os.stat(root / "cifar10-jpg.tar.gz")
    os.utime(root / "cifar10-jpg.tar.gz", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    with pytest.raises(AssertionError, match="decoded again"):
        spec.load(root)


def test_cache_rebuilds_corrupt_entry(tmp_path):
    data = D.get_dataset("digits").load(None)
    path = cache.cache_path("digits", "k")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a zip")
    built = cache.cached("digits", "k", lambda: data)
    assert built is data
    again = cache.load(path)
    assert np.array_equal(again.x, data.x) and again.class_names == data.class_names and again.official_split is None


def test_cifar10_missing_message_and_download(tmp_path, monkeypatch):
    calls = []

    def offline(*args, **kwargs):
        calls.append(kwargs)
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    # A stand-in for torchvision (importing the real one costs seconds) whose CIFAR10 acts offline.
    fake = types.ModuleType("torchvision")
    fake.datasets = types.SimpleNamespace(CIFAR10=offline)
    monkeypatch.setitem(sys.modules, "torchvision", fake)
    with pytest.raises(D.MissingDataError) as e:
        D.get_dataset("cifar10").load(tmp_path)
    msg = str(e.value)
    assert "\n" not in msg and str(tmp_path / "cifar-10-batches-py") in msg and str(tmp_path / "cifar10-jpg.tar.gz") in msg
    assert calls == []  # no download without the explicit flag
    with pytest.raises(D.MissingDataError, match="download into .* failed .*URLError"):
        D.get_dataset("cifar10").load(tmp_path, download=True)
    assert calls and calls[0]["download"] is True
    with pytest.raises(D.MissingDataError, match="HASHBENCH_DATA"):
        D.get_dataset("cifar10").load(None)


# ---------------------------------------------------------------- CIFAR-100 pickles


def write_cifar100(root: pathlib.Path, n_train: int = 10, n_test: int = 2) -> None:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for name, n in (("train", n_train), ("test", n_test)):
        fine = list(np.repeat(np.arange(100), n))
        data = np.full((len(fine), 3072), 1 if name == "train" else 2, np.uint8)
        with open(folder / name, "wb") as fh:
            pickle.dump({b"data": data, b"fine_labels": fine, b"coarse_labels": [0] * len(fine)}, fh)
    with open(folder / "meta", "wb") as fh:
        pickle.dump({b"fine_label_names": [f"fine{i}".encode() for i in range(100)], b"coarse_label_names": []}, fh)


def test_cifar100_pickles_and_protocols(tmp_path):
    write_cifar100(tmp_path)
    spec = D.get_dataset("cifar100")
    data = spec.load(tmp_path)
    assert data.x.shape == (1200, 32, 32, 3) and data.class_names[:2] == ["fine0", "fine1"]
    assert (data.x[:1000] == 1).all() and (data.x[1000:] == 2).all()
    assert data.official_split.tolist() == [0] * 1000 + [1] * 200
    assert data.labels.argmax(1)[:20].tolist() == [0] * 10 + [1] * 10
    s = spec.protocol(None).make_split(data, 0)
    assert s.sizes() == {"query": 200, "train": 900, "val": 100, "database": 1000}
    dht = spec.protocol("train45k-val5k-test10k")
    s0 = dht.make_split(data, 0)
    assert s0.sizes() == {"query": 200, "train": 900, "val": 100, "database": 900}
    assert np.bincount(data.class_index()[s0.val], minlength=100).tolist() == [1] * 100
    assert s0.sha256() == dht.make_split(data, 99).sha256()


def test_cifar100_missing(tmp_path):
    with pytest.raises(D.MissingDataError, match=re.escape(str(tmp_path / "cifar-100-python"))):
        D.get_dataset("cifar100").load(tmp_path)


# ---------------------------------------------------------------- Fashion-MNIST


def idx_bytes(arr: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, arr.ndim]) + np.asarray(arr.shape, ">u4").tobytes()
    return header + arr.astype(np.uint8).tobytes()


def test_read_idx_hand_made(tmp_path):
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    raw = idx_bytes(arr)
    assert raw[:8] == b"\x00\x00\x08\x03\x00\x00\x00\x02"
    (tmp_path / "a-idx3-ubyte").write_bytes(raw)
    with gzip.open(tmp_path / "b-idx3-ubyte.gz", "wb") as fh:
        fh.write(raw)
    assert np.array_equal(fashion_mnist.read_idx(tmp_path / "a-idx3-ubyte"), arr)
    assert np.array_equal(fashion_mnist.read_idx(tmp_path / "b-idx3-ubyte.gz"), arr)
    (tmp_path / "c").write_bytes(raw[:-1])
    with pytest.raises(ValueError, match="does not match"):
        fashion_mnist.read_idx(tmp_path / "c")


def test_fashion_mnist_torchvision_layout_and_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", tmp_path / "no-debian")
    with pytest.raises(D.MissingDataError) as e:
        D.get_dataset("fashion-mnist").load(tmp_path)
    assert "apt-get install dataset-fashion-mnist" in str(e.value) and str(tmp_path / "FashionMNIST" / "raw") in str(e.value)
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    parts = {"train": (rng.integers(0, 256, (20, 28, 28)), np.arange(20) % 10),
             "t10k": (rng.integers(0, 256, (10, 28, 28)), np.arange(10))}
    for prefix, (images, labels) in parts.items():
        with gzip.open(raw / f"{prefix}-images-idx3-ubyte.gz", "wb") as fh:
            fh.write(idx_bytes(images))
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(idx_bytes(labels))
    data = D.get_dataset("fashion-mnist").load(tmp_path)
    assert data.x.shape == (30, 28, 28, 1)
    assert np.array_equal(data.x[20:, :, :, 0], parts["t10k"][0])
    assert data.labels.argmax(1).tolist() == list(np.arange(20) % 10) + list(range(10))
    assert data.official_split.tolist() == [0] * 20 + [1] * 10 and data.class_names[0] == "T-shirt/top"


@pytest.mark.data
@pytest.mark.skipif(not fashion_mnist.DEBIAN_DIR.is_dir(), reason="Debian package dataset-fashion-mnist not installed")
def test_real_fashion_mnist_debian():
    spec = D.get_dataset("fashion-mnist")
    data = spec.load(None)
    assert data.x.shape == (70000, 28, 28, 1) and (data.labels.sum(0) == 7000).all()
    assert int(data.official_split.sum()) == 10000
    assert spec.protocol("query1k-train5k-db64k").make_split(data, 0).sizes() == {
        "query": 1000, "train": 4500, "val": 500, "database": 64000}


# ---------------------------------------------------------------- real CIFAR-10 (HASHBENCH_DATA)


def _real_cifar_root() -> pathlib.Path | None:
    root = os.environ.get("HASHBENCH_DATA")
    if root and ((pathlib.Path(root) / "cifar10-jpg.tar.gz").is_file() or (pathlib.Path(root) / "cifar10-jpg").is_dir()):
        return pathlib.Path(root)
    return None


@pytest.mark.data
@pytest.mark.skipif(_real_cifar_root() is None, reason="HASHBENCH_DATA has no cifar10-jpg.tar.gz or cifar10-jpg/")
def test_real_cifar10(monkeypatch):
    # decodes into the session's temporary cache (conftest), never the user's: ~15 s cold on 2 cores
    spec = D.get_dataset("cifar10")
    data = spec.load(D.data_root())
    assert data.x.shape == (60000, 32, 32, 3) and (data.labels.sum(0) == 6000).all()
    assert int(data.official_split.sum()) == 10000
    assert (data.labels[data.official_split == 1].sum(0) == 1000).all()
    expected = {"query1k-train5k-db54k": (1000, 4500, 500, 54000), "query1k-db59k": (1000, 4500, 500, 59000),
                "query10k-db50k": (10000, 45000, 5000, 50000), "query500-train2k-db10k": (500, 1800, 200, 10000)}
    for name, (q, t, v, db) in expected.items():
        s = spec.protocol(name).make_split(data, 0)
        assert s.sizes() == {"query": q, "train": t, "val": v, "database": db}, name
        assert (np.bincount(data.class_index()[s.query], minlength=10) == q // 10).all()
