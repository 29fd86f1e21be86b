"""Average precision of candidate lists (hash-table search returns a candidate set per query,
ranked, rather than a ranking of the whole database)."""
from __future__ import annotations

import numpy as np

DENOMINATORS = ("relevant_retrieved", "all_relevant")


def average_precision_of_lists(offsets: np.ndarray, relevant: np.ndarray, n_relevant: np.ndarray,
                               denominator: str = "relevant_retrieved") -> np.ndarray:
    """AP of each query's ranked candidate list (CSR: query q's 0/1 relevance flags, in rank
    order, are ``relevant[offsets[q]:offsets[q+1]]``).

    ``AP_q = (1/Z_q) Σ_{i: rel_i = 1} P@i`` with P@i the fraction of relevant items among the
    first i candidates. ``relevant_retrieved``: Z_q = number of relevant candidates (the
    DeepHash convention, AP = 0 when none); ``all_relevant``: Z_q = ``n_relevant[q]``, the
    relevant items in the whole database, so relevant items the lookup never reached count as
    retrieved at precision 0 (AP = 0 when the database holds none).
    """
    if denominator not in DENOMINATORS:
        raise ValueError(f"denominator must be one of {DENOMINATORS}, got {denominator!r}")
    offsets = np.asarray(offsets, dtype=np.int64)
    rel = np.asarray(relevant, dtype=np.float64)
    nq = offsets.size - 1
    if rel.size != offsets[-1] or np.shape(n_relevant) != (nq,):
        raise ValueError("relevant must have offsets[-1] entries and n_relevant one per query")
    lengths = np.diff(offsets)
    query_of = np.repeat(np.arange(nq), lengths)
    cum = np.cumsum(rel)
    before = np.concatenate([[0.0], cum])[offsets[:-1]]              # relevant count before each list
    hits = cum - before[query_of]                                    # relevant among the first i
    rank = np.arange(rel.size) - offsets[:-1][query_of] + 1
    terms = np.bincount(query_of, weights=rel * hits / rank, minlength=nq)
    z = np.bincount(query_of, weights=rel, minlength=nq) if denominator == "relevant_retrieved" \
        else np.asarray(n_relevant, dtype=np.float64)
    return np.divide(terms, z, out=np.zeros(nq), where=z > 0)
