"""The runner's stages one at a time (features → build → train → encode → evaluate/write), on
digits: each takes and returns plain values, so each is checked on its own."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from hashbench.benchmark import runner
from hashbench.benchmark.plan import plan_run
from hashbench.benchmark.runner import RunRequest, load_data


@pytest.fixture(scope="module")
def digits():
    return load_data("digits", None, 0, None)


def _stages(digits, method, bits, tmp_path, **req):
    request = RunRequest(method=method, dataset="digits", bits=bits, out_dir=tmp_path, device="cpu", **req)
    plan = plan_run(method, "digits", [bits])
    fp = plan.features(digits.data)
    return request, plan, fp


def test_features_stage_extracts_what_the_run_needs(digits, tmp_path):
    req, plan, fp = _stages(digits, "itq", 16, tmp_path, speed=False)
    feats = runner.extract_features(req, digits, plan, fp, "cpu")
    assert fp.frozen and fp.same_as_reference
    assert feats.method_input.shape == (len(digits.data.labels), 64) and feats.reference is feats.method_input
    assert feats.seconds >= 0


def test_build_stage_is_seeded_by_the_method_seed(digits, tmp_path):
    req, plan, fp = _stages(digits, "hashnet", 16, tmp_path, seed=3)
    feats = runner.extract_features(req, digits, plan, fp, "cpu")
    a = runner.build_method(req, digits, plan, fp, feats.method_input, "cpu")
    b = runner.build_method(req, digits, plan, fp, feats.method_input, "cpu")
    assert a.method is not b.method
    for (n, p), (_, q) in zip(a.method.state_dict().items(), b.method.state_dict().items()):
        assert torch.allclose(p, q, rtol=0, atol=0, equal_nan=True), n  # bit-equal (unset buffers are NaN)
    x, _ = next(iter(a.eval_loader(digits.split.query[:5])))
    assert len(x) == 5


def test_train_and_encode_stages_hand_over_code_type_keys(digits, tmp_path):
    req, plan, fp = _stages(digits, "itq", 16, tmp_path)
    feats = runner.extract_features(req, digits, plan, fp, "cpu")
    built = runner.build_method(req, digits, plan, fp, feats.method_input, "cpu")
    trained = runner.train_method(req, digits, plan, fp, built, feats, tmp_path, [], None, "cpu")
    assert trained.info == {} and trained.seconds >= 0
    inputs = runner.encode_run(built, digits, feats.reference, "cpu")
    assert set(inputs.query) == {"bits"} and inputs.query["bits"].shape == (len(digits.split.query), 16)
    assert inputs.database_features.shape[0] == len(digits.split.database)
    arrays = runner.codes_npz(inputs)
    assert np.array_equal(arrays["query_codes"], inputs.query["bits"])


def test_encode_stage_names_a_missing_code_key(digits, tmp_path):
    req, plan, fp = _stages(digits, "itq", 16, tmp_path)
    feats = runner.extract_features(req, digits, plan, fp, "cpu")
    built = runner.build_method(req, digits, plan, fp, feats.method_input, "cpu")
    runner.train_method(req, digits, plan, fp, built, feats, tmp_path, [], None, "cpu")
    built.method.encode = lambda x: {"codes": torch.zeros(len(x), 16)}
    with pytest.raises(ValueError, match="encode\\(\\) returned no bits"):
        runner.encode_run(built, digits, feats.reference, "cpu")
