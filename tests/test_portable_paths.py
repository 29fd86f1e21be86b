"""Run records are portable: paths relative to the data root, the cache root or the checkout
(hashbench.paths.portable), and no committed record names a machine's absolute folders."""
from __future__ import annotations

import re
import subprocess

from hashbench.paths import REPO_ROOT, portable


def test_roots_become_variables_and_the_checkout_relative(tmp_path):
    data, cache = tmp_path / "data", tmp_path / "data" / "cache"
    text = f"{data}/cifar10-jpg.tar.gz (CIFAR-10 JPEG tarball) [cached: {cache}/cifar10/k.npz]"
    assert portable(text, data, cache) == \
        "$HASHBENCH_DATA/cifar10-jpg.tar.gz (CIFAR-10 JPEG tarball) [cached: $HASHBENCH_CACHE/cifar10/k.npz]"
    assert portable(str(REPO_ROOT / "results" / "runs"), data, cache) == "results/runs"
    assert portable(str(data), data, None) == "$HASHBENCH_DATA"
    assert portable(f"{data}2/x", data, None) == f"{data}2/x"          # a sibling folder is not the root
    assert portable("sklearn.datasets.load_digits", None, None) == "sklearn.datasets.load_digits"


def test_no_committed_record_names_a_machine_folder():
    files = subprocess.run(["git", "ls-files", "results"], cwd=REPO_ROOT, capture_output=True, text=True).stdout
    pattern = re.compile(r"(?<![\\w.$~-])/(work|home|root)/")
    found = [name for name in files.splitlines()
             if name.endswith((".yaml", ".json", ".txt", ".log", ".md", ".csv"))
             and pattern.search((REPO_ROOT / name).read_text(errors="replace"))]
    assert found == []
