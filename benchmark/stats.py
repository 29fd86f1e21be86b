"""Uncertainty over queries: bootstrap confidence intervals of a mean, and paired tests between
two methods evaluated on the same queries.

Both work on the per-query values the harness keeps in each run's ``per_query.npz`` (the
default-variant AP of every query, one array per code length), so they need no retraining:

- :func:`bootstrap_ci`: percentile bootstrap over queries (``scipy.stats.bootstrap``,
  ``method="percentile"``): resample the Q per-query values with replacement ``n_resamples``
  times; the interval is the (α/2, 1−α/2) quantiles of the resampled means.
- :func:`paired_test`: two-sided test of "mean per-query difference = 0" for the same queries
  scored by two methods. ``"permutation"`` (default) is the paired sign-flip permutation test
  (``scipy.stats.permutation_test``, ``permutation_type="samples"``): under the null each pair's
  two values are exchangeable, so the statistic mean(a − b) is recomputed with each pair's sign
  flipped at random (exactly, over all 2^Q flips, when 2^Q ≤ ``n_resamples``);
  p = (#{|flipped| ≥ |observed|} + 1) / (n_resamples + 1) for the randomised form.
  ``"wilcoxon"`` is the Wilcoxon signed-rank test (``scipy.stats.wilcoxon``, zero differences
  dropped). The result names the test it ran.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats as sps

#: Test names as printed in tables (key: the ``test`` argument of :func:`paired_test`).
TEST_NAMES = {
    "permutation": "paired sign-flip permutation test (two-sided, mean difference)",
    "wilcoxon": "Wilcoxon signed-rank test (two-sided, zero differences dropped)",
}


@dataclass(frozen=True)
class Interval:
    """A mean and its confidence interval."""

    mean: float
    low: float
    high: float
    level: float
    n: int
    method: str


@dataclass(frozen=True)
class PairedResult:
    """Outcome of :func:`paired_test`: mean(a − b), its bootstrap CI, the p-value and the test's name."""

    test: str
    n: int
    mean_a: float
    mean_b: float
    mean_diff: float
    diff_low: float
    diff_high: float
    p_value: float
    statistic: float


def bootstrap_ci(values: np.ndarray, level: float = 0.95, n_resamples: int = 9999, seed: int = 0) -> Interval:
    """Mean of ``values`` (NaNs dropped) with its percentile-bootstrap CI at ``level``.

    Resamples the values with replacement ``n_resamples`` times (``scipy.stats.bootstrap``,
    ``method="percentile"``, seeded); the interval is the (1−level)/2 and (1+level)/2 quantiles
    of the resampled means. All values equal → a zero-width interval at that value.
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    x = x[np.isfinite(x)]
    if len(x) == 0:
        raise ValueError("bootstrap_ci needs at least one finite value")
    mean = float(x.mean())
    if len(x) == 1 or np.all(x == x[0]):
        return Interval(mean, mean, mean, level, len(x), "percentile bootstrap")
    res = sps.bootstrap((x,), np.mean, n_resamples=n_resamples, confidence_level=level, method="percentile",
                        vectorized=True, rng=np.random.default_rng(seed))
    return Interval(mean, float(res.confidence_interval.low), float(res.confidence_interval.high), level, len(x),
                    "percentile bootstrap")


def _mean_diff(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x - y, axis=axis)


def paired_test(a: np.ndarray, b: np.ndarray, test: str = "permutation", n_resamples: int = 9999,
                level: float = 0.95, seed: int = 0) -> PairedResult:
    """Two-sided paired test that the per-query values ``a`` and ``b`` (same queries, same order)
    have equal means; also the bootstrap CI of mean(a − b) (percentile, pairs resampled together).

    ``test="permutation"``: paired sign-flip permutation test, statistic mean(a − b);
    ``test="wilcoxon"``: Wilcoxon signed-rank test, statistic the signed-rank sum scipy reports.
    Pairs where either value is NaN are dropped.
    """
    if test not in TEST_NAMES:
        raise ValueError(f"unknown test {test!r}; valid: {', '.join(TEST_NAMES)}")
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired values must have the same length, got {len(a)} and {len(b)}")
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    if len(a) == 0:
        raise ValueError("no pair with two finite values")
    d = a - b
    ci = bootstrap_ci(d, level=level, n_resamples=n_resamples, seed=seed)
    if np.all(d == 0):
        p, stat = 1.0, 0.0
    elif test == "permutation":
        res = sps.permutation_test((a, b), _mean_diff, permutation_type="samples", vectorized=True,
                                   n_resamples=n_resamples, alternative="two-sided", rng=np.random.default_rng(seed))
        p, stat = float(res.pvalue), float(res.statistic)
    else:
        res = sps.wilcoxon(a, b, zero_method="wilcox", alternative="two-sided")
        p, stat = float(res.pvalue), float(res.statistic)
    return PairedResult(TEST_NAMES[test], len(a), float(a.mean()), float(b.mean()), float(d.mean()),
                        ci.low, ci.high, min(p, 1.0), stat)


# ----------------------------------------------------------------------------- run directories


def per_query_ap(run_dir: Path) -> dict[int, np.ndarray]:
    """{code length: per-query AP (default mAP variant)} from a run's ``per_query.npz``
    (keys ``ap|<map name>|bits=<b>``)."""
    path = Path(run_dir) / "per_query.npz"
    if not path.exists():
        raise FileNotFoundError(f"{run_dir} has no per_query.npz")
    out = {}
    with np.load(path) as z:
        for key in z.files:
            if key.startswith("ap|") and "|bits=" in key:
                out[int(key.rsplit("|bits=", 1)[1])] = np.asarray(z[key], dtype=np.float64)
    return out


def query_fingerprint(run_dir: Path) -> str:
    """sha256 of the run's query indices (from ``split.json``) and its protocol: two runs with
    the same fingerprint scored the same queries in the same order."""
    split = json.loads((Path(run_dir) / "split.json").read_text())
    return f"{split['protocol']}:{split['sha256']['query']}"
