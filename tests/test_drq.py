"""DRQ: losses on hand-computed examples, the cosine-argmax recurrent encoder, prefix codes,
code lengths, the three-stage schedule, and short Lightning runs."""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from hashbench import methods
from hashbench.methods import drq_losses as L
from hashbench.methods.base import UnsupportedBitsError
from hashbench.benchmark.search.additive import lut_scores, reconstruct
from hashbench.methods.drq import DRQ, recurrent_quantize, stage_of_epoch, steps_and_bits



class TinyBackbone(nn.Module):
    def __init__(self, in_dim: int = 12, out_dim: int = 10) -> None:
        super().__init__()
        self.lin = nn.Linear(in_dim, out_dim)
        self.out_dim = out_dim

    def forward(self, x):
        return torch.relu(self.lin(x))


def make(bits=16, n_classes=4, **kw) -> DRQ:
    kw = {"codebook_size": 16, "feature_dim": 24, **kw}
    return DRQ(bits=bits, n_classes=n_classes, backbone=TinyBackbone(), **kw)


# --------------------------------------------------------------------------- code lengths
def test_bits_map_to_steps_and_bits_per_step():
    assert steps_and_bits(32) == (4, 8)                      # K = 256: M = bits / 8
    assert steps_and_bits(8) == (1, 8)
    assert steps_and_bits(48, codebook_size=4096) == (4, 12)
    assert steps_and_bits(16, codebook_size=16, n_steps=12) == (12, 4)
    DRQ.check_bits(24)
    for bits, kw in [(12, {}), (0, {}), (4, {}), (40, {"n_steps": 4}), (16, {"codebook_size": 4096}),
                     (8, {"codebook_size": 100})]:
        with pytest.raises(UnsupportedBitsError):
            DRQ.check_bits(bits, **kw)
    with pytest.raises(UnsupportedBitsError):
        make(bits=10)                                        # K = 16 → multiples of 4


def test_registered_and_lengths_are_every_prefix():
    assert methods.get_method("drq") is DRQ
    assert DRQ.search_metric == "ip" and DRQ.code_type == "additive"
    m = make(bits=16)                                        # K = 16, M = 4
    assert m.evaluation_lengths() == {4: {"prefix": 1}, 8: {"prefix": 2}, 12: {"prefix": 3}, 16: {"prefix": 4}}
    assert make(bits=8, n_steps=3).evaluation_lengths() == {4: {"prefix": 1}, 8: {"prefix": 2}, 12: {"prefix": 3}}


# --------------------------------------------------------------------------- quantisation losses
# x, two steps of soft/hard outputs (M, B, D); values chosen by hand
X = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
SOFT = torch.tensor([[[0.5, 0.0], [0.0, 1.0]], [[0.5, 0.0], [0.0, 0.5]]])
HARD = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[0.0, 0.0], [0.0, 1.0]]])


def test_first_step_losses_by_hand():
    # x − q̃1 = [[.5, 0], [0, 1]] → (.25 + 1)/4; x − q1 = [[0,0],[0,1]] → 1/4; q̃1 − q1 = [[-.5,0],[0,0]] → .25/4
    assert L.soft_quantization_loss(X, SOFT, full=False).item() == pytest.approx(0.3125)
    assert L.hard_quantization_loss(X, HARD, full=False).item() == pytest.approx(0.25)
    assert L.joint_central_loss(SOFT, HARD, full=False).item() == pytest.approx(0.0625)
    obj = L.codebook_objective(X, SOFT, HARD, full=False)     # τ = μ = 1, ν = 0.1
    assert obj["loss"].item() == pytest.approx(0.3125 + 0.25 + 0.00625)


def test_full_losses_by_hand():
    # Q̃2 = [[1,0],[0,1.5]] → x − Q̃2 = [[0,0],[0,.5]] → .25/4; Q2 = x → 0; Q̃2 − Q2 → .25/4
    assert L.soft_quantization_loss(X, SOFT, full=True).item() == pytest.approx(0.0625)
    assert L.hard_quantization_loss(X, HARD, full=True).item() == pytest.approx(0.0)
    assert L.joint_central_loss(SOFT, HARD, full=True).item() == pytest.approx(0.0625)
    obj = L.codebook_objective(X, SOFT, HARD, full=True, tau=2.0, mu=3.0, nu=0.5)
    assert obj["loss"].item() == pytest.approx(2.0 * (0.0625 + 3.0 * 0.0 + 0.5 * 0.0625))
    # the full sums start at m = 2: one step contributes nothing to E_s, E_h
    assert L.soft_quantization_loss(X, SOFT[:1], full=True).item() == 0.0
    # three steps: Σ_{m=2,3}; a third step q3 = [[0,0],[0,.5]] makes Q̃3 = x exactly
    soft3 = torch.cat([SOFT, torch.tensor([[[0.0, 0.0], [0.0, 0.5]]])])
    assert L.soft_quantization_loss(X, soft3, full=True).item() == pytest.approx(0.0625 + 0.0)


