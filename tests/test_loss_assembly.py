"""Each method's training loss assembled from its parts, against values recomputed here from
the definitions (loops over pairs, not the library functions under test): the Deep Hash Table's
stage-1 and code-masked stage-2 losses on the flow codes, the cascade's sum over levels, HashNet's
two streams and their labels, and DRQ's stage losses."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hashbench.methods.backbones import build_backbone
from hashbench.methods.cascade_dht import CascadeDHT
from hashbench.methods.dht import DeepHashTable
from hashbench.methods.drq import DRQ, recurrent_quantize
from hashbench.methods.hashnet import HashNet
from hashbench.methods.min_cost_flow import solve_class_codes

torch.set_default_dtype(torch.float32)


# ----------------------------------------------------------------------------- reference losses
def ref_semihard_triplet(dist: torch.Tensor, same: np.ndarray, margin: float) -> float:
    """TF's semi-hard triplet by its definition: for every ordered positive pair (a, p), the
    smallest negative distance above d(a, p), else the largest negative distance (0 if none)."""
    d = dist.detach().double().numpy()
    n = len(d)
    terms = []
    for a, p in itertools.permutations(range(n), 2):
        if not same[a, p]:
            continue
        negs = [d[a, j] for j in range(n) if j != a and not same[a, j]]
        above = [x for x in negs if x > d[a, p]]
        dn = min(above) if above else (max(negs) if negs else 0.0)
        terms.append(max(0.0, d[a, p] - dn + margin))
    return float(np.mean(terms)) if terms else 0.0


def ref_masked_l1(g: torch.Tensor, codes: np.ndarray) -> torch.Tensor:
    g = g.detach().double().numpy()
    n = len(g)
    out = np.zeros((n, n))
    for i, j in itertools.product(range(n), repeat=2):
        mask = (codes[i] > 0) | (codes[j] > 0)
        out[i, j] = (mask * np.abs(g[i] - g[j])).sum()
    return torch.from_numpy(out)


def ref_sq_euclidean_normalised(x: torch.Tensor) -> torch.Tensor:
    g = F.normalize(x.detach().double(), dim=1)
    return ((g[:, None, :] - g[None, :, :]) ** 2).sum(2)


def same_class(ids) -> np.ndarray:
    ids = np.asarray(ids)
    return ids[:, None] == ids[None, :]


def ref_npairs(a: np.ndarray, p: np.ndarray, labels: np.ndarray, reg: float, codes: np.ndarray | None) -> float:
    n = len(a)
    sim = np.zeros((n, n))
    for i, j in itertools.product(range(n), repeat=2):
        mask = np.ones(a.shape[1]) if codes is None else ((codes[i] > 0) | (codes[j] > 0))
        sim[i, j] = (mask * a[i] * p[j]).sum()
    xent = 0.0
    for i in range(n):
        target = (labels == labels[i]).astype(float)
        target /= target.sum()
        logp = sim[i] - np.log(np.exp(sim[i]).sum())
        xent -= (target * logp).sum() / n
    return xent + 0.25 * reg * ((a ** 2).sum(1).mean() + (p ** 2).sum(1).mean())


# ----------------------------------------------------------------------------- Deep Hash Table
def _dht(cls=DeepHashTable, **hp):
    torch.manual_seed(0)
    hp.setdefault("hidden_dims", [8])
    hp.setdefault("dropout", 0.0)
    return cls(bits=6, n_classes=3, backbone=build_backbone("identity", in_dim=5), **hp)


def _batch(n=9, n_classes=3, seed=0, dim=5):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dim, generator=g)
    return x, torch.arange(n) % n_classes


def _flow_codes(f: torch.Tensor, class_ids: torch.Tensor, s: int, lam: float, normalise=True) -> np.ndarray:
    """Each sample's class code: min-cost flow on the class means of the (normalised) rows."""
    rows = F.normalize(f.detach().double(), dim=1) if normalise else f.detach().double()
    classes = sorted(set(class_ids.tolist()))
    means = np.stack([rows[class_ids == c].mean(0).numpy() for c in classes])
    codes = solve_class_codes(means, s, lam)
    return codes[[classes.index(c) for c in class_ids.tolist()]]


