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


def portable(text: str, data_root: Path | str | None, cache_root: Path | str | None) -> str:
    """``text`` with the machine's absolute roots written portably: the data root as
    ``$HASHBENCH_DATA``, the cache root as ``$HASHBENCH_CACHE`` and the checkout's own folder as
    a path relative to it (``/…/repo/results/runs`` → ``results/runs``); what lies elsewhere is
    kept. The longest root is replaced first (a cache inside the checkout stays ``$HASHBENCH_CACHE``)."""
    roots = []
    for root, name in ((data_root, "$HASHBENCH_DATA"), (cache_root, "$HASHBENCH_CACHE"), (REPO_ROOT, ".")):
        if root:
            given = Path(root).expanduser()
            roots += [(str(given), name), (str(given.resolve()), name)]
    for root, name in sorted(set(roots), key=lambda r: -len(r[0])):
        text = text.replace(root + "/", "" if name == "." else name + "/")
        if text == root:
            text = name
    return text
