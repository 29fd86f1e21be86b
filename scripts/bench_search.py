"""Wall-clock comparison of the search backends on synthetic data (CPU).

Additive codes: 54,000 items, 1,000 queries, D = 512, K = 256, prefixes M = 1..4, top-100 by
inner product: LUT scorer (torch) vs faiss IndexResidualQuantizer with injected codebooks vs faiss
IndexFlatIP on the raw float features. Binary: 64-bit codes (sign of a random projection of
clustered features), IndexBinaryFlat vs IndexBinaryHash (b = 16) at nflip 0/1/2, with mean
candidates per query and tie-tolerant recall@k against the exact scan.

Times are best-of-`--repeats` after one warm-up, at 1 and 2 threads (ann-benchmarks protocol).
Usage: python scripts/bench_search.py [--repeats 3] [--threads 1 2]
"""

from __future__ import annotations

import argparse
import platform

import faiss
import numpy as np

from hashbench.benchmark.search import (
    BinaryFlatIndex,
    BinaryHashIndex,
    FaissAdditiveIndex,
    lut_topk,
    time_call,
)

N, Q, D, K_CODE, M_MAX, TOPK = 54_000, 1_000, 512, 256, 4, 100


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)

    print(f"# {platform.processor() or platform.machine()}, faiss {faiss.__version__}, "
          f"N={N} Q={Q} D={D} K={K_CODE} top-{TOPK}, best of {args.repeats} (+1 warm-up)")

    # ---------------- additive codes vs float
    centres = rng.standard_normal((10, D)).astype(np.float32)
    xb = (centres[rng.integers(0, 10, N)] + rng.standard_normal((N, D))).astype(np.float32)
    xq = (centres[rng.integers(0, 10, Q)] + rng.standard_normal((Q, D))).astype(np.float32)
    C = rng.standard_normal((K_CODE, D)).astype(np.float32)
    w = 0.6 ** np.arange(M_MAX, dtype=np.float32)
    codebooks = w[:, None, None] * C[None]  # DRQ form: one codebook scaled per step
    codes = rng.integers(0, K_CODE, (N, M_MAX))

    flat_ip = faiss.IndexFlatIP(D)
    flat_ip.add(xb)
    faiss_idx = {m: FaissAdditiveIndex(codebooks, codes, metric="ip", m=m) for m in range(1, M_MAX + 1)}

    rows = []
    for t in args.threads:
        r = time_call(lambda: flat_ip.search(xq, TOPK), repeats=args.repeats, threads=t)
        rows.append(("IndexFlatIP (float, D=512)", "-", t, r["best_s"]))
        for m in range(1, M_MAX + 1):
            r = time_call(lambda: lut_topk(xq, codebooks, codes, TOPK, m=m), repeats=args.repeats, threads=t)
            rows.append(("LUT scorer (torch)", m, t, r["best_s"]))
            r = time_call(lambda: faiss_idx[m].search(xq, TOPK), repeats=args.repeats, threads=t)
            rows.append(("faiss IndexResidualQuantizer", m, t, r["best_s"]))
    print("\n## additive codes (inner product, top-%d)\n" % TOPK)
    print(f"| backend | M | threads | best s / {Q} queries | ms / query |")
    print("|---|---|---|---|---|")
    for name, m, t, s in rows:
        print(f"| {name} | {m} | {t} | {s:.3f} | {1000 * s / Q:.3f} |")

    # ---------------- binary 64-bit codes
    proj = rng.standard_normal((D, 64)).astype(np.float32)
    db_codes = np.where(xb @ proj > 0, 1, -1).astype(np.int8)
    q_codes = np.where(xq @ proj > 0, 1, -1).astype(np.int8)
    k = 10
    flat = BinaryFlatIndex(db_codes)
    hidx = BinaryHashIndex(db_codes, b=16)
    exact_d, _ = flat.search(q_codes, k)
    rows = []
    for t in args.threads:
        r = time_call(lambda: flat.search(q_codes, k), repeats=args.repeats, threads=t)
        rows.append(("IndexBinaryFlat", "-", t, r["best_s"], float(N), 1.0))
        for nflip in (0, 1, 2):
            dist, _, n_cand = hidx.search(q_codes, k, nflip=nflip)
            # tie-tolerant recall: returned items within the true k-th distance
            recall = float(np.mean(dist <= exact_d[:, -1:]))
            r = time_call(lambda: hidx.search(q_codes, k, nflip=nflip, per_query=False), repeats=args.repeats, threads=t)
            rows.append(("IndexBinaryHash b=16", nflip, t, r["best_s"], float(n_cand.mean()), recall))
    print(f"\n## binary 64-bit codes (Hamming, top-{k})\n")
    print(f"| backend | nflip | threads | best s / {Q} queries | speed-up vs flat | mean candidates | recall@{k} |")
    print("|---|---|---|---|---|---|---|")
    flat_s = {t: s for name, _, t, s, _, _ in rows if name == "IndexBinaryFlat"}
    for name, nflip, t, s, nc, rec in rows:
        print(f"| {name} | {nflip} | {t} | {s:.4f} | {flat_s[t] / s:.1f}x | {nc:.0f} | {rec:.3f} |")


if __name__ == "__main__":
    main()
