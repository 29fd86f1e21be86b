"""Wall-clock timing of search calls, ann-benchmarks style (warm-up, then best of N)."""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable

import faiss
import torch
from threadpoolctl import threadpool_limits


def time_call(fn: Callable[[], Any], repeats: int = 5, warmup: int = 1, threads: int | None = 1) -> dict:
    """Call ``fn()`` ``warmup`` times untimed, then ``repeats`` times timed (time.perf_counter).

    Returns dict(best_s = min, median_s = median, all_s = list of the timed durations in
    seconds, threads). With ``threads`` set, faiss's OpenMP pool, torch's intra-op pool and the
    BLAS/OpenMP pools seen by threadpoolctl are limited to that many threads for the duration of
    the call and restored afterwards; threads=None leaves them alone.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError("repeats must be >= 1 and warmup >= 0")
    if threads is None:
        return _run(fn, repeats, warmup, None)
    if threads < 1:
        raise ValueError("threads must be >= 1 or None")
    faiss_before = faiss.omp_get_max_threads()
    torch_before = torch.get_num_threads()
    try:
        with threadpool_limits(limits=threads):
            faiss.omp_set_num_threads(threads)
            torch.set_num_threads(threads)
            return _run(fn, repeats, warmup, threads)
    finally:
        faiss.omp_set_num_threads(faiss_before)
        torch.set_num_threads(torch_before)


def _run(fn, repeats, warmup, threads):
    for _ in range(warmup):
        fn()
    all_s = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        all_s.append(time.perf_counter() - t0)
    return {"best_s": min(all_s), "median_s": statistics.median(all_s), "all_s": all_s, "threads": threads}


def time_within(fn: Callable[[], Any], budget_s: float, max_repeats: int = 3, warmup: int = 1,
                threads: int | None = 1) -> dict:
    """:func:`time_call` with the repeats bounded by time: ``warmup`` untimed calls, one timed
    call, then more timed calls (up to ``max_repeats`` in all) while the timed calls so far took
    less than ``budget_s`` seconds. Same result dict as :func:`time_call`."""
    if max_repeats < 1 or budget_s < 0:
        raise ValueError("max_repeats must be >= 1 and budget_s >= 0")
    first = time_call(fn, repeats=1, warmup=warmup, threads=threads)
    all_s = list(first["all_s"])
    while len(all_s) < max_repeats and sum(all_s) < budget_s:
        all_s += time_call(fn, repeats=1, warmup=0, threads=threads)["all_s"]
    return {"best_s": min(all_s), "median_s": statistics.median(all_s), "all_s": all_s, "threads": threads}
