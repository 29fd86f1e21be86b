"""Evaluation benchmark: ``benchmark.evaluate.evaluate`` (no speed rows) with the reference engine
and the one-pass engine, in the same process, against one faiss ``IndexFlatL2`` top-100 search on
the same data (the physical reference), on synthetic class-structured data at the common protocol
sizes. Every metric value of the two engines is compared (the largest absolute difference is
written on the row).

Data (seeded): C class centres in 512-d, N(0, 1); an item's features are the sum of the centres of
its labels plus N(0, 1.5²) noise (single-label: one class; ``nuswide``: 1–3 of 21 labels). Codes:
``binary64`` = sign of a Gaussian projection to 64 bits; ``additiveMx256`` = greedy residual
quantisation of the features (faiss ResidualQuantizer, M steps of 256 words, beam 1; ip search);
``floatD`` = a Gaussian projection of the features to D dimensions. The reference search runs on
the features for binary/additive and on the D-d embedding for float (what the ranking is over).

    .venv/bin/python scripts/bench/evaluation.py --sizes cifar10 --out results/evaluation
    .venv/bin/python scripts/bench/evaluation.py --sizes nuswide,imagenet100 --reference-queries 200

``--reference-queries q`` runs the reference engine on the first q queries only (the row says so,
and its time is the measured time of those q queries, never scaled); the one-pass engine always
runs on every query, and equality is checked on the queries both ran.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import faiss
import numpy as np
import pandas as pd
import torch

from hashbench.benchmark import store
from hashbench.benchmark.evaluate import EvalInputs, evaluate

SIZES = {  # name: (queries, database, classes, multi-label, mAP cut-offs)
    "cifar10": (1000, 54000, 10, False, (None,)),
    "nuswide": (2100, 193734, 21, True, (5000,)),
    "imagenet100": (5000, 128495, 100, False, (1000, None)),
}
CODES = ("binary64", "additive4x256", "additive8x256", "float512", "float2048")
FEATURE_DIM = 512


def synthetic(size: str, seed: int):
    """(query features, database features, query labels, database labels), float32 / int multi-hot."""
    n_q, n_db, c, multi, _ = SIZES[size]
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((c, FEATURE_DIM)).astype(np.float32)

    def labels(n):
        y = np.zeros((n, c), dtype=np.int64)
        if multi:
            for i, k in enumerate(rng.integers(1, 4, n)):
                y[i, rng.choice(c, k, replace=False)] = 1
        else:
            y[np.arange(n), rng.integers(0, c, n)] = 1
        return y

    yq, ydb = labels(n_q), labels(n_db)
    feats = lambda y: (y.astype(np.float32) @ centres + 1.5 * rng.standard_normal((len(y), FEATURE_DIM)).astype(np.float32))  # noqa: E731
    return feats(yq), feats(ydb), yq, ydb


def residual_codes(xdb: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Residual quantisation (faiss ``ResidualQuantizer``, beam 1, trained on ≤ 20,000 items):
    codebooks (m, 256, D), codes (N, m)."""
    rq = faiss.ResidualQuantizer(xdb.shape[1], m, 8)
    rq.max_beam_size = 1
    rq.train(np.ascontiguousarray(xdb[:20000]))
    codes = rq.compute_codes(np.ascontiguousarray(xdb)).astype(np.int64)  # one byte per step
    return faiss.vector_to_array(rq.codebooks).reshape(m, 256, xdb.shape[1]), codes


def inputs_for(code: str, xq, xdb, yq, ydb, seed: int) -> tuple[EvalInputs, np.ndarray, np.ndarray, int]:
    """(EvalInputs, reference queries, reference database, bits) of one code type on the data."""
    rng = np.random.default_rng(seed + 1)
    common = dict(query_labels=yq, database_labels=ydb, query_embedding=xq, database_embedding=xdb)
    if code == "binary64":
        w = rng.standard_normal((FEATURE_DIM, 64)).astype(np.float32)
        bq, bdb = (np.where(x @ w >= 0, 1, -1).astype(np.int8) for x in (xq, xdb))
        return EvalInputs("binary", {"bits": bq}, {"bits": bdb}, **common), xq, xdb, 64
    if code.startswith("additive"):
        m = int(code[len("additive"):].split("x")[0])
        books, codes = residual_codes(xdb, m)
        return (EvalInputs("additive", {"features": xq}, {"indices": codes}, code_state={"codebooks": books},
                           search_metric="ip", **common), xq, xdb, 8 * m)
    dim = int(code[len("float"):])
    w = (rng.standard_normal((FEATURE_DIM, dim)) / np.sqrt(FEATURE_DIM)).astype(np.float32)
    eq, edb = xq @ w, xdb @ w
    inp = EvalInputs("float", {"embedding": eq}, {"embedding": edb}, query_labels=yq, database_labels=ydb,
                     query_embedding=eq, database_embedding=edb)
    return inp, eq, edb, dim


def timed(fn):
    """(result, wall seconds, process CPU seconds) of fn()."""
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def faiss_top100(q: np.ndarray, db: np.ndarray) -> tuple[float, float]:
    """(wall, CPU) seconds of one IndexFlatL2 top-100 search (index built outside the timing)."""
    index = faiss.IndexFlatL2(db.shape[1])
    index.add(np.ascontiguousarray(db, dtype=np.float32))
    _, wall, cpu = timed(lambda: index.search(np.ascontiguousarray(q, dtype=np.float32), 100))
    return wall, cpu


