"""Metric engine: ranking metrics from tie groups (``ranking``), NMI (``nmi``) and hardware-free
speed metrics (``speed``). Pure functions of numpy arrays; imports neither methods nor datasets."""
from hashbench.benchmark.metrics.nmi import nmi_buckets, nmi_kmeans
from hashbench.benchmark.metrics.ranking import (
    DENOMINATORS,
    EMPTY_POLICIES,
    TIE_POLICIES,
    average_precision,
    hamming_tie_groups,
    hit_rate_at_k,
    index_order_groups,
    mean_average_precision,
    precision_at_k,
    precision_recall_by_radius,
    precision_recall_by_rank,
    precision_within_radius,
    recall_at_k,
    score_tie_groups,
)
from hashbench.benchmark.metrics.speed import recall_of_exact_topk, search_speedup_factor

__all__ = [
    "DENOMINATORS", "EMPTY_POLICIES", "TIE_POLICIES",
    "average_precision", "mean_average_precision", "precision_at_k", "recall_at_k", "hit_rate_at_k",
    "precision_recall_by_radius", "precision_recall_by_rank", "precision_within_radius",
    "hamming_tie_groups", "score_tie_groups", "index_order_groups",
    "nmi_kmeans", "nmi_buckets", "search_speedup_factor", "recall_of_exact_topk",
]
