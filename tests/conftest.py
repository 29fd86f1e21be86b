"""Shared fixtures: tests compose the real configs and shrink them (few epochs, tiny data)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))


def pytest_collection_modifyitems(config, items):
    """Skip GPU tests without CUDA."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    return tmp_path / "runs"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Caches go under the session's temporary directory, whatever HASHBENCH_CACHE says: no test
    writes into the user's (or CI's) cache."""
    monkeypatch.setenv("HASHBENCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
