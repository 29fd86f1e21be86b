"""Per-stage training throughput of run directories (from the ``training`` block of each run's
``config.yaml``, written by the harness's epoch timer): images per second, epochs, and every
method timer's share of the stage's training time (e.g. the Deep Hash Table's flow solver).

    python scripts/training_throughput.py RUN_DIR_OR_PARENT [...]
"""
from __future__ import annotations

import sys
from pathlib import Path

import yaml


def run_dirs(paths: list[str]) -> list[Path]:
    """Every run directory (holding ``config.yaml``) at or directly under the given paths."""
    out = []
    for p in map(Path, paths):
        out += [p] if (p / "config.yaml").exists() else sorted(d for d in p.iterdir() if (d / "config.yaml").exists())
    return out


def main(argv: list[str]) -> int:
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