# --------------------------------------------------------------------------- semantic loss
def test_adaptive_margin_loss_by_hand():
    v = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])       # δ12 = 1, δ13 = δ23 = 1 − 1/√2
    e = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([[0, 1, 0], [1, 0, 1]])
    # item 1 (Y={2}): c'=1: 1 − 0 + 1 = 2; c'=3: (1 − s) − 0 + s = 1            → 3
    # item 2 (Y={1,3}): c=1: c'=2: 2, c'=3: 1 → 3; c=3: c'=1: 1 − 2s < 0 → 0, c'=2: 2 − 2s
    # total (8 − √2), divided by C·Σ|Y| = 3·3
    assert L.adaptive_margin_loss(e, y, v).item() == pytest.approx((8 - math.sqrt(2)) / 9, rel=1e-6)
    assert L.adaptive_margin_loss(e, torch.zeros(2, 3), v).item() == 0.0


def _brute_margin(e, y, v):
    total, n = 0.0, 0
    cos = lambda a, b: float(a @ b / (a.norm() * b.norm()))  # noqa: E731
    for i in range(len(e)):
        for c in np.flatnonzero(y[i]):
            n += 1
            for c2 in range(len(v)):
                total += max(0.0, 1 - cos(v[c], v[c2]) - cos(e[i], v[c]) + cos(e[i], v[c2]))
    return total / (len(v) * n)


def test_adaptive_margin_loss_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    e, v = torch.randn(6, 5, generator=g).tanh(), torch.randn(4, 5, generator=g)
    y = (torch.rand(6, 4, generator=g) < 0.4).float()
    y[0] = torch.tensor([1.0, 0, 0, 0])
    assert L.adaptive_margin_loss(e, y, v).item() == pytest.approx(_brute_margin(e, y, v), rel=1e-5)


# --------------------------------------------------------------------------- triplet loss
def test_semihard_triplet_by_hand():
    f = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])       # a, p (class 0), n (class 1)
    y = torch.tensor([[1, 0], [1, 0], [0, 1]])
    # d(a,p) = .8, d(a,n) = 2, d(p,n) = .4. (a,p): n is semi-hard (2 > .8) → .8 − 2 + 2.5 = 1.3;
    # (p,a): no negative beyond .8 → hardest negative .4 → .8 − .4 + 2.5 = 2.9; mean 2.1
    assert L.semihard_triplet_loss(f, y).item() == pytest.approx(2.1, rel=1e-6)
    assert L.semihard_triplet_loss(f, y, margin=0.5).item() == pytest.approx((0.0 + 0.9) / 2, rel=1e-6)
    # scale-free: the loss is on L2-normalised features
    assert L.semihard_triplet_loss(f * torch.tensor([[3.0], [0.2], [7.0]]), y).item() == pytest.approx(2.1, rel=1e-6)
    # ties: a negative at exactly d(a,p) is not semi-hard (strict >); the farther one is taken
    f = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, -1.0], [-1.0, 0.0]])   # a, p | n1, n2
    y4 = torch.tensor([[1, 0], [1, 0], [0, 1], [0, 1]])
    # every positive pair has d = 2, one negative tied at 2 and one at 4 → 2 − 4 + 2.5 = 0.5
    # (with ≥ instead of > the tied one would be taken: 2 − 2 + 2.5 = 2.5)
    assert L.semihard_triplet_loss(f, y4).item() == pytest.approx(0.5)
    f, y = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]]), torch.tensor([[1, 0], [1, 0], [0, 1]])
    # no positive pair → 0; a batch of one class (no negatives) → margin + d(a,p) (TF's recipe)
    assert L.semihard_triplet_loss(f[[0, 2]], y[[0, 2]]).item() == 0.0
    assert L.semihard_triplet_loss(f[:2], y[:2]).item() == pytest.approx(2.5 + 0.8, rel=1e-6)


