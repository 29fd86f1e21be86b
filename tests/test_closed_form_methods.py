"""The closed-form baselines: ITQ's rotation is orthogonal and its quantisation error never rises
over iterations; PQ/RQ codes are the nearest codewords (brute force); LSH and exhaustive give the
documented shapes and are deterministic under a seed."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from hashbench.methods.backbones import build_backbone
from hashbench.methods.base import UnsupportedBitsError
from hashbench.methods.exhaustive import Exhaustive
from hashbench.methods.itq import ITQ, itq_rotation
from hashbench.methods.lsh import LSH
from hashbench.methods.pq import PQ
from hashbench.methods.rq import RQ


def _data(n=600, d=12, seed=0):
    rng = np.random.default_rng(seed)
    # correlated features with a non-zero mean, so PCA and centring matter
    x = rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) + 3.0
    return x.astype(np.float32)


def _fit(cls, bits, x, seed=0, **hp):
    m = cls(bits=bits, n_classes=2, backbone=build_backbone("identity", in_dim=x.shape[1]), **hp)
    m.fit_closed_form(x, np.zeros((len(x), 2), np.int64), seed)
    return m


def _codes(m, x):
    return {k: v.numpy() for k, v in m.encode(torch.from_numpy(x)).items()}


# ----------------------------------------------------------------------------- ITQ
def _quantisation_error(v, r):
    z = v @ r
    return np.linalg.norm(np.where(z >= 0, 1.0, -1.0) - z)


def test_itq_rotation_is_orthogonal_and_its_error_never_rises():
    v = np.random.default_rng(1).standard_normal((300, 8)) @ np.diag(np.linspace(3, 0.5, 8))
    errors = []
    for n_iter in range(0, 12):
        r = itq_rotation(v, n_iter, np.random.default_rng(7))
        assert np.allclose(r @ r.T, np.eye(8), atol=1e-10)
        errors.append(_quantisation_error(v, r))
    assert all(b <= a + 1e-9 for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < errors[0] - 1e-3                      # and it does go down


def test_itq_codes_are_the_signs_of_the_rotated_pca_projection():
    x = _data()
    m = _fit(ITQ, 8, x, seed=3)
    assert np.allclose(m.rotation @ m.rotation.T, np.eye(8), atol=1e-5)
    z = (x - x.mean(0)) @ m.pca.components_.T @ m.rotation
    codes = _codes(m, x)["bits"]
    assert codes.shape == (600, 8) and codes.dtype == np.int8
    assert np.array_equal(codes, np.where(z >= 0, 1, -1))
    assert np.allclose(m.embed(torch.from_numpy(x)).numpy(), z, atol=1e-3)
    # the learned rotation quantises better than the identity (plain PCA signs)
    v = m.pca.transform(x)
    assert _quantisation_error(v, m.rotation) < _quantisation_error(v, np.eye(8))


def test_itq_seeded_repeatable_and_bits_bounded_by_the_data():
    x = _data()
    a, b, c = _fit(ITQ, 8, x, seed=3), _fit(ITQ, 8, x, seed=3), _fit(ITQ, 8, x, seed=4)
    assert np.array_equal(a.rotation, b.rotation) and not np.array_equal(a.rotation, c.rotation)
    m = _fit(ITQ, 8, x, seed=3, n_iter=0)                    # zero iterations: the random start
    assert np.allclose(m.rotation, itq_rotation(m.pca.transform(x), 0, np.random.default_rng(3)), atol=1e-6)
    with pytest.raises(ValueError, match="feature dimensions"):
        _fit(ITQ, 16, x)


# ----------------------------------------------------------------------------- LSH
def test_lsh_codes_are_signs_of_seeded_gaussian_projections():
    x = _data()
    m = _fit(LSH, 16, x, seed=5)
    w = np.random.default_rng(5).standard_normal((12, 16)).astype(np.float32)
    z = (x - x.mean(0)) @ w
    codes = _codes(m, x)["bits"]
    assert codes.shape == (600, 16) and codes.dtype == np.int8
    assert np.array_equal(codes, np.where(z >= 0, 1, -1))
    assert np.array_equal(codes, _codes(_fit(LSH, 16, x, seed=5), x)["bits"])
    assert not np.array_equal(codes, _codes(_fit(LSH, 16, x, seed=6), x)["bits"])
    # a zero projection gives +1 (sign(0) = +1)
    assert (_codes(m, m.mean[None, :])["bits"] == 1).all()


# ----------------------------------------------------------------------------- exhaustive
def test_exhaustive_embedding_is_the_flattened_features():
    x = _data(n=20)
    m = _fit(Exhaustive, 16, x)
    out = _codes(m, x.reshape(20, 3, 4))
    assert set(out) == {"embedding"} and out["embedding"].shape == (20, 12)
    assert np.array_equal(out["embedding"], x) and m.code_state() == {}


# ----------------------------------------------------------------------------- PQ / RQ
@pytest.fixture(scope="module")
def train():
    return _data(n=400, d=10, seed=2)          # k-means needs >= 256 points; small keeps RQ quick


@pytest.fixture(scope="module")
def fitted(train):
    """One fit each (seed 0): PQ at 24 bits, RQ at 16 bits greedy (beam 1) and beam 5."""
    import faiss

    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield {"pq": _fit(PQ, 24, train, seed=0), "rq1": _fit(RQ, 16, train, seed=0, max_beam_size=1),
               "rq5": _fit(RQ, 16, train, seed=0)}
    finally:
        faiss.omp_set_num_threads(threads)


def test_pq_codes_are_the_nearest_centroid_of_every_sub_space(fitted):
    m = fitted["pq"]                                         # M = 3 sub-spaces; 10 dims padded to 12
    x = _data(n=50, d=10, seed=9)
    out = _codes(m, x)
    idx, books = out["indices"], m.code_state()["codebooks"]
    assert idx.shape == (50, 3) and idx.dtype == np.int64 and books.shape == (3, 256, 12)
    xp = np.pad(x, ((0, 0), (0, 2)))
    assert np.array_equal(out["features"], xp)
    for j in range(3):
        sl = slice(4 * j, 4 * j + 4)
        assert not books[j][:, np.r_[0:4 * j, 4 * j + 4:12]].any()           # zero outside its sub-space
        d = ((xp[:, None, sl] - books[j][None, :, sl]) ** 2).sum(2)
        assert np.array_equal(idx[:, j], d.argmin(1))
    recon = sum(books[j][idx[:, j]] for j in range(3))
    assert np.allclose(recon, m.quantizer.decode(m.quantizer.compute_codes(np.ascontiguousarray(xp))), atol=1e-5)


def test_rq_greedy_codes_are_the_nearest_codeword_to_each_residual(fitted):
    m = fitted["rq1"]
    x = _data(n=40, d=10, seed=9)
    idx, books = _codes(m, x)["indices"], m.code_state()["codebooks"]
    assert idx.shape == (40, 2) and books.shape == (2, 256, 10)
    r = x.astype(np.float64)
    for step in range(2):
        d = ((r[:, None, :] - books[step][None].astype(np.float64)) ** 2).sum(2)
        assert np.array_equal(idx[:, step], d.argmin(1))
        r = r - books[step][idx[:, step]]


def test_rq_beam_search_is_never_worse_than_greedy(fitted):
    x = _data(n=40, d=10, seed=9)
    beam = fitted["rq5"]
    assert beam.quantizer.max_beam_size == 5
    idx, books = _codes(beam, x)["indices"], beam.code_state()["codebooks"]
    err_beam = ((x - books[0][idx[:, 0]] - books[1][idx[:, 1]]) ** 2).sum(1)
    # greedy with the same codebooks
    r = x.astype(np.float64)
    for step in range(2):
        r = r - books[step][((r[:, None, :] - books[step][None]) ** 2).sum(2).argmin(1)]
    assert (err_beam <= (r ** 2).sum(1) + 1e-4).all()
    assert np.allclose(books[0][idx[:, 0]] + books[1][idx[:, 1]],
                       beam.quantizer.decode(beam.quantizer.compute_codes(np.ascontiguousarray(x))), atol=1e-5)


@pytest.mark.parametrize("cls, key, bits", [(PQ, "pq", 24), (RQ, "rq5", 16)])
def test_quantisers_are_seeded_and_take_bytes_of_bits(cls, key, bits, train, fitted):
    x = _data(n=30, d=10, seed=9)
    a, b = fitted[key], _fit(cls, bits, train, seed=0)
    assert np.array_equal(a.code_state()["codebooks"], b.code_state()["codebooks"])
    assert np.array_equal(_codes(a, x)["indices"], _codes(b, x)["indices"])
    assert a.n_steps == bits // 8 and a.search_metric == "l2" and cls.code_type == "additive"
    for bad in (4, 12, 0):
        with pytest.raises(UnsupportedBitsError):
            cls.check_bits(bad)
    cls.check_bits(8)
