"""Search at scale (issue 17): QPS and recall of every search backend on one class-structured
synthetic database of N items, written to ``results/scale/runs/<tag>.csv`` (+ ``.json``).

Data (``make_data``, one seed): C class centres c ~ N(0, I_64); item x = c_y + σ·g, g ~ N(0, I_64),
float32, classes uniform. Codes derived from it, as the methods produce them:
- 64-bit binary: sign(x W), W (64 × 64) Gaussian (a random-projection hash of the embedding);
- additive: 4 residual codebooks × 256 words (faiss ResidualQuantizer, beam 1, trained on
  ≤ 65,536 items) — 32 bits per item;
- sparse (Deep Hash Table): each class owns s of d buckets (disjoint when C·s ≤ d); 90 % of the
  items sit in their class's buckets, 10 % in s random ones; a query's bucket order ranks its
  class's buckets first for 90 % of the queries (scores U(0, 1) + 1 on them);
- cascade (hash tree, L = 2 levels of 32 buckets, 1,024 leaves, s = 1): each class owns one leaf;
  the query's level scores rank its class's parent and child first for 90 % of the queries;
- the 64-d embedding itself is the re-ranking space of the tables and the float references'
  space.
Backends: faiss IndexFlatL2 / IndexHNSWFlat (M 16, efConstruction 40; efSearch swept) /
IndexIVFFlat (nlist ≈ 4√N, power of 2; nprobe swept) on the embedding; the inverted hash table
(:class:`HashTableIndex`, expansion knob k swept, top 100 returned) and its Python loop
(``sparse_loop``, on a subset of queries); IndexBinaryFlat / IndexBinaryMultiHash (4 × 16 bits,
nflip 0..2); the additive LUT scan (torch) and faiss's IndexResidualQuantizer with the same codes.

Per point: build seconds (all threads), memory per item (faiss: serialised index bytes / N;
hash table: its arrays incl. the bucket-major embedding copy), QPS = Q / best wall-clock seconds
at 1 thread and at all threads (best of 3 calls when one call takes < 2 s, else 1), candidates
per query where defined, recall@100 (ann-benchmarks: the fraction of the 100 returned items whose
distance in the backend's own space is ≤ the exact 100-th distance there (+1e-3 for float
distances, exact for Hamming): float backends and hash tables in the embedding, binary in Hamming,
additive in its ADC distance), recall_emb@100 (the same against the embedding's exact top-100, for
every backend) and P@100 (share of the 100 returned items of the query's class). The 1-minute
load average is recorded beside every timing.

Usage: python -m hashbench.tools.search_scale --n 1000000 --classes 1000 --queries 1000 [--skip hnsw]
       python -m hashbench.tools.search_scale --crossover 2000 5000 10000 20000 54000 100000 200000 --buckets 512 --sparsity 1
       python -m hashbench.tools.search_scale --crossover 54000 1000000 --loop-queries 100
       python -m hashbench.tools.search_scale --map-engine --n 1000000 --queries 10000 --classes 100
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import faiss
import numpy as np
import torch
from threadpoolctl import threadpool_limits

from hashbench.benchmark.search import (
    BinaryFlatIndex,
    BinaryHashIndex,
    FaissAdditiveIndex,
    HashTableIndex,
    InvertedHashTable,
    lut_topk,
    reconstruct,
    time_call,
)
from hashbench.benchmark.search.sparse import bucket_order
from hashbench.benchmark.search.sparse_loop import search_loop

TOPK = 100
DIM = 64
ALL = ("flat", "hnsw", "ivf", "hash", "cascade", "binary", "additive", "loop")
COLUMNS = ["n", "classes", "queries", "code", "backend", "knob", "value", "build_s", "bytes_per_item",
           "qps_1t", "qps_all", "threads_all", "load_1t", "load_all", "candidates", "recall", "recall_emb",
           "p_at_100"]


# ----------------------------------------------------------------------------- data
def make_data(n: int, nq: int, n_classes: int, sigma: float, seed: int, chunk: int = 1 << 20) -> dict:
    """Embedding x = c_y + σ·g (float32, written chunk by chunk) for N items and Q queries."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_classes, DIM), dtype=np.float32)
    y = rng.integers(0, n_classes, n)
    x = np.empty((n, DIM), dtype=np.float32)
    for a in range(0, n, chunk):
        b = min(n, a + chunk)
        x[a:b] = centres[y[a:b]] + sigma * rng.standard_normal((b - a, DIM), dtype=np.float32)
    yq = rng.integers(0, n_classes, nq)
    xq = centres[yq] + sigma * rng.standard_normal((nq, DIM), dtype=np.float32)
    return {"x": x, "y": y, "xq": np.ascontiguousarray(xq), "yq": yq, "rng": rng, "classes": n_classes}


