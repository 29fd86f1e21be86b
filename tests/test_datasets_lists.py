"""List-file datasets: parser and protocol on hand-written lists, loading with images present or
absent, and the real split lists of ``hashing-split-lists.tar.xz`` (env HASHBENCH_SHARED_DATA)."""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import tarfile

import numpy as np
import pytest

from hashbench import datasets as D
from hashbench.datasets import listfile


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    monkeypatch.delenv("HASHBENCH_LISTS", raising=False)
    monkeypatch.setenv("HASHBENCH_CACHE", str(tmp_path / "cache"))


def write(path: pathlib.Path, lines: list[str]) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))
    return path


# ---------------------------------------------------------------- parser


def test_read_list_file(tmp_path):
    f = write(tmp_path / "l.txt", ["./a/x.jpg 0 1 0", "b/y.jpg\t1 1 0", "", "c.jpg 0  0 1"])
    paths, labels = listfile.read_list_file(f)
    assert paths == ["a/x.jpg", "b/y.jpg", "c.jpg"]
    assert labels.dtype == np.uint8 and labels.tolist() == [[0, 1, 0], [1, 1, 0], [0, 0, 1]]


@pytest.mark.parametrize("bad,match", [(["a 0 1", "b 0 1 1"], "l.txt:2: 3 labels"), (["a 0 1", "b 0 2"], "l.txt:2: labels must be 0/1"),
                                       (["a 0 1", "b 0 x"], "0/1")])
def test_read_list_file_rejects(tmp_path, bad, match):
    with pytest.raises(ValueError, match=match):
        listfile.read_list_file(write(tmp_path / "l.txt", bad))


def test_find_list_files_aliases_and_numeric_shards(tmp_path):
    write(tmp_path / "train.txt", ["a 1"])
    write(tmp_path / "test.txt", ["b 1"])
    for i in (0, 2, 10):
        write(tmp_path / "test" / f"database{i}.txt", [f"d{i} 1"])
    write(tmp_path / "test" / "database_old.txt", ["z 1"])
    assert listfile.find_list_files(tmp_path, "query") == [tmp_path / "test.txt"]
    assert [p.name for p in listfile.find_list_files(tmp_path, "database")] == ["database0.txt", "database2.txt", "database10.txt"]
    assert listfile.find_list_files(tmp_path / "test", "train") == []


def test_read_lists_dedupes_across_roles(tmp_path):
    files = {
        "train": [write(tmp_path / "train.txt", ["t1 1 0", "t2 0 1", "t1 1 0"])],
        "query": [write(tmp_path / "query.txt", ["q1 1 1"])],
        "database": [write(tmp_path / "db.txt", ["./q1 1 1", "d1 0 1", "t2 0 1"])],
    }
    listed = listfile.read_lists(files)
    assert listed.paths == ["t1", "t2", "q1", "d1"]
    assert listed.labels.tolist() == [[1, 0], [0, 1], [1, 1], [0, 1]]
    assert {k: v.tolist() for k, v in listed.roles.items()} == {"train": [0, 1], "query": [2], "database": [2, 3, 1]}
    write(tmp_path / "db.txt", ["q1 0 1"])
    with pytest.raises(ValueError, match="q1 is listed again with different labels"):
        listfile.read_lists(files)
    files["database"] = [write(tmp_path / "db3.txt", ["d 0 1 1"])]
    with pytest.raises(ValueError, match="3 labels per line"):
        listfile.read_lists(files)


# ---------------------------------------------------------------- protocol and loading


def make_lists(root: pathlib.Path, name: str, with_database: bool = True, images: bool = True):
    """20 train (multi-hot 3 labels), 4 query, database = 2 queries + 6 others."""
    lists = root / name / "lists"
    write(lists / "train.txt", [f"img/t{i}.jpg {i % 2} 1 {i % 3 == 0:d}" for i in range(20)])
    write(lists / "test.txt", [f"img/q{i}.jpg 1 0 {i % 2}" for i in range(4)])
    if with_database:
        write(lists / "database.txt", [f"img/q{i}.jpg 1 0 {i % 2}" for i in range(2)] + [f"img/d{i}.jpg 0 0 1" for i in range(6)])
    if images:
        (root / name / "img").mkdir(parents=True)
        for p in ["t%d" % i for i in range(20)] + ["q%d" % i for i in range(4)] + ["d%d" % i for i in range(6)]:
            (root / name / "img" / f"{p}.jpg").write_bytes(b"")