def test_dht_masked_triplet_hand_value():
    # the worked example of tests/test_dht.py through the method: rows already unit norm,
    # codes e0 (class 0), e1 (class 1); hinge terms 0, 0.4, 0.2, 0.6 with margin 1 -> 0.3
    m = _dht(hash_margin=1.0)
    g = torch.tensor([[1.0, 0.0, 0.0], [0.8, 0.6, 0.0], [0.0, 1.0, 0.0], [0.0, 0.6, 0.8]])
    labels = torch.tensor([0, 0, 1, 1])
    codes = torch.tensor([[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 1, 0]])
    assert m.masked_loss(g, labels, labels, codes).item() == pytest.approx(0.3, abs=1e-6)
    # all-ones masks: plain L1 distances give a different value
    assert m.masked_loss(g, labels, labels, torch.ones_like(codes)).item() != pytest.approx(0.3, abs=1e-3)


@pytest.mark.parametrize("s, lam", [(1, 1.0), (2, 0.3)])
def test_dht_stage2_loss_is_the_masked_triplet_on_the_flow_codes(s, lam):
    m = _dht(sparsity=s, pairwise_penalty=lam, hash_margin=0.7)
    x, cls = _batch()
    loss = m.hash_loss(x, cls)
    f = m.hash_output(x)
    codes = _flow_codes(f, cls, s, lam)
    assert (codes.sum(1) == s).all()
    g = F.normalize(f.detach().double(), dim=1)
    want = ref_semihard_triplet(ref_masked_l1(g, codes), same_class(cls), 0.7)
    assert loss.item() == pytest.approx(want, abs=1e-5)
    # the code mask matters: all-ones masks (plain L1) give another value
    plain = ref_semihard_triplet(ref_masked_l1(g, np.ones_like(codes)), same_class(cls), 0.7)
    assert abs(plain - want) > 1e-3
    loss.backward()
    assert m.hash_head.weight.grad is not None and m.hash_head.weight.grad.abs().sum() > 0


def test_dht_batch_codes_use_the_normalised_class_means():
    m = _dht(sparsity=1, pairwise_penalty=1.0)
    x, cls = _batch()
    f = m.hash_output(x) * torch.tensor([10.0, 1, 1, 1, 1, 1, 1, 1, 1])[:, None]   # one long row
    codes, labels = m.batch_codes(f, cls)
    assert np.array_equal(codes.numpy(), _flow_codes(f, cls, 1, 1.0).astype(np.float32))
    assert torch.equal(labels, cls) and codes.dtype == f.dtype
    assert m.timers["flow_solver"] > 0


def test_dht_stage2_npairs_is_masked_by_the_flow_codes():
    m = _dht(loss="npairs", sparsity=2, pairwise_penalty=0.3, hash_npairs_reg=0.05)
    x, cls = _batch(n=12)
    loss = m.hash_loss(x, cls)
    f = m.hash_output(x).detach().double().numpy()
    codes = _flow_codes(torch.from_numpy(f), cls, 2, 0.3, normalise=False)   # N-pairs: raw class means
    # pairs within each class in batch order: items 0-1, 2-3, … of that class
    a_idx, p_idx = [], []
    for c in range(3):
        members = [i for i in range(12) if cls[i] == c]
        for j in range(0, len(members) - 1, 2):
            a_idx.append(members[j])
            p_idx.append(members[j + 1])
    order = np.argsort([cls[i].item() for i in a_idx], kind="stable")
    a_idx, p_idx = np.array(a_idx)[order], np.array(p_idx)[order]
    want = ref_npairs(f[a_idx], f[p_idx], cls.numpy()[a_idx], 0.05, codes[a_idx])
    assert loss.item() == pytest.approx(want, abs=1e-5)
    unmasked = ref_npairs(f[a_idx], f[p_idx], cls.numpy()[a_idx], 0.05, None)
    assert abs(unmasked - want) > 1e-3


