"""The sweep file: a small YAML schema, validated with clear errors, expanded into cells.

A sweep file names **axes** (their product is a grid) and **settings**::

    name: digits-demo            # optional; default: the file's stem
    out: results/sweeps/digits   # the store the cells write run directories into (relative to the cwd)
    retries: 1                   # a failed cell is resubmitted up to this many times per `sweep run`
    methods: [hashnet, dhn]      # axes: a list (or one scalar); never empty
    datasets: [digits]
    bits: [16, 32]
    seeds: [0, 1]
    epochs: [4]                  # optional axes: protocols, split_seeds, variants, set, epochs
    set: [{}, {lr: 0.01}]        # each item one set of `--set key=value` overrides
    device: cpu                  # settings: device (auto|cpu|gpu), devices (per cell), speed (bool)
    grids:                       # optional: several grids, each overriding the keys above
      - {methods: [lsh, itq], bits: [8, 16, 32, 64]}
      - {methods: [hashnet], set: [{image_size: 160}]}
    executor:                    # optional: settings of each executor (see executors.py)
      local: {jobs: 2, workers: warm}   # workers: warm (long-lived worker processes) | process
      ray: {num_cpus: 1, num_gpus: 0}
      slurm: {partition: gpu, time_min: 120, gpus_per_node: 1, array_parallelism: 8}

A **cell** is one (method, dataset, protocol, bits, seed, split seed, variant, overrides, epochs):
one ``hashbench run`` (in its own process, or in a warm worker of the local executor). Every cell is checked before anything is submitted
(unknown method, dataset, protocol or variant, impossible bits, an unknown key, an empty axis →
:class:`SweepError`, one line).
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Any

import yaml

from hashbench.benchmark import resume, store
from hashbench.benchmark.plan import plan_run


class SweepError(ValueError):
    """A sweep file that cannot run as written (the CLI prints it as one ``error:`` line)."""


#: Axes: key → (default values, type check, what the check wants).
AXES: dict[str, tuple[list[Any] | None, Any, str]] = {
    "methods": (None, lambda v: isinstance(v, str), "method names"),
    "datasets": (None, lambda v: isinstance(v, str), "dataset names"),
    "bits": (None, lambda v: isinstance(v, int) and not isinstance(v, bool), "integers"),
    "protocols": ([None], lambda v: v is None or isinstance(v, str), "protocol names or null (the dataset's default)"),
    "seeds": ([0], lambda v: isinstance(v, int) and not isinstance(v, bool), "integers"),
    "split_seeds": ([0], lambda v: isinstance(v, int) and not isinstance(v, bool), "integers"),
    "variants": ([None], lambda v: v is None or isinstance(v, str), "variant names or null"),
    "set": ([{}], lambda v: isinstance(v, dict) and all(isinstance(k, str) for k in v), "mappings key: value"),
    "epochs": ([None], lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool) and v > 0),
               "positive integers or null (the config's)"),
}
#: Per-cell settings (scalars): key → (default, check, what the check wants).
SETTINGS: dict[str, tuple[Any, Any, str]] = {
    "device": ("auto", lambda v: v in ("auto", "cpu", "gpu"), "auto, cpu or gpu"),
    "devices": (1, lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1, "a positive integer"),
    "speed": (True, lambda v: isinstance(v, bool), "true or false"),
}
TOP_KEYS = {"name", "out", "data_root", "retries", "grids", "executor"} | set(AXES) | set(SETTINGS)
EXECUTORS = ("local", "slurm", "ray")


@dataclass(frozen=True)
class Cell:
    """One run of the grid; ``identity`` is the run identity its run directory will carry."""

    method: str
    dataset: str
    protocol: str
    bits: int
    seed: int
    split_seed: int
    variant: str | None
    overrides: dict[str, Any] = field(hash=False, compare=False)
    epochs: int | None
    device: str
    devices: int
    speed: bool
    identity: str

    @property
    def name(self) -> str:
        """Readable and unique: the run's name parts plus the identity."""
        extra = f"_{self.variant}" if self.variant else ""
        return "_".join([self.method + extra, store.name_part(self.dataset), self.protocol, f"{self.bits}b",
                         f"s{self.seed}", self.identity])

    def command(self, out: Path, data_root: str | None) -> list[str]:
        """The ``hashbench run --resume`` command line of this cell (writing into ``out``)."""
        script = Path(sys.executable).with_name("hashbench")
        argv = [str(script)] if script.exists() else [sys.executable, "-m", "hashbench"]
        argv += ["run", "--method", self.method, "--dataset", self.dataset, "--protocol", self.protocol,
                 "--bits", str(self.bits), "--seeds", str(self.seed), "--split-seed", str(self.split_seed),
                 "--device", self.device, "--devices", str(self.devices), "--out", str(out),
                 "--resume", "--no-progress"]
        if self.variant:
            argv += ["--variant", self.variant]
        for key, value in sorted(self.overrides.items()):
            argv += ["--set", f"{key}={json.dumps(value)}"]  # JSON is YAML: parse_value reads it back
        if self.epochs is not None:
            argv += ["--epochs", str(self.epochs)]
        if not self.speed:
            argv.append("--no-speed")
        if data_root:
            argv += ["--data-root", data_root]
        return argv


