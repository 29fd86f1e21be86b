"""From a dataset's arrays and split to what a method consumes: frozen features (cached on
disk) or image tensors, and the Lightning data loaders (random or class-balanced batches)."""
from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, TensorDataset

from hashbench.methods.backbones import Backbone, InputSpec, extract_features, prepare_images

log = logging.getLogger("hashbench")


#: Input side of the default EfficientNet-Lite0 features. 160 rather than the native 224: on
#: CIFAR-10's 32×32 images (upsampled) it measured as good (P@10 0.532 at 160 vs 0.516 at 224,
#: 2,000 images, cosine) at about twice the CPU throughput.
DEFAULT_FEATURE_SIZE = 160


def default_backbone(data) -> tuple[str, int | None]:
    """(backbone, image size) of the features a dataset uses when a config names none, and of
    the reference features every method's speed and recall are measured against: raw values
    (``flatten``) for vectors and small images (digits), ImageNet EfficientNet-Lite0 otherwise."""
    if data.kind == "vector" or (data.kind == "image" and min(data.x.shape[1:3]) < 24):
        return "flatten", None
    return "efficientnet-lite0", DEFAULT_FEATURE_SIZE


def in_dim_of(data) -> int:
    """Flattened width of one item of an ``ArrayData`` (for flatten/identity backbones)."""
    return int(np.prod(data.x.shape[1:])) if data.kind != "path" else 0


def in_channels_of(data) -> int:
    if data.kind == "image":
        return 1 if data.x.ndim == 3 else int(data.x.shape[-1])
    return 3


def load_path_images(paths: np.ndarray, size: int) -> np.ndarray:
    """Decode image files to uint8 (N, size, size, 3): shorter side resized to ``size``, centre crop."""
    from PIL import Image

    out = np.empty((len(paths), size, size, 3), np.uint8)
    for i, p in enumerate(paths):
        with Image.open(p) as im:
            im = im.convert("RGB")
            w, h = im.size
            scale = size / min(w, h)
            im = im.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BILINEAR)
            w, h = im.size
            left, top = (w - size) // 2, (h - size) // 2
            out[i] = np.asarray(im.crop((left, top, left + size, top + size)))
    return out


def _raw_batches(data, indices: np.ndarray, spec: InputSpec, batch: int) -> Iterator[np.ndarray]:
    for start in range(0, len(indices), batch):
        idx = indices[start:start + batch]
        if data.kind == "path":
            yield load_path_images(data.x[idx], spec.size or 224)
        else:
            yield data.x[idx]


def content_fingerprint(data) -> str:
    """sha256 (first 20 hex digits) of the items and labels, in order: the pixel bytes for
    in-memory images and vectors, the file paths for path datasets. Unlike ``data.source`` it
    does not change when the same data is read from another mount or from the dataset cache."""
    h = hashlib.sha256(f"{data.kind}|{np.asarray(data.x).shape}|".encode())
    if data.kind == "path":
        h.update("\n".join(map(str, data.x)).encode())
    else:
        h.update(memoryview(np.ascontiguousarray(data.x)).cast("B"))
    h.update(memoryview(np.ascontiguousarray(data.labels)).cast("B"))
    return h.hexdigest()[:20]


def feature_cache_path(dataset: str, data, backbone: Backbone) -> Path:
    """Cache file for a (dataset content, backbone) pair under the dataset cache directory,
    keyed by :func:`content_fingerprint`, the item count, the backbone and its weights."""
    from hashbench.datasets import cache_dir

    key = hashlib.sha256(f"{content_fingerprint(data)}|{len(data.labels)}|{backbone.name}|{backbone.pretrained}".encode()).hexdigest()[:16]
    return cache_dir() / "features" / f"{dataset}-{backbone.name.replace('/', '_')}-{key}.npy"


def compute_features(dataset: str, data, backbone: Backbone, device: str = "cpu",
                     batch_size: int = 32, use_cache: bool = True) -> np.ndarray:
    """Frozen features float32 (N, D) of every item, computed once and cached on disk.

    Vector datasets and parameter-free backbones (``flatten``/``identity``) are computed on the
    fly (no cache); deep backbones are run in eval mode and their output cached atomically as
    ``.npy`` keyed by the data source, size, backbone name and whether weights are pretrained.
    Batches of 32: on 2 CPU cores EfficientNet-Lite0 at 160 px ran at 93 img/s with batch 32,
    62 with 64 and 44 with 256 (measured).
    """
    if data.kind == "vector":
        return data.x.astype(np.float32)
    if backbone.name in ("flatten", "identity"):
        x = prepare_images(data.x, backbone.input_spec) if data.kind == "image" else None
        return x.reshape(len(data.x), -1).numpy().astype(np.float32)
    path = feature_cache_path(dataset, data, backbone)
    if use_cache and path.exists():
        return np.load(path)
    n = len(data.labels)
    log.info("extracting %s features of %d %s items (cached afterwards at %s)", backbone.name, n, dataset, path)
    parts, done = [], 0
    for raw in _raw_batches(data, np.arange(n), backbone.input_spec, 4096):
        parts.append(extract_features(backbone, raw, batch_size=batch_size, device=device))
        done += len(raw)
        log.info("  features %d/%d", done, n)
    feats = np.concatenate(parts).astype(np.float32)
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npy", dir=path.parent)
        os.close(fd)
        np.save(tmp, feats)
        os.replace(tmp, path)
    return feats


