"""Warm workers of the ``local`` executor: long-lived processes that import hashbench once and run
cell after cell in-process, through the same ``main`` the ``hashbench`` command runs, with each
cell's output captured to its log as a child process's would be.

A worker keeps what the cells read from the dataset and feature caches between cells
(:mod:`hashbench.datasets.memo`: an unchanged file is read once, a rewritten one again). It is
started with the environment that must be fixed before torch is imported, its *start
environment* (``CUDA_VISIBLE_DEVICES`` and the thread-count variables); a cell needing another
start environment gets another worker. After each cell the worker puts back what a cell may
change in a process (environment, working directory, warnings filters, logging levels and
handlers, torch's thread count and global flags) as it was; every run seeds itself
(``pl.seed_everything`` in :func:`hashbench.benchmark.runner.run_one`), as consecutive runs of
one ``hashbench run --seeds 0,1`` already do. A worker that dies during a cell (killed, a segfault,
``os._exit``) reports that cell with its exit status, as a child process that died would, and is
replaced by a fresh one for the next cell.
"""
from __future__ import annotations

import contextlib
import importlib
import logging
import multiprocessing
import os
import subprocess
import sys
import threading
import time
import traceback
import warnings
from pathlib import Path
from typing import Any, Iterator

from hashbench.benchmark.sweep.cell import cell_result, start_log

#: Modules a worker imports once, before its first cell (what ``hashbench run`` imports).
WARM_IMPORTS = ("torch", "pytorch_lightning", "faiss", "pandas", "hashbench.benchmark.cli",
                "hashbench.benchmark.runner", "hashbench.benchmark.report", "hashbench.methods",
                "hashbench.datasets")


def hashbench_args(argv: list[str]) -> list[str] | None:
    """The arguments of ``argv`` when it runs this installation's ``hashbench`` command (its
    console script, or ``python -m hashbench`` with this interpreter); None for anything else."""
    if argv[:1] == [str(Path(sys.executable).with_name("hashbench"))]:
        return argv[1:]
    if argv[:3] == [sys.executable, "-m", "hashbench"]:
        return argv[3:]
    return None


# ---- inside a worker ------------------------------------------------------------------------

class TorchDefaults:
    """torch's (and faiss's) process-wide settings as the worker started with them, put back
    after every cell: intra-op threads, deterministic algorithms, cuDNN flags, matmul precision."""

    def __init__(self) -> None:
        import faiss
        import torch

        self.threads = torch.get_num_threads()
        self.faiss_threads = faiss.omp_get_max_threads()
        self.deterministic = torch.are_deterministic_algorithms_enabled()
        self.warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
        self.cudnn = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
        self.matmul = torch.get_float32_matmul_precision()

    def apply(self) -> None:
        import faiss
        import torch

        torch.set_num_threads(self.threads)
        faiss.omp_set_num_threads(self.faiss_threads)
        torch.use_deterministic_algorithms(self.deterministic, warn_only=self.warn_only)
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = self.cudnn
        torch.set_float32_matmul_precision(self.matmul)


class _ProcessState:
    """A snapshot of what a cell may change in its process and the next cell must not see:
    environment, working directory, warnings filters, logging levels and root handlers."""

    def __init__(self) -> None:
        self.environ = dict(os.environ)
        self.cwd = os.getcwd()
        self.filters = list(warnings.filters)
        self.handlers = list(logging.root.handlers)
        self.levels = {name: lg.level for name, lg in logging.root.manager.loggerDict.items()
                       if isinstance(lg, logging.Logger)}
        self.root_level = logging.root.level

    def restore(self) -> None:
        os.environ.clear()
        os.environ.update(self.environ)
        os.chdir(self.cwd)
        warnings.filters[:] = self.filters
        if hasattr(warnings, "_filters_mutated"):  # invalidate the per-module "already warned" caches
            warnings._filters_mutated()
        for handler in [h for h in logging.root.handlers if h not in self.handlers]:
            logging.root.removeHandler(handler)
            handler.close()
        for name, level in self.levels.items():
            logging.getLogger(name).setLevel(level)
        logging.root.setLevel(self.root_level)


@contextlib.contextmanager
def _output_to(log_path: str) -> Iterator[None]:
    """File descriptors 1 and 2 (Python's and the C libraries' output) appended to ``log_path``."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = (os.dup(1), os.dup(2))
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for f in (fd, *saved):
            os.close(f)


def _cli_exit_status(args: list[str]) -> int:
    """What ``hashbench ARGS`` would exit with, running it in this process."""
    from hashbench.benchmark.cli import main

    try:
        return int(main(args) or 0)
    except SystemExit as stop:  # argparse errors, sys.exit in a command
        if stop.code is None or isinstance(stop.code, int):
            return int(stop.code or 0)
        print(stop.code, file=sys.stderr)
        return 1
    except BaseException:  # noqa: BLE001  (an uncaught exception: the traceback and status 1, as a process)
        traceback.print_exc()
        return 1


def _after_cell() -> None:
    """Drop what a finished cell left behind: garbage, cached GPU memory, compiled graphs, figures."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_initialized():
        torch.cuda.empty_cache()
    if "torch._dynamo" in sys.modules:
        torch._dynamo.reset()
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")


