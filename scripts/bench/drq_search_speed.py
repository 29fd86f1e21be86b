"""DRQ search speed on a trained run: lookup-table search vs exhaustive float inner product.

For one DRQ run directory (``hashbench run --method drq ...``) this re-runs the trained
encoder from the run's checkpoint on the run's frozen features to get the *un-quantised* database
features (``codes.npz`` keeps only the query features), checks them against what the run stored
(query features equal, database codes equal), and then times, for every prefix m = 1..M
(m·log2 K bits), top-k by inner product of the 1,000 queries against the whole database:

- ``exhaustive_ip``: faiss ``IndexFlatIP`` on the un-quantised features
  (``benchmark.search.flat.exact_knn(..., metric="ip")``, index build included — a memcpy);
- ``lut``: ``benchmark.search.additive.lut_topk`` (torch: one table ⟨x_q, w_m C_k⟩ per query,
  gathers over the database codes, top-k);
- ``faiss_additive``: ``benchmark.search.additive.FaissAdditiveIndex`` (faiss
  IndexResidualQuantizer with the codebooks and codes injected; build not timed).

Single thread (faiss, torch and BLAS pools limited to 1), one warm-up then best of ``--repeats``.
Reported with each: the speed-up over ``exhaustive_ip`` (ratio of best times), the recall of the
exhaustive top-k (mean |A ∩ E| / k over queries), P@k of the returned ids, and the agreement of
the LUT top-k with the exhaustive top-k over the reconstructions (the LUT must be exact).

Usage: python scripts/bench/drq_search_speed.py RUN_DIR [--data-root DIR] [--repeats 3] [--k 100]
       [--out results/drq-cifar10/search_speed]   (writes OUT.csv and OUT.md)
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
import yaml

from hashbench.benchmark.config import split_config
from hashbench.benchmark.metrics.speed import recall_of_exact_topk
from hashbench.benchmark.runner import load_data
from hashbench.benchmark import data as data_mod
from hashbench.benchmark.search.additive import FaissAdditiveIndex, lut_topk, reconstruct
from hashbench.benchmark.search.flat import exact_knn
from hashbench.benchmark.search.timing import time_call
from hashbench.methods.backbones import build_backbone
from hashbench.methods.drq import DRQ


def recompute_features(run: Path, cfg: dict, data_root: str | None) -> dict[str, np.ndarray]:
    """Un-quantised DRQ features and codes of the run's query and database items, from its
    checkpoint (frozen-feature runs only): ``{query_features, database_features, database_codes}``."""
    req = cfg["request"]
    if not cfg.get("frozen"):
        raise SystemExit("only frozen-feature runs are supported (the encoder input is the cached features)")
    loaded = load_data(req["dataset"], req["protocol"], int(req["split_seed"]), data_root)
    backbone_name, size = cfg["backbone"], cfg["image_size"]
    ref = build_backbone(backbone_name, pretrained=True, image_size=size,
                         in_channels=data_mod.in_channels_of(loaded.data), in_dim=data_mod.in_dim_of(loaded.data))
    feats = data_mod.compute_features(loaded.name, loaded.data, ref)   # cached on disk by the run
    ckpts = sorted((run / "checkpoints").glob("*.ckpt"))
    if len(ckpts) != 1:
        raise SystemExit(f"expected one checkpoint under {run / 'checkpoints'}, found {len(ckpts)}")
    state = torch.load(ckpts[0], map_location="cpu", weights_only=False)["state_dict"]
    _, hparams = split_config(cfg["resolved"])
    model = DRQ(bits=int(req["bits"]), n_classes=loaded.data.labels.shape[1],
                backbone=build_backbone("identity", in_dim=feats.shape[1]),
                class_vectors=state["class_vectors"].numpy(), **hparams)
    model.load_state_dict(state)
    model.eval()
    out = {}
    with torch.inference_mode():
        for part, idx in (("query", loaded.split.query), ("database", loaded.split.database)):
            enc = [model.encode(torch.from_numpy(feats[idx[a:a + 4096]])) for a in range(0, len(idx), 4096)]
            out[f"{part}_features"] = np.concatenate([e["features"].numpy() for e in enc]).astype(np.float32)
            out[f"{part}_codes"] = np.concatenate([e["indices"].numpy() for e in enc])
    return out


def precision_at_k(ids: np.ndarray, q_labels: np.ndarray, db_labels: np.ndarray) -> float:
    """Mean over queries of the fraction of returned ids sharing a label with the query."""
    rel = (np.einsum("qc,qkc->qk", q_labels.astype(np.int32), db_labels[ids].astype(np.int32)) > 0)
    return float(rel.mean())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--data-root", default=os.environ.get("HASHBENCH_DATA"))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--out", type=Path, default=None, help="write OUT.csv and OUT.md")
    args = ap.parse_args()

    cfg = yaml.safe_load((args.run / "config.yaml").read_text())
    with np.load(args.run / "codes.npz") as z:
        stored = {k: z[k] for k in ("query_features", "codebooks", "database_codes", "query_labels", "database_labels")}
    t0 = time.time()
    rec = recompute_features(args.run, cfg, args.data_root)
    q_diff = float(np.abs(rec["query_features"] - stored["query_features"]).max())
    code_agree = float((rec["database_codes"] == stored["database_codes"]).all(1).mean())
    print(f"# {args.run.name}: re-encoded in {time.time() - t0:.1f} s; max |query feature − stored| = {q_diff:.2e}; "
          f"database codes equal to the stored ones for {100 * code_agree:.2f}% of items", flush=True)

    xq, xb = stored["query_features"], rec["database_features"]
    books, codes = stored["codebooks"], stored["database_codes"]
    ql, dl = stored["query_labels"], stored["database_labels"]
    n_steps, n_codes, dim = books.shape
    step_bits = int(np.log2(n_codes))
    k = args.k
    load = os.getloadavg()
    print(f"# {platform.processor() or platform.machine()}, load average {load[0]:.2f}; Q={len(xq)} N={len(xb)} "
          f"D={dim} K={n_codes} M={n_steps}; top-{k}, 1 thread, best of {args.repeats} (+1 warm-up)", flush=True)

    exact_t = time_call(lambda: exact_knn(xq, xb, k, metric="ip"), repeats=args.repeats, threads=1)
    _, exact_ids = exact_knn(xq, xb, k, metric="ip")
    rows = [{"bits": "-", "m": "-", "backend": "exhaustive_ip (faiss IndexFlatIP, float D=%d)" % dim,
             "best_s": exact_t["best_s"], "median_s": exact_t["median_s"], "speedup_vs_exhaustive_ip": 1.0,
             f"recall_of_exact@{k}": 1.0, f"precision@{k}": precision_at_k(exact_ids, ql, dl),
             "equals_exhaustive_over_reconstructions": ""}]
    for m in range(1, n_steps + 1):
        # exact ranking by <x_q, x̂_n>: exhaustive inner product over the reconstructions (checking only)
        recon = reconstruct(books, codes, m)
        rec_s, rec_ids = exact_knn(xq, recon, k, metric="ip")
        faiss_idx = FaissAdditiveIndex(books, codes, metric="ip", m=m)
        backends = {
            "lut (torch lut_topk)": lambda: lut_topk(xq, books, codes, k, m=m, metric="ip"),
            "faiss_additive (IndexResidualQuantizer, injected)": lambda: faiss_idx.search(xq, k),
        }
        for name, fn in backends.items():
            t = time_call(fn, repeats=args.repeats, threads=1)
            scores, ids = fn()
            # ties in the score can reorder equal items: compare the k-th score and the id sets
            same = recall_of_exact_topk(ids, rec_ids)
            kth = float(np.abs(scores[:, -1] - rec_s[:, -1]).max())
            rows.append({"bits": m * step_bits, "m": m, "backend": name, "best_s": t["best_s"],
                         "median_s": t["median_s"], "speedup_vs_exhaustive_ip": exact_t["best_s"] / t["best_s"],
                         f"recall_of_exact@{k}": recall_of_exact_topk(ids, exact_ids),
                         f"precision@{k}": precision_at_k(ids, ql, dl),
                         "equals_exhaustive_over_reconstructions": f"id overlap {same:.4f}, max |k-th score diff| {kth:.1e}"})
            print(f"  m={m} {name}: {t['best_s']:.3f} s", flush=True)
    frame = pd.DataFrame(rows)
    table = frame.to_markdown(index=False, floatfmt=".4g")
    print(table)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(args.out.with_suffix(".csv"), index=False)
        header = (f"Run `{args.run.name}`; {platform.processor() or platform.machine()}, load average "
                  f"{load[0]:.2f} at start; Q={len(xq)} queries, N={len(xb)} database items, D={dim}, K={n_codes}; "
                  f"top-{k} by inner product, 1 thread, best of {args.repeats} after one warm-up. "
                  f"Re-encoded query features vs stored: max abs diff {q_diff:.2e}; database codes equal to the "
                  f"stored ones for {100 * code_agree:.2f}% of items.\n\n")
        args.out.with_suffix(".md").write_text(header + table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
