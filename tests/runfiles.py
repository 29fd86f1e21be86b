"""Run directories written by hand, as the harness writes them (no training), so every
expected value in the report and figure tests is known exactly. Imported by the report tests
(pytest puts this folder on sys.path)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from hashbench.benchmark import report
from hashbench.benchmark.store import METRIC_COLUMNS

DEFAULT = report.DEFAULT_MAP_VARIANT


def write_run(root, method, bits, seed, ap, dataset="cifar10", protocol="query1k-train5k-db54k", query_sha="q1",
               speedup=2.0, name=None, settings="", timestamp="2026-01-01T00:00:00Z"):
    """A run directory as the harness writes it, with per-query AP ``ap`` (default variant)."""
    d = root / (name or f"{method}_{dataset}_{bits}b_s{seed}")
    d.mkdir(parents=True)
    ctx = dict(method=method, dataset=dataset, protocol=protocol, backbone="identity", seed=seed, git_revision="abc",
               config_hash="0" * 12, settings=settings, hardware="test cpu x2", timestamp=timestamp)
    rows = [(bits, "map@all", DEFAULT, float(np.mean(ap))),
            (bits, "map@all", "denominator=relevant_retrieved,empty=zero,ties=optimistic", float(np.mean(ap)) + 0.01),
            (bits, "precision@1", "ties=expected", 0.9), (bits, "precision@10", "ties=expected", 0.8),
            (bits, "precision@100", "ties=expected", 0.7),
            (bits, "precision@100", "search=faiss_binary_flat", 0.7),
            (bits, "speedup_wallclock@100", "backend=faiss_binary_flat,reference=faiss_flat_l2_features,threads=1",
             speedup),
            (bits, "train_seconds", "", 1.0)]
    frame = pd.DataFrame([{**ctx, "bits": b, "metric": m, "variant": v, "value": x} for b, m, v, x in rows],
                         columns=METRIC_COLUMNS)
    frame.to_csv(d / "metrics.csv", index=False)
    (d / "config.yaml").write_text(yaml.safe_dump({"evaluation_lengths": {bits: {}}}))
    (d / "split.json").write_text(json.dumps({"protocol": protocol, "sha256": {"query": query_sha}}))
    np.savez(d / "per_query.npz", **{f"ap|map@all|bits={bits}": np.asarray(ap, dtype=np.float64)})
    (d / "curves.json").write_text(json.dumps({str(bits): {"pr_rank": {
        "cutoff": [1, 10, 100], "precision": [0.9, 0.8, 0.7], "recall": [0.01, 0.1, 0.5]}}}))
    return d


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "runs"
    rng = np.random.default_rng(0)
    base = rng.random(200)
    for seed in (0, 1):
        for bits in (16, 32):
            write_run(root, "drq", bits, seed, np.clip(base + 0.10 + 0.01 * seed, 0, 1))
            write_run(root, "hashnet", bits, seed, np.clip(base + 0.05, 0, 1), speedup=3.0)
            write_run(root, "itq", bits, seed, base)
    # Lightning's own CSV log inside a run must not be read as a run.
    logs = root / "drq_cifar10_16b_s0" / "logs" / "version_0"
    logs.mkdir(parents=True)
    pd.DataFrame({"epoch": [0], "train_loss": [1.0]}).to_csv(logs / "metrics.csv", index=False)
    return root


