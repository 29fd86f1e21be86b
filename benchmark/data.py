"""From a dataset's arrays and split to what a method consumes: frozen features (cached on
disk) or image tensors, and the Lightning data loaders (random or class-balanced batches).

Two pipelines feed image tensors to a fine-tuned backbone (harness key ``pipeline``):

* ``batched`` (default): every image decoded once into one uint8 tensor (:class:`ImageStore`:
  on the GPU when it fits, pinned CPU memory otherwise), batches gathered by index and prepared
  on the device for the whole batch at once (:class:`ImageBatches`: augmentation from
  :mod:`hashbench.benchmark.augment`, resize, normalisation, optionally ``channels_last``).
  Path datasets are decoded once at the backbone's input side into the dataset cache
  (:func:`decoded_path_images`). No per-item Python on the hot path.
* ``per_item``: :class:`ImageItems`, one item at a time in DataLoader workers (the original
  path; kept as the reference the batched one is tested and measured against).

Both walk the same samplers (seeded random batches, :class:`ClassBalancedBatchSampler`) with the
same random-number consumption, so without augmentation they give identical batches.
"""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, Sampler, SequentialSampler, TensorDataset

from hashbench.benchmark.augment import BatchAugment, augment_mode
from hashbench.datasets import memo
from hashbench.fileio import write_atomic
from hashbench.methods.backbones import (Backbone, InputSpec, extract_features, prepare_images, resize_normalise,
                                         to_unit_float)

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
    def compute() -> str:
        h = hashlib.sha256(f"{data.kind}|{np.asarray(data.x).shape}|".encode())
        if data.kind == "path":
            h.update("\n".join(map(str, data.x)).encode())
        else:
            h.update(memoryview(np.ascontiguousarray(data.x)).cast("B"))
        h.update(memoryview(np.ascontiguousarray(data.labels)).cast("B"))
        return h.hexdigest()[:20]

    # a warm sweep worker hashes the arrays it keeps (read-only) once
    return memo.derived(f"content_fingerprint|{data.kind}", (data.x, data.labels), compute)


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
        return memo.read(path, np.load)  # a warm sweep worker reads an unchanged file once
    n = len(data.labels)
    log.info("extracting %s features of %d %s items (cached afterwards at %s)", backbone.name, n, dataset, path)
    parts, done = [], 0
    for raw in _raw_batches(data, np.arange(n), backbone.input_spec, 4096):
        parts.append(extract_features(backbone, raw, batch_size=batch_size, device=device))
        done += len(raw)
        log.info("  features %d/%d", done, n)
    feats = np.concatenate(parts).astype(np.float32)
    if use_cache:
        write_atomic(path, lambda tmp: np.save(tmp, feats))
    return feats


PIPELINES = ("batched", "per_item")


def decoded_path_images(dataset: str, data, size: int, use_cache: bool = True) -> np.ndarray:
    """Every image of a path dataset decoded once (:func:`load_path_images`: shorter side to
    ``size``, centre crop) as uint8 (N, size, size, 3), cached as ``.npy`` under the dataset cache
    (``decoded/``), keyed by the content fingerprint and ``size``, and memory-mapped when read
    back (ImageNet-100's 141k images at 224 px are 21 GB)."""
    from hashbench.datasets import cache_dir

    key = hashlib.sha256(f"{content_fingerprint(data)}|{size}".encode()).hexdigest()[:16]
    path = cache_dir() / "decoded" / f"{dataset.replace('/', '_').replace(':', '_')}-{size}-{key}.npy"
    if use_cache and path.exists():
        return np.load(path, mmap_mode="r")
    log.info("decoding %d %s images at %d px (cached afterwards at %s)", len(data.x), dataset, size, path)
    images = np.concatenate([load_path_images(data.x[i:i + 4096], size) for i in range(0, len(data.x), 4096)]) \
        if len(data.x) else np.empty((0, size, size, 3), np.uint8)
    if not use_cache:
        return images
    write_atomic(path, lambda tmp: np.save(tmp, images))
    return np.load(path, mmap_mode="r")


class ImageStore:
    """All images of a dataset as uint8 (N, H, W, C), gathered a batch at a time onto ``device``.

    On a CUDA device the whole array is copied to the GPU when it takes less than half of the
    free GPU memory, else kept in pinned CPU memory (or memory-mapped, for a large decoded cache)
    and each gathered batch copied over; on the CPU the array is used in place.
    """

    def __init__(self, images: np.ndarray, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.shape = tuple(images.shape)
        self.where = "cpu"
        self._cpu = images
        self._tensor: torch.Tensor | None = None
        if self.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.device)
            if images.nbytes < free // 2:
                self._tensor = torch.from_numpy(np.ascontiguousarray(images)).to(self.device)
                self.where = "gpu"
            elif not isinstance(images, np.memmap):
                self._tensor = torch.from_numpy(np.ascontiguousarray(images)).pin_memory()
                self.where = "pinned"

    @classmethod
    def of(cls, dataset: str, data, spec: InputSpec, device: str | torch.device = "cpu") -> "ImageStore":
        """The store of an image dataset's pixels, or of a path dataset decoded at the spec's side."""
        images = decoded_path_images(dataset, data, spec.size or 224) if data.kind == "path" else data.x
        return cls(images, device)

    def __len__(self) -> int:
        return self.shape[0]

    def gather(self, idx: np.ndarray) -> torch.Tensor:
        """uint8 (B, H, W, C) of the items ``idx`` (dataset positions), on the store's device."""
        if self.where == "gpu":
            return self._tensor[torch.as_tensor(idx, device=self.device)]
        if self.where == "pinned":
            return self._tensor[torch.as_tensor(idx)].pin_memory().to(self.device, non_blocking=True)
        return torch.from_numpy(np.ascontiguousarray(self._cpu[idx])).to(self.device)


