"""The one atomic-write helper (hashbench.fileio) and the writers built on it: the target is
replaced whole, gets 0644 under umask 022, and a failed write leaves neither a partial target nor
a temporary file; datasets/ reaches it without importing benchmark/."""
from __future__ import annotations

import ast
import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from hashbench import fileio
from hashbench.datasets import cache as dataset_cache
from hashbench.datasets.base import ArrayData

REPO = Path(__file__).resolve().parent.parent


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_write_atomic_replaces_the_target_and_makes_it_shareable(tmp_path):
    old = os.umask(0o022)
    try:
        target = fileio.write_text_atomic("first", tmp_path / "sub" / "a.txt")
        fileio.write_text_atomic("second", target)
    finally:
        os.umask(old)
    assert target.read_text() == "second"
    assert _mode(target) == 0o644
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.txt"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = fileio.write_text_atomic("kept", tmp_path / "a.json")

    def half_then_fail(tmp: str) -> None:
        Path(tmp).write_text("{half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        fileio.write_atomic(target, half_then_fail)
    assert target.read_text() == "kept"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_numpy_writers_get_no_second_suffix(tmp_path):
    npy = fileio.write_atomic(tmp_path / "f.npy", lambda tmp: np.save(tmp, np.arange(3)))
    npz = fileio.write_atomic(tmp_path / "f.npz", lambda tmp: np.savez(tmp, a=np.arange(2)))
    assert np.load(npy).tolist() == [0, 1, 2]
    with np.load(npz) as z:
        assert z["a"].tolist() == [0, 1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.npy", "f.npz"]


def test_dataset_cache_entries_are_written_through_it(tmp_path):
    old = os.umask(0o022)
    try:
        path = tmp_path / "d" / "k.npz"
        dataset_cache.save(path, ArrayData(x=np.ones((2, 3), np.float32), labels=np.eye(2, dtype=np.uint8),
                                           class_names=["a", "b"], kind="vector", official_split=None,
                                           source="test"))
    finally:
        os.umask(old)
    assert _mode(path) == 0o644
    assert dataset_cache.load(path).x.shape == (2, 3)
    assert [p.name for p in path.parent.iterdir()] == ["k.npz"]


def test_sweep_manifest_is_written_through_it(tmp_path):
    from hashbench.benchmark.sweep.manifest import Manifest

    m = Manifest(tmp_path / "state")
    m.update_cell("abc", state="done")
    assert json.loads(m.path.read_text())["cells"]["abc"]["state"] == "done"
    assert _mode(m.path) & 0o044 == 0o044  # readable by the group and others (0644 under umask 022)
    assert sorted(p.name for p in m.dir.iterdir()) == ["manifest.json", "manifest.lock"]


def test_datasets_never_import_benchmark():
    """A dataset knows nothing of the harness: no module under datasets/ imports hashbench.benchmark."""
    offenders = []
    for path in sorted((REPO / "datasets").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{path.name}: {n}" for n in names if n.startswith("hashbench.benchmark")]
    assert offenders == []
