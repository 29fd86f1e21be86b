"""The method interface the harness reads is declared on HashingMethod, with defaults, and every
registered method records its hyperparameters the same way (``method.hparams``, stored in each
run's config.yaml as ``method_hparams``)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from hashbench import methods
from hashbench.benchmark.plan import plan_run
from hashbench.methods.backbones import build_backbone
from hashbench.methods.base import BINARY, HashingMethod

REPO = Path(__file__).resolve().parent.parent


class _Plain(HashingMethod):
    name = "plain-test"
    code_type = BINARY

    def embed(self, x):
        return x

    def encode(self, x):
        return {"bits": torch.sign(x)}


def test_the_harness_attributes_have_declared_defaults():
    m = _Plain(bits=4, n_classes=2, backbone=build_backbone("identity", in_dim=4), n_iter=3)
    assert m.search_metric == "ip" and m.reranks is True
    assert m.timers == {} and m.stage(0) == 1 and m.selectable_epoch(5) is True
    assert m.code_state() == {} and m.evaluation_lengths() == {4: {}}
    assert m.backbone.batchnorm == "train"
    assert dict(m.hparams) == {"n_iter": 3}


def test_the_harness_reads_the_interface_directly():
    """No getattr fallback for a declared attribute in the harness modules that read them."""
    declared = ("search_metric", "reranks", "timers", "stage", "selectable_epoch", "batchnorm", "hparams",
                "requires_training")
    pattern = re.compile(r"getattr\([^)]*[\"'](" + "|".join(declared) + r")[\"']")
    for rel in ("benchmark/runner.py", "benchmark/train.py", "benchmark/throughput.py", "benchmark/config_check.py"):
        assert not pattern.findall((REPO / rel).read_text()), rel


@pytest.mark.parametrize("name", methods.available())
def test_every_method_records_its_config_hyperparameters(name):
    """HashNet's runs stored ``method_hparams: {}`` (it never called save_hyperparameters); now
    the base class records every keyword argument, so each config key reaches the record."""
    plan = plan_run(name, "digits", [16, 8, 32, 12, 24])
    assert plan.lengths, plan.rejected
    m = plan.cls(bits=plan.lengths[0], n_classes=10, backbone=build_backbone("identity", in_dim=64), **plan.hparams)
    recorded = dict(m.hparams)
    missing = sorted(k for k in plan.hparams if k not in recorded)
    assert missing == []
    if name == "hashnet":
        assert recorded["lr"] == plan.hparams["lr"]
