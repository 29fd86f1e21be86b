"""Benchmark (not a test): the tie-group mAP engine vs a DeepHash-pytorch ``CalcTopMap``-style loop.

Random ±1 codes (default 10,000 queries × 50,000 database items, 64 bits, 10 classes, one-hot
labels). Times, best of ``--repeats``:
  * ``hamming_tie_groups`` alone, ``average_precision`` alone, and mAP@all end to end (expected ties);
  * mAP@1000 end to end (expected ties: the hypergeometric path for the group cut at rank 1000);
  * a per-query ``np.argsort`` loop in the style of ``CalcTopMap`` on ``--loop-queries`` queries,
    extrapolated linearly to all queries (marked as such).

    .venv/bin/python scripts/bench/map_engine.py [--device cuda]
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch

from hashbench.benchmark.metrics.ranking import average_precision, hamming_tie_groups


def calc_top_map_loop(db_codes, q_codes, db_labels, q_labels, topk):
    """DeepHash-pytorch ``CalcTopMap``: per query Hamming distances, ``np.argsort``, AP over the
    relevant items in the top k (normalised by those), queries without any add 0."""
    total = 0.0
    for i in range(q_codes.shape[0]):
        gnd = (q_labels[i] @ db_labels.T > 0).astype(np.float32)
        hamm = 0.5 * (q_codes.shape[1] - q_codes[i] @ db_codes.T)
        tgnd = gnd[np.argsort(hamm)][:topk]
        tsum = int(tgnd.sum())
        if tsum:
            total += np.mean(np.linspace(1, tsum, tsum) / (np.nonzero(tgnd)[0] + 1.0))
    return total / q_codes.shape[0]


CPU_SECONDS = {"last": float("nan")}


def best_of(fn, repeats):
    """Best wall-clock time of ``repeats`` calls (and the process CPU time of that call, kept in
    CPU_SECONDS: on a shared machine, CPU seconds / cores estimates the unloaded wall time)."""
    best, out = (float("inf"), 0.0), None
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, (time.perf_counter() - t0, time.process_time() - c0))
    CPU_SECONDS["last"] = best[1]
    return best[0], out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--queries", type=int, default=10_000)
    p.add_argument("--database", type=int, default=50_000)
    p.add_argument("--bits", type=int, default=64)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--loop-queries", type=int, default=200, help="queries timed for the CalcTopMap loop")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    q = np.where(rng.random((args.queries, args.bits)) < 0.5, -1, 1).astype(np.int8)
    db = np.where(rng.random((args.database, args.bits)) < 0.5, -1, 1).astype(np.int8)
    eye = np.eye(args.classes, dtype=np.int8)
    yq, yd = eye[rng.integers(0, args.classes, args.queries)], eye[rng.integers(0, args.classes, args.database)]
    dev = torch.device(args.device)
    tq, tdb, tyq, tyd = (torch.from_numpy(a).to(dev) for a in (q, db, yq, yd))

    rows = []
    t_groups, (n, r) = best_of(lambda: hamming_tie_groups(tq, tdb, tyq, tyd), args.repeats)
    rows.append(("hamming_tie_groups", t_groups, "", "measured", CPU_SECONDS["last"]))
    t_ap, ap = best_of(lambda: average_precision(n, r), args.repeats)
    rows.append(("average_precision @all (expected ties)", t_ap, f"{np.nanmean(ap):.5f}", "measured", CPU_SECONDS["last"]))
    t_all, m_all = best_of(lambda: np.nanmean(average_precision(*hamming_tie_groups(tq, tdb, tyq, tyd))), args.repeats)
    rows.append(("mAP@all end to end (expected ties)", t_all, f"{m_all:.5f}", "measured", CPU_SECONDS["last"]))
    t_1k, m_1k = best_of(lambda: np.nanmean(average_precision(*hamming_tie_groups(tq, tdb, tyq, tyd), k=1000)),
                         args.repeats)
    rows.append(("mAP@1000 end to end (expected ties)", t_1k, f"{m_1k:.5f}", "measured", CPU_SECONDS["last"]))

    sub = min(args.loop_queries, args.queries)
    qf, dbf, yqf, ydf = q[:sub].astype(np.float32), db.astype(np.float32), yq[:sub].astype(np.float32), yd.astype(np.float32)
    t_loop, m_loop = best_of(lambda: calc_top_map_loop(dbf, qf, ydf, yqf, args.database), 1)
    c_loop = CPU_SECONDS["last"]
    rows.append((f"CalcTopMap-style loop @all, {sub} queries", t_loop, f"{m_loop:.5f}", "measured (subset)", c_loop))
    rows.append((f"CalcTopMap-style loop @all, {args.queries} queries", t_loop * args.queries / sub, "",
                 f"extrapolated ×{args.queries / sub:g}", c_loop * args.queries / sub))
    sub_ours = np.nanmean(ap[:sub])
    rows.append((f"ours on the same {sub} queries (expected ties)", float("nan"), f"{sub_ours:.5f}", "for comparison",
                 float("nan")))

    print(f"mAP engine benchmark: Q={args.queries} N={args.database} K={args.bits} C={args.classes} "
          f"device={args.device} torch threads={torch.get_num_threads()} cpu={platform.processor() or platform.machine()}"
          f" cores={os.cpu_count()}; best of {args.repeats}")
    width = max(len(r[0]) for r in rows)
    print(f"{'step':<{width}}  {'wall s':>9}  {'cpu s':>9}  {'mAP':>8}  note")
    for name, t, value, note, cpu in rows:
        ts = "" if np.isnan(t) else f"{t:9.3f}"
        cs = "" if np.isnan(cpu) else f"{cpu:9.3f}"
        print(f"{name:<{width}}  {ts:>9}  {cs:>9}  {value:>8}  {note}")
    print(f"speed-up of mAP@all end to end over the CalcTopMap-style loop: {t_loop * args.queries / sub / t_all:.0f}×")


if __name__ == "__main__":
    main()