def subset(inp: EvalInputs, q: int) -> EvalInputs:
    """The first q queries of ``inp``."""
    cut = lambda d: {k: v[:q] for k, v in d.items()}  # noqa: E731
    return EvalInputs(inp.code_type, cut(inp.query), inp.database, inp.query_labels[:q], inp.database_labels,
                      inp.query_embedding[:q], inp.database_embedding, code_state=inp.code_state,
                      search_metric=inp.search_metric)


def max_difference(a, b) -> float:
    """Largest |difference| between the metric rows and per-query arrays of two EvalResults (NaN = NaN)."""
    va, vb = np.array([r[3] for r in a.rows]), np.array([r[3] for r in b.rows])
    if [r[:3] for r in a.rows] != [r[:3] for r in b.rows]:
        return float("inf")
    diffs = [np.abs(np.nan_to_num(va - vb))]
    diffs += [np.abs(np.nan_to_num(a.per_query[k] - b.per_query[k])) for k in a.per_query]
    same_nan = np.array_equal(np.isnan(va), np.isnan(vb))
    return float(max(d.max() for d in diffs)) if same_nan else float("inf")


def one_cell(size: str, code: str, data, seed: int, ref_q: int | None) -> list[dict]:
    xq, xdb, yq, ydb = data
    inp, rq, rdb, bits = inputs_for(code, xq, xdb, yq, ydb, seed)
    f_wall, f_cpu = faiss_top100(rq, rdb)
    rows = []
    for map_at in SIZES[size][4]:
        run = lambda i, e: evaluate(i, bits, map_at, yq.shape[1], seed, speed=False, engine=e)  # noqa: E731
        new, n_wall, n_cpu = timed(lambda: run(inp, "onepass"))
        q_ref = len(yq) if ref_q is None else min(ref_q, len(yq))
        small = inp if q_ref == len(yq) else subset(inp, q_ref)
        old, o_wall, o_cpu = timed(lambda: run(small, "reference"))
        new_small = new if q_ref == len(yq) else run(small, "onepass")
        rows.append(dict(size=size, queries=len(yq), database=len(ydb), code=code, map_at=map_at or "all",
                         faiss_top100_s=f_wall, faiss_top100_cpu_s=f_cpu, onepass_s=n_wall, onepass_cpu_s=n_cpu,
                         onepass_over_faiss=n_wall / f_wall, reference_queries=q_ref, reference_s=o_wall,
                         reference_cpu_s=o_cpu, reference_over_faiss=(o_wall / f_wall) if q_ref == len(yq) else np.nan,
                         max_abs_difference=max_difference(old, new_small), loadavg=os.getloadavg()[0]))
        print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in rows[-1].items()}, flush=True)
    return rows


def drq_cell(data, seed: int) -> list[dict]:
    """A DRQ-like cell at CIFAR-10 size: additive 4 × 256 evaluated at the four prefixes 1..4
    (8/16/24/32 bits) on one EvalInputs, as the runner does; both engines without speed rows, and
    the one-pass engine with speed rows (reference features = the 512-d features)."""
    xq, xdb, yq, ydb = data
    inp, rq, rdb, _ = inputs_for("additive4x256", xq, xdb, yq, ydb, seed)
    f_wall, f_cpu = faiss_top100(rq, rdb)
    rows = []
    for engine, speed in (("onepass", False), ("reference", False), ("onepass", True)):
        inp.memo.clear()
        inp.query_features, inp.database_features = (xq, xdb) if speed else (None, None)
        run = lambda: [evaluate(inp, 8 * m, None, yq.shape[1], seed, prefix=m, speed=speed, engine=engine)  # noqa: E731
                       for m in (1, 2, 3, 4)]
        _, wall, cpu = timed(run)
        rows.append(dict(size="cifar10", queries=len(yq), database=len(ydb), code="additive4x256 prefixes 1-4",
                         map_at="all", engine=engine, speed_rows=speed, seconds=wall, cpu_seconds=cpu,
                         faiss_top100_s=f_wall, over_faiss=wall / f_wall, loadavg=os.getloadavg()[0]))
        print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in rows[-1].items()}, flush=True)
    return rows


def write(rows: list[dict], out: Path, name: str, seed: int) -> None:
    df = pd.DataFrame(rows)
    df["git_revision"] = store.git_revision()
    df["seed"] = seed
    df["threads"] = torch.get_num_threads()
    df["hardware"] = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}_{store.now_stamp().replace(':', '')}.csv"
    store.write_csv_atomic(df, path)
    print(f"wrote {path}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="cifar10")
    ap.add_argument("--codes", default=",".join(CODES))
    ap.add_argument("--reference-queries", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("results/evaluation"))
    ap.add_argument("--drq-cell", action="store_true", help="time the four prefixes of an additive 4x256 cell instead")
    args = ap.parse_args(argv)
    if args.drq_cell:
        write(drq_cell(synthetic("cifar10", args.seed), args.seed), args.out, "drq_cell_cifar10", args.seed)
        return 0
    rows = []
    for size in args.sizes.split(","):
        data = synthetic(size, args.seed)
        for code in args.codes.split(","):
            rows += one_cell(size, code, data, args.seed, args.reference_queries)
    write(rows, args.out, "evaluation_" + args.sizes.replace(",", "+"), args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
