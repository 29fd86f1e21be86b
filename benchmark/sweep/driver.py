"""Running a sweep and reporting where it stands.

:func:`run_sweep` submits every cell without a finished run directory of the same identity in
the sweep's store (so a sweep killed halfway finishes by being run again), records each attempt
in the manifest, and resubmits failed cells up to ``retries`` times. A cell whose identity another
live process is running (its claim is held) is left to that process (state ``busy``).
:func:`sweep_status` reads the store, the claims and the manifest.
"""
from __future__ import annotations

import csv
import os
import time
from pathlib import Path
from typing import Any, Callable

from hashbench.benchmark import resume
from hashbench.paths import portable
from hashbench.benchmark.sweep.executors import Task, make_executor
from hashbench.benchmark.sweep.manifest import Manifest
from hashbench.benchmark.sweep.spec import Cell, Sweep

#: Environment a cell inherits from the driver even on an engine that does not pass it on.
FORWARDED_ENV = ("HASHBENCH_DATA", "HASHBENCH_CACHE", "HASHBENCH_DEBUG")


def _train_seconds(run_dir: Path) -> float | None:
    """The run's measured training seconds (its ``train_seconds`` metric row)."""
    try:
        with open(run_dir / "metrics.csv", newline="") as f:
            return next((float(r["value"]) for r in csv.DictReader(f) if r["metric"] == "train_seconds"), None)
    except (OSError, ValueError):
        return None


def _cell_fields(cell: Cell) -> dict[str, Any]:
    return {"name": cell.name, "method": cell.method, "dataset": cell.dataset, "protocol": cell.protocol,
            "bits": cell.bits, "seed": cell.seed, "split_seed": cell.split_seed, "variant": cell.variant,
            "overrides": cell.overrides, "epochs": cell.epochs}


