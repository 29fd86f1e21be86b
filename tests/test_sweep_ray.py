"""The `ray` executor on a real local Ray instance (started by the sweep on 127.0.0.1): the
4-cell digits sweep, one cell's `hashbench run` process SIGKILLed as soon as it appears, the re-run
completes only that cell."""
from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from _sweep_common import check_killed_then_completed, finish, first_submitted, start_sweep, wait_for, write_sweep

pytest.importorskip("ray", reason="the ray executor needs the [cluster] extra (pip install -e '.[cluster]')")


def _cell_pids(store: Path, cell_name: str) -> list[int]:
    """Processes running this cell's `hashbench run` (children of the Ray worker)."""
    bits, seed = cell_name.split("_")[3], cell_name.split("_")[4]
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        args = [a.decode(errors="replace") for a in argv]
        if "run" in args and "--out" in args and args[args.index("--out") + 1] == str(store) \
                and args[args.index("--bits") + 1] + "b" == bits and "s" + args[args.index("--seeds") + 1] == seed:
            pids.append(int(proc.name))
    return pids


def test_ray_sweep_kill_one_cell_and_rerun(tmp_path):
    path, store = write_sweep(tmp_path)
    proc = start_sweep(path, "ray")
    try:
        ident, rec = first_submitted(store)
        wait_for(lambda: _cell_pids(store, rec["name"]), what="the cell's process to start")
        for pid in _cell_pids(store, rec["name"]):
            os.kill(pid, signal.SIGKILL)
        first = finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    check_killed_then_completed(store, ident, first, path, "ray")
