"""The sweep manifest: ``OUT/_sweeps/NAME/manifest.json``, beside the results.

One record per cell, keyed by the cell's run identity: its axes, ``state`` (pending, submitted,
done, failed, busy), ``attempts``, the executor's ``job_ids`` and the ``logs`` of every attempt,
the ``run_dir`` once done, the last ``returncode``/``error``, the cell's wall ``seconds`` and
``host``. Every update is a read-modify-write under an exclusive ``flock`` of ``manifest.lock``
followed by an atomic ``os.replace``, so two drivers of the same sweep (or a driver and a
``sweep status``) never see or leave a half-written manifest.
"""
from __future__ import annotations

import fcntl
import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from hashbench.benchmark import store
from hashbench.fileio import write_text_atomic

STATES = ("pending", "submitted", "done", "failed", "busy")


class Manifest:
    """The manifest file of one sweep (see the module docstring)."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = Path(state_dir)
        self.path = self.dir / "manifest.json"

    def read(self) -> dict[str, Any]:
        """The manifest as last written (``{"cells": {}}`` before the first write)."""
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return {"cells": {}}

    @contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / "manifest.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            data = self.read()
            yield data
            data["updated"] = store.now_stamp()
            write_text_atomic(json.dumps(data, indent=1, sort_keys=True, default=str), self.path)

    def update_sweep(self, **fields: Any) -> None:
        """Set sweep-level fields (file, executor, out, …)."""
        with self._locked() as data:
            data.update(fields)

    def update_cell(self, identity: str, append: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
        """Merge ``fields`` into the record of cell ``identity``; ``append`` items are appended to
        list fields (``job_ids``, ``logs``). Returns the new record."""
        with self._locked() as data:
            rec = data.setdefault("cells", {}).setdefault(identity, {"state": "pending", "attempts": 0,
                                                                     "job_ids": [], "logs": []})
            rec.update(fields)
            for key, value in (append or {}).items():
                rec.setdefault(key, []).append(value)
            return dict(rec)