def run_sweep(sweep: Sweep, executor: str, settings: dict[str, Any] | None = None,
              log: Callable[[str], None] = print) -> dict[str, int]:
    """Run the sweep's unfinished cells on ``executor`` (``settings`` override the file's);
    returns the count of cells per final state."""
    manifest = Manifest(sweep.state_dir)
    settings = {**sweep.executor[executor], **{k: v for k, v in (settings or {}).items() if v is not None}}
    engine = make_executor(executor, settings, sweep.state_dir, sweep.name)  # a missing package fails here
    here = lambda path: portable(str(path), None, None)  # noqa: E731  (the checkout's own paths relative)
    manifest.update_sweep(sweep=sweep.name, file=here(Path(sweep.path).resolve()), out=here(sweep.out),
                          executor=executor, cells_total=len(sweep.cells))
    env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
    t0 = time.time()
    try:
        for round_ in range(sweep.retries + 1):
            finished = resume.finished_runs(sweep.out)
            records = manifest.read().get("cells", {})
            todo = []
            for cell in sweep.cells:
                if cell.identity in finished:
                    if records.get(cell.identity, {}).get("state") != "done":
                        manifest.update_cell(cell.identity, **_cell_fields(cell), state="done",
                                             run_dir=str(finished[cell.identity]))
                elif resume.is_claimed(sweep.out, cell.identity):
                    manifest.update_cell(cell.identity, **_cell_fields(cell), state="busy")
                elif round_ == 0 or records.get(cell.identity, {}).get("state") == "failed":
                    todo.append(cell)
            if not todo:
                break
            log(f"sweep {sweep.name}: {len(todo)} of {len(sweep.cells)} cells to run on {executor}"
                + (f" (retry {round_})" if round_ else ""))
            tasks = []
            for cell in todo:
                attempt = int(records.get(cell.identity, {}).get("attempts", 0)) + 1
                tasks.append(Task(cell.identity, cell.command(sweep.out, sweep.data_root),
                                  sweep.state_dir / "logs" / f"{cell.name}.attempt{attempt}.log", env,
                                  cell.devices, gpu=cell.device == "gpu" or (cell.device == "auto" and executor == "local")))
            submitted = engine.submit(tasks)
            by_key = {c.identity: c for c in todo}
            for sub in submitted:
                manifest.update_cell(sub.task.key, **_cell_fields(by_key[sub.task.key]), state="submitted",
                                     attempts=int(records.get(sub.task.key, {}).get("attempts", 0)) + 1,
                                     submitted=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                     append={"job_ids": sub.job_id, "logs": str(sub.task.log)})
            for sub, result, error in engine.as_completed(submitted):
                _record(manifest, sweep, by_key[sub.task.key], sub, result, error, log)
    finally:
        engine.close()
    counts = summarize(sweep)
    log(f"sweep {sweep.name}: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        + f" ({time.time() - t0:.0f} s wall)")
    return counts


def _record(manifest: Manifest, sweep: Sweep, cell: Cell, sub, result: dict | None, error: str | None,
            log: Callable[[str], None]) -> None:
    """Record one finished attempt: done when its run directory exists, busy when another process
    held the claim, failed otherwise (with the engine's error or the exit status)."""
    run_dir = resume.finished_runs(sweep.out).get(cell.identity)
    fields: dict[str, Any] = {"returncode": None if result is None else result["returncode"], "error": error}
    if result is not None:
        fields.update(seconds=result["seconds"], host=result["host"])
    if run_dir is not None:
        fields.update(state="done", run_dir=str(run_dir), train_seconds=_train_seconds(run_dir))
    elif result is not None and result["returncode"] == resume.BUSY_EXIT:
        fields["state"] = "busy"
    else:
        fields["state"] = "failed"
        if error is None:
            fields["error"] = f"exit status {result['returncode']}"
    manifest.update_cell(cell.identity, **fields)
    log(f"  {fields['state']:<6} {cell.name}  [{sub.job_id}]"
        + (f"  {fields['error']}" if fields["state"] == "failed" else "")
        + (f"  {result['seconds']:.1f} s" if result else ""))


def cell_states(sweep: Sweep) -> list[tuple[Cell, str, dict[str, Any]]]:
    """(cell, state, manifest record) for every cell: ``done`` when its run directory is in the
    store, ``running`` when a live process holds its claim, else the manifest's last word
    (``failed``, ``busy``) or ``pending`` (never run, or submitted and still queued)."""
    finished = resume.finished_runs(sweep.out)
    records = Manifest(sweep.state_dir).read().get("cells", {})
    out = []
    for cell in sweep.cells:
        rec = records.get(cell.identity, {})
        if cell.identity in finished:
            state = "done"
        elif resume.is_claimed(sweep.out, cell.identity):
            state = "running"
        elif rec.get("state") == "failed":
            state = "failed"
        else:
            state = "pending"
        out.append((cell, state, rec))
    return out


def summarize(sweep: Sweep) -> dict[str, int]:
    """Cells per state (done, running, failed, pending)."""
    counts = {"done": 0, "running": 0, "failed": 0, "pending": 0}
    for _, state, _ in cell_states(sweep):
        counts[state] += 1
    return counts


def log_tail(path: str | os.PathLike, lines: int = 8) -> list[str]:
    """The last ``lines`` lines of a log (empty when it does not exist)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            return f.read().decode(errors="replace").splitlines()[-lines:]
    except OSError:
        return []


def sweep_status(sweep: Sweep, tail: int = 8) -> str:
    """The status table: one line per cell (state, attempts, job ids, run directory or log), then
    the tail of each failed cell's last log."""
    rows = cell_states(sweep)
    counts = summarize(sweep)
    lines = [f"sweep {sweep.name} ({sweep.path}): {len(rows)} cells in {sweep.out}: "
             + ", ".join(f"{counts[s]} {s}" for s in counts)]
    for cell, state, rec in rows:
        where = rec.get("run_dir") if state == "done" else (rec.get("logs") or [""])[-1]
        lines.append(f"  {state:<8} {cell.name}  attempts {rec.get('attempts', 0)}  "
                     f"jobs {','.join(rec.get('job_ids', [])) or '-'}  {where or ''}")
    for cell, state, rec in rows:
        if state == "failed":
            lines.append(f"--- {cell.name}: {rec.get('error') or ''}; last lines of {rec['logs'][-1]}:")
            lines += [f"    {ln}" for ln in log_tail(rec["logs"][-1], tail)]
    return "\n".join(lines)
