"""Closed-form baselines (ITQ, LSH, PQ, RQ; issue 24's mutation testing): the configured and
default hyperparameters reaching faiss and the ITQ alternation (spies), the code dtypes, and the
zero-padding of PQ's sub-spaces. Small inputs, hand-checked layouts."""
from __future__ import annotations

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
