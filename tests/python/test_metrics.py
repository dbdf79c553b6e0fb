"""Metrics against values worked out by hand (the arithmetic is in the comments)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from proactive_recs.evaluation import metrics

# Three queries, lists of length 3 (-1 = empty slot):
#   q0 ranks [0, 1, 2], relevant {0, 2, 3}  -> hits [1, 0, 1], 3 relevant
#   q1 ranks [4, 5, -1], relevant {5}       -> hits [0, 1, 0], 1 relevant
#   q2 ranks [0, 1, 2], relevant {}         -> no relevant target: left out of every mean
RANKED = np.array([[0, 1, 2], [4, 5, -1], [0, 1, 2]])
RELEVANT = sp.csr_matrix(
    (np.ones(4), ([0, 0, 0, 1], [0, 2, 3, 5])),
    shape=(3, 6),
)
HITS = np.array([[1, 0, 1], [0, 1, 0], [0, 0, 0]], dtype=bool)
N_REL = np.array([3, 1, 0])

LOG2_3 = math.log2(3)


def test_hits_matrix_marks_relevant_positions_and_ignores_padding():
    assert (metrics.hits_matrix(RANKED, RELEVANT) == HITS).all()


def test_ndcg_at_3():
    # q0: DCG = 1/log2(2) + 1/log2(4) = 1.5; ideal has min(3, 3) = 3 hits:
    #     1 + 1/log2(3) + 1/2 = 2.1309  -> 1.5 / 2.1309 = 0.70392
    # q1: DCG = 1/log2(3) = 0.63093; ideal has 1 hit: 1 -> 0.63093
    # mean over q0, q1 = (0.70392 + 0.63093) / 2 = 0.66743
    q0 = 1.5 / (1 + 1 / LOG2_3 + 0.5)
    q1 = 1 / LOG2_3
    assert metrics.ndcg_at_k(HITS, N_REL, 3) == pytest.approx((q0 + q1) / 2)
    assert metrics.ndcg_at_k(HITS, N_REL, 3) == pytest.approx(0.66743, abs=1e-5)


def test_ndcg_at_1_uses_min_relevant_k_for_the_ideal():
    # q0: hit at rank 1, ideal = 1 hit -> 1.0; q1: miss at rank 1 -> 0. Mean 0.5.
    assert metrics.ndcg_at_k(HITS, N_REL, 1) == pytest.approx(0.5)


def test_recall_and_precision():
    # recall@3: q0 2/3, q1 1/1 -> (2/3 + 1) / 2 = 0.83333
    assert metrics.recall_at_k(HITS, N_REL, 3) == pytest.approx((2 / 3 + 1) / 2)
    # precision@3: q0 2/3, q1 1/3 (the empty slot counts as a miss) -> 0.5
    assert metrics.precision_at_k(HITS, N_REL, 3) == pytest.approx(0.5)
    # recall@1: q0 1/3, q1 0 -> 1/6; precision@1: q0 1, q1 0 -> 0.5
    assert metrics.recall_at_k(HITS, N_REL, 1) == pytest.approx(1 / 6)
    assert metrics.precision_at_k(HITS, N_REL, 1) == pytest.approx(0.5)


def test_map_at_k():
    # q0: hits at ranks 1 and 3: precision@1 = 1, precision@3 = 2/3;
    #     AP@3 = (1 + 2/3) / min(3, 3) = 0.55556
    # q1: hit at rank 2: precision@2 = 1/2; AP@3 = 0.5 / min(1, 3) = 0.5
    # MAP@3 = (0.55556 + 0.5) / 2 = 0.52778
    assert metrics.map_at_k(HITS, N_REL, 3) == pytest.approx(((1 + 2 / 3) / 3 + 0.5) / 2)
    # AP@1: q0 = 1 / min(3, 1) = 1, q1 = 0 -> 0.5
    assert metrics.map_at_k(HITS, N_REL, 1) == pytest.approx(0.5)


def test_k_longer_than_the_lists_counts_missing_slots_as_misses():
    # precision@5: q0 2/5, q1 1/5 -> 0.3; recall unchanged.
    assert metrics.precision_at_k(HITS, N_REL, 5) == pytest.approx(0.3)
    assert metrics.recall_at_k(HITS, N_REL, 5) == pytest.approx((2 / 3 + 1) / 2)


def test_ranking_metrics_end_to_end_matches_the_parts():
    values = metrics.ranking_metrics(RANKED, RELEVANT, ks=[1, 3])
    assert values[("ndcg", 3)] == pytest.approx(0.66743, abs=1e-5)
    assert values[("recall", 3)] == pytest.approx(5 / 6)
    assert values[("precision", 1)] == pytest.approx(0.5)
    assert values[("map", 3)] == pytest.approx(0.52778, abs=1e-5)


def test_no_query_with_a_relevant_target_gives_nan():
    assert math.isnan(metrics.recall_at_k(HITS[2:], N_REL[2:], 3))


def test_catalog_coverage():
    # Distinct recommended items: {0, 1, 2, 4, 5} = 5 of a catalog of 10 -> 0.5.
    assert metrics.catalog_coverage(RANKED, 10) == pytest.approx(0.5)
    # Top 1 only: {0, 4} -> 0.2
    assert metrics.catalog_coverage(RANKED, 10, k=1) == pytest.approx(0.2)


def test_expected_calibration_error():
    # 10 equal-width bins.
    #   bin 1 holds p = 0.10, 0.15 (outcomes 0, 1): |0.5 - 0.125| = 0.375, share 2/4
    #   bin 8 holds p = 0.80 (outcome 1): |1 - 0.8| = 0.2, share 1/4
    #   bin 9 holds p = 1.00 (outcome 1; 1.0 belongs to the last bin): 0, share 1/4
    # ECE = 0.5 * 0.375 + 0.25 * 0.2 + 0.25 * 0 = 0.2375
    p = [0.10, 0.15, 0.80, 1.00]
    y = [0, 1, 1, 1]
    assert metrics.expected_calibration_error(p, y) == pytest.approx(0.2375)


def test_perfect_calibration_has_zero_ece():
    p = np.array([0.25] * 4 + [0.75] * 4)
    y = np.array([1, 0, 0, 0, 1, 1, 1, 0])
    assert metrics.expected_calibration_error(p, y) == pytest.approx(0.0)


def test_ece_rejects_values_outside_unit_interval():
    with pytest.raises(ValueError):
        metrics.expected_calibration_error([1.5], [1])


def test_calibration_curve_bins_are_the_ones_behind_ece():
    # bin 0: p 0.05, 0.05 with outcomes 0, 1 -> mean 0.05, observed 0.5, n 2
    # bin 9: p 0.95, 1.0 with outcomes 1, 1 -> mean 0.975, observed 1.0, n 2
    prob = [0.05, 0.05, 0.95, 1.0]
    outcome = [0, 1, 1, 1]
    curve = metrics.calibration_curve(prob, outcome)
    assert [(r["bin"], r["n"]) for r in curve] == [(0, 2), (9, 2)]
    assert curve[0]["mean_predicted"] == pytest.approx(0.05)
    assert curve[0]["observed_rate"] == pytest.approx(0.5)
    assert curve[1]["mean_predicted"] == pytest.approx(0.975)
    # ece = 0.5 * |0.5 - 0.05| + 0.5 * |1.0 - 0.975| = 0.225 + 0.0125
    assert metrics.expected_calibration_error(prob, outcome) == pytest.approx(0.2375)
