"""Ranking and calibration metrics, as defined in docs/evaluation.md.

Conventions shared by every ranking metric here:

* a query is one ranked list (a user's items, or an item's users) plus the set of its
  relevant targets;
* gains are binary; ranks are 1-based; lists may be shorter than ``k`` or padded
  with -1 (a missing slot is a miss);
* the value is the mean over queries with at least one relevant target (queries with
  none carry no information about ranking quality and are left out).

The low-level functions take a boolean ``hits`` matrix (query x rank position) and the
number of relevant targets per query, so they are exact and easy to check by hand;
:func:`hits_matrix` builds ``hits`` from ranked ids and a relevance matrix.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = [
    "average_precision_at_k",
    "calibration_curve",
    "catalog_coverage",
    "expected_calibration_error",
    "hits_matrix",
    "map_at_k",
    "ndcg_at_k",
    "ndcg_per_query",
    "precision_at_k",
    "ranking_metrics",
    "recall_at_k",
    "recall_per_query",
]

# The one choice of cutoffs that "better" means everywhere a model is picked on a validation
# window (MF tuning; the same pair the evaluation reports): user -> item ndcg@10 plus
# item -> user recall@100, because one set of factors serves both directions.
OBJECTIVE_K_ITEMS = 10
OBJECTIVE_K_USERS = 100


def hits_matrix(ranked: np.ndarray, relevant: sp.spmatrix) -> np.ndarray:
    """``hits[q, j]`` = the j-th ranked target of query q is relevant to q.

    ``ranked`` is (n_queries, L) of target indices (-1 = empty slot); ``relevant`` is a
    sparse (n_queries, n_targets) matrix whose stored non-zero entries are the relevant
    pairs.
    """
    ranked = np.asarray(ranked, dtype=np.int64)
    rel = sp.csr_matrix(relevant)
    rel.eliminate_zeros()
    n_q, n_t = rel.shape
    if ranked.shape[0] != n_q:
        raise ValueError("ranked and relevant must have one row per query")
    # Encode (query, target) pairs as one int so membership is a single sorted search.
    rel_rows = np.repeat(np.arange(n_q, dtype=np.int64), np.diff(rel.indptr))
    rel_codes = np.sort(rel_rows * n_t + rel.indices)
    valid = ranked >= 0
    codes = np.arange(n_q, dtype=np.int64)[:, None] * n_t + np.where(valid, ranked, 0)
    pos = np.searchsorted(rel_codes, codes)
    found = np.take(rel_codes, np.minimum(pos, max(len(rel_codes) - 1, 0))) == codes
    return found & valid if len(rel_codes) else np.zeros_like(valid)


def _prepare(hits, n_relevant, k):
    hits = np.asarray(hits, dtype=bool)
    n_rel = np.asarray(n_relevant, dtype=np.float64)
    if hits.shape[0] != n_rel.shape[0]:
        raise ValueError("hits and n_relevant must have one entry per query")
    if k <= 0:
        raise ValueError("k must be positive")
    h = np.zeros((hits.shape[0], k), dtype=bool)
    width = min(k, hits.shape[1])
    h[:, :width] = hits[:, :width]
    return h, n_rel, n_rel > 0


def _mean(values: np.ndarray, keep: np.ndarray) -> float:
    return float(values[keep].mean()) if keep.any() else float("nan")


def ndcg_per_query(hits, n_relevant, k: int) -> np.ndarray:
    """Per-query DCG@k / ideal DCG@k with binary gains and ``1 / log2(rank + 1)``
    discounts; the ideal list has ``min(n_relevant, k)`` hits at the top (NaN for a query
    without a relevant target)."""
    h, n_rel, _ = _prepare(hits, n_relevant, k)
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = h @ discount
    ideal_cum = np.concatenate([[0.0], np.cumsum(discount)])
    idcg = ideal_cum[np.minimum(n_rel, k).astype(int)]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_rel > 0, dcg / idcg, np.nan)


def ndcg_at_k(hits, n_relevant, k: int) -> float:
    """Mean of :func:`ndcg_per_query` over queries with a relevant target."""
    _, _, keep = _prepare(hits, n_relevant, k)
    return _mean(ndcg_per_query(hits, n_relevant, k), keep)


def recall_per_query(hits, n_relevant, k: int) -> np.ndarray:
    """Per-query hits in the top k / number of relevant targets (NaN without one)."""
    h, n_rel, _ = _prepare(hits, n_relevant, k)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_rel > 0, h.sum(axis=1) / n_rel, np.nan)


def recall_at_k(hits, n_relevant, k: int) -> float:
    """Mean of :func:`recall_per_query` over queries with a relevant target."""
    _, _, keep = _prepare(hits, n_relevant, k)
    return _mean(recall_per_query(hits, n_relevant, k), keep)


def precision_at_k(hits, n_relevant, k: int) -> float:
    """Hits in the top k / k (short lists are not rewarded for being short)."""
    h, _, keep = _prepare(hits, n_relevant, k)
    return _mean(h.sum(axis=1) / k, keep)


def average_precision_at_k(hits, n_relevant, k: int) -> np.ndarray:
    """Per-query AP@k: sum over hit ranks r <= k of precision@r, / min(n_relevant, k)."""
    h, n_rel, _ = _prepare(hits, n_relevant, k)
    prec = np.cumsum(h, axis=1) / np.arange(1, k + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (prec * h).sum(axis=1) / np.minimum(n_rel, k)


def map_at_k(hits, n_relevant, k: int) -> float:
    """Mean of :func:`average_precision_at_k` over queries with a relevant target."""
    _, _, keep = _prepare(hits, n_relevant, k)
    return _mean(average_precision_at_k(hits, n_relevant, k), keep)


def catalog_coverage(ranked: np.ndarray, catalog_size: int, k: int | None = None) -> float:
    """Distinct targets appearing in the top k of any list / catalog size."""
    ranked = np.asarray(ranked)
    if k is not None:
        ranked = ranked[:, :k]
    if catalog_size <= 0:
        return float("nan")
    return float(np.unique(ranked[ranked >= 0]).size / catalog_size)


def _calibration_bins(prob, outcome, n_bins: int, weight=None):
    """Per equal-width bin: (weighted) count, sum of probabilities, sum of outcomes (last
    bin closed)."""
    p = np.asarray(prob, dtype=np.float64)
    y = np.asarray(outcome, dtype=np.float64)
    if p.shape != y.shape:
        raise ValueError("prob and outcome must have the same shape")
    if np.any((p < 0) | (p > 1)):
        raise ValueError("probabilities must lie in [0, 1]")
    w = np.ones_like(p) if weight is None else np.asarray(weight, dtype=np.float64)
    bins = np.minimum((p * n_bins).astype(int), n_bins - 1)
    count = np.bincount(bins, weights=w, minlength=n_bins)
    sum_p = np.bincount(bins, weights=w * p, minlength=n_bins)
    sum_y = np.bincount(bins, weights=w * y, minlength=n_bins)
    return count, sum_p, sum_y


def expected_calibration_error(prob, outcome, n_bins: int = 10, weight=None) -> float:
    """Sum over equal-width probability bins of (bin share) x |mean outcome - mean prob|.

    The last bin is closed on the right so that a probability of exactly 1 is counted.
    ``weight`` (optional, one per pair) weights the pairs, e.g. the inverse of a
    negative sampling rate.
    """
    count, sum_p, sum_y = _calibration_bins(prob, outcome, n_bins, weight)
    if count.sum() == 0:
        return float("nan")
    used = count > 0
    gap = np.abs(sum_y[used] - sum_p[used]) / count[used]
    return float((count[used] / count.sum() * gap).sum())


def calibration_curve(prob, outcome, n_bins: int = 10):
    """The bins behind :func:`expected_calibration_error`: (bin, mean_predicted,
    observed_rate, n) for every non-empty equal-width bin, as a list of dicts."""
    count, sum_p, sum_y = _calibration_bins(prob, outcome, n_bins)
    return [
        {
            "bin": b,
            "mean_predicted": sum_p[b] / count[b],
            "observed_rate": sum_y[b] / count[b],
            "n": int(count[b]),
        }
        for b in np.flatnonzero(count)
    ]


def ranking_metrics(
    ranked: np.ndarray, relevant: sp.spmatrix, ks, metrics=("ndcg", "recall", "precision", "map")
) -> dict[tuple[str, int], float]:
    """``{(metric, k): value}`` for ranked index lists against a relevance matrix."""
    rel = sp.csr_matrix(relevant)
    rel.eliminate_zeros()
    hits = hits_matrix(ranked, rel)
    n_rel = np.diff(rel.indptr)
    funcs = {
        "ndcg": ndcg_at_k,
        "recall": recall_at_k,
        "precision": precision_at_k,
        "map": map_at_k,
    }
    return {(m, k): funcs[m](hits, n_rel, k) for m in metrics for k in ks}
