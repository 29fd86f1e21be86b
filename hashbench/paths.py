"""Where the repository keeps what the harness reads and writes by default: one definition of
each path (the CLI's defaults and the modules that use them import them from here)."""
from __future__ import annotations

from pathlib import Path

#: The checkout: the folder holding ``benchmark/``, ``methods/``, ``datasets/`` and ``results/``.
REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS = REPO_ROOT / "results"
#: The committed regression baseline and its calibrated tolerances (``hashbench regress``).
REGRESS_BASELINE = RESULTS / "baselines" / "regress.csv"
REGRESS_TOLERANCES = RESULTS / "baselines" / "tolerances.csv"
#: Where regression-suite runs go (git-ignored; reports pass over it).
REGRESS_WORK_DIR = RESULTS / "regress-runs"