class ImageItems(Dataset):
    """Items of an image/path dataset as (normalised float tensor C×S×S, float 0/1 labels);
    with ``augment``: random crop (pad 1/8 of the side) and horizontal flip."""

    def __init__(self, data, indices: np.ndarray, spec: InputSpec, augment: bool = False) -> None:
        self.data, self.indices, self.spec, self.augment = data, np.asarray(indices), spec, augment
        self.labels = torch.from_numpy(data.labels[self.indices].astype(np.float32))

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        idx = self.indices[i: i + 1]
        raw = load_path_images(self.data.x[idx], self.spec.size or 224) if self.data.kind == "path" else self.data.x[idx]
        x = prepare_images(raw, self.spec)[0]
        if self.augment:
            pad = max(1, x.shape[-1] // 8)
            x = torch.nn.functional.pad(x, (pad, pad, pad, pad), mode="reflect")
            top, left = np.random.randint(0, 2 * pad + 1, size=2)
            x = x[:, top:top + x.shape[-1] - 2 * pad, left:left + x.shape[-1] - 2 * pad]
            if np.random.rand() < 0.5:
                x = torch.flip(x, dims=[-1])
        return x, self.labels[i]


class ClassBalancedBatchSampler(Sampler[list[int]]):
    """Batches of ``classes_per_batch`` classes × ``images_per_class`` items (single-label data).

    Each epoch walks a seeded random permutation of the classes; items are drawn without
    replacement within an epoch where a class has enough, with replacement otherwise. The
    number of batches per epoch is len(dataset) // batch size (at least 1).
    """

    def __init__(self, labels: np.ndarray, classes_per_batch: int, images_per_class: int, seed: int) -> None:
        self.class_of = labels.argmax(1)
        self.classes = np.unique(self.class_of)
        self.p = min(int(classes_per_batch), len(self.classes))
        self.k = int(images_per_class)
        self.by_class = {c: np.flatnonzero(self.class_of == c) for c in self.classes}
        self.n_batches = max(1, len(labels) // (self.p * self.k))
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.n_batches

    def __iter__(self):
        for _ in range(self.n_batches):
            chosen = self.rng.choice(self.classes, size=self.p, replace=False)
            batch = []
            for c in chosen:
                pool = self.by_class[c]
                batch.extend(self.rng.choice(pool, size=self.k, replace=len(pool) < self.k).tolist())
            yield batch


def _single_threaded_worker(_worker_id: int) -> None:
    """DataLoader workers preprocess one item at a time: one intra-op thread each, so forked
    workers never contend for (or inherit a busy) OpenMP pool."""
    torch.set_num_threads(1)


def make_loader(x: torch.Tensor | Dataset, labels: np.ndarray, batch_size: int, shuffle: bool, seed: int,
                sampler: str = "random", classes_per_batch: int | None = None, images_per_class: int = 2,
                num_workers: int = 0) -> DataLoader:
    """A DataLoader of (x, y) batches over features (a tensor) or an item Dataset."""
    ds = x if isinstance(x, Dataset) else TensorDataset(x, torch.from_numpy(labels.astype(np.float32)))
    if sampler == "class_balanced" and shuffle:
        bs = ClassBalancedBatchSampler(labels, classes_per_batch or labels.shape[1], images_per_class, seed)
        return DataLoader(ds, batch_sampler=bs, num_workers=num_workers,
                          worker_init_fn=_single_threaded_worker if num_workers else None)
    if sampler not in ("random", "class_balanced"):
        raise ValueError(f"unknown sampler {sampler!r}; valid: random, class_balanced")
    gen = torch.Generator().manual_seed(seed)
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, generator=gen if shuffle else None,
                      drop_last=shuffle and len(ds) > batch_size, num_workers=num_workers,
                      worker_init_fn=_single_threaded_worker if num_workers else None)