@dataclass
class Sweep:
    """A validated sweep file."""

    name: str
    path: Path
    out: Path
    data_root: str | None
    retries: int
    cells: list[Cell]
    executor: dict[str, dict[str, Any]]

    @property
    def state_dir(self) -> Path:
        """Where the manifest and the cells' logs live, beside the results: ``OUT/_sweeps/NAME``."""
        return self.out / "_sweeps" / self.name


def _axis(where: str, key: str, value: Any) -> list[Any]:
    default, check, want = AXES[key]
    values = value if isinstance(value, list) else [value]
    if not values:
        raise SweepError(f"{where}: axis {key!r} is empty")
    bad = [v for v in values if not check(v)]
    if bad:
        raise SweepError(f"{where}: axis {key!r} wants {want}, got {bad[0]!r}")
    return values


def _setting(where: str, key: str, value: Any) -> Any:
    _, check, want = SETTINGS[key]
    if not check(value):
        raise SweepError(f"{where}: {key!r} must be {want}, got {value!r}")
    return value


def _unknown(where: str, keys, valid) -> None:
    bad = sorted(set(keys) - set(valid))
    if bad:
        raise SweepError(f"{where}: unknown key {bad[0]!r}; valid: {', '.join(sorted(valid))}")


def _cells_of(where: str, grid: dict[str, Any]) -> list[Cell]:
    from hashbench import datasets as dataset_registry
    from hashbench import methods as method_registry

    for key in ("methods", "datasets", "bits"):
        if key not in grid:
            raise SweepError(f"{where}: axis {key!r} is missing")
    axes = {k: _axis(where, k, grid[k]) if k in grid else list(AXES[k][0]) for k in AXES}
    settings = {k: _setting(where, k, grid[k]) if k in grid else SETTINGS[k][0] for k in SETTINGS}
    cells = []
    for method, dataset, protocol, bits, seed, split_seed, variant, overrides, epochs in product(
            *(axes[k] for k in ("methods", "datasets", "protocols", "bits", "seeds", "split_seeds", "variants",
                                "set", "epochs"))):
        try:
            method_registry.get_method(method)
            proto = dataset_registry.get_dataset(dataset).protocol(protocol).name
            plan = plan_run(method, dataset, [bits], variant, overrides, epochs)
            plan.require(bits)
        except ValueError as err:
            raise SweepError(f"{where}: {err}") from None
        ident = resume.run_identity(method, dataset, proto, bits, seed, split_seed, store.config_hash(plan.config))
        cells.append(Cell(method, dataset, proto, int(bits), int(seed), int(split_seed), variant, dict(overrides),
                          epochs, settings["device"], settings["devices"], settings["speed"], ident))
    return cells


def _executor_settings(where: str, section: Any) -> dict[str, dict[str, Any]]:
    from hashbench.benchmark.sweep.executors import SETTINGS as EXECUTOR_SETTINGS

    section = section or {}
    if not isinstance(section, dict):
        raise SweepError(f"{where}: 'executor' must be a mapping of executor name → settings")
    _unknown(f"{where}: executor", section, EXECUTORS)
    out = {}
    for name in EXECUTORS:
        block = section.get(name) or {}
        if not isinstance(block, dict):
            raise SweepError(f"{where}: executor.{name} must be a mapping")
        _unknown(f"{where}: executor.{name}", block, EXECUTOR_SETTINGS[name])
        out[name] = {**EXECUTOR_SETTINGS[name], **block}
    return out


def load_sweep(path: Path, out: Path | None = None) -> Sweep:
    """Read and validate the sweep file at ``path`` and expand its cells (duplicates of one
    identity across grids count once). ``out`` overrides the file's ``out``."""
    path = Path(path)
    if not path.is_file():
        raise SweepError(f"no sweep file at {path}")
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise SweepError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(doc, dict):
        raise SweepError(f"{path}: a sweep file is a mapping of keys (see `hashbench sweep run --help`)")
    _unknown(str(path), doc, TOP_KEYS)
    base = {k: v for k, v in doc.items() if k in AXES or k in SETTINGS}
    grids = doc.get("grids")
    if grids is None:
        grids = [{}]
    if not isinstance(grids, list) or not grids or not all(isinstance(g, dict) for g in grids):
        raise SweepError(f"{path}: 'grids' must be a non-empty list of mappings")
    cells: dict[str, Cell] = {}
    for i, grid in enumerate(grids):
        where = f"{path}: grids[{i}]" if doc.get("grids") is not None else str(path)
        _unknown(where, grid, set(AXES) | set(SETTINGS))
        for cell in _cells_of(where, {**base, **grid}):
            cells.setdefault(cell.identity, cell)
    retries = doc.get("retries", 1)
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise SweepError(f"{path}: 'retries' must be a non-negative integer, got {retries!r}")
    name = doc.get("name") or path.stem
    if not isinstance(name, str) or store.name_part(name) != name:
        raise SweepError(f"{path}: 'name' must use only letters, digits, '.', '_' and '-', got {name!r}")
    out = Path(os.path.abspath(out if out is not None else (doc.get("out") or f"results/sweeps/{name}")))
    data_root = doc.get("data_root")
    return Sweep(name=name, path=path, out=out, data_root=str(data_root) if data_root else None, retries=retries,
                 cells=list(cells.values()), executor=_executor_settings(str(path), doc.get("executor")))
