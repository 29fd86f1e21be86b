"""The front door as a user types it: the real CLI in a temporary working directory, with
relative, '~'-prefixed, symlinked and space-containing paths, and bad configurations caught
before any work (one ``error:`` line, exit 2, no run directory, no cache file)."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from hashbench.benchmark.cli import main

REPO = Path(__file__).resolve().parent.parent


def _run_dirs(out: Path) -> list[Path]:
    return sorted(p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")) if out.exists() else []


def _check_run(run: Path, method: str) -> None:
    frame = pd.read_csv(run / "metrics.csv")
    assert set(frame["method"]) == {method}
    assert (frame["metric"] == "map@all").any()
    assert (run / "codes.npz").exists()
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    best = cfg.get("training", {}).get("best_checkpoint") if isinstance(cfg.get("training"), dict) else None
    if best:  # recorded relative to the run directory, and the file is there after the rename
        assert not Path(best).is_absolute() and (run / best).exists()


@pytest.mark.parametrize("out", ["runs", "some dir/with spaces", "./nested/../runs2"])
def test_run_with_relative_out_from_a_fresh_working_directory(tmp_path, monkeypatch, capsys, out):
    """A trainable (HashNet) and a closed-form method (ITQ) with a relative --out, from a
    working directory that is not the repository (the fresh-clone `make bench` failure)."""
    monkeypatch.chdir(tmp_path)
    rc = main(["run", "--method", "hashnet,itq", "--bits", "16", "--epochs", "2", "--out", out, "--no-speed"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert re.search(r"^### mAP \(map@all; digits", printed, re.M)
    assert re.search(r"^\| hashnet +\| +0\.\d+ \|$", printed, re.M) and re.search(r"^\| itq +\| +0\.\d+ \|$", printed, re.M)
    runs = _run_dirs(tmp_path / out)
    assert [r.name.split("_")[1] for r in runs] == ["hashnet", "itq"]
    for run, method in zip(runs, ["hashnet", "itq"]):
        _check_run(run, method)
    assert not list((tmp_path / out).glob(".tmp-*"))  # nothing half-written left behind


def test_run_with_home_and_symlinked_out(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--method", "hashnet", "--bits", "16", "--epochs", "1", "--out", "~/my runs", "--no-speed"]) == 0
    assert len(_run_dirs(home / "my runs")) == 1 and not (tmp_path / "~").exists()

    target = tmp_path / "real store"
    target.mkdir()
    (tmp_path / "link").symlink_to(target)
    assert main(["run", "--method", "hashnet", "--bits", "16", "--epochs", "1", "--out", "link/runs", "--no-speed"]) == 0
    runs = _run_dirs(target / "runs")
    assert len(runs) == 1
    _check_run(runs[0], "hashnet")


def test_data_root_expands_home_and_follows_symlinks(tmp_path, monkeypatch):
    from hashbench.datasets.paths import data_root

    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "my data").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "my data")
    assert data_root("~/my data") == tmp_path / "my data"
    monkeypatch.setenv("HASHBENCH_DATA", "~/alias")
    assert data_root(None).resolve() == (tmp_path / "my data").resolve()


def test_console_script_normal_path(tmp_path):
    """`hashbench run` as a subprocess (the console script installed by `make setup`), relative --out."""
    script = Path(sys.executable).with_name("hashbench")
    if not script.exists():
        pytest.skip(f"no console script beside {sys.executable} (hashbench not installed in this environment)")
    proc = subprocess.run([str(script), "run", "--method", "lsh", "--bits", "16", "--out", "out", "--no-speed"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "### mAP (map@all; digits" in proc.stdout
    assert len(_run_dirs(tmp_path / "out")) == 1


# (arguments, text the single error line must contain)
BAD_INPUT = [
    (["--method", "hashnet", "--set", "bogus=1"], "unknown --set key 'bogus' for hashnet"),
    (["--method", "itq", "--set", "bogus=1"], "unknown --set key 'bogus' for itq"),
    (["--method", "lsh", "--set", "n_iter=5"], "unknown --set key 'n_iter' for lsh"),
    (["--method", "all", "--set", "lr=0.1"], "unknown --set key 'lr' for"),
    (["--method", "hashnet", "--set", "lr=-1"], "--set lr=-1 for hashnet: must be > 0"),
    (["--method", "drq", "--set", "codebook_lr=0"], "--set codebook_lr=0 for drq: must be > 0"),
    (["--method", "hashnet", "--set", "epochs=2.5"], "--set epochs=2.5 for hashnet: must be an integer"),
    (["--method", "hashnet", "--set", "epochs=0"], "--set epochs=0 for hashnet: must be >= 1"),
    (["--method", "hashnet", "--set", "continuation=maybe"], "continuation='maybe' for hashnet: must be a boolean"),
    (["--method", "hashnet", "--set", "lr=null"], "--set lr=None for hashnet: must be a number, not null"),
    (["--method", "dht", "--set", "dropout=1.5"], "--set dropout=1.5 for dht: must be in [0, 1)"),
    (["--method", "dht", "--bits", "16", "--set", "sparsity=17"], "sparsity must satisfy 1 <= s <= d = bits = 16"),
    (["--method", "dht", "--set", "loss=foo"], "dht: loss must be one of"),
    (["--method", "drq", "--set", "encoder_optimizer=sgd"], "drq: encoder_optimizer must be one of"),
    (["--method", "itq", "--set", "n_iter=-3"], "--set n_iter=-3 for itq: must be >= 0"),
    (["--method", "rq", "--set", "max_beam_size=0"], "--set max_beam_size=0 for rq: must be >= 1"),
    (["--method", "pq", "--set", "map_at=zero"], "map_at='zero' for pq: must be one of protocol, all"),
    (["--method", "hashnet", "--set", "backbone=3"], "--set backbone=3 for hashnet: must be a string"),
    (["--method", "hashnet", "--set", "augment=flip"], "augment='flip' for hashnet: must be one of false, true, crop, resized_crop"),
    (["--method", "hashnet", "--set", "augment=1"], "augment=1 for hashnet: must be one of false, true, crop"),
    (["--method", "hashnet", "--set", "pipeline=fast"], "pipeline='fast' for hashnet: must be one of batched, per_item"),
    (["--method", "hashnet", "--set", "drq.lr=1"], "names method 'drq', which this run does not train"),
    (["--method", "hashnet", "--set", "novalue"], "--set expects key=value"),
    (["--seeds", "-1"], "argument --seeds: every value must be >= 0"),
    (["--seeds", "a"], "argument --seeds: expected comma-separated integers"),
    (["--epochs", "0"], "argument --epochs: every value must be >= 1"),
    (["--bits", "0"], "argument --bits: every value must be >= 1"),
    (["--devices", "0"], "argument --devices: every value must be >= 1"),
    (["--method", "nope"], "unknown method 'nope'"),
    (["--dataset", "nope"], "unknown dataset 'nope'"),
    (["--protocol", "nope"], "unknown protocol 'nope' for dataset 'digits'"),
    (["--method", "drq", "--variant", "nope"], "unknown variant 'nope' for drq"),
]


@pytest.mark.parametrize("args,expected", BAD_INPUT, ids=[" ".join(a) for a, _ in BAD_INPUT])
def test_bad_configuration_is_one_error_line_before_any_work(tmp_path, monkeypatch, capsys, args, expected):
    cache = tmp_path / "cache"
    monkeypatch.setenv("HASHBENCH_CACHE", str(cache))
    monkeypatch.chdir(tmp_path)
    try:
        rc = main(["run", *args, "--out", "runs"])
    except SystemExit as exit_:  # argparse errors
        rc = exit_.code
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert expected in err[0]
    assert not (tmp_path / "runs").exists()
    assert not cache.exists() or not any(cache.rglob("*"))


def test_gpu_without_cuda_is_one_error_line(tmp_path, monkeypatch, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: --device gpu is valid here")
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--method", "itq", "--device", "gpu", "--out", "runs"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --device gpu was requested but no CUDA device")
    assert not (tmp_path / "runs").exists()


def test_every_shipped_config_key_is_a_valid_key():
    """The validator accepts every key the shipped YAML files use (for every variant), and each
    shipped variant passes the whole check: nothing the suite ships is refused."""
    from hashbench import methods
    from hashbench.benchmark.config import load_spec
    from hashbench.benchmark.config_check import check_method_config, valid_keys

    for name in methods.available():
        cls = methods.get_method(name)
        spec = load_spec(name)
        keys = set(valid_keys(cls, name))
        blocks = [spec.get("default") or {}, *(spec.get("datasets") or {}).values(), *(spec.get("variants") or {}).values()]
        for block in blocks:
            assert set(block or {}) <= keys
        for variant in [None, *sorted(spec.get("variants") or {})]:
            check_method_config(cls, name, "digits", variant, {}, [12, 16, 24, 32, 48, 64])
        # every shipped value is also accepted when typed as --set (e.g. backbone=efficientnet-lite0)
        for block in blocks:
            overrides = {k: v for k, v in (block or {}).items() if k != "base"}
            check_method_config(cls, name, "digits", None, overrides, [16, 32])


def test_readme_first_commands_are_what_ci_runs():
    """The README's first two commands are `make bench` and `make test`, and `.ci/run` runs both
    exactly as typed (no arguments), checking that `make bench` printed the mAP table."""
    readme = (REPO / "README.md").read_text()
    block = re.search(r"## First commands\s+```bash\n(.*?)```", readme, re.S)
    assert block, "README has no '## First commands' bash block"
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.split("#")[0].strip()]
    assert commands[:2] == ["make bench", "make test"]
    ci = (REPO / ".ci" / "run").read_text()
    ci_lines = [line.strip() for line in ci.splitlines()]
    assert "make test" in ci_lines
    assert "run_bench make bench" in ci_lines and "run_bench make bench METHOD=drq" in ci_lines
    assert ci_lines.index("make test") < ci_lines.index("run_bench make bench")
    assert "grep -q '^### mAP'" in ci  # run_bench's check that the table was printed
