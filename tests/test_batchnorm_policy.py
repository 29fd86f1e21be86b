"""BatchNorm policy of fine-tuned backbones (methods/backbones.py: Backbone.set_batchnorm, harness
key ``batchnorm``): frozen statistics survive Lightning's ``train()`` calls, a fine-tune model at
step 0 in training mode gives the frozen-feature embedding, an optimiser step leaves frozen
BatchNorm untouched, and no optimiser receives frozen BatchNorm parameters."""
from __future__ import annotations

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from hashbench.benchmark.config_check import ConfigError, check_value
from hashbench.methods import get_method
from hashbench.methods.backbones import (
    batchnorm_layers,
    build_backbone,
    extract_features,
    prepare_images,
    recompute_batchnorm,
    resolve_batchnorm,
)
from hashbench.tools import bn_check


def _no_stochastic_depth(bb):
    """EfficientNet-Lite0 with drop-connect off, so training mode is deterministic."""
    net = bb.body.net
    net._global_params = net._global_params._replace(drop_connect_rate=0.0)
    return bb


def _effnet(policy: str):
    bb = _no_stochastic_depth(build_backbone("efficientnet-lite0", pretrained=True, image_size=64))
    bb.set_batchnorm(policy)
    return bb


def _images(n: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def _bn_state(bb) -> list[torch.Tensor]:
    out = []
    for layer in batchnorm_layers(bb):
        out += [layer.running_mean.clone(), layer.running_var.clone(), layer.weight.detach().clone(),
                layer.bias.detach().clone()]
    return out


def test_auto_policy_follows_pretrained_weights_and_bad_names_fail():
    assert resolve_batchnorm("auto", True) == "frozen" and resolve_batchnorm("auto", False) == "train"
    assert resolve_batchnorm("frozen_stats", False) == "frozen_stats"
    assert build_backbone("small-cnn", pretrained=False).set_batchnorm("auto") == "train"
    with pytest.raises(ValueError, match="batchnorm must be one of"):
        resolve_batchnorm("freeze", True)
    check_value(get_method("hashnet"), "hashnet", "batchnorm", "frozen", "auto")
    with pytest.raises(ConfigError, match="batchnorm"):
        check_value(get_method("hashnet"), "hashnet", "batchnorm", "freeze", "auto")


@pytest.mark.parametrize("policy, bn_training, bn_trainable", [
    ("train", True, True), ("frozen", False, False), ("frozen_stats", False, True)])
def test_policy_survives_train_calls_of_the_enclosing_method(policy, bn_training, bn_trainable):
    bb = build_backbone("small-cnn", pretrained=False, in_channels=3)
    assert bb.set_batchnorm(policy) == policy
    method = get_method("hashnet")(bits=8, n_classes=3, backbone=bb)
    for _ in range(2):  # Lightning calls train() at every epoch, eval() around validation
        method.eval()
        method.train()
        assert bb.training and all(layer.training is bn_training for layer in batchnorm_layers(bb))
        assert all(p.requires_grad is bn_trainable for layer in batchnorm_layers(bb) for p in layer.parameters())
    assert all(p.requires_grad for n, p in bb.named_parameters() if "features.0." in n)  # convs trainable


@pytest.mark.parametrize("policy, same", [("frozen", True), ("frozen_stats", True), ("train", False)])
def test_finetune_model_at_step_zero_in_training_mode_gives_the_frozen_feature_embedding(policy, same):
    bb = _effnet(policy)
    torch.manual_seed(0)
    method = get_method("hashnet")(bits=16, n_classes=10, backbone=bb)
    images = _images()
    frozen = torch.from_numpy(extract_features(bb, images))      # eval mode, the frozen protocol
    method.train()
    with torch.no_grad():
        z_train = method.embed(prepare_images(images, bb.input_spec))
        z_frozen = method.fch(frozen)
    assert torch.equal(z_train, z_frozen) is same
    if not same:
        assert (z_train - z_frozen).abs().max() > 1e-2


def _one_lightning_step(method, images: np.ndarray, labels: np.ndarray) -> None:
    x = prepare_images(images, method.backbone.input_spec)
    y = torch.nn.functional.one_hot(torch.as_tensor(labels), 10).float()
    loader = DataLoader(TensorDataset(x, y), batch_size=len(x))
    trainer = pl.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(method, loader)


@pytest.mark.parametrize("policy", ["frozen", "frozen_stats", "train"])
def test_one_optimizer_step_leaves_frozen_batchnorm_unchanged(policy):
    bb = _effnet(policy)
    torch.manual_seed(0)
    method = get_method("hashnet")(bits=16, n_classes=10, backbone=bb, lr=0.01, class_num=1.0)
    before = _bn_state(bb)
    conv_before = bb.body.net._conv_stem.weight.detach().clone()
    _one_lightning_step(method, _images(16), np.arange(16) % 10)
    after = _bn_state(bb)
    stats_same = all(torch.equal(a, b) for a, b in zip(before[0::4] + before[1::4], after[0::4] + after[1::4]))
    affine_same = all(torch.equal(a, b) for a, b in zip(before[2::4] + before[3::4], after[2::4] + after[3::4]))
    assert not torch.equal(conv_before, bb.body.net._conv_stem.weight)          # the backbone did train
    assert stats_same is (policy != "train")
    assert affine_same is (policy == "frozen")


def _optimizer_params(method) -> set[int]:
    opts = method.configure_optimizers()
    if isinstance(opts, dict):
        opts = [opts["optimizer"]]
    elif isinstance(opts, tuple):
        opts = opts[0]
    return {id(p) for opt in opts for g in opt.param_groups for p in g["params"]}


@pytest.mark.parametrize("name, kwargs", [("hashnet", {}), ("drq", {"feature_dim": 32}),
                                          ("dht", {"hidden_dims": [16]}), ("cascade-dht", {"hidden_dims": [16]})])
def test_frozen_batchnorm_parameters_are_in_no_optimizer_group(name, kwargs):
    bb = build_backbone("small-cnn", pretrained=False, in_channels=3)
    bb.set_batchnorm("frozen")
    method = get_method(name)(bits=16, n_classes=4, backbone=bb, **kwargs)
    bn_params = {id(p) for layer in batchnorm_layers(bb) for p in layer.parameters()}
    in_opt = _optimizer_params(method)
    assert bn_params and not bn_params & in_opt
    assert {id(p) for n, p in bb.named_parameters() if p.requires_grad} <= in_opt


def test_harness_key_reaches_the_fine_tuned_backbone(runs_dir):
    """A from-scratch small-cnn would get ``train`` from ``auto``; the key makes it ``frozen``."""
    import yaml

    from hashbench.benchmark.runner import RunRequest, run_one

    overrides = {"backbone": "small-cnn", "pretrained": False, "frozen": False, "image_size": 8,
                 "batchnorm": "frozen"}
    req = RunRequest(method="hashnet", dataset="digits", bits=16, epochs=1, out_dir=runs_dir, device="cpu",
                     speed=False, overrides=overrides)
    path, _ = run_one(req)
    assert yaml.safe_load((path / "config.yaml").read_text())["batchnorm"] == "frozen"


def test_bn_check_leave_one_out_map_by_hand():
    """Items (1,0) A, (0,1) A, (0.9,0.1) B, (0.1,0.9) B: by cosine, item 0 ranks B, B, A (AP 1/3),
    item 1 the same (1/3), items 2 and 3 find their B partner second (1/2): mAP 5/12."""
    f = np.array([[1, 0], [0, 1], [0.9, 0.1], [0.1, 0.9]], dtype=np.float32)
    y = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], dtype=np.uint8)
    assert bn_check.leave_one_out(f, y)["map_loo"] == pytest.approx(5 / 12)


