"""The batched, device-side image pipeline: the same batches as the per-item path without
augmentation (exactly, same random-number consumption), and the augmentation's distribution."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from hashbench.benchmark import augment as A
from hashbench.benchmark import data as D
from hashbench.methods.backbones import InputSpec


def _images(n=120, side=16, channels=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, side, side, channels), dtype=np.uint8)
    labels = np.eye(6, dtype=np.uint8)[rng.integers(0, 6, n)]
    return SimpleNamespace(x=x, labels=labels, kind="image")


def _both(data, idx, spec, shuffle, sampler, batch=16, seed=3, aug_old=False, aug_new=False):
    """Batches of the per-item and the batched loaders, and a global draw after each."""
    out = []
    for ds in (D.ImageItems(data, idx, spec, augment=aug_old),
               D.ImageBatches(D.ImageStore(data.x), data.labels, idx, spec, augment=aug_new, seed=seed)):
        torch.manual_seed(11)
        batches = list(D.make_loader(ds, data.labels[idx], batch, shuffle, seed, sampler, 3, 4))
        out.append((batches, torch.rand(3)))
    return out


@pytest.mark.parametrize("shuffle, sampler", [(True, "random"), (True, "class_balanced"), (False, "random")])
@pytest.mark.parametrize("channels, side, spec", [
    (3, 16, InputSpec(24, 3, (0.5, 0.4, 0.3), (0.2, 0.25, 0.3))),   # upsampled, normalised
    (3, 16, InputSpec(None, 1, (0.45,), (1.0,))),                   # RGB to luma, native side
    (1, 8, InputSpec(None, 1, (0.0,), (1.0,))),                     # digits-like gray
])
def test_batched_equals_per_item_without_augmentation(shuffle, sampler, channels, side, spec):
    data = _images(side=side, channels=channels)
    idx = np.random.default_rng(1).permutation(len(data.labels))[:100]
    (old, old_after), (new, new_after) = _both(data, idx, spec, shuffle, sampler)
    assert len(old) == len(new) > 1
    for (xo, yo), (xn, yn) in zip(old, new):
        assert xo.dtype == xn.dtype == torch.float32
        assert torch.equal(xo, xn) and torch.equal(yo, yn)
    # the global generator advanced alike (dropout and every later draw see the same stream)
    assert torch.equal(old_after, new_after)


def test_path_datasets_decode_once_into_the_cache(tmp_path, monkeypatch):
    from PIL import Image

    monkeypatch.setenv("HASHBENCH_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    paths = []
    for i in range(7):
        p = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, (20 + i, 30, 3), dtype=np.uint8)).save(p)
        paths.append(str(p))
    data = SimpleNamespace(x=np.array(paths), labels=np.eye(7, dtype=np.uint8), kind="path")
    spec = InputSpec(16, 3, (0.5,) * 3, (0.5,) * 3)
    items = D.image_items("folder", data, spec, {"pipeline": "batched"}, 0)
    xb, yb = items(np.arange(7))[list(range(7))]
    old = D.ImageItems(data, np.arange(7), spec)
    assert torch.equal(xb, torch.stack([old[i][0] for i in range(7)]))
    cached = list((tmp_path / "cache" / "decoded").glob("folder-16-*.npy"))
    assert len(cached) == 1 and oct(cached[0].stat().st_mode & 0o777) == "0o644"
    assert isinstance(D.ImageStore.of("folder", data, spec)._cpu, np.memmap)  # read back, not decoded again


def test_unknown_pipeline_and_augmentation_are_refused():
    data = _images()
    with pytest.raises(ValueError, match="pipeline"):
        D.image_items("x", data, InputSpec(None, 3, (0,) * 3, (1,) * 3), {"pipeline": "fast"}, 0)
    with pytest.raises(ValueError, match="augment"):
        A.augment_mode("mixup")
    with pytest.raises(ValueError, match="per_item"):
        D.image_items("x", data, InputSpec(None, 3, (0,) * 3, (1,) * 3),
                      {"pipeline": "per_item", "augment": "resized_crop"}, 0)


def _find_offsets(image: torch.Tensor, out: torch.Tensor, pad: int) -> list[tuple[int, int, bool]]:
    """(top, left, flipped) of each output image, each a crop of the one reflect-padded ``image``."""
    xp = torch.nn.functional.pad(image[None], (pad, pad, pad, pad), mode="reflect")[0]
    h, w = image.shape[-2:]
    crops = {}
    for t in range(2 * pad + 1):
        for left in range(2 * pad + 1):
            c = xp[:, t:t + h, left:left + w]
            for f, v in ((False, c), (True, c.flip(-1))):
                crops.setdefault(v.numpy().tobytes(), []).append((t, left, f))
    assert all(len(v) == 1 for v in crops.values())  # the pattern tells every crop apart
    return [crops[o.numpy().tobytes()][0] for o in out]


def test_crop_and_flip_cover_their_ranges_uniformly_and_are_seeded():
    n, side = 1500, 16
    pad = A.crop_padding(side)
    assert pad == 2
    # distinct pixel values: every (offset, flip) yields a different crop
    x = torch.arange(side * side, dtype=torch.float32).reshape(1, 1, side, side).expand(n, 3, -1, -1).contiguous()
    out = A.BatchAugment("crop", seed=5)(x)
    assert out.shape == x.shape
    found = _find_offsets(x[0], out, pad)
    tops, lefts, flips = (np.array(v) for v in zip(*found))
    for values in (tops, lefts):
        counts = np.bincount(values, minlength=2 * pad + 1)
        assert len(counts) == 2 * pad + 1 and counts.min() > 0
        expected = n / (2 * pad + 1)
        assert ((counts - expected) ** 2 / expected).sum() < 20.5  # chi-square, 4 dof, p ~ 4e-4
    assert 0.45 < flips.mean() < 0.55
    assert torch.equal(A.BatchAugment("crop", seed=5)(x), out)          # same seed, same batch
    assert not torch.equal(A.BatchAugment("crop", seed=6)(x), out)


def test_augmentation_on_the_batched_pipeline_varies_per_image_and_epoch():
    data = _images(n=64)
    spec = InputSpec(None, 3, (0,) * 3, (1,) * 3)
    ds = D.ImageBatches(D.ImageStore(data.x), data.labels, np.zeros(64, dtype=int), spec, augment=True, seed=0)
    a, _ = ds[list(range(64))]
    b, _ = ds[list(range(64))]
    assert len({tuple(v.flatten()[:40].tolist()) for v in a}) > 20   # one image, many augmentations
    assert not torch.equal(a, b)


def test_resized_crop_boxes_follow_the_scale_and_ratio_ranges():
    gen = torch.Generator().manual_seed(0)
    h, w = 32, 48
    boxes = A.random_resized_boxes(4000, h, w, gen).double()
    bw, bh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
    assert (boxes[:, 2] <= w + 1e-4).all() and (boxes[:, 3] <= h + 1e-4).all()
    area = bw * bh / (h * w)
    assert area.min() >= 0.08 * 0.95 and area.max() <= 1.0 + 1e-6
    inside = (bw < w - 1e-3) & (bh < h - 1e-3)
    ratio = (bw / bh)[inside]
    assert ratio.min() >= 3 / 4 - 1e-4 and ratio.max() <= 4 / 3 + 1e-4
    assert area.std() > 0.2 and ratio.std() > 0.1  # spread over the ranges, not a constant
    x = torch.rand(5, 3, h, w)
    full = torch.tensor([[0.0, 0.0, w, h]]).expand(5, -1)
    # each image's own box: a box in the dark left half of one image, the bright right of another
    two = torch.zeros(2, 3, h, w)
    two[:, :, :, w // 2:] = 1.0
    halves = torch.tensor([[0.0, 0.0, w / 2 - 2, h], [w / 2 + 2, 0.0, w, h]])
    cropped = A.resized_crop(two, halves, 12)
    assert cropped[0].max() == 0.0 and torch.allclose(cropped[1], torch.ones(3, 12, 12))
    out = A.BatchAugment("resized_crop", seed=0, out_size=20)(x)
    assert out.shape == (5, 3, 20, 20) and torch.isfinite(out).all()
    assert A.resized_crop(x, full, 20).shape == (5, 3, 20, 20)


@pytest.mark.gpu
def test_gpu_store_gives_the_cpu_batches():
    data = _images()
    idx = np.arange(100)
    spec = InputSpec(24, 3, (0.5,) * 3, (0.5,) * 3)
    cpu = D.ImageBatches(D.ImageStore(data.x), data.labels, idx, spec)[list(range(50))]
    store = D.ImageStore(data.x, "cuda")
    assert store.where == "gpu"
    gpu = D.ImageBatches(store, data.labels, idx, spec, channels_last=True)[list(range(50))]
    assert gpu[0].is_cuda and gpu[0].is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(gpu[0].cpu(), cpu[0], rtol=1e-5, atol=1e-5)
    assert torch.equal(gpu[1].cpu(), cpu[1])


@pytest.mark.parametrize("sampler", ["random", "class_balanced"])
def test_resume_state_carries_the_batched_loaders_shuffling_and_augmentation(sampler):
    """RngState (saved in last.ckpt) finds the batched loader's generators (its BatchSampler's
    RandomSampler, the class-balanced sampler, the augmentation's), so a loader built afresh in a
    resumed process draws the uninterrupted loader's next epoch, not its first one again."""
    from hashbench.benchmark.train import RngState

    data = _images()
    idx = np.arange(100)
    spec = InputSpec(None, 3, (0,) * 3, (1,) * 3)

    def loader():
        ds = D.ImageBatches(D.ImageStore(data.x), data.labels, idx, spec, augment="crop", seed=5)
        return D.make_loader(ds, data.labels[idx], 16, True, 5, sampler, 3, 4)

    whole = loader()
    first = list(whole)
    state = RngState(whole).state_dict()
    second = list(whole)
    resumed = loader()
    RngState(resumed).load_state_dict(state)
    again = list(resumed)
    assert len(again) == len(second)
    for (xa, ya), (xb, yb) in zip(again, second):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(first, second))  # epochs differ: the state matters