class ImageBatches(Dataset):
    """Items ``indices`` of an :class:`ImageStore` served a whole batch per fetch:
    ``ds[positions]`` (a list of positions into ``indices``) → (normalised float batch on the
    store's device, float 0/1 labels). The batch is gathered, augmented (``augment``: see
    :func:`hashbench.benchmark.augment.augment_mode`; per-image random parameters seeded by
    ``seed``), resized and normalised for ``spec`` there, and made ``channels_last`` on request.
    Used with :func:`make_loader`, which hands it index lists (``batch_size=None``)."""

    def __init__(self, store: ImageStore, labels: np.ndarray, indices: np.ndarray, spec: InputSpec,
                 augment=False, seed: int = 0, channels_last: bool = False) -> None:
        self.store, self.spec, self.indices = store, spec, np.asarray(indices)
        self.labels = torch.from_numpy(labels[self.indices].astype(np.float32)).to(store.device)
        mode = augment_mode(augment)
        self.augment = BatchAugment(mode, seed, spec.size) if mode else None
        self.channels_last = bool(channels_last)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, positions):
        pos = np.asarray(positions, dtype=np.int64)
        x = to_unit_float(self.store.gather(self.indices[pos]), self.spec.channels)
        if self.augment is not None:
            x = self.augment(x)
        x = resize_normalise(x, self.spec)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, self.labels[torch.as_tensor(pos, device=self.labels.device)]


def image_items(dataset: str, data, spec: InputSpec, harness: dict, seed: int, device: str | torch.device = "cpu"):
    """``items(indices, aug=False)`` → the Dataset of those items for the harness's ``pipeline``:
    :class:`ImageBatches` over one :class:`ImageStore` on ``device`` (built on first use) or
    :class:`ImageItems`; ``aug`` is the ``augment`` setting of training sets."""
    pipeline = harness.get("pipeline", "batched")
    if pipeline not in PIPELINES:
        raise ValueError(f"unknown pipeline {pipeline!r}; valid: {', '.join(PIPELINES)}")
    if pipeline == "per_item":
        if augment_mode(harness.get("augment")) not in (None, "crop"):
            raise ValueError("the per_item pipeline augments by crop and flip only; use pipeline=batched")
        return lambda idx, aug=False: ImageItems(data, idx, spec, augment=augment_mode(aug) is not None)
    stores: list[ImageStore] = []

    def items(idx, aug=False):
        if not stores:
            stores.append(ImageStore.of(dataset, data, spec, device))
        return ImageBatches(stores[0], data.labels, idx, spec, augment=aug, seed=seed,
                            channels_last=bool(harness.get("channels_last")))
    return items


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
    """A DataLoader of (x, y) batches over features (a tensor), an item Dataset, or
    :class:`ImageBatches`. Tensors and ImageBatches are fetched a batch at a time in the main
    process (the same samplers, the same random-number consumption and batches as item-by-item
    loading; ``num_workers`` ignored)."""
    batched = isinstance(x, (torch.Tensor, ImageBatches))
    if isinstance(x, torch.Tensor):
        # Features in memory: a batch is one index of the tensor (TensorDataset takes index lists),
        # the same batches in the same order as item-by-item collation, without 54,000 item fetches
        # and stacks per encoding pass.
        x = TensorDataset(x, torch.from_numpy(labels.astype(np.float32)))
    if batched:
        return _batch_loader(x, labels, batch_size, shuffle, seed, sampler, classes_per_batch, images_per_class)
    ds = x
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


def _batch_loader(ds: ImageBatches | TensorDataset, labels: np.ndarray, batch_size: int, shuffle: bool, seed: int, sampler: str,
                  classes_per_batch: int | None, images_per_class: int) -> DataLoader:
    """The batch-fetching twin of :func:`make_loader`'s item loaders: the index lists a
    DataLoader with ``batch_size``/``shuffle``/``generator`` (or the class-balanced batch
    sampler) would draw, each fetched as one batch (``batch_size=None``)."""
    if sampler == "class_balanced" and shuffle:
        bs: Sampler = ClassBalancedBatchSampler(labels, classes_per_batch or labels.shape[1], images_per_class, seed)
        return DataLoader(ds, sampler=bs, batch_size=None)
    if sampler not in ("random", "class_balanced"):
        raise ValueError(f"unknown sampler {sampler!r}; valid: random, class_balanced")
    gen = torch.Generator().manual_seed(seed) if shuffle else None
    order = RandomSampler(ds, generator=gen) if shuffle else SequentialSampler(ds)
    return DataLoader(ds, sampler=BatchSampler(order, batch_size, drop_last=shuffle and len(ds) > batch_size),
                      batch_size=None, generator=gen)
