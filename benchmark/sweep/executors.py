"""Executors: where a sweep's cells run. All behind one small interface:

``submit(tasks) -> list[Submitted]`` hands a batch of cell tasks (command, log, environment) to
the engine and returns at once with each task's job id; ``as_completed(submitted)`` yields
``(submitted, result, error)`` as the engine reports each one finished (``result`` is
:func:`~hashbench.benchmark.sweep.cell.run_cell`'s dict, ``error`` the engine's reason when the
job ended without one: cancelled, preempted for good, node lost); ``close()`` releases the
engine. The engines do the scheduling: a thread pool of warm worker processes or child
processes (``local``, :mod:`.worker`), SLURM job arrays through submitit (``slurm``,
:mod:`.slurm`), Ray tasks (``ray``, :mod:`.ray_tasks`).
"""
from __future__ import annotations

import concurrent.futures as cf
import itertools
import os
import queue
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from hashbench.benchmark.sweep.cell import run_cell
from hashbench.benchmark.sweep.worker import WarmPool, hashbench_args

#: Each executor's settings in a sweep file's ``executor.<name>`` block, with their defaults.
SETTINGS: dict[str, dict[str, Any]] = {
    # jobs: cells at a time (null: one per GPU, 1 without GPUs); workers: warm = long-lived worker
    # processes that import once and keep the data between cells (.worker), process = a new
    # `hashbench run` process per cell
    "local": {"jobs": None, "workers": "warm"},
    # address: null = a local Ray instance started (and stopped) by the sweep; "auto" or HOST:PORT
    "ray": {"address": None, "num_cpus": 1, "num_gpus": 0, "object_store_mb": 256},
    # submitit's SLURM parameters; sbatch: extra `#SBATCH --key=value` options; setup: shell lines
    # run before each cell; gpus_per_node null = the cell's `devices` when device is gpu, else 0
    "slurm": {"partition": None, "account": None, "qos": None, "time_min": 60, "cpus_per_task": 1,
              "gpus_per_node": None, "nodes": 1, "mem_gb": None, "array_parallelism": 64, "sbatch": {},
              "setup": []},
}


@dataclass
class Task:
    """One attempt of one cell: the command line, its log, extra environment, and what the
    engine should reserve for it."""

    key: str
    argv: list[str]
    log: Path
    env: dict[str, str]
    devices: int
    gpu: bool


@dataclass
class Submitted:
    """A task handed to an engine; ``job_id`` is the engine's (SLURM job id, Ray task id, …)."""

    task: Task
    job_id: str
    handle: Any


#: The thread-count variables of the libraries a cell uses (PyTorch's OpenMP, faiss, BLAS).
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def cell_threads(jobs: int, cores: int | None = None) -> int:
    """The CPU threads each of ``jobs`` concurrent cells gets: ``cores // jobs``, at least 1
    (``cores``: the CPUs this process may run on)."""
    cores = cores if cores is not None else len(os.sched_getaffinity(0))
    return max(1, cores // max(1, jobs))


#: The local executor's ``workers`` settings.
WORKER_MODES = ("warm", "process")
#: What a warm worker must have in its environment before it imports torch (see :mod:`.worker`).
START_VARIABLES = ("CUDA_VISIBLE_DEVICES", *THREAD_VARIABLES)


class LocalExecutor:
    """Cells on this machine, ``jobs`` at a time (a thread pool, each thread waiting on one cell).
    ``workers="warm"``: a ``hashbench`` cell on one device runs in a long-lived worker process
    that imported hashbench once and keeps the data between cells (:mod:`.worker`); anything else,
    and every cell with ``workers="process"``, is a child process of its own. With GPUs each
    running cell holds ``devices`` of them, given to it through ``CUDA_VISIBLE_DEVICES``. With
    ``jobs`` > 1 the cores are shared out: each cell's ``OMP_NUM_THREADS``/``MKL_NUM_THREADS``/
    ``OPENBLAS_NUM_THREADS`` is :func:`cell_threads` unless the environment (or the task) sets it,
    so two cells on two cores do not each start two threads per core."""

    name = "local"

    def __init__(self, jobs: int | None = None, workers: str = "warm") -> None:
        if workers not in WORKER_MODES:
            raise ValueError(f"executor.local.workers must be one of {', '.join(WORKER_MODES)}, got {workers!r}")
        self.gpus = _gpu_count()
        self.jobs = int(jobs) if jobs else max(1, self.gpus)
        self.pool = cf.ThreadPoolExecutor(max_workers=self.jobs)
        self.warm = WarmPool(self.jobs) if workers == "warm" else None
        self.free_gpus: queue.Queue[int] = queue.Queue()
        for i in range(self.gpus):
            self.free_gpus.put(i)
        self._ids = itertools.count(1)

    def _run(self, task: Task) -> dict[str, Any]:
        held = [self.free_gpus.get() for _ in range(task.devices)] if task.gpu and self.gpus else []
        try:
            env = dict(task.env)
            if self.jobs > 1:
                threads = str(cell_threads(self.jobs))
                for var in THREAD_VARIABLES:
                    if var not in os.environ and var not in env:
                        env[var] = threads
            if held:
                env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, held))
            # several devices: Lightning's DDP launcher starts the other ranks from the command line
            args = hashbench_args(task.argv) if self.warm is not None and task.devices == 1 else None
            if args is None:
                return run_cell(task.argv, str(task.log), env)
            start_env = {var: env.get(var, os.environ.get(var)) for var in START_VARIABLES}
            return self.warm.run(task.argv, args, str(task.log), env, start_env)
        finally:
            for i in held:
                self.free_gpus.put(i)

    def submit(self, tasks: list[Task]) -> list[Submitted]:
        return [Submitted(t, f"local-{os.getpid()}-{next(self._ids)}", self.pool.submit(self._run, t)) for t in tasks]

    def as_completed(self, submitted: list[Submitted]) -> Iterator[tuple[Submitted, dict | None, str | None]]:
        by_future = {s.handle: s for s in submitted}
        for fut in cf.as_completed(by_future):
            try:
                yield by_future[fut], fut.result(), None
            except Exception as err:  # noqa: BLE001  (the cell's process could not be started)
                yield by_future[fut], None, f"{type(err).__name__}: {err}"

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        if self.warm is not None:
            self.warm.close()


def _gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def make_executor(name: str, settings: dict[str, Any], state_dir: Path, sweep_name: str):
    """The executor ``name`` built from its settings; ValueError (one line) when its package is
    missing, so nothing is submitted."""
    if name == "local":
        return LocalExecutor(settings["jobs"], settings["workers"])
    if name == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ValueError("the ray executor needs the 'ray' package: pip install -e '.[cluster]'") from None
        from hashbench.benchmark.sweep.ray_tasks import RayExecutor

        return RayExecutor(**settings)
    if name == "slurm":
        try:
            import submitit  # noqa: F401
        except ImportError:
            raise ValueError("the slurm executor needs the 'submitit' package: pip install -e '.[cluster]'") from None
        from hashbench.benchmark.sweep.slurm import SlurmExecutor

        return SlurmExecutor(state_dir / "slurm", sweep_name, **settings)
    raise ValueError(f"unknown executor {name!r}; valid: local, slurm, ray")
