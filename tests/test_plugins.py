"""Method and dataset plugins through entry points: a distribution built here (real ``.dist-info``
metadata on ``sys.path``) whose method is the docs' "Adding a method" example, verbatim, runs
end to end on digits with its own YAML config and shows in ``list`` and ``report``; a broken plugin
is reported in one line and the built-ins keep working."""
from __future__ import annotations

import logging
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from hashbench import datasets as dataset_registry
from hashbench import methods
from hashbench.benchmark.cli import main
from hashbench.methods import registry

DEFAULT_VARIANT = "denominator=relevant_retrieved,empty=zero,ties=expected"
ADDING_A_METHOD = Path(__file__).resolve().parent.parent / "docs" / "adding-a-method.md"

DATASET_MODULE = '''
from hashbench.datasets import digits
from hashbench.datasets.base import DatasetSpec


def tiny_digits():
    return DatasetSpec(name="tiny-digits", description="digits under another name (plugin test)",
                       multi_label=False, default_protocol=digits.SPEC.default_protocol,
                       protocols=digits.SPEC.protocols, loader=digits.load_digits_data)
'''


def docs_block(label: str) -> str:
    """The fenced block that follows ``<!-- example-...: label -->`` on the docs' "Adding a method" page."""
    match = re.search(rf"<!-- example-\w+: {re.escape(label)} -->\n```\w+\n(.*?)```", ADDING_A_METHOD.read_text(), re.S)
    assert match, f"{ADDING_A_METHOD.name} has no example block {label}"
    return match.group(1)


def write_distribution(site: Path, dist: str, modules: dict[str, str], entry_points: dict[str, dict[str, str]]) -> None:
    """An installed distribution as pip leaves it: modules plus ``<dist>-0.1.dist-info``."""
    for rel, text in modules.items():
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_text(text)
    info = site / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("".join(
        f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) for group, eps in entry_points.items()))


@pytest.fixture
def plugin_site(tmp_path, monkeypatch):
    """A site folder with the example plugin and a broken one on sys.path; the registries are
    restored afterwards so other tests see the built-ins only."""
    for module, names in ((registry, ("_REGISTRY", "_ORIGIN", "PLUGIN_ERRORS")),
                          (dataset_registry, ("_REGISTRY", "_ORIGIN", "PLUGIN_ERRORS"))):
        for name in names:
            monkeypatch.setattr(module, name, dict(getattr(module, name)))
    monkeypatch.setattr(methods, "PLUGIN_ERRORS", registry.PLUGIN_ERRORS)
    site = tmp_path / "site"
    write_distribution(site, "hashbench-linear-hash", {
        "linear_hash/__init__.py": docs_block("linear_hash.py"),
        "linear_hash/linear-hash.yaml": docs_block("linear-hash.yaml"),
        "linear_hash/tiny.py": DATASET_MODULE,
    }, {"hashbench.methods": {"linear-hash": "linear_hash:LinearHash"},
        "hashbench.datasets": {"tiny-digits": "linear_hash.tiny:tiny_digits"}})
    write_distribution(site, "hashbench-broken", {"broken_plugin.py": "import no_such_module_here\n"},
                       {"hashbench.methods": {"broken": "broken_plugin:Broken"}})
    monkeypatch.syspath_prepend(str(site))
    return site


def test_plugin_method_runs_like_a_builtin(plugin_site, tmp_path, capsys, caplog):
    with caplog.at_level(logging.WARNING, logger="hashbench"):
        methods.load_plugins()
        dataset_registry.load_plugins()
    broken = [r.getMessage() for r in caplog.records if "broken" in r.getMessage()]
    assert len(broken) == 1 and "'broken' from hashbench-broken 0.1" in broken[0] and "no_such_module_here" in broken[0]
    assert {"itq", "hashnet", "linear-hash"} <= set(methods.available()) and "broken" not in methods.available()
    assert methods.origin("linear-hash") == "hashbench-linear-hash 0.1" and methods.origin("itq") is None

    assert main(["list"]) == 0
    listing = capsys.readouterr().out
    assert re.search(r"linear-hash\s+binary .*\[plugin: hashbench-linear-hash 0\.1\]", listing)
    assert re.search(r"tiny-digits\s+\*query300-db1497\s+\[plugin: hashbench-linear-hash 0\.1\]", listing)

    runs = tmp_path / "runs"
    assert main(["run", "--method", "linear-hash", "--dataset", "digits", "--bits", "16", "--no-speed",
                 "--variant", "no-quantization", "--out", str(runs)]) == 0
    assert main(["run", "--method", "lsh", "--dataset", "digits", "--bits", "16", "--no-speed", "--out", str(runs)]) == 0
    capsys.readouterr()
    (run,) = [p for p in runs.iterdir() if "linear-hash" in p.name]
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    # the plugin's YAML: default, its digits block and the variant, resolved in that order
    assert cfg["resolved"]["epochs"] == 10 and cfg["resolved"]["batch_size"] == 32
    assert cfg["resolved"]["quantization_weight"] == 0.0
    assert cfg["training"]["global_step"] > 0 and cfg["training"]["best_checkpoint"]
    metrics = pd.read_csv(run / "metrics.csv")
    value = metrics.loc[(metrics["metric"] == "map@all") & (metrics["variant"] == DEFAULT_VARIANT), "value"].iloc[0]
    assert 0.5 < value <= 1.0  # supervised codes on digits: far above chance (0.1)

    assert main(["report", str(runs), "--out", str(tmp_path / "report"), "--no-figures", "--no-ci"]) == 0
    capsys.readouterr()
    tables = " ".join(p.read_text() for p in (tmp_path / "report").rglob("*") if p.suffix in (".md", ".csv"))
    assert "linear-hash" in tables and "lsh" in tables

    assert main(["run", "--method", "linear-hash", "--dataset", "tiny-digits", "--bits", "8", "--no-speed",
                 "--epochs", "1", "--out", str(runs)]) == 0
    assert "linear-hash" in capsys.readouterr().out


def test_plugin_whose_name_clashes_is_reported_and_builtins_stay(tmp_path, monkeypatch, caplog):
    for name in ("_REGISTRY", "_ORIGIN", "PLUGIN_ERRORS"):
        monkeypatch.setattr(registry, name, dict(getattr(registry, name)))
    site = tmp_path / "site"
    code = ("from hashbench.methods.base import BINARY, HashingMethod\n"
            "class FakeITQ(HashingMethod):\n    name = 'itq'\n    code_type = BINARY\n")
    write_distribution(site, "hashbench-fake-itq", {"fake_itq.py": code}, {"hashbench.methods": {"itq": "fake_itq:FakeITQ"}})
    monkeypatch.syspath_prepend(str(site))
    builtin = methods.get_method("itq")
    with caplog.at_level(logging.WARNING, logger="hashbench"):
        registry.load_plugins()
    (line,) = [r.getMessage() for r in caplog.records]
    assert "'itq' from hashbench-fake-itq 0.1" in line and "registered twice" in line and "\n" not in line
    assert methods.get_method("itq") is builtin