@pytest.mark.parametrize("setting, mode", [("resized_crop", "resized_crop"), ("false", None)])
def test_a_run_trains_with_the_augment_mode_it_names(setting, mode, tmp_path, monkeypatch):
    """The runner hands the harness's ``augment`` setting itself to the batched pipeline (not
    bool() of it, which turned resized_crop, and the string "false", into crop)."""
    from hashbench.benchmark.runner import RunRequest, run_one

    seen = []
    init = D.ImageBatches.__init__

    def spy(self, *args, **kwargs):
        init(self, *args, **kwargs)
        seen.append(None if self.augment is None else self.augment.mode)
    monkeypatch.setattr(D.ImageBatches, "__init__", spy)
    run_one(RunRequest(method="hashnet", dataset="digits", bits=16, epochs=1, device="cpu", out_dir=tmp_path,
                       speed=False, overrides={"augment": setting}))
    assert seen[0] == mode  # the training set's
    assert set(seen[1:]) == {None}  # validation, query and database sets are never augmented


class _Items(torch.utils.data.Dataset):
    """Features served one item at a time (what make_loader did with a tensor before)."""

    def __init__(self, x, labels):
        self.x, self.y = x, torch.from_numpy(labels.astype(np.float32))

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


@pytest.mark.parametrize("shuffle, sampler", [(True, "random"), (True, "class_balanced"), (False, "random")])
def test_feature_tensors_load_whole_batches_equal_to_item_by_item(shuffle, sampler):
    """A features tensor is fetched a batch per index: the same batches, in the same order, with
    the same draws from the global generator as item-by-item collation."""
    rng = np.random.default_rng(3)
    x = torch.from_numpy(rng.standard_normal((70, 5)).astype(np.float32))
    labels = np.eye(4, dtype=np.int64)[rng.integers(0, 4, 70)]
    out = []
    for ds in (_Items(x, labels), x):
        torch.manual_seed(11)
        out.append((list(D.make_loader(ds, labels, 16, shuffle, 7, sampler, 2, 3)), torch.rand(3)))
    (old, old_after), (new, new_after) = out
    assert len(old) == len(new) > 1
    for (xo, yo), (xn, yn) in zip(old, new):
        assert torch.equal(xo, xn) and torch.equal(yo, yn)
    assert torch.equal(old_after, new_after)
