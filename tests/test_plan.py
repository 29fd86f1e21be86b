"""The run plan (benchmark.plan): the one place a method's run config is resolved and its code
lengths checked, shared by `run`, `regress`, sweep cells and the runner."""
from __future__ import annotations

import pytest

from hashbench.benchmark.config import run_config, split_config
from hashbench.benchmark.plan import FeaturePlan, plan_run
from hashbench.methods.base import UnsupportedBitsError


def test_the_plan_holds_the_resolved_config_split_in_two():
    plan = plan_run("hashnet", "digits", [16], overrides={"lr": 0.5}, epochs=3)
    assert plan.config == run_config("hashnet", "digits", None, {"lr": 0.5}, 3)
    assert (plan.harness, plan.hparams) == split_config(plan.config)
    assert plan.config["epochs"] == 3 and plan.hparams["lr"] == 0.5


def test_refused_lengths_keep_the_methods_error_and_the_accepted_keep_their_order():
    plan = plan_run("drq", "digits", [32, 12, 8, 16])        # DRQ: multiples of log2 K = 8 only
    assert plan.lengths == (32, 8, 16) and list(plan.rejected) == [12]
    with pytest.raises(UnsupportedBitsError):
        plan.require(12)
    plan.require(32)
    assert plan.training_lengths() == [32]                    # prefix codes: one training at the longest
    assert plan_run("lsh", "digits", [32, 8]).training_lengths() == [32, 8]


def test_unknown_method_or_variant_is_an_error():
    with pytest.raises(ValueError):
        plan_run("no-such-method", "digits", [16])
    with pytest.raises(ValueError, match="unknown variant"):
        plan_run("hashnet", "digits", [16], variant="no-such-variant")


def test_feature_plan_of_frozen_and_fine_tuned_runs():
    class Data:  # a vector dataset: the reference backbone is the identity on its vectors
        kind, x = "vector", None

    from hashbench.benchmark.data import default_backbone

    ref = default_backbone(Data)
    fp = plan_run("itq", "digits", [16]).features(Data)
    assert fp == FeaturePlan(ref[0], ref[1], ref[0], ref[1], True)
    assert fp.same_as_reference and fp.feature_files() == [ref]
    other = FeaturePlan("resnet18", 224, ref[0], ref[1], True)
    assert other.feature_files() == [ref, ("resnet18", 224)]
