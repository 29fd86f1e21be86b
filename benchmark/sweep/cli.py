"""``hashbench sweep run|status SWEEP.yaml``: the command line of :mod:`benchmark.sweep`."""
from __future__ import annotations

import sys
from pathlib import Path


def add_parser(sub) -> None:
    """Add the ``sweep`` subcommand to the CLI's subparsers."""
    s = sub.add_parser("sweep", help="run a grid of runs (a sweep file) locally, on SLURM or on Ray; resumable",
                       description="Run or inspect a sweep file (schema: hashbench/benchmark/sweep/spec.py and "
                                   "docs/sweeps.md).")
    s.add_argument("action", choices=["run", "status", "list"],
                   help="run: submit the unfinished cells and wait; status: done/running/failed/pending with the "
                        "tail of each failure's log; list: the cells and their commands")
    s.add_argument("sweep_file", type=Path)
    s.add_argument("--executor", choices=["local", "slurm", "ray"], default="local")
    s.add_argument("--jobs", type=int, default=None, help="local: cells at a time (default: 1, or one per GPU)")
    s.add_argument("--workers", choices=["warm", "process"], default=None,
                   help="local: warm = long-lived worker processes that import once and keep the data between "
                        "cells; process = a new process per cell (default: the file's executor.local.workers, warm)")
    s.add_argument("--ray-address", default=None,
                   help="ray: 'auto' or HOST:PORT of a running cluster (default: a local Ray instance)")
    s.add_argument("--out", type=Path, default=None, help="the store of run directories (default: the file's out)")
    s.add_argument("--retries", type=int, default=None, help="resubmissions of a failed cell (default: the file's)")


def cmd_sweep(args) -> int:
    from hashbench.benchmark.sweep.driver import run_sweep, sweep_status
    from hashbench.benchmark.sweep.spec import load_sweep

    sweep = load_sweep(args.sweep_file, out=args.out)
    if args.retries is not None:
        sweep.retries = max(0, args.retries)
    if args.action == "status":
        print(sweep_status(sweep))
        return 0
    if args.action == "list":
        for cell in sweep.cells:
            print(cell.name + "  " + " ".join(cell.command(sweep.out, sweep.data_root)))
        return 0
    settings = {"local": {"jobs": args.jobs, "workers": args.workers},
                "ray": {"address": args.ray_address}}.get(args.executor, {})
    counts = run_sweep(sweep, args.executor, settings, log=lambda msg: print(msg, file=sys.stderr, flush=True))
    print(f"sweep {sweep.name}: {counts['done']} of {len(sweep.cells)} cells done; "
          f"runs in {sweep.out}; manifest {sweep.state_dir / 'manifest.json'}")
    return 0 if counts["done"] == len(sweep.cells) else 1