def test_hold_freezes_and_releases_only_what_was_trainable():
    bb = build_backbone("small-cnn", pretrained=False, in_channels=3)
    bb.set_batchnorm("frozen")
    trainable = {n for n, p in bb.named_parameters() if p.requires_grad}
    bb.hold(True)
    bb.train()
    assert not any(p.requires_grad for p in bb.parameters())
    assert not any(m.training for m in bb.modules() if m is not bb)
    bb.hold(False)
    assert {n for n, p in bb.named_parameters() if p.requires_grad} == trainable
    assert bb.training and all(m.training for m in bb.modules() if m is not bb and m not in batchnorm_layers(bb))
    assert not any(m.training for m in batchnorm_layers(bb))


class _Modes(pl.Callback):
    """Per epoch: whether the backbone's conv is in training mode at the first batch."""

    def __init__(self):
        self.conv_training = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == 0:
            self.conv_training.append(pl_module.backbone.body.features[0].training)


def test_head_warm_start_holds_the_backbone_for_the_first_epochs():
    from hashbench.benchmark.train import HeadWarmStart

    bb = build_backbone("small-cnn", pretrained=False, in_channels=3, image_size=8)
    torch.manual_seed(0)
    method = get_method("hashnet")(bits=8, n_classes=4, backbone=bb, lr=0.05, class_num=1.0)
    x = torch.randn(32, 3, 8, 8)
    y = torch.nn.functional.one_hot(torch.arange(32) % 4, 4).float()
    snaps, modes = [(bb.body.features[0].weight.detach().clone(), method.fch.weight.detach().clone())], _Modes()

    class Snap(pl.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            snaps.append((bb.body.features[0].weight.detach().clone(), method.fch.weight.detach().clone()))

    trainer = pl.Trainer(max_epochs=4, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[HeadWarmStart(2), Snap(), modes])
    trainer.fit(method, DataLoader(TensorDataset(x, y), batch_size=8))
    assert [not torch.equal(snaps[e][0], snaps[e + 1][0]) for e in range(4)] == [False, False, True, True]
    assert all(not torch.equal(snaps[e][1], snaps[e + 1][1]) for e in range(4))   # the head always trains
    assert modes.conv_training == [False, False, True, True]
    assert all(p.requires_grad for p in bb.parameters() if p.ndim > 1)            # released at the end


def test_head_warmup_epochs_key_reaches_the_trainer(runs_dir, monkeypatch):
    from hashbench.benchmark import train as T
    from hashbench.benchmark.runner import RunRequest, run_one

    made = []

    class Recording(T.HeadWarmStart):
        def __init__(self, epochs):
            super().__init__(epochs)
            made.append(epochs)

    monkeypatch.setattr(T, "HeadWarmStart", Recording)
    overrides = {"backbone": "small-cnn", "pretrained": False, "frozen": False, "image_size": 8,
                 "head_warmup_epochs": 1}
    run_one(RunRequest(method="hashnet", dataset="digits", bits=16, epochs=1, out_dir=runs_dir, device="cpu",
                       speed=False, overrides=overrides))
    assert made == [1]


def test_recompute_sets_running_mean_to_the_mean_of_the_layer_inputs():
    torch.manual_seed(0)
    bb = build_backbone("small-cnn", pretrained=False, in_channels=3, image_size=8)
    assert bb.set_batchnorm("recompute") == "recompute"
    bb.train()
    bn0 = batchnorm_layers(bb)[0]
    assert bn0.training                                   # trains as `train`
    batches = [torch.randn(6, 3, 8, 8) * 2 + 1 for _ in range(3)]
    with torch.no_grad():
        conv_out = torch.cat([bb.body.features[0](x) for x in batches])       # the first BatchNorm's input
    momentum = bn0.momentum
    assert recompute_batchnorm(bb, [(x, None) for x in batches]) == 18
    torch.testing.assert_close(bn0.running_mean, conv_out.mean(dim=(0, 2, 3)), rtol=1e-5, atol=1e-6)
    per_batch_var = torch.stack([c.var(dim=(0, 2, 3), unbiased=True) for c in conv_out.split(6)])
    torch.testing.assert_close(bn0.running_var, per_batch_var.mean(0), rtol=1e-5, atol=1e-6)
    assert bn0.momentum == momentum and bn0.training and bb.training         # modes and momentum restored
    assert recompute_batchnorm(get_method("hashnet")(bits=8, n_classes=2, backbone=build_backbone(
        "identity", in_dim=4)).backbone, [torch.randn(2, 4)]) == 0


def test_recompute_key_reaches_the_trainer_before_validation(runs_dir, monkeypatch):
    from hashbench.benchmark import train as T
    from hashbench.benchmark.runner import RunRequest, run_one

    calls = []
    monkeypatch.setattr(T, "recompute_batchnorm", lambda bb, loader, device: calls.append(len(loader.dataset)))
    validate = T.ValidationRetrieval.on_train_epoch_end
    monkeypatch.setattr(T.ValidationRetrieval, "on_train_epoch_end",
                        lambda self, trainer, module: (calls.append("validation"), validate(self, trainer, module)))
    overrides = {"backbone": "small-cnn", "pretrained": False, "frozen": False, "image_size": 8,
                 "batchnorm": "recompute"}
    run_one(RunRequest(method="hashnet", dataset="digits", bits=16, epochs=1, out_dir=runs_dir, device="cpu",
                       speed=False, overrides=overrides))
    assert len(calls) == 2 and calls[0] > 100 and calls[1] == "validation"   # over the training items, first
