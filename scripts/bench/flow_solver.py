"""Benchmark (not a test): exact min-cost-flow class codes, one solve per mini-batch.

1. Single level (Deep Hash Table, §2.4): one ``solve_class_codes`` for n_c × d = 64×64, 128×128,
   512×512 at s = 4, λ = 1, random unaries ~ U(0, 1) (the original's ``ortools_exp`` setting),
   graph building included; median and quartiles of ``--repeats`` solves, next to the original
   code's recorded 0.024 s (64×64) and 1.59 s (512×512) from its ``time_record.csv``.
2. Cascade (§3.4, L = 2, d = 64, s = 4, λ₁ = 100, λ₂ = 1): per-level times of
   ``cascade_class_codes`` for the shipped batch (64 classes) and for 512 classes.
3. The solver's share of one CPU training step: a stage-2 step (forward, flow solve(s), masked
   loss, backward, Adam) of the Deep Hash Table and of the cascade on frozen 1,280-d features with
   the CIFAR-10 config's head (d = 16, 10 classes × 8 images) and the paper's CIFAR-100 batch
   (d = 64, 64 classes × 2), timed with the method's own ``timers["flow_solver"]``.

    python scripts/bench/flow_solver.py [--repeats 20] [--out results/sparse/flow_solver]
"""
from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from hashbench.benchmark.train import EpochTimer
from hashbench.methods.backbones import build_backbone
from hashbench.methods.cascade_dht import CascadeDHT, cascade_class_codes
from hashbench.methods.dht import DeepHashTable
from hashbench.methods.min_cost_flow import solve_class_codes

ORIGINAL_SECONDS = {(64, 64): 0.024, (512, 512): 1.59}


def quartiles(times: list[float]) -> dict[str, float]:
    """Median and inter-quartile range of a list of seconds."""
    q1, med, q3 = np.percentile(times, [25, 50, 75])
    return {"median_s": med, "q1_s": q1, "q3_s": q3, "repeats": len(times)}


def single_level(repeats: int, rng: np.random.Generator) -> pd.DataFrame:
    rows = []
    solve_class_codes(rng.random((8, 8)), 2, 1.0)                  # import and warm-up
    for n_c, d in [(64, 64), (128, 128), (512, 512)]:
        times = []
        for _ in range(repeats):
            u = rng.random((n_c, d))
            t0 = time.perf_counter()
            h = solve_class_codes(u, 4, 1.0)
            times.append(time.perf_counter() - t0)
            assert (h.sum(1) == 4).all()
        row = {"problem": "single level", "n_c": n_c, "d": d, "s": 4, **quartiles(times)}
        orig = ORIGINAL_SECONDS.get((n_c, d))
        row["original_s"] = orig
        row["speedup_vs_original"] = orig / row["median_s"] if orig else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def cascade(repeats: int, rng: np.random.Generator) -> pd.DataFrame:
    import hashbench.methods.cascade_dht as cd

    rows = []
    for n_c in (64, 512):
        per_level: list[list[float]] = [[], []]
        real = cd.solve_class_codes
        for _ in range(repeats):
            u = rng.random((n_c, 2, 64))
            stamps = []

            def timed(*args, **kwargs):
                t0 = time.perf_counter()
                out = real(*args, **kwargs)
                stamps.append(time.perf_counter() - t0)
                return out

            cd.solve_class_codes = timed
            try:
                cascade_class_codes(u, 4, 100.0, 1.0)
            finally:
                cd.solve_class_codes = real
            for level, t in enumerate(stamps):
                per_level[level].append(t)
        for level, times in enumerate(per_level):
            rows.append({"problem": f"cascade level {level + 1}", "n_c": n_c, "d": 64, "s": 1 if level == 0 else 4,
                         **quartiles(times)})
        total = [a + b for a, b in zip(*per_level)]
        rows.append({"problem": "cascade, both levels", "n_c": n_c, "d": 64, "s": 4, **quartiles(total)})
    return pd.DataFrame(rows)


def step_share(steps: int) -> pd.DataFrame:
    """Seconds per stage-2 training step on CPU and the flow solver's share of it."""
    import pytorch_lightning as pl
    from torch.utils.data import DataLoader, TensorDataset

    rows = []
    for label, cls, d, n_classes, per_class, hidden in [
            ("dht, CIFAR-10 config", DeepHashTable, 16, 10, 8, [512]),
            ("dht, CIFAR-100 batch", DeepHashTable, 64, 64, 2, [512]),
            ("cascade-dht (L = 2), CIFAR-10 config", CascadeDHT, 16, 10, 8, [512]),
            ("cascade-dht (L = 2), CIFAR-100 batch", CascadeDHT, 64, 64, 2, [512])]:
        torch.manual_seed(0)
        n = n_classes * per_class * steps
        x = torch.randn(n, 1280)
        y = torch.nn.functional.one_hot(torch.arange(n) % n_classes, n_classes).float()
        m = cls(bits=d, n_classes=n_classes, backbone=build_backbone("identity", in_dim=1280),
                hidden_dims=hidden, sparsity=1 if d == 16 else 4, stage1_fraction=0.5)
        loader = DataLoader(TensorDataset(x, y), batch_size=n_classes * per_class, shuffle=False)
        trainer = pl.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False)
        timer = EpochTimer()
        trainer.callbacks.append(timer)
        trainer.fit(m, loader)
        stage2 = timer.epochs[1]
        rows.append({"batch": label, "d": d, "classes": n_classes, "images_per_class": per_class,
                     "steps": steps, "step_ms": 1000 * stage2["seconds"] / steps,
                     "solver_ms": 1000 * stage2["flow_solver_seconds"] / steps,
                     "solver_share": stage2["flow_solver_seconds"] / stage2["seconds"],
                     "stage1_step_ms": 1000 * timer.epochs[0]["seconds"] / steps})
    return pd.DataFrame(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--out", type=Path, default=None, help="write <out>.md and <out>_*.csv")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    torch.set_num_threads(1)
    header = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch threads 1, "
              f"python {platform.python_version()}")
    tables = {"single": single_level(args.repeats, rng), "cascade": cascade(args.repeats, rng),
              "step": step_share(args.steps)}
    text = [f"# Flow solver benchmark ({header})", ""]
    for name, t in tables.items():
        text += [f"## {name}", "", t.to_markdown(index=False, floatfmt=".4g"), ""]
    print("\n".join(text))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        (args.out.parent / f"{args.out.name}.md").write_text("\n".join(text))
        for name, t in tables.items():
            t.to_csv(args.out.parent / f"{args.out.name}_{name}.csv", index=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