def sparse_codes(data: dict, d: int, s: int, noise: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """(item buckets (N, s), query bucket order (Q, d)) with class-owned buckets (module doc)."""
    rng = np.random.default_rng([d, s, data["classes"]])
    c = data["classes"]
    if c * s <= d:
        home = rng.permutation(d)[: c * s].reshape(c, s)
    else:
        home = np.argsort(rng.random((c, d)), axis=1)[:, :s]
    y, n = data["y"], len(data["y"])
    ib = home[y]
    noisy = np.flatnonzero(rng.random(n) < noise)
    ib[noisy] = np.argsort(rng.random((noisy.size, d)), axis=1)[:, :s]
    nq = len(data["yq"])
    scores = rng.random((nq, d))
    hit = rng.random(nq) >= noise
    scores[np.flatnonzero(hit)[:, None], home[data["yq"][hit]]] += 1.0
    return ib, bucket_order(scores)


def cascade_codes(data: dict, d: int = 32, noise: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """(item leaves (N, 1), query leaf order (Q, d²)) of a 2-level hash tree (module doc)."""
    rng = np.random.default_rng([d, 7, data["classes"]])
    c = data["classes"]
    path = rng.integers(0, d, (c, 2))
    y, n = data["y"], len(data["y"])
    leaf = path[y, 0] * d + path[y, 1]
    noisy = np.flatnonzero(rng.random(n) < noise)
    leaf[noisy] = rng.integers(0, d * d, noisy.size)
    nq = len(data["yq"])
    scores = rng.random((nq, 2, d))
    hit = np.flatnonzero(rng.random(nq) >= noise)
    for level in range(2):
        scores[hit, level, path[data["yq"][hit], level]] += 1.0
    return leaf[:, None], bucket_order(scores)


# ----------------------------------------------------------------------------- measuring
def timed(fn, threads: int) -> tuple[float, float]:
    """Best wall-clock seconds of fn at ``threads`` threads (3 calls if one is < 2 s), load."""
    load = os.getloadavg()[0]
    best = time_call(fn, repeats=1, warmup=0, threads=threads)["best_s"]
    if best < 2.0:
        best = min(best, time_call(fn, repeats=2, warmup=0, threads=threads)["best_s"])
    return best, load


def recall_within(dist_returned: np.ndarray, kth_exact: np.ndarray, valid: np.ndarray, slack: float) -> float:
    """ann-benchmarks recall@k: mean over queries of #{returned with distance <= k-th exact + slack} / k."""
    ok = valid & (dist_returned <= kth_exact[:, None] + slack)
    return float(ok.sum(1).mean() / TOPK)


class Bench:
    def __init__(self, args, data):
        self.args, self.data = args, data
        self.rows: list[dict] = []
        self.threads_all = os.cpu_count() or 1
        x, xq = data["x"], data["xq"]
        t0 = time.perf_counter()
        self.gt_d, self.gt_i = faiss.knn(xq, x, TOPK)  # exact top-100 in the embedding
        print(f"ground truth {time.perf_counter() - t0:.1f}s", flush=True)

    def emb_dist(self, ids: np.ndarray) -> np.ndarray:
        x, xq = self.data["x"], self.data["xq"]
        safe = np.maximum(ids, 0)
        diff = x[safe] - xq[:, None, :]
        return np.where(ids >= 0, np.einsum("qkd,qkd->qk", diff, diff), np.inf)

    def quality(self, ids: np.ndarray, own_recall: float | None = None) -> dict:
        ids = ids[:, :TOPK]
        valid = ids >= 0
        rec_emb = recall_within(self.emb_dist(ids), self.gt_d[:, -1], valid, 1e-3)
        y, yq = self.data["y"], self.data["yq"]
        p = float(((y[np.maximum(ids, 0)] == yq[:, None]) & valid).sum(1).mean() / TOPK)
        return {"recall": rec_emb if own_recall is None else own_recall, "recall_emb": rec_emb, "p_at_100": p}

    def point(self, code, backend, knob, value, fn, build_s, nbytes, candidates=None, own_recall=None,
              fn_all=None, n_queries=None):
        """Time fn at 1 thread and fn_all (default fn) at all threads; ids from the 1-thread call."""
        out = {}
        nq = n_queries or len(self.data["xq"])
        t1, l1 = timed(lambda: out.__setitem__("ids", fn()), 1)
        ids = out["ids"]
        ta, la = timed(lambda: out.__setitem__("ids_all", (fn_all or fn)()), self.threads_all)
        q = self.quality(ids, own_recall(ids) if own_recall else None) if n_queries is None else \
            {"recall": np.nan, "recall_emb": np.nan, "p_at_100": np.nan}
        row = {"n": len(self.data["x"]), "classes": self.data["classes"], "queries": nq, "code": code,
               "backend": backend, "knob": knob, "value": value, "build_s": build_s,
               "bytes_per_item": nbytes / len(self.data["x"]), "qps_1t": nq / t1, "qps_all": nq / ta,
               "threads_all": self.threads_all, "load_1t": l1, "load_all": la,
               "candidates": np.nan if candidates is None else float(np.mean(candidates)), **q}
        self.rows.append(row)
        print(f"{code:8s} {backend:22s} {knob}={value!s:6s} qps1={row['qps_1t']:10.1f} "
              f"qps{self.threads_all}={row['qps_all']:10.1f} recall={row['recall']:.3f} "
              f"P@100={row['p_at_100']:.3f} cand={row['candidates']:.0f} load={l1:.1f}", flush=True)
        return ids


def sweep(b: "Bench", values: tuple) -> tuple:
    """The knob values to measure: all of them, or every other one (first and last kept) with
    --short-sweep (for the large N, where each point costs minutes on the shared machine)."""
    if not b.args.short_sweep:
        return values
    return tuple(dict.fromkeys(values[::2] + values[-1:]))


def build(fn):
    """(result, seconds) of a build at all threads."""
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def faiss_bytes(index) -> int:
    return int(faiss.serialize_index(index).nbytes)


# ----------------------------------------------------------------------------- backends
def run_flat(b: Bench):
    x, xq = b.data["x"], b.data["xq"]
    index, bs = build(lambda: _add(faiss.IndexFlatL2(DIM), x))
    b.point("float", "IndexFlatL2", "-", "-", lambda: index.search(xq, TOPK)[1], bs, x.nbytes)


def _add(index, x):
    index.add(x)
    return index


def run_hnsw(b: Bench):
    x, xq = b.data["x"], b.data["xq"]

    def make():
        index = faiss.IndexHNSWFlat(DIM, 16)
        index.hnsw.efConstruction = 40
        index.add(x)
        return index

    index, bs = build(make)
    nbytes = faiss_bytes(index)
    for ef in sweep(b, (16, 32, 64, 128, 256, 512)):
        index.hnsw.efSearch = ef
        b.point("float", "IndexHNSWFlat", "efSearch", ef, lambda: index.search(xq, TOPK)[1], bs, nbytes)


def run_ivf(b: Bench):
    x, xq = b.data["x"], b.data["xq"]
    n = len(x)
    nlist = b.args.nlist or int(2 ** np.round(np.log2(4 * np.sqrt(n))))

    quant = faiss.IndexFlatL2(DIM)  # kept alive here for the index's lifetime

    def make():
        index = faiss.IndexIVFFlat(quant, DIM, nlist)
        index.cp.max_points_per_centroid = 32
        index.cp.niter = 10
        index.train(x[: min(n, 32 * nlist)])
        index.add(x)
        return index

    index, bs = build(make)
    nbytes = faiss_bytes(index)
    for nprobe in sweep(b, (1, 2, 4, 8, 16, 32, 64, 128, 256)):
        if nprobe > nlist:
            break
        index.nprobe = nprobe
        b.point("float", f"IndexIVFFlat(nlist={nlist})", "nprobe", nprobe, lambda: index.search(xq, TOPK)[1], bs, nbytes)


def _hash_points(b: Bench, code: str, name: str, ib: np.ndarray, order: np.ndarray, s: int, loop: bool):
    x, xq = b.data["x"], b.data["xq"]
    index, bs = build(lambda: HashTableIndex(InvertedHashTable.build(ib), x))
    nbytes = index.memory_bytes()
    for k in sweep(b, (100, 300, 1000, 3000, 10000)):
        if k > len(x) // 2:
            break
        res = {}

        def one(threads=1):
            with threadpool_limits(1):  # tiny per-bucket products: one BLAS thread, buckets in parallel
                res["r"] = index.search(order, s, k, xq, threads=threads, topn=TOPK)
            return res["r"].ids

        one()
        b.point(code, name, "k", k, one, bs, nbytes, candidates=res["r"].n_candidates,
                fn_all=lambda: one(b.threads_all))
        if k == TOPK:
            check_ids = res["r"].ids
    if loop and "loop" not in b.args.skip:
        m = min(len(xq), b.args.loop_queries)
        sub = np.arange(m)
        ref = search_loop(index.table, order[sub], s, TOPK, xq[sub], x)
        if not np.array_equal(ref.ids, check_ids[sub]):
            raise AssertionError(f"{name}: the vectorised search differs from the Python loop")
        b.point(code, name + " [Python loop]", "k", TOPK,
                lambda: search_loop(index.table, order[sub], s, TOPK, xq[sub], x).ids, bs, nbytes,
                candidates=ref.n_candidates, n_queries=m)
    index = None  # free it before the next point (the closures above are not called again)
    gc.collect()


def run_hash(b: Bench):
    for d in b.args.buckets:
        for s in b.args.sparsity:
            ib, order = sparse_codes(b.data, d, s)
            _hash_points(b, f"sparse d={d}", f"hash table s={s}", ib, order, s, loop=True)


def run_cascade(b: Bench):
    ib, order = cascade_codes(b.data)
    _hash_points(b, "cascade", "hash tree L=2×32 s=1", ib, order, 1, loop=False)


def run_binary(b: Bench):
    x, xq = b.data["x"], b.data["xq"]
    w = np.random.default_rng(11).standard_normal((DIM, 64)).astype(np.float32)
    bits = np.where(x @ w >= 0, 1, -1).astype(np.int8)
    qbits = np.where(xq @ w >= 0, 1, -1).astype(np.int8)
    flat, bs = build(lambda: BinaryFlatIndex(bits))
    kth = flat.search(qbits, TOPK)[0][:, -1].astype(np.float64)
    packed_db = flat.index if hasattr(flat, "index") else None

    def own(ids):  # Hamming distance of the returned items
        safe = np.maximum(ids, 0)
        ham = (bits[safe] != qbits[:, None, :]).sum(2)
        return recall_within(np.where(ids >= 0, ham, np.inf), kth, ids >= 0, 0.0)

    b.point("binary 64", "IndexBinaryFlat", "-", "-", lambda: flat.search(qbits, TOPK)[1], bs,
            faiss.serialize_index_binary(packed_db).nbytes if packed_db is not None else len(x) * 8, own_recall=own)
    flat = None  # free it
    mh, bs = build(lambda: BinaryHashIndex(bits, b=16, nhash=4))
    nbytes = faiss.serialize_index_binary(mh.index).nbytes
    for nflip in (0, 1, 2):
        out = {}

        def one():
            _, ids, cand = mh.search(qbits, TOPK, nflip=nflip, per_query=False)
            out["cand"] = cand
            return ids

        b.point("binary 64", "IndexBinaryMultiHash(4×16)", "nflip", nflip, one, bs, nbytes, own_recall=own)
        b.rows[-1]["candidates"] = float(out["cand"].mean())
    mh = bits = None  # free them
    gc.collect()


def run_additive(b: Bench):
    x, xq = b.data["x"], b.data["xq"]

    def make():
        rq = faiss.ResidualQuantizer(DIM, 4, 8)
        rq.max_beam_size = 1
        rq.train(x[: min(len(x), 65536)])
        codes = np.empty((len(x), 4), dtype=np.uint8)
        for a in range(0, len(x), 1 << 18):
            codes[a : a + (1 << 18)] = rq.compute_codes(x[a : a + (1 << 18)])
        books = faiss.vector_to_array(rq.codebooks).reshape(4, 256, DIM)
        return books, codes

    (books, codes), train_s = build(make)
    codes = codes.astype(np.int64)
    kth = -lut_topk(xq, books, codes, TOPK, metric="l2")[0][:, -1].astype(np.float64)

    def own(ids):  # ADC distance ||q - x̂||² of the returned items
        rec = reconstruct(books, codes[np.maximum(ids, 0)].reshape(-1, 4)).reshape(ids.shape + (DIM,))
        diff = rec - xq[:, None, :]
        d = np.where(ids >= 0, np.einsum("qkd,qkd->qk", diff, diff), np.inf)
        return recall_within(d, kth, ids >= 0, 1e-3 * np.maximum(kth, 1.0).max())

    b.point("additive 4x8", "LUT scan (torch)", "-", "-", lambda: lut_topk(xq, books, codes, TOPK, metric="l2")[1],
            train_s, books.nbytes + len(x) * 4, own_recall=own)
    fa, bs = build(lambda: FaissAdditiveIndex(books, codes, metric="l2"))
    b.point("additive 4x8", "IndexResidualQuantizer", "-", "-", lambda: fa.search(xq, TOPK)[1],
            train_s + bs, faiss_bytes(fa.index), own_recall=own)
    fa = codes = None  # free them
    gc.collect()


# ----------------------------------------------------------------------------- crossover, metric engine
def run_crossover(args) -> list[dict]:
    """Hash table (k = 100, each of --buckets × --sparsity) against IndexFlatL2 on its own
    embedding and against the Python loop (on --loop-queries queries), 1 thread, per N: wall-clock
    (flat timed before and after the tables, best kept) and process CPU seconds
    (:func:`_cpu_seconds`), the fairer measure on a shared machine."""
    rows = []
    for n in args.crossover:
        data = make_data(n, args.queries, args.classes, args.sigma, args.seed)
        x, xq = data["x"], data["xq"]
        nq = len(xq)
        flat = _add(faiss.IndexFlatL2(DIM), x)
        cpu_f = _cpu_seconds(lambda: flat.search(xq, TOPK))
        best_f, load_f = timed(lambda: flat.search(xq, TOPK), 1)
        n_rows = len(rows)
        for d in args.buckets:
            for s in args.sparsity:
                ib, order = sparse_codes(data, d, s)
                index = HashTableIndex(InvertedHashTable.build(ib), x)
                out = {}

                def hash_fn():
                    out["r"] = index.search(order, s, TOPK, xq)

                best_h, load_h = timed(hash_fn, 1)
                cpu_h = _cpu_seconds(hash_fn)
                m = min(nq, args.loop_queries)
                cpu_loop = _cpu_seconds(lambda: search_loop(index.table, order[:m], s, TOPK, xq[:m], x)) * nq / m
                cand = float(out["r"].n_candidates.mean())
                row = {"n": n, "classes": args.classes, "queries": nq, "buckets": d, "s": s, "candidates": cand,
                       "qps_hash_1t": nq / best_h, "wall_s_hash": best_h,
                       "cpu_qps_hash": nq / cpu_h, "cpu_qps_flat": nq / cpu_f, "cpu_qps_loop": nq / cpu_loop,
                       "cpu_speedup_vs_flat": cpu_f / cpu_h, "cpu_speedup_vs_loop": cpu_loop / cpu_h,
                       "cpu_ns_per_candidate": cpu_h / (nq * cand) * 1e9,
                       "cpu_ns_per_item_flat": cpu_f / (nq * n) * 1e9, "loop_queries": m,
                       "load_hash": load_h}
                rows.append(row)
                print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()),
                      flush=True)
                index = None  # free it before the next point (the closures above are not called again)
                gc.collect()
        t, load = timed(lambda: flat.search(xq, TOPK), 1)
        best_f = min(best_f, t)
        for row in rows[n_rows:]:
            row.update({"qps_flat_1t": nq / best_f, "speedup": best_f / row["wall_s_hash"],
                        "ns_per_candidate": row["wall_s_hash"] / (nq * row["candidates"]) * 1e9,
                        "ns_per_item_flat": best_f / (nq * n) * 1e9, "load_flat": max(load, load_f)})
        flat = data = None  # free them
        gc.collect()
    return rows