def _brute_triplet(f, y, margin):
    g = f / f.norm(dim=1, keepdim=True)
    d = ((g[:, None] - g[None]) ** 2).sum(-1)
    share = (y @ y.T) > 0
    losses = []
    for a in range(len(g)):
        negs = [n for n in range(len(g)) if n != a and not share[a, n]]
        for p in range(len(g)):
            if p == a or not share[a, p]:
                continue
            beyond = [float(d[a, n]) for n in negs if d[a, n] > d[a, p]]
            dn = min(beyond) if beyond else (max(float(d[a, n]) for n in negs) if negs else 0.0)
            losses.append(max(0.0, float(d[a, p]) - dn + margin))
    return sum(losses) / len(losses)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_semihard_triplet_matches_brute_force_multilabel(seed):
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(9, 4, generator=g)
    y = (torch.rand(9, 3, generator=g) < 0.4).float()
    y[:2] = torch.tensor([1.0, 0, 0])                            # at least one positive pair
    for margin in (2.5, 0.3):
        assert L.semihard_triplet_loss(f, y, margin).item() == pytest.approx(_brute_triplet(f, y, margin), rel=1e-5)
    f.requires_grad_(True)
    L.semihard_triplet_loss(f, y).backward()
    assert torch.isfinite(f.grad).all() and f.grad.abs().sum() > 0


# --------------------------------------------------------------------------- encoder and prefixes
def test_argmax_is_cosine_and_reconstruction_is_scaled():
    x = torch.tensor([[1.0, 0.0]])
    c = torch.tensor([[10.0, 1.0], [0.5, 0.3], [-1.0, 0.0]])     # L2-nearest to x is row 1, best cosine row 0
    q = recurrent_quantize(x, c, torch.tensor([1.0, 0.5]))
    # step 2: r = (−9, −1); best cosine with +0.5·C is row 2 → q2 = 0.5·(−1, 0)
    assert q.indices.tolist() == [[0, 2]]
    assert torch.allclose(q.hard[:, 0], torch.tensor([[10.0, 1.0], [-0.5, 0.0]]))
    # a negative scale flips the cosine: step 2 now picks the codeword most opposed to r
    q = recurrent_quantize(x, c, torch.tensor([1.0, -0.5]))
    assert q.indices.tolist() == [[0, 0]]
    assert torch.allclose(q.hard[1, 0], torch.tensor([-5.0, -0.5]))
    # norm-blind: rescaling the input or the codebook keeps the first index
    assert recurrent_quantize(7 * x, 0.01 * c, torch.tensor([1.0])).indices.tolist() == [[0]]
    # the soft output is the softmax(cos)-weighted scaled codebook (no temperature)
    cos = torch.nn.functional.normalize(c, dim=1) @ torch.tensor([1.0, 0.0])
    assert torch.allclose(recurrent_quantize(x, c, torch.tensor([1.0])).soft[0, 0], cos.softmax(0) @ c)


def test_prefixes_reconstruct_to_sum_of_first_scaled_codewords():
    torch.manual_seed(0)
    m = make(bits=16, init_std=1.0)                              # M = 4 steps
    with torch.no_grad():
        m.step_scales.copy_(torch.tensor([0.7, -0.4, 0.2]))
    m.eval()
    x = torch.randn(20, 12)
    with torch.inference_mode():
        out = m.encode(x)
        feats = m.embed(x)
        q = recurrent_quantize(feats, m.codebook, m.scales())
    idx, books = out["indices"].numpy(), m.code_state()["codebooks"]
    assert out["indices"].dtype == torch.int64 and idx.shape == (20, 4) and books.shape == (4, 16, 24)
    assert torch.equal(out["features"], feats) and out["features"].shape == (20, 24)
    c = m.codebook.detach().numpy()
    np.testing.assert_allclose(books, np.array([1.0, 0.7, -0.4, 0.2])[:, None, None] * c, rtol=1e-6)
    for p in range(1, 5):
        manual = sum(books[j][idx[:, j]] for j in range(p))
        np.testing.assert_allclose(manual, q.hard[:p].sum(0).numpy(), rtol=1e-5, atol=1e-6)
        # the harness's reconstruction of a prefix (what its lookup-table search scores against)
        np.testing.assert_allclose(reconstruct(books, idx, p), manual, rtol=1e-5, atol=1e-6)
        f = out["features"].numpy()
        np.testing.assert_allclose(lut_scores(f, books, idx, m=p, metric=DRQ.search_metric), f @ manual.T,
                                   rtol=1e-4, atol=1e-5)
        # a prefix's code is the code of the shorter quantiser: encoding with p steps gives the same indices
        short = recurrent_quantize(feats, m.codebook, m.scales()[:p])
        assert torch.equal(short.indices, out["indices"][:, :p])