def test_lists_protocol_and_clean_variant(tmp_path):
    make_lists(tmp_path, "coco")
    spec = D.get_dataset("coco")
    data = spec.load(tmp_path)
    assert data.kind == "path" and len(data) == 30 and data.labels.shape == (30, 3)
    assert data.x[0] == os.path.join(os.path.abspath(tmp_path / "coco"), "img/t0.jpg")
    s = spec.protocol(None).make_split(data, 0)
    assert s.sizes() == {"query": 4, "train": 18, "val": 2, "database": 8}
    assert s.query.tolist() == [20, 21, 22, 23] and s.database.tolist() == [20, 21, 24, 25, 26, 27, 28, 29]
    assert sorted(s.train.tolist() + s.val.tolist()) == list(range(20))
    clean = spec.protocol("lists-clean").make_split(data, 0)
    assert clean.database.tolist() == [24, 25, 26, 27, 28, 29] and clean.sha256()["val"] == s.sha256()["val"]
    assert spec.protocol(None).make_split(data, 1).sha256()["val"] != s.sha256()["val"]


def test_lists_without_database_use_all_non_queries(tmp_path):
    make_lists(tmp_path, "nuswide21", with_database=False)
    data = D.get_dataset("nuswide21").load(tmp_path)
    s = D.get_dataset("nuswide21").protocol(None).make_split(data, 0)
    assert s.database.tolist() == list(range(20)) and s.query.tolist() == [20, 21, 22, 23]
    assert s.sizes()["val"] == 2 and np.isin(s.val, s.database).all()


def test_lists_single_label_val_is_stratified(tmp_path):
    lists = tmp_path / "imagenet100" / "lists"
    write(lists / "train.txt", [f"t{i}.jpg " + " ".join("1" if j == i % 4 else "0" for j in range(4)) for i in range(40)])
    write(lists / "query.txt", ["q.jpg 1 0 0 0"])
    for i in range(40):
        (tmp_path / "imagenet100" / f"t{i}.jpg").write_bytes(b"")
    (tmp_path / "imagenet100" / "q.jpg").write_bytes(b"")
    data = D.get_dataset("imagenet100").load(tmp_path)
    s = D.get_dataset("imagenet100").protocol(None).make_split(data, 0)
    assert np.bincount(data.class_index()[s.val], minlength=4).tolist() == [1, 1, 1, 1]


def test_list_dataset_missing_pieces(tmp_path, monkeypatch):
    spec = D.get_dataset("voc2012")
    with pytest.raises(D.MissingDataError, match="HASHBENCH_DATA"):
        spec.load(None)
    with pytest.raises(D.MissingDataError) as e:
        spec.load(tmp_path)
    assert str(tmp_path / "voc2012" / "lists") in str(e.value) and "\n" not in str(e.value)
    make_lists(tmp_path, "voc2012", images=False)
    with pytest.raises(D.MissingDataError, match="30 of 30 listed images are missing"):
        spec.load(tmp_path)
    other = tmp_path / "other"
    make_lists(other, "voc2012", images=True)
    os.unlink(other / "voc2012" / "img" / "d3.jpg")
    with pytest.raises(D.MissingDataError, match=r"1 of 30 .*first: img/d3.jpg"):
        spec.load(other)
    shutil.copytree(tmp_path / "voc2012" / "lists", tmp_path / "elsewhere" / "voc2012")
    monkeypatch.setenv("HASHBENCH_LISTS", str(tmp_path / "elsewhere"))  # lists found there, images absent
    with pytest.raises(D.MissingDataError, match=re.escape(f"image root {tmp_path / 'empty'}/voc2012/ not found")):
        spec.load(tmp_path / "empty")


# ---------------------------------------------------------------- the real split lists


