"""Closed-form baselines (ITQ, LSH, PQ, RQ; issue 24's mutation testing): the configured and
default hyperparameters reaching faiss and the ITQ alternation (spies), the code dtypes, and the
zero-padding of PQ's sub-spaces. Small inputs, hand-checked layouts."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from hashbench.methods import itq as itq_module
from hashbench.methods.backbones import build_backbone
from hashbench.methods.itq import ITQ
from hashbench.methods.lsh import LSH
from hashbench.methods.pq import PQ
from hashbench.methods.rq import RQ


def _data(n=300, d=10, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) + 2.0).astype(np.float32)


def _fit(cls, bits, x, seed=0, **hp):
    m = cls(bits=bits, n_classes=2, backbone=build_backbone("identity", in_dim=x.shape[1]), **hp)
    m.fit_closed_form(x, np.zeros((len(x), 2), np.int64), seed)
    return m


@pytest.mark.parametrize("hp, n_iter", [({}, 50), ({"n_iter": 7}, 7)])
def test_itq_iterations_and_seed_reach_the_rotation(monkeypatch, hp, n_iter):
    calls = []
    real = itq_module.itq_rotation

    def spy(v, n, rng):
        calls.append((v.shape, n, rng.random()))
        return real(v, n, np.random.default_rng(0))

    monkeypatch.setattr(itq_module, "itq_rotation", spy)
    m = _fit(ITQ, 4, _data(), seed=11, **hp)
    assert calls == [((300, 4), n_iter, np.random.default_rng(11).random())]
    assert m.rotation.dtype == np.float32
    out = m.encode(torch.from_numpy(_data(n=5)))["bits"]
    assert out.dtype == torch.int8 and out.shape == (5, 4)


def test_itq_bits_bounded_by_items_as_well_as_dimensions():
    with pytest.raises(ValueError, match=r"have 10 dims, 3 items"):
        _fit(ITQ, 4, _data(n=3))
    _fit(ITQ, 3, _data(n=3))                                # bits = min(N, D) is allowed


def test_lsh_mean_and_projection_are_float32_and_the_embedding_is_the_centred_projection():
    x = _data()
    m = _fit(LSH, 6, x, seed=2)
    assert m.mean.dtype == np.float32 and m.projection.dtype == np.float32 and m.projection.shape == (10, 6)
    q = _data(n=4, seed=1)
    assert np.allclose(m.embed(torch.from_numpy(q)).numpy(), (q - x.mean(0)) @ m.projection, atol=1e-4)


def test_pq_pads_the_features_to_a_multiple_of_the_sub_spaces_and_is_seeded():
    x = _data(n=300, d=10)
    m = _fit(PQ, 32, x, seed=3)                             # M = 4: 10 dims padded to 12, 3 per sub-space
    assert m.dim == 12 and m.quantizer.M == 4 and m.quantizer.dsub == 3 and m.quantizer.cp.seed == 3
    books = m.code_state()["codebooks"]
    assert books.shape == (4, 256, 12) and books.dtype == np.float32
    assert not books[1][:, :3].any() and books[1][:, 3:6].any() and not books[1][:, 6:].any()
    out = m.encode(torch.from_numpy(x[:5]))
    assert out["features"].shape == (5, 12) and torch.equal(out["features"][:, 10:], torch.zeros(5, 2))
    assert out["indices"].dtype == torch.int64 and out["indices"].shape == (5, 4)


def test_rq_beam_default_and_option_and_seed_reach_faiss():
    x = _data(n=300, d=6)
    default, narrow = _fit(RQ, 8, x, seed=4), _fit(RQ, 8, x, seed=4, max_beam_size=2)
    assert default.quantizer.max_beam_size == 5 and narrow.quantizer.max_beam_size == 2
    assert default.quantizer.cp.seed == 4 and default.dim == 6
    assert default.code_state()["codebooks"].shape == (1, 256, 6)


class _IdentityDraw:
    """A generator stand-in whose Gaussian draw is the identity, so ITQ starts from R₀ = I."""

    def standard_normal(self, shape):
        return np.eye(shape[0])


def test_itq_rotation_one_step_by_hand_with_sign_of_zero_positive():
    """R₀ = I; V = [[3, 0], [0, 1], [1, −2]] has VR₀ = V with a zero entry, whose sign is +1, so
    B = [[1, 1], [1, 1], [1, −1]] and BᵀV = [[4, −1], [2, 3]]; its polar factor is the rotation by
    atan2(2 + 1, 4 + 3), and R₁ = Ŝ Sᵀ is its transpose: [[7, 3], [−3, 7]] / √58."""
    v = np.array([[3.0, 0.0], [0.0, 1.0], [1.0, -2.0]])
    np.testing.assert_allclose(itq_module.itq_rotation(v, 1, _IdentityDraw()),
                               np.array([[7.0, 3.0], [-3.0, 7.0]]) / np.sqrt(58.0), atol=1e-12)
    # no iteration: the Q factor of the seeded draw
    start = np.linalg.qr(np.random.default_rng(5).standard_normal((2, 2)))[0]
    np.testing.assert_array_equal(itq_module.itq_rotation(v, 0, np.random.default_rng(5)), start)


def test_itq_seed_reaches_the_pca_and_the_embedding_is_float32(monkeypatch):
    """The seed is PCA's ``random_state`` (its randomized solver, chosen by scikit-learn for large
    inputs, depends on it), and the embedding is float32 like every method's."""
    seen = []
    real = itq_module.PCA

    def spy(**kwargs):
        seen.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(itq_module, "PCA", spy)
    m = _fit(ITQ, 4, _data(), seed=13)
    assert seen == [{"n_components": 4, "random_state": 13}]
    assert m.embed(torch.from_numpy(_data(n=3))).dtype == torch.float32


@pytest.mark.parametrize("cls, name", [(PQ, "pq"), (RQ, "rq")])
def test_small_training_set_is_one_warning_naming_the_method(monkeypatch, caplog, cls, name):
    """Fewer than 256 × 39 (faiss's min_points_per_centroid) training points: one warning line per
    method and process, naming the method; faiss's own per-step prints are silenced."""
    import faiss

    from hashbench.methods import _quantizer

    monkeypatch.setattr(_quantizer, "_told", set())
    with caplog.at_level(logging.WARNING, logger="hashbench.methods"):
        m = _fit(cls, 8, _data(n=300, d=6))
        _quantizer.quiet_small_training_set(faiss.ClusteringParameters(), 300, name)   # told once
    lines = [r.getMessage() for r in caplog.records if r.name == "hashbench.methods"]
    assert len(lines) == 1 and lines[0].startswith(f"{name}: 300 training points for 256 centroids per step "
                                                   f"(faiss suggests at least 9984)")
    assert m.quantizer.cp.min_points_per_centroid == 1
