"""One-off migration: add the ``settings`` column to the metrics.csv of runs written before it
existed (``hashbench.benchmark.store.add_settings_column``).

The column is derived from each run's recorded request (``config.yaml``: ``--variant``,
``--set``, ``--epochs``, ``--backbone``), compared with the config shipped at migration time;
every other value of the file is kept verbatim. Runs that already have the column are left
alone, so running it twice changes nothing.

    python scripts/migrations/add_settings_column.py results/cifar10/runs results/sparse/runs ...
"""
from __future__ import annotations

import sys
from pathlib import Path

from hashbench.benchmark.store import add_settings_column, find_runs


def main(argv: list[str]) -> int:
    """Migrate every run found below the folders in ``argv``; print what changed."""
    if not argv:
        print(__doc__)
        return 2
    found = find_runs([Path(a) for a in argv])
    changed = [d for d in found.runs if add_settings_column(d)]
    for d in changed:
        print(f"settings recorded: {d}")
    print(f"{len(changed)} of {len(found.runs)} runs migrated")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
