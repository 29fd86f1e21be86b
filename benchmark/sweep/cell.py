"""What every executor runs for a cell: its ``hashbench run --resume`` command in a child
process, output appended to the cell's log (the local executor's warm workers run the same
command in a long-lived process instead: :mod:`.worker`). Kept free of executor imports so that Ray workers
and SLURM jobs can import it."""
from __future__ import annotations

import os
import socket
import subprocess
import time
from typing import Any


def start_log(log_path: str, argv: list[str]) -> None:
    """Append an attempt's first line to its log (created with its folder):
    ``# <UTC time> on <host>: <command>`` (``hashbench/tools/compare_stores.py`` times start-up from it)."""
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    with open(log_path, "ab") as log:
        log.write(f"# {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} on {socket.gethostname()}: "
                  f"{' '.join(argv)}\n".encode())


def cell_result(returncode: int, t0: float) -> dict[str, Any]:
    """What an attempt reports: exit ``returncode``, wall ``seconds`` since ``t0``, ``host``."""
    return {"returncode": returncode, "seconds": round(time.time() - t0, 2), "host": socket.gethostname()}


def run_cell(argv: list[str], log_path: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``argv`` with ``env`` added to this process's environment; stdout and stderr go to
    ``log_path`` (appended: a requeued attempt continues the same log). Returns the exit
    ``returncode``, the wall ``seconds`` and the ``host``."""
    t0 = time.time()
    start_log(log_path, argv)
    with open(log_path, "ab") as log:
        proc = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                              env={**os.environ, **(env or {})})
    os.chmod(log_path, 0o644)
    return cell_result(proc.returncode, t0)
