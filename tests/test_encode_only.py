"""Train on one machine, evaluate on another: ``run --encode-only`` then ``evaluate`` gives the
metrics.csv of a normal run (without speed rows), and the fine-tuned configs and the throughput
benchmark compose."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hashbench.benchmark import throughput as tp
from hashbench.benchmark.cli import main
from hashbench.benchmark.config import resolve_config, split_config
from hashbench.benchmark.runner import RunRequest, load_data, run_one


@pytest.fixture(scope="module")
def digits():
    return load_data("digits", None, 0, None)


@pytest.mark.parametrize("name, bits", [("hashnet", 16), ("drq", 16), ("dht", 16)])
def test_encode_only_then_evaluate_gives_the_normal_metrics(name, bits, digits, tmp_path):
    req = dict(method=name, dataset="digits", bits=bits, seed=0, epochs=1, device="cpu", speed=False)
    normal, frame = run_one(RunRequest(out_dir=tmp_path / "normal", **req), digits)
    encoded, empty = run_one(RunRequest(out_dir=tmp_path / "encoded", encode_only=True, **req), digits)
    assert empty.empty and (encoded / "codes.npz").exists()
    assert not (encoded / "metrics.csv").exists() and not (encoded / "per_query.npz").exists()
    assert main(["evaluate", str(encoded)]) == 0
    a = pd.read_csv(normal / "metrics.csv", keep_default_na=False)
    b = pd.read_csv(encoded / "metrics.csv", keep_default_na=False)
    assert list(a.columns) == list(b.columns) and len(a) == len(b) > 10
    same = [c for c in a.columns if c not in ("timestamp", "git_revision", "value")]
    pd.testing.assert_frame_equal(a[same], b[same])
    quality = ~a["metric"].str.endswith("_seconds")
    np.testing.assert_array_equal(a.loc[quality, "value"].to_numpy(), b.loc[quality, "value"].to_numpy())
    with np.load(normal / "per_query.npz") as pa, np.load(encoded / "per_query.npz") as pb:
        assert sorted(pa.files) == sorted(pb.files)
        for k in pa.files:
            np.testing.assert_array_equal(pa[k], pb[k])
    assert oct((encoded / "metrics.csv").stat().st_mode & 0o777) == "0o644"
    # evaluating again recomputes beside it, never overwriting
    assert main(["evaluate", str(encoded)]) == 0
    assert len(list(encoded.glob("metrics.recomputed-*.csv"))) == 1


@pytest.mark.parametrize("name", ["hashnet", "drq", "dht", "cascade-dht"])
@pytest.mark.parametrize("variant, backbone", [("finetune", "efficientnet-lite0"), ("finetune-alexnet", "alexnet"),
                                               ("finetune-vgg16", "vgg16"), ("finetune-resnet50", "resnet50")])
def test_finetune_variants_fine_tune_with_mixed_precision(name, variant, backbone):
    harness, hparams = split_config(resolve_config(name, "cifar10", variant))
    assert harness["backbone"] == backbone and harness["frozen"] is False and harness["pretrained"] is True
    assert harness["image_size"] == 224 and harness["augment"] == "crop" and harness["pipeline"] == "batched"
    assert harness["precision"] == "bf16-mixed" and harness["channels_last"] is True
    assert not ({"pipeline", "precision", "channels_last", "compile"} & set(hparams))


@pytest.mark.parametrize("name", ["hashnet", "drq", "dht", "cascade-dht"])
def test_finetune_cpu_variants_fine_tune_at_96_px_in_float32(name):
    # the CPU fine-tune protocol (results/finetune-cpu): the finetune variant at 96 px, float32,
    # contiguous layout (bf16 autocast and channels_last are slow on a CPU), a few hundred steps
    harness, _ = split_config(resolve_config(name, "cifar10", "finetune-cpu"))
    full, _ = split_config(resolve_config(name, "cifar10", "finetune"))
    assert harness["frozen"] is False and harness["pretrained"] is True and harness["backbone"] == "efficientnet-lite0"
    assert harness["image_size"] == 96 and harness["precision"] == "32-true" and harness["channels_last"] is False
    assert harness["augment"] == full["augment"] and harness["sampler"] == full["sampler"]
    assert 4 <= harness["epochs"] <= 16 and harness["batchnorm"] == "frozen"


def test_throughput_rows_per_stage_with_the_solver_share(digits):
    setup = tp.Setup(backbone="small-cnn", image_size=None, batch=20, steps=3, warmup=1, device="cpu")
    rows = []
    for m in ("bare", "dht"):
        rows += tp.measure(m, digits.data, setup, dataset="digits", variant="finetune", pretrained=False)
    rows = tp.overhead(rows)
    assert [(r["method"], r["stage"]) for r in rows] == [("bare", 1), ("dht", 1), ("dht", 2)]
    assert all(r["images"] == 2 * 20 and r["images_per_second"] > 0 for r in rows)
    assert rows[0]["overhead"] == 1.0 and all(r["overhead"] > 0 for r in rows)
    assert 0 < rows[-1]["flow_solver_share"] < 1 and rows[-2]["flow_solver_share"] == 0
    pipe = tp.loader_rate(digits.data, setup, dataset="digits")
    assert pipe["images"] == 2 * 20 and pipe["images_per_second"] > 0 and pipe["images_per_cpu_second"] > 0
