"""Scoring a fitted ``HistGradientBoostingClassifier`` in one compiled pass over the rows.

scikit-learn predicts tree by tree: every tree walks all the rows, after the feature frame
has been copied to float64. The daily run scores tens of millions of candidate pairs with
the stored ranker (a hundred trees of 15 leaves), and that walk was its largest cost. Here
the trees are flattened once into arrays and numba kernels score blocks of rows on the
float32 features as they are, in one of two ways:

* **decision tables** (trees of at most :data:`MAX_TABLE_SPLITS` splits, the ranker's
  shape): every split of a tree is tested for a block of rows at once (a comparison of one
  feature column against one threshold, which the compiler vectorises), the outcomes make a
  16-bit code per row, and a table made once per tree maps each code to the leaf the walk
  would reach. No branch depends on the data, so a lopsided tree costs no mispredictions;
  on the real pair features of the M benchmark this was 4.7x the row-wise walk, and 16-bit
  codes with each split's missing-value side decided once made it 1.7x faster again
  (bench/results/tree_walk.md), where a predicated walk had lost to it;
* **the row-wise walk** for bigger trees: all trees for one row before the next, the
  row's features staying in cache.

The result is the same number scikit-learn computes, not an approximation: a float32
feature compared with a float64 threshold is the comparison scikit-learn makes after its
exact float32 -> float64 copy; missing values follow each node's ``missing_go_to_left``;
the leaf values are added to the baseline in tree order in float64, as scikit-learn does.
Models these kernels do not cover (categorical splits, more than one tree per iteration)
are scored by scikit-learn itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

import numba
import numpy as np
from scipy.special import expit

__all__ = [
    "MAX_TABLE_SPLITS",
    "DecisionTables",
    "FlatTrees",
    "flatten",
    "predict_positive_proba",
    "staged_positive_proba",
]

# A tree's table has 2 ** splits entries (one byte each): 64 KB at 16 splits. Trees of more
# splits are walked row by row.
MAX_TABLE_SPLITS = 16


@dataclass(frozen=True)
class DecisionTables:
    """Every tree's splits and the table from their outcomes to its leaf.

    Tree t's splits are ``split_start[t]:split_start[t + 1]``; split k of a tree is bit k of
    the tree's code (1 = the row goes left). ``table[table_start[t] + code]`` is the leaf
    the walk reaches, numbered ``0..`` within the tree; its value is
    ``leaf_value[leaf_start[t] + leaf]``. ``threshold32`` is each float64 threshold rounded
    down to float32: for a float32 feature x, ``x <= threshold`` exactly when
    ``x <= threshold32`` (the largest float32 not above the threshold), so float32 rows are
    compared as float32 and give scikit-learn's float64 decision.
    """

    split_feature: np.ndarray
    threshold: np.ndarray
    threshold32: np.ndarray
    missing_left: np.ndarray
    split_start: np.ndarray
    table: np.ndarray
    table_start: np.ndarray
    leaf_value: np.ndarray
    leaf_start: np.ndarray


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
    tables: DecisionTables | None = None  # None: trees too big for tables, walk row-wise


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
    flat = FlatTrees(
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
    return replace(flat, tables=decision_tables(flat))


def _float32_at_most(threshold: np.ndarray) -> np.ndarray:
    """The largest float32 not above each float64 threshold (+-inf stay themselves)."""
    rounded = threshold.astype(np.float32)
    above = rounded.astype(np.float64) > threshold
    rounded[above] = np.nextafter(rounded[above], np.float32(-np.inf))
    return rounded


def decision_tables(trees: FlatTrees) -> DecisionTables | None:
    """:class:`DecisionTables` for ``trees``, or None when a tree has more than
    :data:`MAX_TABLE_SPLITS` splits."""
    ends = np.append(trees.roots[1:], trees.feature.size)
    splits, tables, leaves = [], [], []
    for root, end in zip(trees.roots, ends, strict=True):
        local = np.arange(root, end)
        split, leaf = local[~trees.is_leaf[local]], local[trees.is_leaf[local]]
        if split.size > MAX_TABLE_SPLITS:
            return None
        bit_of = np.zeros(end - root, dtype=np.int64)
        bit_of[split - root] = np.arange(split.size)
        leaf_of = np.zeros(end - root, dtype=np.uint8)
        leaf_of[leaf - root] = np.arange(leaf.size)
        # walk every code at once: at each node the code's bit for that split picks the side
        codes = np.arange(1 << split.size, dtype=np.int64)
        node = np.full(codes.size, root, dtype=np.int64)
        for _ in range(split.size):
            inner = ~trees.is_leaf[node]
            if not inner.any():
                break
            goes_left = ((codes >> bit_of[node - root]) & 1).astype(bool)
            child = np.where(goes_left, trees.left[node], trees.right[node])
            node = np.where(inner, child, node)
        splits.append(split)
        tables.append(leaf_of[node - root])
        leaves.append(leaf)
    split = np.concatenate(splits)

    def starts(parts: list[np.ndarray]) -> np.ndarray:
        return np.concatenate([[0], np.cumsum([part.size for part in parts])]).astype(np.int64)

    return DecisionTables(
        split_feature=trees.feature[split],
        threshold=trees.threshold[split],
        threshold32=_float32_at_most(trees.threshold[split]),
        missing_left=trees.missing_left[split],
        split_start=starts(splits),
        table=np.concatenate(tables),
        table_start=starts(tables),
        leaf_value=trees.value[np.concatenate(leaves)],
        leaf_start=starts(leaves),
    )


# Rows scored together by the table kernel: their features, transposed, stay in cache
# (34 features x 512 rows x 4 bytes = 70 KB).
_TABLE_BLOCK = 512


@numba.njit(parallel=True, cache=True, nogil=True)
def _table_scores(
    X,
    split_feature,
    threshold,
    missing_left,
    split_start,
    table,
    table_start,
    leaf_value,
    leaf_start,
    totals,
    first,
    stops,
    block,
):
    # The same contract as _raw_scores: out[row, s] is the raw score of the first stops[s]
    # trees, starting from totals[row] after `first` trees; totals left at the last stop.
    n, n_features = X.shape
    out = np.empty((n, stops.size), dtype=np.float64)
    for b in numba.prange((n + block - 1) // block):
        lo = b * block
        rows = min(block, n - lo)
        columns = np.empty((n_features, block), dtype=X.dtype)
        for r in range(rows):
            for f in range(n_features):
                columns[f, r] = X[lo + r, f]
        total = np.empty(block, dtype=np.float64)
        for r in range(rows):
            total[r] = totals[lo + r]
        # 16 bits hold a tree's code (MAX_TABLE_SPLITS): twice the lanes of int32 per
        # vector instruction; with the missing side decided per split (below), 1.7x on the
        # M benchmark's pairs (bench/results/tree_walk.md)
        code = np.empty(block, dtype=np.uint16)
        t = first
        for s in range(stops.size):
            while t < stops[s]:
                code[:rows] = 0
                for k in range(split_start[t], split_start[t + 1]):
                    column = columns[split_feature[k]]
                    at_most = threshold[k]
                    bit = np.uint16(1) << np.uint16(k - split_start[t])
                    # the side of a missing value decided once per split, not per row: a
                    # NaN compares false, so "not above" sends it left and "at most" right
                    if missing_left[k]:
                        for r in range(rows):
                            if not column[r] > at_most:
                                code[r] |= bit
                    else:
                        for r in range(rows):
                            if column[r] <= at_most:
                                code[r] |= bit
                for r in range(rows):
                    total[r] += leaf_value[leaf_start[t] + table[table_start[t] + code[r]]]
                t += 1
            for r in range(rows):
                out[lo + r, s] = total[r]
        for r in range(rows):
            totals[lo + r] = total[r]
    return out


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


def _walk(trees: FlatTrees, X, totals, first: int, stops, rowwise: bool = False) -> np.ndarray:
    """Raw scores of the first ``stops`` trees (``totals`` updated in place): the decision
    tables when ``trees`` has them, else (or with ``rowwise``, which the benchmark uses to
    compare the two) the row-wise walk."""
    tables = getattr(trees, "tables", None)
    if not rowwise and tables is not None and X.dtype in (np.float32, np.float64):
        return _table_scores(
            X,
            tables.split_feature,
            tables.threshold32 if X.dtype == np.float32 else tables.threshold,
            tables.missing_left,
            tables.split_start,
            tables.table,
            tables.table_start,
            tables.leaf_value,
            tables.leaf_start,
            totals,
            first,
            stops,
            _TABLE_BLOCK,
        )
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
