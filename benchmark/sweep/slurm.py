"""The ``slurm`` executor, through submitit: one job array per submission (``array_parallelism``
cells at a time), partition, account, QoS, time, CPUs, GPUs, memory and extra ``#SBATCH``
options from the sweep file.

A cell with ``devices: N`` on GPUs is one job of N tasks with N GPUs per node: submitit starts
the cell in each task and Lightning's DDP picks its ranks from SLURM's environment. Preemption
and time-outs: :class:`SlurmCell` is :class:`submitit.helpers.Checkpointable`, so submitit
requeues a preempted or timed-out cell, and the requeued ``hashbench run --resume`` continues
from the run's last checkpoint.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterator

import submitit

from hashbench.benchmark.sweep.cell import run_cell
from hashbench.benchmark.sweep.executors import Submitted, Task


#: Exit status of ``hashbench run`` stopped by SIGTERM (what SLURM sends on scancel, requeue, preemption).
TERMINATED = 128 + 15


class SlurmCell(submitit.helpers.Checkpointable):
    """A cell as submitit's job function; requeued on preemption/time-out (see the module)."""

    def __call__(self, argv: list[str], log: str, env: dict[str, str]) -> dict[str, Any]:
        result = run_cell(argv, log, env)
        if result["returncode"] in (TERMINATED, -15):  # ended by SIGTERM: in training (143) or outside it
            # SLURM is ending this job (scancel, requeue, preemption) and SIGKILLs it after
            # KillWait: report nothing, so that submitit reports the job's own fate (cancelled, or
            # the requeued job's result) instead of a result from a run cut short.
            time.sleep(600)
        return result


class SlurmExecutor:
    name = "slurm"

    def __init__(self, folder: Path, sweep_name: str, partition=None, account=None, qos=None, time_min=60,
                 cpus_per_task=1, gpus_per_node=None, nodes=1, mem_gb=None, array_parallelism=64, sbatch=None,
                 setup=None) -> None:
        self.folder = Path(folder)
        self.executor = submitit.AutoExecutor(folder=self.folder / "%j", cluster="slurm")
        extra = dict(sbatch or {})
        if account:
            extra["account"] = account
        if qos:
            extra["qos"] = qos
        self.base: dict[str, Any] = dict(name=f"hashbench-{sweep_name}", timeout_min=int(time_min),
                                         cpus_per_task=int(cpus_per_task), nodes=int(nodes),
                                         slurm_array_parallelism=int(array_parallelism),
                                         slurm_additional_parameters=extra, slurm_setup=list(setup or []))
        if partition:
            self.base["slurm_partition"] = partition
        if mem_gb:
            self.base["mem_gb"] = mem_gb
        self.gpus_per_node = gpus_per_node

    def submit(self, tasks: list[Task]) -> list[Submitted]:
        out: list[Submitted] = []
        # one array per resource shape (cells of different `devices` cannot share an array)
        for shape in sorted({(t.devices, t.gpu) for t in tasks}):
            group = [t for t in tasks if (t.devices, t.gpu) == shape]
            devices, gpu = shape
            gpus = self.gpus_per_node if self.gpus_per_node is not None else (devices if gpu else 0)
            self.executor.update_parameters(**self.base, tasks_per_node=devices, gpus_per_node=gpus)
            jobs = self.executor.map_array(SlurmCell(), [t.argv for t in group], [str(t.log) for t in group],
                                           [t.env for t in group])
            out += [Submitted(t, str(j.job_id), j) for t, j in zip(group, jobs)]
        return out

    def as_completed(self, submitted: list[Submitted]) -> Iterator[tuple[Submitted, dict | None, str | None]]:
        by_job = {id(s.handle): s for s in submitted}
        for job in submitit.helpers.as_completed([s.handle for s in submitted], poll_frequency=2):
            sub = by_job[id(job)]
            try:
                results = job.results()  # one per task; rank 0's is the cell's
                yield sub, results[0], None
            except Exception as err:  # noqa: BLE001  (cancelled, failed, node lost: submitit's reason)
                lines = [ln for ln in str(err).splitlines() if ln.strip()]
                yield sub, None, f"{type(err).__name__}: {lines[0] if lines else ''} (state {job.state})"

    def close(self) -> None:
        pass
