"""Normalized mutual information, two named definitions (never to be mixed in one table):

* :func:`nmi_kmeans` — the metric-learning convention (pytorch-metric-learning): k-means on the
  embeddings with one cluster per class, then NMI(cluster, class);
* :func:`nmi_buckets` — the Deep Hash Table definition (``HashTable.get_nmi``): NMI between hash
  bucket and class over bucket *memberships* (an item in s buckets counts s times).
"""
from __future__ import annotations

import numpy as np
from scipy.stats import entropy
from sklearn.cluster import KMeans
from sklearn.metrics import mutual_info_score, normalized_mutual_info_score


def _single_labels(labels) -> np.ndarray | None:
    """Class ids (N,) from int ids or one-hot rows; None for multi-label (a row without exactly one 1)."""
    y = np.asarray(labels)
    if y.ndim == 1:
        return y
    if y.ndim != 2:
        raise ValueError(f"labels must be (N,) ids or (N, C) one-/multi-hot, got shape {y.shape}")
    if y.shape[1] > 0 and np.isin(y, (0, 1)).all() and (y.sum(1) == 1).all():
        return y.argmax(1)
    return None


def nmi_kmeans(embeddings, labels, n_clusters: int | None = None, seed: int = 0, n_init: int = 1) -> float:
    """NMI between k-means clusters of ``embeddings`` (N, D) and the class labels.

    k-means: scikit-learn ``KMeans(n_clusters, n_init=n_init, random_state=seed)`` with
    ``n_clusters`` = the number of distinct classes by default; then
    ``normalized_mutual_info_score(labels, clusters, average_method="arithmetic")`` =
    I(Y; C) / ((H(Y) + H(C)) / 2). ``labels``: (N,) ids or (N, C) one-hot. Multi-label data (a row
    of a (N, C) array without exactly one 1) has no single class per item: returns NaN.
    """
    y = _single_labels(labels)
    if y is None:
        return float("nan")
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"embeddings {x.shape} do not match {y.shape[0]} labels")
    k = int(n_clusters) if n_clusters is not None else int(np.unique(y).size)
    clusters = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit_predict(x)
    return float(normalized_mutual_info_score(y, clusters, average_method="arithmetic"))


def nmi_buckets(item_buckets, labels) -> float:
    """Deep Hash Table bucket NMI (methods.md §2.8).

    ``item_buckets`` (N, s): the s active bucket ids of each item (negative entries are padding and
    ignored); ``labels``: (N,) class ids or (N, C) one-hot. Contingency ``n[b, c]`` = number of
    (item, active bucket b) memberships with item label c (an item counts once per active bucket);
    with p = n / Σn: NMI = I(B; C) / ((H(B) + H(C)) / 2), logarithms base 2 (the ratio does not
    depend on the base). Equals scikit-learn's arithmetic NMI of (bucket, label) when s = 1; 1.0
    when both B and C are constant (as scikit-learn). Multi-label data returns NaN.
    """
    y = _single_labels(labels)
    if y is None:
        return float("nan")
    buckets = np.asarray(item_buckets)
    if buckets.ndim == 1:
        buckets = buckets[:, None]
    if buckets.shape[0] != y.shape[0]:
        raise ValueError(f"{buckets.shape[0]} items with buckets but {y.shape[0]} labels")
    active = buckets >= 0
    b_ids, b_inv = np.unique(buckets[active], return_inverse=True)
    c_ids, c_inv = np.unique(y, return_inverse=True)
    c_of_membership = np.broadcast_to(c_inv[:, None], buckets.shape)[active]
    table = np.bincount(b_inv * c_ids.size + c_of_membership, minlength=b_ids.size * c_ids.size)
    table = table.reshape(b_ids.size, c_ids.size)
    h_b = entropy(table.sum(1), base=2)
    h_c = entropy(table.sum(0), base=2)
    if h_b + h_c == 0:
        return 1.0
    mi = mutual_info_score(None, None, contingency=table) / np.log(2)
    return float(mi / ((h_b + h_c) / 2))
