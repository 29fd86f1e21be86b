"""Training throughput, two ways.

Of run directories (from the ``training`` block of each run's ``config.yaml``, written by the
harness's epoch timer): images per second per stage, epochs, and every method timer's share of
the stage's training time (e.g. the Deep Hash Table's flow solver)::

    python scripts/bench/training_throughput.py RUN_DIR_OR_PARENT [...]

Measured now (``hashbench.benchmark.throughput``): images/s of the bare backbone and of each
method's training step per stage, through the same pipeline and batches, and the overhead ratio
(bare images/s ÷ method images/s); a table on stdout, the rows as CSV with ``--csv``::

    python scripts/bench/training_throughput.py measure --methods bare,hashnet,drq,dht,cascade-dht \
        --size 160 --batch 32 --steps 100 --device cpu [--pipeline per_item] [--precision bf16-mixed]
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import yaml


def run_dirs(paths: list[str]) -> list[Path]:
    """Every run directory (holding ``config.yaml``) at or directly under the given paths."""
    out = []
    for p in map(Path, paths):
        out += [p] if (p / "config.yaml").exists() else sorted(d for d in p.iterdir() if (d / "config.yaml").exists())
    return out


def measure(argv: list[str]) -> int:
    """``measure`` subcommand: see the module docstring."""
    import pandas as pd

    from hashbench.benchmark import throughput as tp
    from hashbench.benchmark.runner import load_data
    from hashbench.benchmark.store import hardware_description

    p = argparse.ArgumentParser(prog="training_throughput.py measure")
    p.add_argument("--methods", default="bare,hashnet,drq,dht,cascade-dht",
                   help="comma list: bare (the backbone alone), method names, loader (the input pipeline alone)")
    p.add_argument("--dataset", default="cifar10")
    p.add_argument("--data-root", default=None)
    p.add_argument("--variant", default="finetune", help="method config variant (default: finetune)")
    p.add_argument("--backbone", default="efficientnet-lite0")
    p.add_argument("--size", type=int, default=160, help="input side (0: the images' own)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=100, help="timed batches per stage (after --warmup)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--device", choices=["auto", "cpu", "gpu"], default="auto")
    p.add_argument("--pipeline", choices=["batched", "per_item"], default="batched")
    p.add_argument("--num-workers", type=int, default=0, help="DataLoader workers (per_item pipeline)")
    p.add_argument("--precision", default="32-true")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--augment", default="crop")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads (on a shared, busy CPU, 1 is many times faster than 2)")
    p.add_argument("--csv", type=Path, default=None, help="also write the rows here")
    a = p.parse_args(argv)
    if a.threads:
        __import__("torch").set_num_threads(a.threads)
    data = load_data(a.dataset, None, 0, a.data_root).data
    setup = tp.Setup(backbone=a.backbone, image_size=a.size or None, batch=a.batch, steps=a.steps + a.warmup,
                     warmup=a.warmup, device=a.device, pipeline=a.pipeline, num_workers=a.num_workers,
                     precision=a.precision, channels_last=a.channels_last, compile=a.compile,
                     augment=False if a.augment in ("false", "none") else a.augment, seed=a.seed)
    load0 = " ".join(f"{x:.2f}" for x in os.getloadavg())
    rows = []
    for m in [m.strip() for m in a.methods.split(",") if m.strip()]:
        rows += [tp.loader_rate(data, setup, a.dataset)] if m == "loader" else \
            tp.measure(m, data, setup, dataset=a.dataset, variant=a.variant if m != "bare" else None)
        print(f"# {rows[-1]}", file=sys.stderr)
    frame = pd.DataFrame(tp.overhead(rows))
    device = "cuda" if a.device != "cpu" and __import__("torch").cuda.is_available() else "cpu"
    meta = {"backbone": f"{a.backbone}@{a.size}", "batch": a.batch, "pipeline": a.pipeline,
            "num_workers": a.num_workers, "threads": __import__("torch").get_num_threads(),
            "precision": a.precision, "channels_last": a.channels_last, "compile": a.compile,
            "hardware": hardware_description(device), "load_start": load0,
            "load_end": " ".join(f"{x:.2f}" for x in os.getloadavg())}
    for k, v in meta.items():
        frame[k] = v
    print(frame.drop(columns=list(meta)).to_markdown(index=False))
    print("  ".join(f"{k}={v}" for k, v in meta.items()))
    if a.csv:
        a.csv.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(a.csv, index=False)
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["measure"]:
        return measure(argv[1:])
    for run in run_dirs(argv):
        cfg = yaml.safe_load((run / "config.yaml").read_text())
        training = cfg.get("training") or {}
        print(f"{run.name}  device={cfg.get('device')}  backbone={cfg.get('backbone')}@{cfg.get('image_size')}")
        for stage, agg in (training.get("throughput") or {}).items():
            extras = "  ".join(f"{k}={v}" for k, v in agg.items() if k.endswith(("_share", "_seconds")) and k != "seconds")
            print(f"  stage {stage}: {agg['epochs']} epochs, {agg['samples']} images, {agg['seconds']:.2f} s, "
                  f"{agg['images_per_second']:.1f} img/s  {extras}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
