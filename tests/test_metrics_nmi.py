"""Golden values for both NMI definitions (k-means NMI and Deep Hash Table bucket NMI)."""
import numpy as np
import pytest
from sklearn.metrics import normalized_mutual_info_score

from hashbench.benchmark.metrics.nmi import nmi_buckets, nmi_kmeans


def test_nmi_buckets_golden_two_buckets_per_item():
    # Labels 0 0 1 1; buckets {0,1} {0,1} {1,2} {1,2}. Memberships (bucket, class):
    # b0: c0 ×2; b1: c0 ×2, c1 ×2; b2: c1 ×2 — 8 in all.
    # H(B) = H(1/4, 1/2, 1/4) = 1.5 bits, H(C) = 1 bit,
    # I = 2 · (1/4) log2((1/4) / (1/4 · 1/2)) + 2 · (1/4) log2((1/4) / (1/2 · 1/2)) = 1/2 bit.
    # NMI = (1/2) / ((1.5 + 1) / 2) = 0.4.
    buckets = np.array([[0, 1], [0, 1], [1, 2], [2, 1]])
    assert nmi_buckets(buckets, np.array([0, 0, 1, 1])) == pytest.approx(0.4)
    assert nmi_buckets(buckets, np.eye(2, dtype=int)[[0, 0, 1, 1]]) == pytest.approx(0.4)  # one-hot


def test_nmi_buckets_padding_and_extremes():
    # −1 entries are padding: same table as above with an unused slot
    padded = np.array([[0, 1, -1], [0, -1, 1], [1, 2, -1], [2, 1, -1]])
    assert nmi_buckets(padded, np.array([0, 0, 1, 1])) == pytest.approx(0.4)
    # one bucket per class: I = H(B) = H(C) = 1 → 1; every item in one bucket: I = 0 → 0
    assert nmi_buckets(np.array([[5], [5], [9], [9]]), np.array([0, 0, 1, 1])) == pytest.approx(1.0)
    assert nmi_buckets(np.array([[5], [5], [5], [5]]), np.array([0, 0, 1, 1])) == pytest.approx(0.0)
    assert np.isnan(nmi_buckets(np.array([[0], [1]]), np.array([[1, 1], [0, 1]])))  # multi-label


def test_nmi_buckets_equals_sklearn_with_one_bucket_per_item():
    rng = np.random.default_rng(0)
    for _ in range(20):
        buckets = rng.integers(0, rng.integers(1, 30), 200)
        labels = rng.integers(0, rng.integers(1, 8), 200)
        want = normalized_mutual_info_score(labels, buckets, average_method="arithmetic")
        assert nmi_buckets(buckets[:, None], labels) == pytest.approx(want, abs=1e-12)


def test_nmi_kmeans_golden():
    rng = np.random.default_rng(1)
    centres = np.array([[0.0, 0.0], [100.0, 0.0], [0.0, 100.0]])
    labels = np.repeat([0, 1, 2], 20)
    x = centres[labels] + rng.normal(0, 0.1, (60, 2))
    # clusters = classes → NMI 1
    assert nmi_kmeans(x, labels, seed=0) == pytest.approx(1.0)
    assert nmi_kmeans(x, np.eye(3, dtype=int)[labels], seed=0) == pytest.approx(1.0)  # one-hot
    # two far blobs, each holding both classes half and half: I(cluster; class) = 0 → NMI 0
    blob = np.repeat([0, 1], 20)
    x2 = centres[blob] + rng.normal(0, 0.1, (40, 2))
    assert nmi_kmeans(x2, np.tile([0, 1], 20), seed=0) == pytest.approx(0.0, abs=1e-12)
    # multi-label data has no single class per item
    assert np.isnan(nmi_kmeans(x[:3], np.array([[1, 1, 0], [0, 1, 0], [0, 0, 1]])))


def test_nmi_kmeans_number_of_clusters():
    rng = np.random.default_rng(2)
    centres = np.array([[0.0, 0.0], [100.0, 0.0], [0.0, 100.0]])
    labels = np.repeat([0, 1, 2], 20)
    x = centres[labels] + rng.normal(0, 0.1, (60, 2))
    # one cluster holds everything: I = 0 → NMI 0 (the default, one cluster per class, gives 1)
    assert nmi_kmeans(x, labels, n_clusters=1, seed=0) == pytest.approx(0.0, abs=1e-12)
    # two clusters for three equal classes, one class per blob: the blobs {0}, {1, 2} (or a
    # permutation) give I = H(C) = ln 3 − (2/3) ln 2, H(Y) = ln 3 → NMI = 2 I / (H(Y) + H(C))
    h_y = np.log(3)
    h_c = -(1 / 3) * np.log(1 / 3) - (2 / 3) * np.log(2 / 3)
    assert nmi_kmeans(x, labels, n_clusters=2, seed=0) == pytest.approx(2 * h_c / (h_y + h_c))
