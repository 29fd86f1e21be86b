"""``--dataset hf:<folder>``: tiny datasets written with Hugging Face ``datasets`` itself
(save_to_disk and parquet, single- and multi-label), decoded into the cache, split by the named
protocols, run end to end; clear errors for what cannot be read."""
from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest

from hashbench import datasets as registry
from hashbench.datasets import MissingDataError
from hashbench.datasets.hf import import_hf_datasets

try:
    hfd = import_hf_datasets()
except MissingDataError as err:
    pytest.skip(f"Hugging Face datasets unavailable ({err}); install the [hf] extra", allow_module_level=True)


def test_hugging_face_datasets_and_hashbench_import_side_by_side():
    import datasets

    import hashbench.datasets

    assert datasets is hfd and datasets.__name__ == "datasets" and hasattr(datasets, "load_from_disk")
    assert hashbench.datasets.__name__ == "hashbench.datasets" and hasattr(hashbench.datasets, "get_dataset")
    assert "digits" in registry.available()


def test_a_shadowing_datasets_package_is_named(monkeypatch):
    import types

    monkeypatch.setitem(sys.modules, "datasets", types.ModuleType("datasets"))
    with pytest.raises(MissingDataError, match="instead of Hugging Face `datasets`.*console script"):
        import_hf_datasets()


