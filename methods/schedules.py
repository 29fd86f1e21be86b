"""Learning-rate schedules over a run's real length in optimiser steps (issue 22), shared by the
fine-tuned methods (HashNet, DRQ's encoder, DHT's two stages).

Every schedule is a multiplier of the base learning rate as a function of t, the optimiser steps
already taken (the lr of step t is ``base · factor(t)``; t = 0 is the first step), for a run of
T steps:

* warm-up (any schedule), W = ``warmup_steps``: ``(t + 1) / W`` for t < W, then 1 — a linear ramp
  whose first step runs at base/W and whose step W − 1 runs at the base rate;
* ``original``: the method's own schedule ``original(t)`` (its paper's step / exponential decay),
  times the warm-up;
* ``cosine``: 1 during the warm-up, then ``½(1 + cos(π·p))`` with p = (t − W) / (T − W) clipped to
  [0, 1]: from the base rate at t = W down to 0 at t = T;
* ``step``: 1 during the warm-up, then ×``STEP_GAMMA`` (0.1) at each of ``STEP_MILESTONES`` (½ and
  ¾) of the steps after the warm-up: ``0.1^#{m : p ≥ m}``.

T comes from Lightning (:func:`steps_per_epoch` × the epochs the schedule covers).
"""
from __future__ import annotations

import math
from typing import Callable

LR_SCHEDULES = ("original", "cosine", "step")
STEP_MILESTONES = (0.5, 0.75)
STEP_GAMMA = 0.1


def check_schedule(method: str, schedule: str, warmup_steps: int) -> str:
    """``schedule`` if it is one of :data:`LR_SCHEDULES` and ``warmup_steps`` ≥ 0, else ValueError."""
    if schedule not in LR_SCHEDULES:
        raise ValueError(f"{method}: lr_schedule must be one of {', '.join(LR_SCHEDULES)}; got {schedule!r}")
    if int(warmup_steps) < 0:
        raise ValueError(f"{method}: warmup_steps must be >= 0; got {warmup_steps!r}")
    return schedule


def warmup_factor(t: int, warmup_steps: int) -> float:
    """``min(1, (t + 1) / W)`` for W = ``warmup_steps`` > 0; 1 without warm-up."""
    return min(1.0, (t + 1) / warmup_steps) if warmup_steps > 0 else 1.0


def _progress(t: int, total: int, warmup_steps: int) -> float:
    """p = (t − W) / (T − W) clipped to [0, 1] (T − W at least 1)."""
    return min(1.0, max(0.0, (t - warmup_steps) / max(1, total - warmup_steps)))


def cosine_factor(t: int, total: int, warmup_steps: int = 0) -> float:
    """``½(1 + cos(π·p))`` after the warm-up, 1 during it (see the module docstring)."""
    return 0.5 * (1.0 + math.cos(math.pi * _progress(t, total, warmup_steps)))


def step_factor(t: int, total: int, warmup_steps: int = 0) -> float:
    """``STEP_GAMMA^#{m ∈ STEP_MILESTONES : p ≥ m}`` after the warm-up, 1 during it."""
    p = _progress(t, total, warmup_steps)
    return STEP_GAMMA ** sum(p >= m - 1e-12 for m in STEP_MILESTONES)


def lr_factor(schedule: str, t: int, total: int | None, warmup_steps: int = 0,
              original: Callable[[int], float] | None = None) -> float:
    """The multiplier of the base lr at step t under ``schedule`` (module docstring): the warm-up
    times ``original(t)`` (``original``), :func:`cosine_factor` or :func:`step_factor`."""
    warm = warmup_factor(t, warmup_steps)
    if schedule == "original":
        return warm * (1.0 if original is None else float(original(t)))
    if total is None:
        raise ValueError(f"lr_schedule {schedule!r} needs the run's length in steps")
    if schedule == "cosine":
        return warm * cosine_factor(t, total, warmup_steps)
    if schedule == "step":
        return warm * step_factor(t, total, warmup_steps)
    raise ValueError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}; got {schedule!r}")


def steps_per_epoch(trainer) -> float:
    """Optimiser steps per epoch of a fit: Lightning's ``estimated_stepping_batches`` / ``max_epochs``
    (RuntimeError without a Trainer or with an unbounded run)."""
    total = float(trainer.estimated_stepping_batches) if trainer is not None else float("inf")
    epochs = getattr(trainer, "max_epochs", None)
    if not math.isfinite(total) or total <= 0 or not epochs or epochs < 1:
        raise RuntimeError("a schedule over the run's length needs a Trainer with max_epochs and a finite length")
    return total / int(epochs)
