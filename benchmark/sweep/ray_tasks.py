"""The ``ray`` executor: each cell one Ray task (``num_cpus``/``num_gpus`` from the sweep file;
Ray sets ``CUDA_VISIBLE_DEVICES`` for the GPUs it grants). ``address`` null starts a local Ray
instance on 127.0.0.1 for the sweep and stops it afterwards; ``auto`` or ``HOST:PORT`` joins a
running cluster (whose nodes must have hashbench installed and see the sweep's ``out``)."""
from __future__ import annotations

from typing import Iterator

import ray

from hashbench.benchmark.sweep.cell import run_cell
from hashbench.benchmark.sweep.executors import Submitted, Task


class RayExecutor:
    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: float = 1, num_gpus: float = 0,
                 object_store_mb: int = 256) -> None:
        self.num_cpus, self.num_gpus = num_cpus, num_gpus
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(_node_ip_address="127.0.0.1", include_dashboard=False, log_to_driver=False,
                     object_store_memory=int(object_store_mb) * 2**20)
        self.remote = ray.remote(run_cell)

    def submit(self, tasks: list[Task]) -> list[Submitted]:
        out = []
        for t in tasks:
            # max_retries=0: a cell's retries are the sweep's (counted in its manifest)
            ref = self.remote.options(num_cpus=self.num_cpus, num_gpus=self.num_gpus * (t.devices if t.gpu else 1),
                                      max_retries=0, name=t.key).remote(t.argv, str(t.log), t.env)
            out.append(Submitted(t, ref.task_id().hex(), ref))
        return out

    def as_completed(self, submitted: list[Submitted]) -> Iterator[tuple[Submitted, dict | None, str | None]]:
        by_ref = {s.handle: s for s in submitted}
        pending = list(by_ref)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            sub = by_ref[ready[0]]
            try:
                yield sub, ray.get(ready[0]), None
            except ray.exceptions.RayError as err:  # worker or node died, task cancelled
                yield sub, None, f"{type(err).__name__}: {str(err).splitlines()[0]}"

    def close(self) -> None:
        ray.shutdown()
