"""Scoring a fitted ``HistGradientBoostingClassifier`` row by row in one compiled pass.

scikit-learn predicts tree by tree: every tree walks all the rows, after the feature frame
has been copied to float64. The daily run scores tens of millions of candidate pairs with
the stored ranker (a hundred trees), and that walk was its largest cost. Here the trees are
flattened once into arrays and a numba kernel walks all trees for one row before the next
(the row's features stay in cache), on the float32 features as they are.

The result is the same number scikit-learn computes, not an approximation: a float32
feature compared with a float64 threshold is the comparison scikit-learn makes after its
exact float32 -> float64 copy; missing values follow each node's ``missing_go_to_left``;
the leaf values are added to the baseline in tree order in float64, as scikit-learn does.
Models this kernel does not cover (categorical splits, more than one tree per iteration)
are scored by scikit-learn itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numba
import numpy as np
from scipy.special import expit

__all__ = ["FlatTrees", "flatten", "predict_positive_proba", "staged_positive_proba"]


@dataclass(frozen=True)
class FlatTrees:
    """Every tree's nodes in one set of arrays; ``roots[t]`` is tree t's first node."""

    feature: np.ndarray
    threshold: np.ndarray
    missing_left: np.ndarray
    left: np.ndarray
    right: np.ndarray
    is_leaf: np.ndarray
    value: np.ndarray
    roots: np.ndarray
    baseline: float


def flatten(model) -> FlatTrees | None:
    """The fitted binary classifier's trees as :class:`FlatTrees`, or None when the kernel
    does not cover the model (then use scikit-learn's own ``predict_proba``)."""
    predictors = getattr(model, "_predictors", None)
    if not predictors or getattr(model, "n_trees_per_iteration_", 1) != 1:
        return None
    trees = [iteration[0] for iteration in predictors]
    if any(tree.nodes["is_categorical"].any() for tree in trees):
        return None
    sizes = np.array([len(tree.nodes) for tree in trees], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    nodes = np.concatenate([tree.nodes for tree in trees])
    shift = np.repeat(offsets, sizes)
    return FlatTrees(
        feature=nodes["feature_idx"].astype(np.int64),
        threshold=nodes["num_threshold"].astype(np.float64),
        missing_left=nodes["missing_go_to_left"].astype(np.bool_),
        left=nodes["left"].astype(np.int64) + shift,
        right=nodes["right"].astype(np.int64) + shift,
        is_leaf=nodes["is_leaf"].astype(np.bool_),
        value=nodes["value"].astype(np.float64),
        roots=offsets,
        baseline=float(np.asarray(model._baseline_prediction).ravel()[0]),
    )


@numba.njit(parallel=True, cache=True, nogil=True)
def _raw_scores(
    X, feature, threshold, missing_left, left, right, is_leaf, value, roots, totals, first, stops
):
    # out[row, s]: the raw score of the first stops[s] trees (stops ascending, > first): one
    # walk per row serves every count asked for. totals[row] is the raw score of the first
    # `first` trees (the baseline when first = 0) and is left at that of the last stop, so
    # a next call goes on where this one ended, adding in the same order.
    out = np.empty((X.shape[0], stops.size), dtype=np.float64)
    for row in numba.prange(X.shape[0]):
        total = totals[row]
        t = first
        for s in range(stops.size):
            while t < stops[s]:
                node = roots[t]
                while not is_leaf[node]:
                    x = X[row, feature[node]]
                    if np.isnan(x):
                        node = left[node] if missing_left[node] else right[node]
                    elif x <= threshold[node]:
                        node = left[node]
                    else:
                        node = right[node]
                total += value[node]
                t += 1
            out[row, s] = total
        totals[row] = total
    return out


def _walk(trees: FlatTrees, X, totals, first: int, stops) -> np.ndarray:
    """:func:`_raw_scores` over ``trees``' arrays (``totals`` updated in place)."""
    return _raw_scores(
        X,
        trees.feature,
        trees.threshold,
        trees.missing_left,
        trees.left,
        trees.right,
        trees.is_leaf,
        trees.value,
        trees.roots,
        totals,
        first,
        stops,
    )


def predict_positive_proba(trees: FlatTrees, X: np.ndarray, n_trees=None) -> np.ndarray:
    """P(class 1) for the rows of ``X`` (n_rows x n_features, the model's feature order,
    float32 or float64): the logistic function of the boosted raw score of the first
    ``n_trees`` trees (None = all). ``n_trees`` may be a sequence of counts: then the
    result is (n_rows, len(n_trees)), one column per count, from one walk over the trees
    (what a booster fitted with that many trees predicts, boosting being sequential)."""
    X = np.ascontiguousarray(X)
    counts = np.atleast_1d(np.asarray(trees.roots.size if n_trees is None else n_trees))
    counts = counts.astype(np.int64)
    if counts.size == 0 or counts.min() < 1 or counts.max() > trees.roots.size:
        raise ValueError(
            f"tree counts must be in 1..{trees.roots.size} (the booster's trees), got {counts}"
        )
    order = np.argsort(counts, kind="stable")
    raw = _walk(trees, X, np.full(X.shape[0], trees.baseline), 0, counts[order])
    proba = np.empty_like(raw)
    proba[:, order] = expit(raw)  # scikit-learn's own link for the binary log-loss
    return proba[:, 0] if np.ndim(n_trees) == 0 else proba


def staged_positive_proba(
    trees: FlatTrees, X: np.ndarray, max_bytes: int = 256 << 20
) -> Iterator[np.ndarray]:
    """P(class 1) of the first 1, 2, ..., all trees in turn, for the rows of ``X``: what
    scikit-learn's ``staged_predict_proba`` yields (its column 1), from one walk over the
    trees. The counts are walked in groups of at most ``max_bytes`` of scores; each group
    goes on from the raw scores where the previous one stopped."""
    X = np.ascontiguousarray(X)
    n_rows, n_trees = X.shape[0], trees.roots.size
    group = max(1, min(n_trees, max_bytes // max(8 * n_rows, 1)))
    totals = np.full(n_rows, trees.baseline)
    for first in range(0, n_trees, group):
        stops = np.arange(first + 1, min(first + group, n_trees) + 1, dtype=np.int64)
        raw = _walk(trees, X, totals, first, stops)
        for column in range(stops.size):
            yield expit(raw[:, column])
