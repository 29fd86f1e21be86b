"""Every input check of the metrics package: bad input is a ValueError whose message names the
problem (one row per check), and input one step inside each boundary is accepted. Mutation
testing (results/mutation/NOTES.md) found these checks untested: their conditions could be
weakened (`or` -> `and`) or their messages lost without a failing test."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from hashbench.benchmark.metrics import candidates, dense_groups, nmi, onepass, ranking, speed

PM1 = np.array([[1, -1], [-1, 1], [1, 1]])
Y3 = np.array([0, 1, 0])
N = np.array([[1, 2]])
R = np.array([[1, 0]])

BAD = [
    ("float 1-D labels", lambda: ranking.hamming_tie_groups(PM1, PM1, Y3.astype(float), Y3),
     "1-D labels must be integer class ids"),
    ("3-D labels", lambda: ranking.hamming_tie_groups(PM1, PM1, np.zeros((3, 1, 1), int), Y3),
     "labels must be 1-D class ids or 2-D multi-hot, got shape (3, 1, 1)"),
    ("label widths", lambda: ranking.hamming_tie_groups(PM1, PM1, np.ones((3, 2)), np.ones((3, 3))),
     "label widths differ: 2 vs 3"),
    ("negative multi-hot", lambda: ranking.hamming_tie_groups(PM1, PM1, -np.ones((3, 2)), np.ones((3, 2))),
     "multi-hot labels must be non-negative"),
    ("1-D codes", lambda: ranking.hamming_tie_groups(np.array([1, -1]), PM1, Y3, Y3),
     "q_codes must be 2-D (items × bits), got shape (2,)"),
    ("0 in db codes", lambda: ranking.hamming_tie_groups(PM1, np.array([[1, 0], [1, 1], [1, 1]]), Y3, Y3),
     "db_codes must contain only ±1 (note: sign(0) = 0 is not a valid bit)"),
    ("0 in query codes", lambda: ranking.hamming_tie_groups(np.array([[0, 1]]), PM1, [0], Y3),
     "q_codes must contain only ±1 (note: sign(0) = 0 is not a valid bit)"),
    ("code lengths", lambda: ranking.hamming_tie_groups(PM1, np.ones((3, 3)), Y3, Y3), "code lengths differ: 2 vs 3"),
    ("too few db labels", lambda: ranking.hamming_tie_groups(PM1, PM1, Y3, Y3[:2]),
     "labels and codes disagree on the number of items"),
    ("too few query labels", lambda: ranking.hamming_tie_groups(PM1, PM1, Y3[:2], Y3),
     "labels and codes disagree on the number of items"),
    ("self exclusion length", lambda: ranking.hamming_tie_groups(PM1, PM1, Y3, Y3, self_exclusion=[0, 1]),
     "self_exclusion has 2 entries for 3 queries"),
    ("self exclusion past the end", lambda: ranking.hamming_tie_groups(PM1, PM1, Y3, Y3, self_exclusion=[0, 1, 3]),
     "self_exclusion entries must be −1 or a database index"),
    ("self exclusion below -1", lambda: ranking.hamming_tie_groups(PM1, PM1, Y3, Y3, self_exclusion=[0, -2, 1]),
     "self_exclusion entries must be −1 or a database index"),
    ("score rows", lambda: ranking.score_tie_groups(lambda s, e: np.zeros((1, 3)), Y3, Y3, chunk_size=3),
     "score chunk for queries 0:3 has shape (1, 3)"),
    ("NaN scores", lambda: ranking.score_tie_groups(np.full((3, 3), np.nan), Y3, Y3), "scores contain NaN"),
    ("score columns", lambda: ranking.score_tie_groups(np.zeros((3, 2)), Y3, Y3), "scores have 2 columns for 3 database items"),
    ("index-order columns", lambda: ranking.index_order_groups(np.zeros((3, 2)), Y3, Y3),
     "scores have 2 columns for 3 database items"),
    ("group shapes", lambda: ranking.average_precision(N, np.array([[1]])), "n and r must be 2-D of one shape, got (1, 2) and (1, 1)"),
    ("1-D groups", lambda: ranking.average_precision(np.array([1, 2]), np.array([1, 0])),
     "n and r must be 2-D of one shape, got (2,) and (2,)"),
    ("r > n", lambda: ranking.average_precision(N, np.array([[2, 0]])), "tie groups need 0 ≤ r ≤ n"),
    ("negative n", lambda: ranking.average_precision(np.array([[-1, 2]]), np.array([[0, 0]])),
     "tie groups need 0 ≤ r ≤ n"),
    ("negative r", lambda: ranking.average_precision(N, np.array([[-1, 0]])), "tie groups need 0 ≤ r ≤ n"),
    ("k = 0", lambda: ranking.average_precision(N, R, k=0), "k must be a positive integer or None, got 0"),
    ("k = 1.5", lambda: ranking.average_precision(N, R, k=1.5), "k must be a positive integer or None, got 1.5"),
    ("ties", lambda: ranking.average_precision(N, R, ties="random"),
     "ties must be one of ('expected', 'optimistic', 'pessimistic', 'index'), got 'random'"),
    ("ties at k", lambda: ranking.precision_at_k(N, R, 1, ties="random"),
     "ties must be one of ('expected', 'optimistic', 'pessimistic', 'index'), got 'random'"),
    ("index ties on groups", lambda: ranking.average_precision(N, R, k=2, ties="index"),
     'ties="index" needs singleton groups within the top k: build them with index_order_groups()'),
    ("denominator", lambda: ranking.average_precision(N, R, denominator="all"),
     "denominator must be one of ('relevant_retrieved', 'all_relevant', 'min_k_all_relevant'), got 'all'"),
    ("empty", lambda: ranking.average_precision(N, R, empty="nan"),
     "empty must be one of ('zero', 'skip', 'skip_no_relevant_in_database'), got 'nan'"),
    ("k required", lambda: ranking.precision_at_k(N, R, None), "k is required"),
    ("radius empty", lambda: ranking.precision_within_radius(N, R, empty="nan"),
     'empty must be "zero" or "skip", got \'nan\''),
    ("list denominator", lambda: candidates.average_precision_of_lists([0, 1], [1], [1], denominator="all"),
     "denominator must be one of ('relevant_retrieved', 'all_relevant'), got 'all'"),
    ("list flags", lambda: candidates.average_precision_of_lists([0, 2], [1], [1]),
     "relevant must have offsets[-1] entries and n_relevant one per query"),
    ("list n_relevant", lambda: candidates.average_precision_of_lists([0, 1], [1], [1, 2]),
     "relevant must have offsets[-1] entries and n_relevant one per query"),
    ("nmi labels", lambda: nmi.nmi_kmeans(np.zeros((3, 2)), np.zeros((3, 1, 1))),
     "labels must be (N,) ids or (N, C) one-/multi-hot, got shape (3, 1, 1)"),
    ("nmi rows", lambda: nmi.nmi_kmeans(np.zeros((2, 2)), Y3), "embeddings (2, 2) do not match 3 labels"),
    ("nmi 1-D embeddings", lambda: nmi.nmi_kmeans(np.zeros(3), Y3), "embeddings (3,) do not match 3 labels"),
    ("bucket rows", lambda: nmi.nmi_buckets(np.zeros((2, 1)), Y3), "2 items with buckets but 3 labels"),
    ("SUF database", lambda: speed.search_speedup_factor(0, [1]), "need a positive database size and at least one query"),
    ("SUF queries", lambda: speed.search_speedup_factor(10, []), "need a positive database size and at least one query"),
    ("SUF counts", lambda: speed.search_speedup_factor(10, [1, -1]), "candidate counts must be non-negative"),
    ("recall rows", lambda: speed.recall_of_exact_topk(np.zeros((2, 1)), np.zeros((3, 1))),
     "need (Q, k) id arrays for the same queries, got (2, 1) and (3, 1)"),
    ("recall 1-D", lambda: speed.recall_of_exact_topk(np.zeros(2), np.zeros((2, 1))),
     "need (Q, k) id arrays for the same queries, got (2,) and (2, 1)"),
    ("recall 1-D exact", lambda: speed.recall_of_exact_topk(np.zeros((2, 1)), np.zeros(2)),
     "need (Q, k) id arrays for the same queries, got (2, 1) and (2,)"),
    ("radius curve shapes", lambda: ranking.precision_recall_by_radius(N, np.array([[1]])),
     "n and r must be 2-D of one shape, got (1, 2) and (1, 1)"),
    # dense tie groups (LUT scores, float distances)
    ("dense 1-D scores", lambda: dense_groups.dense_tie_groups(np.zeros(3), Y3, Y3),
     "scores must be 2-D (queries × items), got shape (3,)"),
    ("dense db labels", lambda: dense_groups.dense_tie_groups(np.zeros((3, 2)), Y3, Y3),
     "labels and scores disagree on the number of items"),
    ("dense query labels", lambda: dense_groups.dense_tie_groups(np.zeros((2, 3)), Y3, Y3),
     "labels and scores disagree on the number of items"),
    ("dense signed keys", lambda: dense_groups.dense_tie_groups(
        np.zeros((3, 3)), Y3, Y3, rank_keys=lambda s: np.zeros(s.shape, np.int64)), "rank keys must be uint64 below 2^63"),
    ("dense keys of 2^63", lambda: dense_groups.dense_tie_groups(
        np.zeros((3, 3)), Y3, Y3, rank_keys=lambda s: np.full(s.shape, 1 << 63, np.uint64)),
     "rank keys must be uint64 below 2^63"),
    ("dense NaN scores", lambda: dense_groups.dense_tie_groups(np.full((3, 3), np.nan), Y3, Y3), "scores contain NaN"),
    ("dense negative distances", lambda: dense_groups.dense_tie_groups(
        -np.ones((3, 3)), Y3, Y3, dense_groups.nonnegative_float64_rank_keys), "distances must be non-negative and not NaN"),
    ("dense NaN distances", lambda: dense_groups.nonnegative_float64_rank_keys(np.array([[0.0, np.nan]])),
     "distances must be non-negative and not NaN"),
    ("dense self exclusion", lambda: dense_groups.dense_tie_groups(np.zeros((3, 3)), Y3, Y3, self_exclusion=[0, 1]),
     "self_exclusion has 2 entries for 3 queries"),
    # the one-pass engine
    ("one-pass index ties", lambda: onepass.ranking_table(N, R, None, [{"ties": "index"}], [1]),
     "the one-pass engine takes ties in expected/optimistic/pessimistic, got 'index'"),
    ("one-pass unknown ties", lambda: onepass.ranking_table(N, R, None, [{"ties": "random"}], [1]),
     "the one-pass engine takes ties in expected/optimistic/pessimistic, got 'random'"),
    ("one-pass denominator", lambda: onepass.ranking_table(N, R, None, [{"denominator": "all"}], [1]),
     "unknown mAP variant {'denominator': 'all'}"),
    ("one-pass empty", lambda: onepass.ranking_table(N, R, None, [{"empty": "nan"}], [1]),
     "unknown mAP variant {'empty': 'nan'}"),
    ("one-pass k = 0", lambda: onepass.ranking_table(N, R, None, [{}], [2, 0]), "cut-offs must be positive integers"),
    ("one-pass map_at = 1.5", lambda: onepass.ranking_table(N, R, 1.5, [{}], [1]), "cut-offs must be positive integers"),
    ("one-pass map_at = 0", lambda: onepass.ranking_table(N, R, 0, [{}], [1]), "cut-offs must be positive integers"),
    ("one-pass shapes", lambda: onepass.ranking_table(N, np.array([[1]]), None, [{}], [1]),
     "n and r must be 2-D of one shape, got (1, 2) and (1, 1)"),
    ("one-pass 1-D", lambda: onepass.ranking_table(np.array([1, 2]), np.array([1, 0]), None, [{}], [1]),
     "n and r must be 2-D of one shape, got (2,) and (2,)"),
    ("one-pass r > n", lambda: onepass.ranking_table(N, np.array([[2, 0]]), None, [{}], [1]), "tie groups need 0 ≤ r ≤ n"),
    ("one-pass negative n", lambda: onepass.ranking_table(np.array([[-1, 2]]), np.array([[-1, 0]]), None, [{}], [1]),
     "tie groups need 0 ≤ r ≤ n"),
    ("one-pass negative r", lambda: onepass.ranking_table(N, np.array([[-1, 0]]), None, [{}], [1]),
     "tie groups need 0 ≤ r ≤ n"),
]


@pytest.mark.parametrize("call,message", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_names_the_problem(call, message):
    with pytest.raises(ValueError) as err:
        call()
    assert str(err.value) == message  # the whole message: a changed or lost text fails


def test_input_at_the_boundaries_is_accepted():
    # self exclusion: −1 and the last database index are valid
    n, r = ranking.hamming_tie_groups(PM1, PM1, Y3, Y3, self_exclusion=[-1, 2, 0])
    assert n.sum(1).tolist() == [3, 2, 2]
    # torch codes and labels on the CPU, multi-hot against class ids
    n2, r2 = ranking.hamming_tie_groups(torch.tensor(PM1), torch.tensor(PM1), np.eye(2)[Y3] * 1.0, Y3)
    assert np.array_equal(n2, ranking.hamming_tie_groups(PM1, PM1, Y3, Y3)[0])
    # 1-D query ids against a multi-label database (and the reverse): relevance = shared label
    db_multi = np.array([[1, 1], [0, 1], [0, 0]])  # item 0 in both classes, item 2 in none
    n3, r3 = ranking.hamming_tie_groups(PM1, PM1, Y3, db_multi)
    assert r3.sum(1).tolist() == [1, 2, 1]
    n4, r4 = ranking.hamming_tie_groups(PM1, PM1, db_multi, Y3)
    assert r4.sum(1).tolist() == [3, 1, 0]
    # k = 1 and a whole-number float k, r = n, zero-size groups
    assert ranking.average_precision(N, np.array([[1, 2]]), k=1).tolist() == [1.0]
    assert ranking.average_precision(N, R, k=2.0).tolist() == ranking.average_precision(N, R, k=2).tolist()
    assert ranking.average_precision(np.array([[0, 1]]), np.array([[0, 0]])).tolist() == [0.0]
    # a database of one item, one query: SUF = N / mean candidates
    assert speed.search_speedup_factor(1, [1]) == 1.0
    assert speed.search_speedup_factor(10, [0, 0]) == float("inf")
