"""Sweeps: a grid of runs (methods × datasets × protocols × bits × seeds × variants × overrides)
from a YAML file, run by an executor (``local`` warm workers or child processes, ``slurm``
through submitit, ``ray`` tasks), resumable and idempotent through a manifest beside the results
and the run identities of :mod:`hashbench.benchmark.resume`.

Modules: :mod:`.spec` (the schema, validation, cells), :mod:`.cell` (what runs a cell),
:mod:`.executors` (the interface and ``local``), :mod:`.worker` (``local``'s warm workers),
:mod:`.slurm`, :mod:`.ray_tasks`, :mod:`.manifest`, :mod:`.driver` (run and status), :mod:`.cli`.
"""
