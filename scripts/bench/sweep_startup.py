"""Per-cell start-up of the local executor, warm workers against a process per cell, to the
hundredth of a second: from a cell handed to the executor to its resumable run directory
(``OUT/.tmp-resume-<identity>``, made once the data, features and method are ready, just before
training) appearing, polled every 10 ms. The cells run one at a time (``--jobs 1``), in order.

    python scripts/bench/sweep_startup.py SWEEP.yaml OUT [--workers warm process]

Prints one line per cell and mode (start-up, cell seconds, exit status, load average); OUT gets
one store per mode (``OUT/warm``, ``OUT/process``). Needs the sweep's data and feature caches
($HASHBENCH_DATA, $HASHBENCH_CACHE); a cell already finished in OUT is not rerun (start-up NaN).
"""
from __future__ import annotations

import argparse
import os
import threading
import time
from pathlib import Path

from hashbench.benchmark.sweep import executors
from hashbench.benchmark.sweep.driver import FORWARDED_ENV
from hashbench.benchmark.sweep.spec import load_sweep


def _appears(path: Path, stop: threading.Event, found: list[float]) -> None:
    while not stop.is_set():
        if path.exists():
            found.append(time.time())
            return
        time.sleep(0.01)


def time_cells(sweep_file: Path, out: Path, mode: str) -> list[dict]:
    """Run every cell of ``sweep_file`` into ``out`` with ``workers=mode``; their start-up seconds."""
    sweep = load_sweep(sweep_file, out=out)
    env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
    ex = executors.LocalExecutor(1, workers=mode)
    rows = []
    try:
        for cell in sweep.cells:
            task = executors.Task(cell.identity, cell.command(sweep.out, sweep.data_root),
                                  sweep.out / "_logs" / f"{cell.name}.log", env, 1, False)
            stop, found = threading.Event(), []
            poll = threading.Thread(target=_appears, args=(sweep.out / f".tmp-resume-{cell.identity}", stop, found))
            t0 = time.time()
            poll.start()
            (_, result, error), = ex.as_completed(ex.submit([task]))
            stop.set()
            poll.join()
            startup = round(found[0] - t0, 2) if found else float("nan")
            rows.append({"mode": mode, "cell": cell.name, "startup_s": startup,
                         "cell_s": result["seconds"] if result else None,
                         "returncode": result["returncode"] if result else error,
                         "load": round(os.getloadavg()[0], 1)})
            print("  ".join(f"{k} {v}" for k, v in rows[-1].items()), flush=True)
    finally:
        ex.close()
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("sweep_file", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--workers", nargs="+", default=["warm", "process"], choices=executors.WORKER_MODES)
    args = p.parse_args()
    for mode in args.workers:
        time_cells(args.sweep_file, args.out / mode, mode)


if __name__ == "__main__":
    main()
