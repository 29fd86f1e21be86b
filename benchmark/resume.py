"""Resumable, idempotent runs: a run's identity, the finished runs of a store, and the claim on
an identity that keeps two processes from writing the same run.

A run's **identity** is the sha256 (12 hex digits) of (method, dataset, protocol, bits, seed,
split seed, resolved-config hash): two requests with the same identity train the same thing.
With ``hashbench run --resume`` (every sweep cell runs that way):

* a finished run directory of the same identity under ``--out`` ends the request at once (the run
  is reported, nothing is retrained);
* otherwise the process takes an exclusive ``flock`` on ``OUT/.lock-<identity>`` (released by the
  kernel when the process dies, ``kill -9`` included; a second process of the same identity gets
  :class:`RunBusyError` and does nothing);
* the run is built in ``OUT/.tmp-resume-<identity>`` (not a fresh ``.tmp-…`` name), where
  Lightning saves ``checkpoints/last.ckpt`` after every epoch; a killed run's rerun continues
  from that checkpoint and publishes the directory with the usual single ``rename``.
"""
from __future__ import annotations

import csv
import errno
import fcntl
import hashlib
import json
import os
import time
from pathlib import Path

import yaml

from hashbench.benchmark import store

#: What makes two runs the same run (the resolved config covers variant, overrides, epochs).
IDENTITY_FIELDS = ("method", "dataset", "protocol", "bits", "seed", "split_seed", "config_hash")
RESUME_PREFIX = ".tmp-resume-"
LAST_CHECKPOINT = "checkpoints/last.ckpt"
#: Exit status of ``hashbench run --resume`` when another live process holds a run's claim
#: (EX_TEMPFAIL): nothing was done; a sweep driver reads it as "busy", not "failed".
BUSY_EXIT = 75


class RunBusyError(RuntimeError):
    """Another live process holds the claim on this identity (it is running the same run)."""


def run_identity(method: str, dataset: str, protocol: str, bits: int, seed: int, split_seed: int,
                 config_hash: str) -> str:
    """The identity hash of one run (see the module docstring)."""
    values = dict(method=method, dataset=dataset, protocol=protocol, bits=int(bits), seed=int(seed),
                  split_seed=int(split_seed), config_hash=config_hash)
    blob = json.dumps([values[k] for k in IDENTITY_FIELDS]).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def identity_of_run(run_dir: Path) -> str | None:
    """Identity of a finished run directory: its ``config.yaml``'s ``identity`` when written by a
    current harness, else computed from the request, ``split.json`` and ``metrics.csv`` (runs
    written before identities existed); None when the directory is not a readable run."""
    run_dir = Path(run_dir)
    try:
        cfg = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
        if cfg.get("identity"):
            return str(cfg["identity"])
        req = cfg["request"]
        protocol = json.loads((run_dir / "split.json").read_text())["protocol"]
        with open(run_dir / "metrics.csv", newline="") as f:
            config_hash = next(csv.DictReader(f))["config_hash"]
        return run_identity(req["method"], req["dataset"], protocol, req["bits"], req["seed"],
                            req.get("split_seed", 0), config_hash)
    except (OSError, KeyError, TypeError, ValueError, StopIteration, yaml.YAMLError):
        return None


#: Identities of run directories already read (a published run directory never changes).
_KNOWN: dict[Path, str] = {}


def finished_runs(out_dir: Path) -> dict[str, Path]:
    """Identity → run directory for every finished run directly under ``out_dir`` (a directory
    with ``config.yaml`` and ``metrics.csv``, never a hidden ``.tmp-`` one); the oldest name wins
    when an identity was published twice."""
    out: dict[str, Path] = {}
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return out
    for d in sorted(out_dir.iterdir()):
        if d.name.startswith("."):
            continue
        ident = _KNOWN.get(d)
        if ident is None and (d / "metrics.csv").is_file() and (d / "config.yaml").is_file():
            ident = identity_of_run(d)
            if ident is not None:
                _KNOWN[d] = ident
        if ident is not None and d.is_dir():
            out.setdefault(ident, d)
    return out


def launcher_rank() -> int:
    """This process's rank as set by a multi-process launcher before the program starts
    (Lightning's DDP children get ``LOCAL_RANK``/``NODE_RANK``; SLURM tasks ``SLURM_PROCID``);
    0 for a plain process. Only rank 0 claims, resumes into and publishes the run directory."""
    local = int(os.environ.get("LOCAL_RANK", "0") or 0)
    node = int(os.environ.get("NODE_RANK", "0") or 0)
    slurm = int(os.environ.get("SLURM_PROCID", "0") or 0) if int(os.environ.get("SLURM_NTASKS", "1") or 1) > 1 else 0
    return max(local, node, slurm)


def resume_dir(out_dir: Path, identity: str) -> Path:
    """Where the unfinished run of ``identity`` is built (and found again after a kill)."""
    return Path(out_dir) / f"{RESUME_PREFIX}{identity}"


def last_checkpoint(out_dir: Path, identity: str) -> Path | None:
    """The killed run's last-epoch checkpoint to continue from, or None."""
    path = resume_dir(out_dir, identity) / LAST_CHECKPOINT
    return path if path.is_file() else None


def _try_lock(fd: int, mode: int) -> bool:
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
        return True
    except OSError as err:
        if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise


class Claim:
    """Exclusive claim on an identity: an ``flock`` on ``OUT/.lock-<identity>`` for the lifetime
    of the ``with`` block. The lock file stays (empty); the lock goes with the process. A lock
    still held after ``patience`` seconds (a run holds it for its whole training, a
    :func:`is_claimed` probe for an instant) means another writer: :class:`RunBusyError`."""

    def __init__(self, out_dir: Path, identity: str, patience: float = 2.0) -> None:
        self.path = Path(out_dir) / f".lock-{identity}"
        self.patience = patience
        self._fd: int | None = None

    def __enter__(self) -> "Claim":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.patience
        try:
            while not _try_lock(fd, fcntl.LOCK_EX):
                if time.monotonic() >= deadline:
                    raise RunBusyError(f"another process is running this run (lock {self.path} is held)")
                time.sleep(0.1)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def is_claimed(out_dir: Path, identity: str) -> bool:
    """Whether a live process holds the claim on ``identity`` (probes the lock without keeping it)."""
    path = Path(out_dir) / f".lock-{identity}"
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        if _try_lock(fd, fcntl.LOCK_SH):  # shared: two probes never block each other
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        return True
    finally:
        os.close(fd)


class ResumableRunWriter(store.RunWriter):
    """A :class:`~hashbench.benchmark.store.RunWriter` whose hidden directory is the identity's
    fixed :func:`resume_dir` (kept across a kill, reused by the rerun) instead of a fresh one.
    Only the claim holder may use it."""

    def __init__(self, out_dir: Path, name: str, identity: str) -> None:
        self.out_dir = Path(out_dir)
        self.name = name
        self.path = resume_dir(out_dir, identity)
        self.resumed = self.path.is_dir()
        self.path.mkdir(parents=True, exist_ok=True)
        os.chmod(self.path, 0o755)