def test_dht_stage1_loss_is_the_semihard_triplet_of_the_normalised_embedding():
    m = _dht(metric_margin=0.3)
    x, cls = _batch()
    e = m.embed_head(m.head_input(x))
    want = ref_semihard_triplet(ref_sq_euclidean_normalised(e), same_class(cls), 0.3)
    assert m.metric_loss(x, cls).item() == pytest.approx(want, abs=1e-5)


def test_dht_stage1_npairs():
    m = _dht(loss="npairs", npairs_reg=0.01)
    x, cls = _batch(n=12)
    e = m.embed_head(m.head_input(x)).detach().double().numpy()
    # pairs within each class in batch order, anchors sorted by class: (0, 3), (6, 9), (1, 4), …
    a_idx = np.array([0, 6, 1, 7, 2, 8])
    p_idx = np.array([3, 9, 4, 10, 5, 11])
    want = ref_npairs(e[a_idx], e[p_idx], cls.numpy()[a_idx], 0.01, None)
    assert m.metric_loss(x, cls).item() == pytest.approx(want, abs=1e-5)


def test_dht_two_pass_takes_the_loss_on_a_fresh_forward_pass():
    m = _dht(dropout=0.5, two_pass=True, sparsity=1, pairwise_penalty=1.0, hash_margin=0.5)
    m.train()
    x, cls = _batch()
    torch.manual_seed(7)
    loss = m.hash_loss(x, cls)
    torch.manual_seed(7)
    f1 = m.hash_output(x)
    f2 = m.hash_output(x)
    assert not torch.allclose(f1, f2)                         # dropout: two different passes
    codes = _flow_codes(f1, cls, 1, 1.0)
    want = ref_semihard_triplet(ref_masked_l1(F.normalize(f2.detach().double(), dim=1), codes), same_class(cls), 0.5)
    assert loss.item() == pytest.approx(want, abs=1e-5)


# ----------------------------------------------------------------------------- cascade
def test_cascade_stage2_loss_is_the_sum_over_levels():
    torch.manual_seed(0)
    m = CascadeDHT(bits=4, n_classes=3, backbone=build_backbone("identity", in_dim=5), hidden_dims=[8], dropout=0.0,
                   levels=2, sparsity=1, sibling_penalty=100.0, pairwise_penalty=1.0, hash_margin=0.6)
    x, cls = _batch()
    loss = m.hash_loss(x, cls)
    f = m.hash_output(x).detach().double()
    from hashbench.methods.cascade_dht import cascade_class_codes, dynamic_labels

    # per-level normalised rows, class means, level-wise flow codes, dynamic labels
    rows = torch.cat([F.normalize(f[:, :4], dim=1), F.normalize(f[:, 4:], dim=1)], 1)
    means = np.stack([rows[cls == c].mean(0).numpy() for c in range(3)])
    codes = cascade_class_codes(means.reshape(3, 2, 4), 1, 100.0, 1.0)
    labels = dynamic_labels(codes)[cls.numpy()]
    sample_codes = np.concatenate(codes, 1)[cls.numpy()]
    per_level = [ref_semihard_triplet(ref_masked_l1(rows[:, 4 * lv:4 * lv + 4], sample_codes[:, 4 * lv:4 * lv + 4]),
                                      same_class(labels[:, lv]), 0.6) for lv in range(2)]
    assert loss.item() == pytest.approx(sum(per_level), abs=1e-5)
    assert min(per_level) > 0                                # both levels contribute


