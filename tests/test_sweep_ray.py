"""The `ray` executor on a real local Ray instance (started by the sweep on 127.0.0.1): the
4-cell digits sweep, one cell's `hashbench run` process SIGKILLed as soon as it appears, the re-run
completes only that cell; and a sweep joining a cluster started beforehand with `ray start --head`."""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import pytest
import yaml

from _sweep_common import (HASHBENCH, check_killed_then_completed, finish, first_started_cell, manifest,
                           start_sweep, write_sweep)

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
        ident, pids = first_started_cell(store, lambda rec: _cell_pids(store, rec["name"]),
                                         what="a cell's process to start")
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        first = finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    check_killed_then_completed(store, ident, first, path, "ray")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ray_sweep_joins_a_running_cluster(tmp_path):
    """`--ray-address HOST:PORT`: the sweep joins a cluster started beforehand with `ray start
    --head` (as on a real cluster) and leaves it running when it ends.

    Loopback only: Ray rewrites a 127.0.0.1 address to the machine's routable IP before it
    connects (``resolve_ip_for_localhost``), which a head bound to 127.0.0.1 does not answer;
    ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` is Ray's switch that keeps loopback (a real cluster's
    head has a routable address and needs no switch). `ray start` turns on Ray's token
    authentication: the head and the sweep share a token (``RAY_AUTH_MODE=token``, the token file
    in ``RAY_AUTH_TOKEN_PATH``), as docs/sweeps.md tells cluster users."""
    token = tmp_path / "ray_token"
    token.write_text(secrets.token_hex(32))
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN_PATH": str(token)}
    ray_cli = shutil.which("ray", path=str(Path(HASHBENCH).parent)) or shutil.which("ray")
    if ray_cli is None:
        pytest.skip("the `ray` command is not installed beside hashbench")
    port = _free_port()
    temp_dir = Path(f"/tmp/hb-ray-{port}")  # short: Ray's socket paths live under it
    started = subprocess.run([ray_cli, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
                              "--num-cpus=2", "--object-store-memory=268435456", f"--temp-dir={temp_dir}",
                              "--include-dashboard=false", "--disable-usage-stats"],
                             capture_output=True, text=True, timeout=180, env=env)
    if started.returncode != 0:
        pytest.skip(f"`ray start --head` failed: {(started.stderr or started.stdout).strip().splitlines()[-1:]}")
    try:
        store = tmp_path / "store"
        path = tmp_path / "lsh2.yaml"
        path.write_text(yaml.safe_dump({"name": "digits4", "out": str(store), "methods": ["lsh"], "datasets": ["digits"],
                                        "bits": [16, 32], "seeds": [0], "device": "cpu", "speed": False,
                                        "executor": {"ray": {"num_cpus": 1}}}))
        done = subprocess.run([HASHBENCH, "sweep", "run", str(path), "--executor", "ray", "--ray-address",
                               f"127.0.0.1:{port}"], capture_output=True, text=True, timeout=600, env=env)
        assert done.returncode == 0, done.stderr[-3000:]
        cells = manifest(store)["cells"]
        assert sorted(r["state"] for r in cells.values()) == ["done", "done"]
        assert all(len(r["job_ids"][0]) > 20 for r in cells.values())  # Ray task ids, not local ones
        # the tasks ran in that cluster (its workers' logs name them), not in a Ray of the sweep's own
        logs = (temp_dir / "session_latest" / "logs").glob("worker-*.out")
        worker_out = "".join(p.read_text(errors="replace") for p in logs)
        assert all(f":task_name:{ident}" in worker_out for ident in cells), worker_out[-2000:]
        status = subprocess.run([ray_cli, "status", f"--address=127.0.0.1:{port}"], capture_output=True, text=True,
                                timeout=120, env=env)
        assert status.returncode == 0, status.stderr[-2000:]  # the cluster outlives the sweep
    finally:
        subprocess.run([ray_cli, "stop", "--force"], capture_output=True, timeout=180, env=env)
        shutil.rmtree(temp_dir, ignore_errors=True)