def _images(n: int, seed: int, channels: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    shape = (8, 8) if channels == 1 else (8, 8, 3)
    return [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(n)]


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """60 RGB 8x8 images in 3 classes, train (45) + test (15), saved with DatasetDict.save_to_disk;
    the last test image is 10x6 (resized on load)."""
    folder = tmp_path_factory.mktemp("hf") / "single"
    images = _images(60, 0, channels=3)
    images[-1] = np.zeros((6, 10, 3), np.uint8)
    labels = [i % 3 for i in range(60)]
    features = hfd.Features({"image": hfd.Image(), "caption": hfd.Value("string"), "id": hfd.Value("int64"),
                             "label": hfd.ClassLabel(names=["cat", "dog", "owl"])})
    ds = hfd.Dataset.from_dict({"image": images, "caption": ["x"] * 60, "id": list(range(60)), "label": labels},
                               features=features)
    hfd.DatasetDict({"train": ds.select(range(45)), "test": ds.select(range(45, 60))}).save_to_disk(str(folder))
    return folder, images, labels


def test_single_label_save_to_disk_is_decoded_and_cached(single):
    folder, images, labels = single
    spec = registry.get_dataset(f"hf:{folder}")
    data = spec.load(None)
    assert data.kind == "image" and data.x.shape == (60, 8, 8, 3) and data.class_names == ["cat", "dog", "owl"]
    assert np.array_equal(data.x[:59], np.stack(images[:59]))
    assert np.array_equal(data.labels.argmax(1), labels) and data.single_label
    assert data.official_split.tolist() == [0] * 45 + [1] * 15
    assert "1 images resized to 8x8" in data.source
    again = spec.load(None)
    assert "[cached:" in again.source and np.array_equal(again.x, data.x)

    default = spec.protocol().make_split(data, 0)
    assert default.protocol == "query10pc" and default.sizes()["query"] == 6  # 2 per class
    assert np.array_equal(default.query, spec.protocol("query10pc").make_split(data, 0).query)
    official = spec.protocol("official").make_split(data, 0)
    assert official.query.tolist() == list(range(45, 60)) and official.sizes()["database"] == 45
    sized = spec.protocol("query10-train20-db25").make_split(data, 3)
    sizes = sized.sizes()
    assert (sizes["query"], sizes["train"] + sizes["val"], sizes["database"]) == (10, 20, 25) and sizes["val"] >= 2
    assert not set(sized.database) & (set(sized.query) | set(sized.train) | set(sized.val))
    assert spec.protocol("query10-train20").make_split(data, 3).sizes()["database"] == 50
    with pytest.raises(ValueError, match="query<Q>-train<T>"):
        spec.protocol("query10pct")
    with pytest.raises(ValueError, match="needs 70 items"):
        spec.protocol("query20-train20-db30").make_split(data, 0)


@pytest.fixture(scope="module")
def multi(tmp_path_factory):
    """40 grey images with a sequence of ClassLabel (parquet, one split) and a multi-hot column
    (save_to_disk); item 7 has no label."""
    root = tmp_path_factory.mktemp("hf")
    rng = np.random.default_rng(1)
    hot = (rng.random((40, 4)) < 0.4).astype(np.int64)
    hot[:, 0] |= (hot.sum(1) == 0)
    hot[7] = 0
    tags = [np.flatnonzero(r).tolist() for r in hot]
    images = _images(40, 2)
    seq = hfd.Features({"img": hfd.Image(), "tags": hfd.Sequence(hfd.ClassLabel(names=list("abcd")))})
    (root / "parquet" / "data").mkdir(parents=True)
    hfd.Dataset.from_dict({"img": images, "tags": tags}, features=seq).to_parquet(
        str(root / "parquet" / "data" / "train-00000-of-00001.parquet"))
    multihot = hfd.Features({"img": hfd.Image(), "labels": hfd.Sequence(hfd.Value("int8"), length=4)})
    hfd.Dataset.from_dict({"img": images, "labels": hot.tolist()}, features=multihot).save_to_disk(str(root / "hot"))
    return root, hot


@pytest.mark.parametrize("layout", ["parquet", "hot"])
def test_multi_label_sequence_and_multi_hot(multi, layout):
    root, hot = multi
    spec = registry.get_dataset(f"hf:{root / layout}")
    data = spec.load(None)
    keep = hot.any(1)
    assert data.x.shape == (39, 8, 8, 1) and np.array_equal(data.labels, hot[keep]) and not data.single_label
    assert "1 items without a label dropped" in data.source and data.official_split is None
    split = spec.protocol().make_split(data, 0)
    assert split.sizes()["query"] == 4 and split.sizes()["database"] == 35
    if layout == "parquet":
        assert data.class_names == list("abcd")
    with pytest.raises(ValueError, match="official train/test split"):
        spec.protocol("official").make_split(data, 0)


def test_clear_errors(single, tmp_path):
    folder = single[0]
    with pytest.raises(MissingDataError, match="not found"):
        registry.get_dataset(f"hf:{tmp_path / 'absent'}").load(None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingDataError, match="neither a save_to_disk dataset"):
        registry.get_dataset(f"hf:{tmp_path / 'empty'}").load(None)
    with pytest.raises(MissingDataError, match="no image column 'picture'.*columns: image"):
        registry.get_dataset(f"hf:{folder}?image=picture").load(None)
    with pytest.raises(ValueError, match="unsupported type.*ClassLabel"):
        registry.get_dataset(f"hf:{folder}?label=caption").load(None)
    with pytest.raises(ValueError, match="cast_column"):
        registry.get_dataset(f"hf:{folder}?label=id").load(None)
    with pytest.raises(ValueError, match="options are image=COLUMN"):
        registry.get_dataset(f"hf:{folder}?colour=red")
    no_image = tmp_path / "no-image"
    hfd.Dataset.from_dict({"x": [1, 2], "label": [0, 1]},
                          features=hfd.Features({"x": hfd.Value("int64"), "label": hfd.ClassLabel(names=["a", "b"])})
                          ).save_to_disk(str(no_image))
    with pytest.raises(MissingDataError, match="no image column"):
        registry.get_dataset(f"hf:{no_image}").load(None)
    no_label = tmp_path / "no-label"
    hfd.Dataset.from_dict({"image": _images(2, 0), "caption": ["a", "b"]},
                          features=hfd.Features({"image": hfd.Image(), "caption": hfd.Value("string")})
                          ).save_to_disk(str(no_label))
    with pytest.raises(MissingDataError, match="no label column"):
        registry.get_dataset(f"hf:{no_label}").load(None)


def test_run_on_a_digits_sized_hf_dataset(tmp_path, capsys):
    from sklearn.datasets import load_digits

    from hashbench.benchmark.cli import main

    bunch = load_digits()
    folder = tmp_path / "digits-hf"
    features = hfd.Features({"image": hfd.Image(), "label": hfd.ClassLabel(names=[str(c) for c in range(10)])})
    hfd.Dataset.from_dict({"image": list(np.round(bunch.images * 255 / 16).astype(np.uint8)),
                           "label": bunch.target.tolist()}, features=features).save_to_disk(str(folder))
    out = tmp_path / "runs"
    assert main(["run", "--method", "itq", "--dataset", f"hf:{folder}", "--bits", "16", "--no-speed",
                 "--out", str(out)]) == 0
    (run,) = [p for p in out.iterdir() if (p / "metrics.csv").exists()]
    metrics = pd.read_csv(run / "metrics.csv")
    assert set(metrics["dataset"]) == {f"hf:{folder}"} and set(metrics["protocol"]) == {"query10pc"}
    default = "denominator=relevant_retrieved,empty=zero,ties=expected"
    value = metrics.loc[(metrics["metric"] == "map@all") & (metrics["variant"] == default), "value"].iloc[0]
    assert 0.3 < value <= 1.0  # ITQ on raw digits pixels: far above chance (0.1)
    assert main(["run", "--method", "itq", "--dataset", f"hf:{tmp_path / 'nope'}", "--bits", "16"]) == 2
    assert "not found" in capsys.readouterr().err