def test_cascade_masked_loss_sums_each_level_with_its_labels_and_codes():
    torch.manual_seed(0)
    m = CascadeDHT(bits=3, n_classes=2, backbone=build_backbone("identity", in_dim=5), hidden_dims=[], dropout=0.0,
                   levels=3, hash_margin=1.0, labels="static")
    g = torch.randn(6, 9)
    labels = torch.tensor([[0, 0, 0], [0, 0, 1], [1, 1, 1], [1, 0, 1], [0, 1, 0], [1, 1, 0]])
    codes = torch.tensor([[1, 0, 0, 0, 1, 0, 0, 0, 1]] * 3 + [[0, 1, 0, 1, 0, 0, 0, 1, 0]] * 3)
    want = sum(ref_semihard_triplet(ref_masked_l1(F.normalize(g[:, 3 * lv:3 * lv + 3].double(), dim=1),
                                                  codes[:, 3 * lv:3 * lv + 3].numpy()),
                                    same_class(labels[:, lv]), 1.0) for lv in range(3))
    assert m.masked_loss(g, labels[:, 0], labels, codes).item() == pytest.approx(want, abs=1e-5)
    # static labels: the class id at every level
    cls = torch.tensor([0, 0, 1, 1, 0, 1])
    assert m.code_labels([], cls, None).tolist() == [[c] * 3 for c in cls.tolist()]


# ----------------------------------------------------------------------------- HashNet
def ref_hashnet(h1, h2, y1, y2, alpha, class_num, threshold=15.0):
    """Σ w·ℓ / Σ w over all pairs (i of stream 1, j of stream 2), w = class_num on similar pairs."""
    num = den = 0.0
    for i, j in itertools.product(range(len(h1)), range(len(h2))):
        s = float((y1[i] * y2[j]).sum() > 0)
        t = alpha * float((h1[i] * h2[j]).sum())
        ell = t * (1 - s) if threshold is not None and t >= threshold else math.log1p(math.exp(t)) - s * t
        w = class_num if s else 1.0
        num += w * ell
        den += w
    return num / den


def _hashnet(**hp):
    torch.manual_seed(0)
    return HashNet(bits=8, n_classes=3, backbone=build_backbone("identity", in_dim=8), class_num=4.0, **hp)


def _codes_and_labels(n=10, seed=3):
    g = torch.Generator().manual_seed(seed)
    h = torch.tanh(2 * torch.randn(n, 8, generator=g, dtype=torch.float64))
    y = F.one_hot(torch.arange(n) % 3, 3).double()
    y[1, 2] = 1.0                                            # one multi-label item
    return h, y


def test_hashnet_two_streams_pair_stream1_with_stream2_and_their_own_labels():
    m = _hashnet()
    h, y = _codes_and_labels()
    torch.manual_seed(11)
    loss = m.loss_on(h, y)
    torch.manual_seed(11)
    perm = torch.randperm(10)
    i1, i2 = perm[:5], perm[5:10]
    want = ref_hashnet(h[i1], h[i2], y[i1], y[i2], m.alpha, 4.0)
    assert loss.item() == pytest.approx(want, abs=1e-10)
    # stream 2 with stream 1's labels, or pairs within one stream, give other values
    assert abs(ref_hashnet(h[i1], h[i2], y[i1], y[i1], m.alpha, 4.0) - want) > 1e-3
    assert abs(ref_hashnet(h[i1], h[i1], y[i1], y[i1], m.alpha, 4.0) - want) > 1e-3
    assert m.alpha == pytest.approx(10 / 8)


def test_hashnet_odd_batch_leaves_one_item_out_and_tiny_batches_have_no_loss():
    m = _hashnet()
    h, y = _codes_and_labels(n=7)
    torch.manual_seed(5)
    loss = m.loss_on(h, y)
    torch.manual_seed(5)
    perm = torch.randperm(7)
    assert loss.item() == pytest.approx(ref_hashnet(h[perm[:3]], h[perm[3:6]], y[perm[:3]], y[perm[3:6]], m.alpha, 4.0))
    assert m.loss_on(h[:1], y[:1]) is None


def test_hashnet_in_batch_pairs_and_options_reach_the_loss():
    h, y = _codes_and_labels(n=6)
    m = _hashnet(pairs="in_batch", alpha=3.0, threshold=2.0)
    want = ref_hashnet(h, h, y, y, 3.0, 4.0, threshold=2.0)
    assert m.loss_on(h, y).item() == pytest.approx(want, abs=1e-10)
    assert abs(ref_hashnet(h, h, y, y, 3.0, 4.0, threshold=None) - want) > 1e-3   # the threshold branch is used
    plain = _hashnet(pairs="in_batch", weighting="none")
    assert plain.loss_on(h, y).item() == pytest.approx(ref_hashnet(h, h, y, y, plain.alpha, 1.0), abs=1e-10)