def _shared_tarball() -> pathlib.Path | None:
    base = os.environ.get("HASHBENCH_SHARED_DATA")
    path = pathlib.Path(base) / "hashing-split-lists.tar.xz" if base else None
    return path if path is not None and path.is_file() else None


@pytest.fixture(scope="module")
def shared_lists(tmp_path_factory) -> pathlib.Path:
    tarball = _shared_tarball()
    if tarball is None:
        pytest.skip("HASHBENCH_SHARED_DATA unset or without hashing-split-lists.tar.xz")
    out = tmp_path_factory.mktemp("lists")
    with tarfile.open(tarball) as tar:
        tar.extractall(out, filter="data")
    return out


def test_real_list_line_counts(shared_lists):
    # (line count, label width) per list file, from ../shared/data/README.md and the lists themselves.
    expected = {
        "swuxyj+DeepHash-pytorch/data/imagenet/train.txt": (13000, 100),
        "swuxyj+DeepHash-pytorch/data/imagenet/test.txt": (5000, 100),
        "swuxyj+DeepHash-pytorch/data/nuswide_21/train.txt": (10500, 21),
        "swuxyj+DeepHash-pytorch/data/nuswide_21/test.txt": (2100, 21),
        "thuml+DeepHash/data/nuswide_81/train.txt": (10000, 81),
        "thuml+DeepHash/data/nuswide_81/test.txt": (5000, 81),
        "swuxyj+DeepHash-pytorch/data/mirflickr/database.txt": (20000, 38),
        "swuxyj+DeepHash-pytorch/data/voc2012/database.txt": (6540, 20),
        "thuml+HashNet/caffe/data/coco/train.txt": (10000, 80),
    }
    for rel, (lines, width) in expected.items():
        paths, labels = listfile.read_list_file(shared_lists / rel)
        assert labels.shape == (lines, width), rel


# name: (train, query, database, label width, total unique items, val)
REAL = {
    "imagenet100": (13000, 5000, 128503, 100, 133503, 1300),
    "coco": (10000, 5000, 112218, 80, 122218, 1000),
    "nuswide21": (10500, 2100, None, 21, 12600, 1050),
    "nuswide81": (10000, 5000, None, 81, 15000, 1000),
    "mirflickr": (4000, 1000, 20000, 38, 25000, 400),
    "voc2012": (4000, 1000, 6540, 20, 11540, 400),
}


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_lists_parse_and_split(shared_lists, monkeypatch, tmp_path, name):
    n_train, n_query, n_db, width, n_items, n_val = REAL[name]
    monkeypatch.setenv("HASHBENCH_LISTS", str(shared_lists))
    files, shared = listfile.locate_lists(name, None)
    assert shared and (len(files.get("database", [])) == 8) == (name in ("imagenet100", "coco"))
    listed = listfile.read_lists(files, strip_shared_prefix=shared)
    assert listed.labels.shape == (n_items, width)
    assert len(listed.roles["train"]) == n_train and len(listed.roles["query"]) == n_query
    assert (len(listed.roles["database"]) if n_db else None) == n_db
    assert not any(p.startswith(("./", "data/")) for p in listed.paths)
    data = listfile.to_array_data(listed, tmp_path / name, "real lists")
    s = D.get_dataset(name).protocol(None).make_split(data, 0)
    assert s.sizes() == {"query": n_query, "train": n_train - n_val, "val": n_val,
                         "database": n_db or n_items - n_query}
    if name == "imagenet100":  # training list inside the database, 13 val images per class
        assert np.isin(listed.roles["train"], listed.roles["database"]).all()
        assert (np.bincount(data.class_index()[s.val], minlength=100) == 13).all()
    if name == "coco":  # HashNet puts every query in the database; the clean variant removes them
        assert np.isin(s.query, s.database).all()
        assert D.get_dataset(name).protocol("lists-clean").make_split(data, 0).sizes()["database"] == 107218
    with pytest.raises(D.MissingDataError, match=re.escape(f"{tmp_path}/{name}/")):
        D.get_dataset(name).load(tmp_path)