def _cpu_seconds(fn) -> float:
    """Process CPU seconds of one call at 1 thread (faiss, BLAS, torch limited): unlike wall-clock
    time it does not grow when other processes share the cores."""
    def timed_cpu():
        t = time.process_time()
        fn()
        out.append(time.process_time() - t)

    out: list[float] = []
    time_call(timed_cpu, repeats=2, warmup=0, threads=1)
    return min(out)


def run_map_engine(args) -> list[dict]:
    """Metric engine timing: Hamming tie groups of 64-bit codes (Q queries × N items), then mAP@all
    and mAP@1000, single-label (C classes) and 21-label multi-hot; time and peak RSS growth."""
    from hashbench.benchmark.metrics import ranking

    rng = np.random.default_rng(args.seed)
    n, nq = args.n, args.queries
    rows = []
    for kind in ("single-label", "multi-hot 21"):
        if kind == "single-label":
            y, yq = rng.integers(0, args.classes, n), rng.integers(0, args.classes, nq)
            centres = np.where(rng.random((args.classes, 64)) < 0.5, 1, -1).astype(np.int8)
            flip = lambda m: (rng.random((m, 64)) < 0.2)  # noqa: E731
            db = np.where(flip(n), -centres[y], centres[y]).astype(np.int8)
            q = np.where(flip(nq), -centres[yq], centres[yq]).astype(np.int8)
        else:
            y = (rng.random((n, 21)) < 0.15).astype(np.uint8)
            yq = (rng.random((nq, 21)) < 0.15).astype(np.uint8)
            db = np.where(rng.random((n, 64)) < 0.5, 1, -1).astype(np.int8)
            q = np.where(rng.random((nq, 64)) < 0.5, 1, -1).astype(np.int8)
        rss0 = peak_rss_gib()
        t0 = time.perf_counter()
        nn, r = ranking.hamming_tie_groups(q, db, yq, y)
        t_groups = time.perf_counter() - t0
        m_all = float(ranking.mean_average_precision(nn, r, k=None))
        t_all = time.perf_counter() - t0
        m_1000 = float(ranking.mean_average_precision(nn, r, k=1000))
        t_1000 = time.perf_counter() - t0 - t_all + t_groups
        row = {"n": n, "queries": nq, "bits": 64, "labels": kind, "tie_groups_s": t_groups, "map_all_s": t_all,
               "map_1000_s": t_1000, "map_all": m_all, "map_1000": m_1000, "peak_rss_gib": peak_rss_gib(),
               "peak_rss_growth_gib": peak_rss_gib() - rss0, "threads": torch.get_num_threads(),
               "load": os.getloadavg()[0]}
        rows.append(row)
        print(row, flush=True)
    return rows