def test_hashnet_training_step_uses_tanh_of_beta_times_the_embedding(monkeypatch):
    m = _hashnet(pairs="in_batch")
    monkeypatch.setattr(m, "log", lambda *a, **k: None)
    m._resolved_scale = 1.0
    x = torch.randn(6, 8)
    y = F.one_hot(torch.arange(6) % 3, 3).float()
    monkeypatch.setattr(type(m), "global_step", property(lambda self: 400))
    monkeypatch.setattr(type(m), "current_epoch", property(lambda self: 0))
    loss = m.training_step((x, y), 0)
    beta = math.sqrt(1 + 0.005 * 200 * 2)                  # t = 400: two continuation steps
    assert float(m.beta) == pytest.approx(beta)
    h = torch.tanh(beta * m.embed(x)).detach().double()
    assert loss.item() == pytest.approx(ref_hashnet(h, h, y.double(), y.double(), m.alpha, 4.0), abs=1e-6)


# ----------------------------------------------------------------------------- DRQ
def ref_adaptive_margin(e: torch.Tensor, y: torch.Tensor, v: torch.Tensor) -> float:
    e = F.normalize(e.detach().double(), dim=1).numpy()
    v = F.normalize(v.double(), dim=1).numpy()
    n_c = len(v)
    total = 0.0
    for i in range(len(e)):
        for c in np.flatnonzero(y[i].numpy()):
            for c2 in range(n_c):
                delta = 1 - v[c] @ v[c2]
                total += max(0.0, delta - e[i] @ v[c] + e[i] @ v[c2])
    return total / (n_c * y.sum().item())


def ref_codebook(x, soft, hard, full, tau, mu, nu) -> float:
    mse = lambda a, b: float(((a - b) ** 2).mean())  # noqa: E731
    x, soft, hard = x.detach().double(), soft.detach().double(), hard.detach().double()
    if full:
        e_s = sum(mse(x, soft[:m].sum(0)) for m in range(2, len(soft) + 1))
        e_h = sum(mse(x, hard[:m].sum(0)) for m in range(2, len(hard) + 1))
        e_j = mse(soft.sum(0), hard.sum(0))
    else:
        e_s, e_h, e_j = mse(x, soft[0]), mse(x, hard[0]), mse(soft[0], hard[0])
    return tau * (e_s + mu * e_h + nu * e_j)


def _drq(**hp):
    torch.manual_seed(0)
    return DRQ(bits=12, n_classes=3, backbone=build_backbone("identity", in_dim=6), codebook_size=16, feature_dim=10,
               dropout=0.0, triplet_margin=0.8, semantic_weight=0.7, triplet_weight=1.3, tau=0.9, mu=1.1, nu=0.2,
               init_std=0.5, **hp)


@pytest.mark.parametrize("stage, full", [(1, False), (2, False), (3, False), (3, True)])
def test_drq_stage_losses(stage, full):
    m = _drq()
    x = torch.randn(9, 6, generator=torch.Generator().manual_seed(1))
    y = F.one_hot(torch.arange(9) % 3, 3).float()
    y[0, 1] = 1.0
    feats, z9 = m.features(x)
    loss, logs = m.training_loss(feats, z9, y, stage, full)
    sem = ref_adaptive_margin(torch.tanh(z9), y, m.class_vectors)
    labels = y.numpy()
    tri = ref_semihard_triplet(ref_sq_euclidean_normalised(feats), (labels @ labels.T) > 0, 0.8)
    want = 0.7 * sem + 1.3 * tri
    assert logs["train/loss_semantic"].item() == pytest.approx(sem, abs=1e-5)
    assert logs["train/loss_triplet"].item() == pytest.approx(tri, abs=1e-5)
    if stage >= 2:
        steps = 3 if full else 1                           # 12 bits / log2(16) = 3 steps
        q = recurrent_quantize(feats.detach(), m.codebook, m.scales()[:steps])
        cb = ref_codebook(feats, q.soft, q.hard, full, 0.9, 1.1, 0.2)
        want += cb
        tag = "B" if full else "A"
        assert logs[f"train/loss_codebook_{tag}"].item() == pytest.approx(cb, rel=1e-5)
        assert {f"train/E_soft_{tag}", f"train/E_hard_{tag}", f"train/E_joint_{tag}"} <= set(logs)
    else:
        assert set(logs) == {"train/loss_semantic", "train/loss_triplet"}
    assert loss.item() == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("end_to_end", [False, True])