# --------------------------------------------------------------------------- class targets
def test_one_hot_fallback_and_word_vectors_are_recorded():
    m = make(n_classes=4)
    assert m.hparams["semantic_targets"] == "one_hot"
    assert torch.equal(m.class_vectors, torch.eye(4)) and m.fc9.out_features == 4 and m.fc8.out_features == 20
    w = make(n_classes=4, class_vectors=np.random.default_rng(0).normal(size=(4, 6)))
    assert w.hparams["semantic_targets"] == "word_vectors" and w.fc9.out_features == 6
    with pytest.raises(ValueError):
        make(n_classes=4, class_vectors=np.ones((3, 6)))


def test_cifar10_word_vectors_give_adaptive_margins():
    root = os.environ.get("HASHBENCH_SHARED_DATA")
    path = Path(root or "/nonexistent") / "wordvec" / "cifar10_wordvec.txt"
    if not path.is_file():
        pytest.skip("HASHBENCH_SHARED_DATA/wordvec/cifar10_wordvec.txt not available")
    vec = np.loadtxt(path)
    assert vec.shape == (10, 300)
    m = make(n_classes=10, class_vectors=vec, feature_dim=512)
    assert m.fc8.out_features == 212 and m.fc9.out_features == 300     # the original code's head
    v = torch.nn.functional.normalize(m.class_vectors, dim=1)
    delta = 1 - v @ v.T
    assert delta[3, 5].item() == pytest.approx(1 - 0.76, abs=0.01)     # cat ↔ dog
    assert delta[3, 5] < delta[3, 1]                                    # cat closer to dog than to automobile


# --------------------------------------------------------------------------- schedule and training
def test_stage_of_epoch():
    assert [stage_of_epoch(e, 8) for e in range(8)] == [1, 1, 1, 1, 2, 2, 3, 3]
    stages = [stage_of_epoch(e, 64, skip_boundaries=True) for e in range(64)]
    assert stages[:32] == [1] * 32 and stages[32] == 0 and stages[33:48] == [2] * 15
    assert stages[48] == 0 and stages[49:] == [3] * 15                # the original trains E − 2 epochs
    assert [stage_of_epoch(e, 10, (0.2, 0.6)) for e in range(10)] == [1, 1, 2, 2, 2, 2, 3, 3, 3, 3]
    with pytest.raises(ValueError):
        stage_of_epoch(0, 10, (0.8, 0.5))


def test_only_final_stage_epochs_are_selectable():
    m = make(schedule_epochs=8)                                    # stages 1 1 1 1 2 2 3 3
    assert [m.selectable_epoch(e) for e in range(8)] == [False] * 6 + [True] * 2
    m = make(schedule_epochs=4, stage_fractions=(0.5, 1.0))        # no stage 3: stage 2 is final
    assert [m.selectable_epoch(e) for e in range(4)] == [False, False, True, True]
    m = make(schedule_epochs=8, selection="any_epoch")
    assert all(m.selectable_epoch(e) for e in range(8))
    with pytest.raises(ValueError):
        make(selection="best")


def _loader(n=32, batch=8, n_classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 12, generator=g)
    y = torch.nn.functional.one_hot(torch.arange(n) % n_classes, n_classes).float()
    return DataLoader(TensorDataset(x, y), batch_size=batch, shuffle=False)


class Snapshots(pl.Callback):
    """Parameters at the end of every epoch."""

    def __init__(self):
        self.at = []

    def on_train_start(self, trainer, pl_module):
        self.at.append(self.take(pl_module))

    def on_train_epoch_end(self, trainer, pl_module):
        self.at.append(self.take(pl_module))

    @staticmethod
    def take(m):
        return {"codebook": m.codebook.detach().clone(), "scales": m.step_scales.detach().clone(),
                "head": m.fc8.weight.detach().clone(), "backbone": m.backbone.lin.weight.detach().clone()}


def _fit(model, epochs=None, max_steps=-1, loader=None):
    snaps = Snapshots()
    trainer = pl.Trainer(max_epochs=epochs, max_steps=max_steps, accelerator="cpu", logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[snaps])
    trainer.fit(model, loader or _loader())
    return trainer, snaps.at


