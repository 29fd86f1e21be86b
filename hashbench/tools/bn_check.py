"""BatchNorm check of issue 22: how good are a fine-tune model's step-0 backbone features in the
training mode each BatchNorm policy gives, against the same features in eval mode?

Data: ``--n`` CIFAR-10 official test images (``--n / 10`` per class, drawn with ``--seed``), the
pretrained EfficientNet-Lite0 at ``--size`` px (224 by default), images prepared by
``prepare_images`` as the harness does. For each policy (``train`` = the behaviour before the
policy existed, ``frozen``, ``frozen_stats``: :meth:`Backbone.set_batchnorm`) the backbone is put in
training mode as Lightning does (``train()`` on the enclosing module) and its features are computed
in batches of ``--batch`` (batch statistics depend on the batch) with stochastic depth (the
backbone's drop-connect, active in training mode) as shipped (``on``) and switched off (``off``);
``eval`` is the eval-mode feature, the frozen-feature protocol's. Each policy starts from a fresh
copy of the pretrained weights (training-mode forwards update running statistics under ``train``).

Metrics, leave-one-out over the n images (each image queries the other n − 1), ranking by cosine
similarity of the features, relevance = same class, ties by expectation:
``map_loo`` = mean over queries of AP@all (denominator: relevant retrieved) and ``p@10`` = mean
precision of the first 10 (``benchmark.metrics.ranking``). ``max_abs_diff_vs_eval`` = the largest
absolute difference between the features and the eval-mode features.

Usage: HASHBENCH_DATA=<data> python -m hashbench.tools.bn_check [--out results/finetune/bn_check.csv]
"""
from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from hashbench import datasets as dataset_registry
from hashbench.benchmark import store
from hashbench.benchmark.metrics.ranking import mean_average_precision, precision_at_k, score_tie_groups
from hashbench.methods.backbones import build_backbone, extract_features, prepare_images

POLICIES = ("train", "frozen", "frozen_stats")


def test_sample(n: int, seed: int, root: str | None) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images (n, 32, 32, 3), 0/1 labels (n, 10)): n/10 official test images per class."""
    data = dataset_registry.get_dataset("cifar10").load(dataset_registry.data_root(root))
    rng = np.random.default_rng(seed)
    test = np.flatnonzero(data.official_split == 1)
    cls = data.class_index()[test]
    idx = np.concatenate([rng.choice(test[cls == c], n // 10, replace=False) for c in range(10)])
    return data.x[idx], data.labels[idx]


def leave_one_out(features: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """``map_loo`` and ``p@10`` of the cosine ranking, each item querying all others."""
    f = F.normalize(torch.from_numpy(features).double(), dim=1)
    n, r = score_tie_groups(f @ f.T, labels, labels, self_exclusion=np.arange(len(f)))
    return {"map_loo": mean_average_precision(n, r), "p@10": float(np.mean(precision_at_k(n, r, 10)))}


def set_stochastic_depth(backbone, on: bool, rate: float) -> None:
    """EfficientNet's drop-connect rate: ``rate`` (the shipped value) when on, 0 when off."""
    net = backbone.body.net
    net._global_params = net._global_params._replace(drop_connect_rate=rate if on else 0.0)


def training_mode_features(backbone, images: np.ndarray, batch: int) -> np.ndarray:
    """Features of ``images`` with ``backbone.train()`` called (as Lightning does), no gradients."""
    backbone.train()
    out = []
    with torch.no_grad():
        for s in range(0, len(images), batch):
            out.append(backbone(prepare_images(images[s:s + batch], backbone.input_spec)).numpy())
    return np.concatenate(out)


def measure(args) -> pd.DataFrame:
    revision = store.git_revision()  # the code that runs, read before anything else
    images, labels = test_sample(args.n, args.seed, args.data_root)
    base = build_backbone("efficientnet-lite0", pretrained=True, image_size=args.size)
    rate = base.body.net._global_params.drop_connect_rate
    torch.manual_seed(args.seed)
    rows = []
    t0, c0 = time.time(), time.process_time()
    eval_feats = extract_features(base, images, batch_size=args.batch)
    rows += [{"policy": "any", "mode": "eval", "stochastic_depth": "n/a", "metric": k, "value": v}
             for k, v in {**leave_one_out(eval_feats, labels), "max_abs_diff_vs_eval": 0.0}.items()]
    for policy in POLICIES:
        for sd in ("on", "off"):
            bb = copy.deepcopy(base)
            bb.set_batchnorm(policy)
            set_stochastic_depth(bb, sd == "on", rate)
            feats = training_mode_features(bb, images, args.batch)
            diff = float(np.abs(feats - eval_feats).max())
            rows += [{"policy": policy, "mode": "train", "stochastic_depth": sd, "metric": k, "value": v}
                     for k, v in {**leave_one_out(feats, labels), "max_abs_diff_vs_eval": diff}.items()]
    frame = pd.DataFrame(rows)
    for k, v in {"n_images": args.n, "image_size": args.size, "batch": args.batch, "seed": args.seed,
                 "drop_connect_rate": rate, "wall_s": round(time.time() - t0, 1),
                 "cpu_s": round(time.process_time() - c0, 1), "threads": torch.get_num_threads(),
                 "git_revision": revision, "timestamp": store.now_stamp()}.items():
        frame[k] = v
    return frame


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--out", type=Path, default=None, help="CSV to write (refuses to overwrite one)")
    args = ap.parse_args()
    if args.out is not None and args.out.exists():
        raise SystemExit(f"{args.out} exists; results are never overwritten (choose another --out)")
    frame = measure(args)
    print(frame.pivot_table(index=["policy", "mode", "stochastic_depth"], columns="metric", values="value",
                            sort=False).round(4).to_string())
    if args.out is not None:
        store.write_csv_atomic(frame, args.out)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