def test_drq_codebook_loss_reaches_the_features_only_end_to_end(end_to_end):
    m = _drq(end_to_end=end_to_end)
    x = torch.randn(9, 6, generator=torch.Generator().manual_seed(1))
    y = F.one_hot(torch.arange(9) % 3, 3).float()
    feats, z9 = m.features(x)
    base, _ = m.training_loss(feats, z9, y, 1, False)
    loss, logs = m.training_loss(feats, z9, y, 3, True)
    (g_full,) = torch.autograd.grad(loss, feats, retain_graph=True)
    (g_base,) = torch.autograd.grad(base, feats)
    assert torch.allclose(g_full, g_base) != end_to_end
    (g_cb,) = torch.autograd.grad(logs["train/loss_codebook_B"], m.codebook)
    assert g_cb.abs().sum() > 0


def test_drq_semantic_loss_of_a_batch_with_a_single_label():
    """One labelled item (n_pos = 1) is a real loss, not the empty-batch 0."""
    from hashbench.methods.drq_losses import adaptive_margin_loss

    v = torch.tensor([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [0.0, 0.0, 2.0]])
    e = torch.tensor([[0.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    y = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    want = ref_adaptive_margin(e, y, v)
    assert want > 0
    assert adaptive_margin_loss(e, y, v).item() == pytest.approx(want, abs=1e-6)
    assert adaptive_margin_loss(e, torch.zeros_like(y), v).item() == 0.0


def test_sq_euclidean_normalised_has_a_zero_diagonal():
    from hashbench.methods.metric_losses import sq_euclidean_normalised

    x = torch.tensor([[3.0, 4.0], [1.0, 0.0], [0.0, -2.0]])
    d = sq_euclidean_normalised(x)
    assert torch.allclose(d.double(), ref_sq_euclidean_normalised(x), atol=1e-6)
    assert d.diagonal().tolist() == [0.0, 0.0, 0.0]


def test_hashnet_loss_on_passes_its_backward_options_and_keeps_batches_of_two():
    from hashbench.methods.hashnet import pairwise_likelihood_loss, two_stream_split

    h, y = _codes_and_labels(n=6)

    def grad_of(fn):
        x = h.clone().requires_grad_(True)
        return torch.autograd.grad(fn(x), x)[0]

    m = _hashnet(pairs="in_batch")               # defaults: continuous similarity, Caffe's 2/α scale
    want = grad_of(lambda x: pairwise_likelihood_loss(x, x, y, y, m.alpha, class_num=4.0, continuous_similarity=True,
                                                      grad_scale=2.0 / m.alpha))
    plain = grad_of(lambda x: pairwise_likelihood_loss(x, x, y, y, m.alpha, class_num=4.0))
    assert torch.allclose(grad_of(lambda x: m.loss_on(x, y)), want) and not torch.allclose(want, plain)
    bare = _hashnet(pairs="in_batch", continuous_similarity=False, caffe_grad_scale=False)
    assert torch.allclose(grad_of(lambda x: bare.loss_on(x, y)), plain)
    assert _hashnet().loss_on(h[:2], y[:2]) is not None          # two items: one pair
    a = two_stream_split(9, generator=torch.Generator().manual_seed(3))
    b = two_stream_split(9, generator=torch.Generator().manual_seed(3))
    assert all(torch.equal(u, v) for u, v in zip(a, b))          # the given generator is used
