"""End to end: every registered method trains a few steps on digits on CPU, and its run
directory holds what the result store promises."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from hashbench import methods
from hashbench.benchmark.cli import main
from hashbench.benchmark.config import split_config
from hashbench.benchmark.runner import RunRequest, load_data, run_one
from hashbench.benchmark.store import METRIC_COLUMNS


@pytest.fixture(scope="module")
def digits():
    return load_data("digits", None, 0, None)


def _bits_for(name: str) -> int:
    cls = methods.get_method(name)
    for bits in (16, 32, 24, 8):
        try:
            cls.check_bits(bits)
            return bits
        except ValueError:
            continue
    raise AssertionError(f"{name} accepts none of 16/32/24/8 bits")


@pytest.mark.parametrize("name", methods.available())
def test_every_method_trains_and_writes_a_run(name, digits, runs_dir):
    bits = _bits_for(name)
    req = RunRequest(method=name, dataset="digits", bits=bits, seed=0, epochs=2, out_dir=runs_dir, device="cpu",
                     speed=True)
    path, frame = run_one(req, digits)
    assert path.is_dir() and not path.name.startswith(".tmp")
    metrics = pd.read_csv(path / "metrics.csv")
    assert list(metrics.columns) == METRIC_COLUMNS
    assert (metrics["method"] == name).all() and (metrics["dataset"] == "digits").all()
    assert metrics["git_revision"].notna().all() and metrics["config_hash"].str.len().eq(12).all()
    names = set(metrics["metric"])
    if methods.get_method(name).code_type == "sparse":
        assert {"precision@1", "suf@1", "nmi_buckets"} <= names
    else:
        assert "map@all" in names and "precision@100" in names and "nmi_kmeans" in names
        default = metrics[(metrics["metric"] == "map@all")
                          & (metrics["variant"] == "denominator=relevant_retrieved,empty=zero,ties=expected")]
        assert len(default) >= 1 and ((default["value"] > 0.1) & (default["value"] <= 1)).all()
        assert any(n.startswith("speedup_wallclock@") for n in names)
    with np.load(path / "codes.npz") as z:
        for key in ("query_codes", "database_codes", "query_labels", "database_labels"):
            assert key in z.files
        assert z["query_labels"].shape[0] == z["query_codes"].shape[0] == 300
        if str(z["code_type"]) == "binary":
            assert z["query_codes"].dtype == np.int8 and set(np.unique(z["query_codes"])) <= {-1, 1}
    split = json.loads((path / "split.json").read_text())
    assert split["sizes"]["query"] == 300 and len(split["sha256"]["database"]) == 64
    cfg = yaml.safe_load((path / "config.yaml").read_text())
    assert cfg["request"]["method"] == name
    assert len(cfg["data_fingerprint"]) == 20  # the data identified by content
    hparams = {k: v for k, v in split_config(cfg["resolved"])[1].items() if isinstance(v, (str, int, float, bool))}
    assert hparams.items() <= cfg["method_hparams"].items()  # every scalar hyperparameter recorded


def test_runs_are_never_overwritten(digits, runs_dir):
    req = RunRequest(method="lsh", dataset="digits", bits=16, seed=0, out_dir=runs_dir, speed=False)
    a, _ = run_one(req, digits)
    b, _ = run_one(req, digits)
    assert a != b and a.exists() and b.exists()
    assert not [p for p in runs_dir.iterdir() if p.name.startswith(".tmp")]


def test_closed_form_runs_are_bit_for_bit_repeatable(digits, runs_dir):
    req = RunRequest(method="itq", dataset="digits", bits=32, seed=3, out_dir=runs_dir, speed=False)
    _, f1 = run_one(req, digits)
    _, f2 = run_one(req, digits)
    q = ~f1["metric"].str.contains("seconds")
    assert np.array_equal(f1[q]["value"].to_numpy(), f2[q]["value"].to_numpy())


def test_evaluate_recomputes_the_same_quality_metrics(digits, runs_dir, capsys):
    path, frame = run_one(RunRequest(method="pq", dataset="digits", bits=16, seed=0, out_dir=runs_dir, speed=False), digits)
    assert main(["evaluate", str(path)]) == 0
    redone = pd.read_csv(next(path.glob("metrics.recomputed-*.csv")))
    key = ["bits", "metric", "variant"]
    merged = frame.fillna({"variant": ""}).merge(redone.fillna({"variant": ""}), on=key, suffixes=("", "_new"))
    quality = merged[~merged["metric"].str.contains("seconds")]
    assert len(quality) > 10
    np.testing.assert_allclose(quality["value_new"], quality["value"], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("argv, needle", [
    (["run", "--method", "nope"], "unknown method 'nope'"),
    (["run", "--method", "lsh", "--dataset", "nope"], "unknown dataset"),
    (["run", "--method", "lsh", "--protocol", "nope"], "protocol"),
    (["run", "--method", "pq", "--bits", "12"], "multiple of 8"),
    (["run", "--method", "lsh", "--backbone", "nope"], "unknown backbone"),
    (["run", "--method", "lsh", "--dataset", "cifar100", "--data-root", "/nonexistent"], "/nonexistent"),
])
def test_bad_input_is_one_clear_line(argv, needle, capsys, tmp_path):
    code = main(argv + ["--out", str(tmp_path / "runs")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("error: ") and needle in err[-1]
    assert not any("Traceback" in line for line in err)


def test_list_names_methods_datasets_backbones(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in methods.available() + ["digits", "cifar10", "query1k-train5k-db54k", "efficientnet-lite0"]:
        assert name in out


def test_report_writes_tables_and_figures(digits, runs_dir, tmp_path):
    for name in ("lsh", "itq"):
        for seed in (0, 1):
            run_one(RunRequest(method=name, dataset="digits", bits=16, seed=seed, out_dir=runs_dir), digits)
    out = tmp_path / "report"
    assert main(["report", str(runs_dir), "--out", str(out)]) == 0
    md = (out / "table.md").read_text()
    assert "itq" in md and "±" in md and "**" in md
    tex = (out / "table.tex").read_text()
    assert r"\toprule" in tex and r"\pm" in tex and r"\textbf" in tex
    for fig in ("map_vs_bits", "precision_recall", "precision_at_k", "speedup_vs_precision"):
        assert (out / f"{fig}.png").stat().st_size > 1000 and (out / f"{fig}.pdf").exists()


def test_nan_loss_stops_the_run_and_keeps_nothing(digits, runs_dir, monkeypatch, capsys):
    import torch

    from hashbench.methods import registry
    from hashbench.methods.base import BINARY, HashingMethod

    class Exploding(HashingMethod):
        name, code_type = "exploding", BINARY

        def __init__(self, bits, n_classes, backbone, **hp):
            super().__init__(bits, n_classes, backbone, **hp)
            self.head = torch.nn.Linear(backbone.out_dim, bits)

        def embed(self, x):
            return self.head(self.backbone(x))

        def encode(self, x):
            return {"bits": torch.where(self.embed(x) >= 0, 1, -1).to(torch.int8)}

        def training_step(self, batch, batch_idx):
            return self.embed(batch[0]).sum() * float("nan")

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    monkeypatch.setitem(registry._REGISTRY, "exploding", Exploding)
    code = main(["run", "--method", "exploding", "--bits", "16", "--out", str(runs_dir), "--no-speed"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("error: non-finite loss")
    assert not runs_dir.exists() or not any(runs_dir.iterdir())


def test_run_names_are_safe_for_folder_datasets():
    from hashbench.benchmark.store import name_part

    assert name_part("imagefolder:/data/my photos/") == "imagefolder-my-photos"
    assert name_part("cifar10") == "cifar10"
