"""How binary HashNet's relaxed codes are: the fraction of |tanh(β·z)| > 0.99 over the database.

For each HashNet run directory: z = ``database_embedding`` of the run's ``codes.npz`` (the
pre-activation fch output of the model the harness evaluated, i.e. the validation-selected
checkpoint), and three values of β:

- ``beta_final``: the last ``beta`` logged in the run's Lightning CSV log (β at the end of training);
- ``beta_ckpt``: the ``beta`` buffer of the selected checkpoint (β when those weights were trained;
  equal to ``beta_final`` when the last epoch was selected);
- ``beta_schedule_end``: :func:`methods.hashnet.continuation_beta` at the run's last iteration
  under its own schedule scale (1 when continuation is off) — a cross-check of ``beta_final``.

Prints one CSV row per run (``frac_final`` = fraction at ``beta_final``, ``frac_ckpt`` at
``beta_ckpt``, ``frac_beta1`` at β = 1) and, with ``--out``, writes them to a CSV file.

Usage: python scripts/experiments/hashnet_saturation.py RUN_DIR... [--label NAME] [--out FILE.csv]
"""
from __future__ import annotations

import argparse
import glob
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from hashbench.methods.hashnet import continuation_beta

THRESHOLD = 0.99


def saturated_fraction(z: np.ndarray, beta: float, threshold: float = THRESHOLD) -> float:
    """Fraction of the entries of z with |tanh(β·z)| > threshold."""
    return float((np.abs(np.tanh(beta * z.astype(np.float64))) > threshold).mean())


def run_row(run: Path) -> dict:
    """The saturation measurements of one HashNet run directory."""
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    with np.load(run / "codes.npz") as z:
        emb = z["database_embedding"]
    log = pd.read_csv(run / "logs" / "metrics.csv")
    betas = log["beta"].dropna()
    beta_final = float(betas.iloc[-1])
    ckpts = sorted(glob.glob(str(run / "checkpoints" / "*.ckpt")))
    beta_ckpt, ckpt_epoch = float("nan"), None
    if ckpts:
        state = torch.load(ckpts[0], map_location="cpu", weights_only=False)
        beta_ckpt, ckpt_epoch = float(state["state_dict"]["beta"]), int(state["epoch"])
    hp = cfg.get("resolved", {})
    steps = int(cfg["training"]["global_step"])
    epochs = int(hp["epochs"])
    if str(hp.get("continuation", True)).lower() in ("false", "0", "no"):
        beta_sched = 1.0
    else:
        scale = hp.get("schedule_scale", 1.0)
        scale = steps / 10_000 if str(scale) == "auto" else float(scale)
        beta_sched = continuation_beta(steps - 1, scale)
    return {
        "run": run.name, "bits": int(cfg["request"]["bits"]), "seed": int(cfg["request"]["seed"]),
        "continuation": hp.get("continuation"), "weighting": hp.get("weighting"),
        "global_step": steps, "epochs": epochs, "selected_epoch": ckpt_epoch,
        "best_val_map": cfg["training"].get("best_score"),
        "beta_final": beta_final, "beta_ckpt": beta_ckpt, "beta_schedule_end": beta_sched,
        "frac_final": saturated_fraction(emb, beta_final), "frac_ckpt": saturated_fraction(emb, beta_ckpt),
        "frac_beta1": saturated_fraction(emb, 1.0), "mean_abs_z": float(np.abs(emb).mean()),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--label", default="", help="a label column for every row (e.g. the variant)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    frame = pd.DataFrame([run_row(r) for r in args.runs])
    frame.insert(0, "label", args.label)
    frame.to_csv(sys.stdout, index=False, float_format="%.4f")
    if args.out:
        frame.to_csv(args.out, index=False, float_format="%.6g")


if __name__ == "__main__":
    main()