def run_in_process(args: list[str], log_path: str, env: dict[str, str], defaults: TorchDefaults) -> int:
    """Run ``hashbench ARGS`` here with ``env`` added, output appended to ``log_path``; the process
    is put back as it was afterwards. Returns the exit status."""
    state = _ProcessState()
    try:
        os.environ.update(env)
        with _output_to(log_path):
            return _cli_exit_status(args)
    finally:
        _after_cell()
        defaults.apply()
        state.restore()


def _warm_up(log_path: str) -> TorchDefaults:
    """Import what ``hashbench run`` imports and turn the file memo on, before the first cell
    (output to its log: a worker that cannot import ends there with status 1, as a process would)."""
    with _output_to(log_path):
        try:
            for name in WARM_IMPORTS:
                importlib.import_module(name)
            from hashbench.datasets import memo

            memo.enable()
            return TorchDefaults()
        except BaseException:  # noqa: BLE001
            traceback.print_exc()
            sys.stderr.flush()
            os._exit(1)


def serve(conn) -> None:
    """A worker's life: run each ``(args, log_path, env)`` received on ``conn`` (the first after
    :func:`_warm_up`) and send back its exit status, until ``None`` or the other end closes."""
    defaults = None
    while True:
        try:
            job = conn.recv()
        except (EOFError, KeyboardInterrupt):
            return
        if job is None:
            return
        if defaults is None:
            defaults = _warm_up(job[1])
        status = run_in_process(*job, defaults)
        try:
            conn.send(status)
        except OSError:  # the driver is gone
            return


# ---- in the driver --------------------------------------------------------------------------

class WarmWorker:
    """The driver's handle on one worker: ``python -m hashbench.benchmark.sweep.worker FD``, a
    child process like a cell's (this environment with ``start_env`` on top, None: unset; no
    stdin), talking over one end of a ``multiprocessing`` pipe passed as file descriptor FD.
    (Not ``multiprocessing.Process``: its ``spawn`` re-runs the driver's main script.)"""

    def __init__(self, start_env: dict[str, str | None]) -> None:
        self.start_env = dict(start_env)
        env = {**os.environ, **{k: v for k, v in start_env.items() if v is not None}}
        for var in [k for k, v in start_env.items() if v is None]:
            env.pop(var, None)
        self.conn, child = multiprocessing.Pipe()
        try:
            self.proc = subprocess.Popen([sys.executable, "-m", "hashbench.benchmark.sweep.worker",
                                          str(child.fileno())], env=env, stdin=subprocess.DEVNULL,
                                         pass_fds=(child.fileno(),))
        finally:
            child.close()
        self.cells = 0

    def run(self, args: list[str], log_path: str, env: dict[str, str]) -> int | None:
        """The exit status of ``hashbench ARGS`` run by this worker; None when the worker died."""
        self.cells += 1
        try:
            self.conn.send((args, log_path, env))
            return self.conn.recv()
        except (EOFError, OSError):
            self.proc.wait()
            return None

    def stop(self, timeout: float = 30) -> None:
        """Ask the worker to end; kill it after ``timeout`` seconds."""
        with contextlib.suppress(OSError):
            self.conn.send(None)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.conn.close()


class WarmPool:
    """At most ``size`` warm workers; a cell takes an idle one of its start environment, or a new
    one (an idle worker of another start environment is stopped to make room)."""

    def __init__(self, size: int) -> None:
        self.size = max(1, int(size))
        self.idle: list[WarmWorker] = []
        self.busy = 0
        self.lock = threading.Lock()

    def _take(self, start_env: dict[str, str | None]) -> WarmWorker:
        with self.lock:
            self.busy += 1
            for worker in self.idle:
                if worker.start_env == start_env:
                    self.idle.remove(worker)
                    return worker
            victim = self.idle.pop(0) if self.idle and len(self.idle) + self.busy > self.size else None
        if victim is not None:
            victim.stop()
        try:
            return WarmWorker(start_env)
        except BaseException:
            with self.lock:
                self.busy -= 1
            raise

    def run(self, argv: list[str], args: list[str], log_path: str, env: dict[str, str],
            start_env: dict[str, str | None]) -> dict[str, Any]:
        """Run one attempt of a cell (``argv`` as written in its log, ``args`` what the worker
        runs) on a warm worker; :func:`~hashbench.benchmark.sweep.cell.run_cell`'s result."""
        t0 = time.time()
        start_log(log_path, argv)
        worker = self._take(start_env)
        status = None
        try:
            with open(log_path, "ab") as log:
                log.write(f"# warm worker pid {worker.proc.pid}, its cell {worker.cells + 1}\n".encode())
            status = worker.run(args, log_path, env)
        finally:
            with self.lock:
                self.busy -= 1
                if status is not None:
                    self.idle.append(worker)
            if status is None:  # died, or the driver failed talking to it: not reused
                worker.stop()
        if status is None:
            status = worker.proc.returncode
            with open(log_path, "ab") as log:
                log.write(f"# warm worker pid {worker.proc.pid} died (exit status {status}); "
                          "a new one takes the next cell\n".encode())
        os.chmod(log_path, 0o644)
        return cell_result(status, t0)

    def close(self) -> None:
        """Stop every idle worker (call when no cell is running)."""
        with self.lock:
            idle, self.idle = self.idle, []
        for worker in idle:
            worker.stop()


if __name__ == "__main__":  # a worker (WarmWorker): argv[1] is the file descriptor of its pipe end
    from multiprocessing.connection import Connection

    serve(Connection(int(sys.argv[1])))