def _changed(snaps, epoch, key):
    return not torch.equal(snaps[epoch][key], snaps[epoch + 1][key])


def test_stages_switch_at_the_right_epochs():
    torch.manual_seed(0)
    trainer, s = _fit(make(codebook_lr=1e-2), epochs=4)           # E = 4: stages 1, 1, 2, 3; 4 batches each
    steps = [c.scheduler.last_epoch for c in trainer.lr_scheduler_configs]
    # encoder every batch; A: 4 in stage 2 + 2 (even batches) in stage 3; B: 2 (odd batches)
    assert steps == [16, 6, 2]
    assert [_changed(s, e, "head") for e in range(4)] == [True] * 4
    assert [_changed(s, e, "backbone") for e in range(4)] == [True] * 4
    assert [_changed(s, e, "codebook") for e in range(4)] == [False, False, True, True]
    assert [_changed(s, e, "scales") for e in range(4)] == [False, False, False, True]   # stage B only


def test_fit_times_every_epoch_by_stage(tmp_path):
    from hashbench.benchmark.train import fit

    torch.manual_seed(0)
    info = fit(make(codebook_lr=1e-2), _loader(), tmp_path, epochs=4, device="cpu", devices=1,
               score_fn=None, progress=False)
    assert [r["epoch"] for r in info["epochs"]] == [0, 1, 2, 3]
    assert [r["stage"] for r in info["epochs"]] == [1, 1, 2, 3]
    assert all(r["samples"] == 32 and r["seconds"] > 0 for r in info["epochs"])
    by_stage = info["throughput"]
    assert by_stage["1"]["epochs"] == 2 and by_stage["1"]["samples"] == 64
    assert by_stage["1"]["images_per_second"] == pytest.approx(64 / by_stage["1"]["seconds"], rel=1e-3)


def test_skipped_boundary_epochs_do_nothing():
    torch.manual_seed(0)
    _, s = _fit(make(skip_boundary_epochs=True), epochs=4)        # b1 = 2, b2 = 3 are skipped
    assert [_changed(s, e, "head") for e in range(4)] == [True, True, False, False]


@pytest.mark.parametrize("end_to_end", [False, True])
def test_quantisation_gradient_reaches_network_only_end_to_end(end_to_end):
    torch.manual_seed(0)
    m = make(semantic_weight=0.0, triplet_weight=0.0, schedule_epochs=1, end_to_end=end_to_end)
    _, s = _fit(m, max_steps=6)                                    # stage 3 from the first step
    assert _changed(s, 0, "codebook") and _changed(s, 0, "scales")
    assert _changed(s, 0, "head") == end_to_end
    assert _changed(s, 0, "backbone") == end_to_end


def test_training_steps_run_without_nan_and_change_parameters():
    torch.manual_seed(0)
    m = make(bits=8, n_steps=3, schedule_epochs=1, hidden_dims=[16], lr=0.05, codebook_lr=1e-2)
    trainer, s = _fit(m, max_steps=12, loader=_loader(n=48, batch=16))
    logged = trainer.callback_metrics
    for key in ("train/loss", "train/loss_semantic", "train/loss_triplet", "train/loss_codebook_A",
                "train/loss_codebook_B"):
        assert torch.isfinite(logged[key]), key
    assert all(torch.isfinite(p).all() for p in m.parameters())
    for key in ("codebook", "scales", "head", "backbone"):
        assert _changed(s, 0, key), key
    m.eval()
    with torch.inference_mode():
        idx = m.encode(torch.randn(5, 12))["indices"]
    assert idx.shape == (5, 3) and int(idx.min()) >= 0 and int(idx.max()) < 16


# --------------------------------------------------------------------------- configs
def test_cifar10_config_uses_the_cached_reference_features():
    """The cifar10 block names EfficientNet-Lite0; with no image size the runner would extract a
    second 60k-image feature set at 224 px instead of reusing the 160-px reference features."""
    from hashbench.benchmark.config import resolve_config, split_config
    from hashbench.benchmark.data import DEFAULT_FEATURE_SIZE

    for variant in (None, "end_to_end", "setting1_cifar10"):
        harness, _ = split_config(resolve_config("drq", "cifar10", variant))
        assert harness["frozen"] is True
        assert (harness["backbone"], harness["image_size"]) == ("efficientnet-lite0", DEFAULT_FEATURE_SIZE)