# ----------------------------------------------------------------------------- output
def git_revision() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, check=True).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write_new(path: Path, text: str) -> None:
    """Atomic write of a new file (0644); refuses to overwrite."""
    if path.exists():
        raise FileExistsError(f"{path} exists; results are not overwritten (choose another --tag)")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def peak_rss_gib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=54_000)
    ap.add_argument("--crossover", type=int, nargs="*", default=[],
                    help="instead: hash table (--buckets x --sparsity, k=100) vs IndexFlatL2 and the loop at these N")
    ap.add_argument("--map-engine", action="store_true",
                    help="instead: time the metric engine's mAP@all / mAP@1000 (Q=--queries, N=--n, 64 bits)")
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--sigma", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--buckets", type=int, nargs="+", default=[64, 512])
    ap.add_argument("--sparsity", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--loop-queries", type=int, default=200, help="queries timed with the Python loop")
    ap.add_argument("--skip", nargs="*", default=[], choices=ALL)
    ap.add_argument("--short-sweep", action="store_true", help="every other knob value (see sweep())")
    ap.add_argument("--nlist", type=int, default=None, help="IVF lists (default: 4·sqrt(N) rounded to a power of 2)")
    ap.add_argument("--out", type=Path, default=Path("results/scale/runs"))
    ap.add_argument("--tag", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.time()
    args.git_revision = git_revision()  # of the code that runs (recorded at the start)
    if args.crossover or args.map_engine:
        rows = run_crossover(args) if args.crossover else run_map_engine(args)
        tag = args.tag or ("crossover" if args.crossover else f"map_engine_n{args.n}_q{args.queries}")
        if args.crossover:
            tag = args.tag or f"crossover_d{'-'.join(map(str, args.buckets))}_s{'-'.join(map(str, args.sparsity))}"
        finish(args, tag, rows, list(rows[0]), {}, t0)
        return 0
    tag = args.tag or f"n{args.n}_c{args.classes}_q{args.queries}"
    data = make_data(args.n, args.queries, args.classes, args.sigma, args.seed)
    print(f"data {time.time() - t0:.1f}s", flush=True)
    b = Bench(args, data)
    runners = {"flat": run_flat, "hash": run_hash, "cascade": run_cascade, "binary": run_binary,
               "additive": run_additive, "ivf": run_ivf, "hnsw": run_hnsw}  # slowest build last
    skipped = {}
    for name, fn in runners.items():
        if name in args.skip:
            skipped[name] = "--skip"
            continue
        t = time.time()
        fn(b)
        gc.collect()
        partial = args.out / f"{tag}.partial.csv"  # progress so far, replaced by the final file
        partial.parent.mkdir(parents=True, exist_ok=True)
        import pandas as pd

        pd.DataFrame(b.rows, columns=COLUMNS).to_csv(partial, index=False)
        print(f"== {name} done in {time.time() - t:.0f}s, peak RSS {peak_rss_gib():.2f} GiB", flush=True)
    finish(args, tag, b.rows, COLUMNS, skipped, t0)
    (args.out / f"{tag}.partial.csv").unlink(missing_ok=True)
    return 0


def finish(args, tag: str, rows: list[dict], columns: list[str], skipped: dict, t0: float) -> None:
    import pandas as pd

    table = pd.DataFrame(rows, columns=columns)
    meta = {"git_revision": args.git_revision, "settings": vars(args) | {"out": str(args.out)}, "seed": args.seed,
            "host": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                     "faiss": faiss.__version__, "numpy": np.__version__, "torch": torch.__version__},
            "peak_rss_gib": peak_rss_gib(), "wall_s": time.time() - t0, "skipped": skipped,
            "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    write_new(args.out / f"{tag}.csv", table.to_csv(index=False))
    write_new(args.out / f"{tag}.json", json.dumps(meta, indent=1) + "\n")
    print(f"wrote {args.out / tag}.csv/.json; peak RSS {meta['peak_rss_gib']:.2f} GiB", flush=True)


if __name__ == "__main__":
    sys.exit(main())
