"""Benchmark of the compiled tree walk (proactive_recs.estimators.tree_inference) against
scikit-learn's own ``predict_proba`` on the same booster and rows, in one run: the kernel
the package uses for the ranker's trees (decision tables) and the row-wise walk it keeps
for bigger trees.

    python -m proactive_recs_tools.bench_trees [--rows 2000000] [--trees 100] [--nan-share 0.1]

The booster has the ranker's shape (15 leaves, 200 rows a leaf at least); the rows are
float32 with a share of missing values, as the pair features are. Both results are checked
equal before anything is timed. Last line: one JSON object.

Synthetic rows are not the served ranker's rows: how deep a row goes in each tree decides
what a walk costs, and the real trees are lopsided (most candidate pairs leave after a few
splits). A change to the walk is judged on real pair features too (bench/results/tree_walk.md
records one that won here and lost there).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np


def _data(rows: int, features: int, nan_share: float, seed: int):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, features)).astype(np.float32)
    X[rng.random(X.shape) < nan_share] = np.nan
    signal = np.nansum(X[:, :5], axis=1) - np.nan_to_num(X[:, 5] * X[:, 6])
    y = signal + rng.normal(size=rows) > 1.5
    return X, y


def run(rows: int, trees: int, features: int, nan_share: float, repeats: int) -> dict:
    from sklearn.ensemble import HistGradientBoostingClassifier

    from proactive_recs.estimators.tree_inference import _walk, flatten, predict_positive_proba

    X_fit, y_fit = _data(200_000, features, nan_share, 0)
    model = HistGradientBoostingClassifier(
        max_iter=trees,
        max_leaf_nodes=15,
        min_samples_leaf=200,
        early_stopping=False,
        random_state=0,
    ).fit(X_fit, y_fit)
    flat = flatten(model)
    X, _ = _data(rows, features, nan_share, 1)
    counts = sorted({max(1, trees // 10), trees // 2, trees})  # what selection scores at once
    ours = predict_positive_proba(flat, X[:1000], counts)  # compiles (or loads) the kernel
    theirs = model.predict_proba(X[:1000])[:, 1]
    if not np.array_equal(ours[:, -1], theirs):
        raise AssertionError("the compiled walk differs from scikit-learn's probabilities")
    stops = np.array(counts, dtype=np.int64)

    def rowwise():
        return _walk(flat, X, np.full(X.shape[0], flat.baseline), 0, stops, rowwise=True)

    rowwise_raw = rowwise()
    tables_raw = _walk(flat, X, np.full(X.shape[0], flat.baseline), 0, stops)
    if not np.array_equal(rowwise_raw, tables_raw):
        raise AssertionError("the decision tables and the row-wise walk give other scores")
    ours_s, rowwise_s, theirs_s = [], [], []
    for _ in range(repeats):  # alternated, so that all see the same machine
        start = time.perf_counter()
        predict_positive_proba(flat, X, counts)
        ours_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        rowwise()
        rowwise_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        model.predict_proba(X)
        theirs_s.append(time.perf_counter() - start)
    ours_best, rowwise_best, theirs_best = min(ours_s), min(rowwise_s), min(theirs_s)
    return {
        "rows": rows,
        "trees": trees,
        "features": features,
        "nan_share": nan_share,
        "counts_per_walk": len(counts),
        "threads": os.cpu_count(),
        "kernel": "tables" if flat.tables is not None else "rowwise",
        "compiled_walk_s": round(ours_best, 4),
        "rowwise_walk_s": round(rowwise_best, 4),
        "scikit_learn_s": round(theirs_best, 4),
        "ratio_vs_scikit_learn": round(ours_best / theirs_best, 3),
        "ratio_vs_rowwise": round(ours_best / rowwise_best, 3),
        "rows_per_s": round(rows / ours_best),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--features", type=int, default=24)
    parser.add_argument("--nan-share", type=float, default=0.1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    result = run(args.rows, args.trees, args.features, args.nan_share, args.repeats)
    print(
        f"{result['rows']:,} rows x {result['trees']} trees ({result['counts_per_walk']} counts"
        f" a walk): compiled ({result['kernel']}) {result['compiled_walk_s']} s, row-wise walk"
        f" {result['rowwise_walk_s']} s, scikit-learn {result['scikit_learn_s']} s (one count);"
        f" ratios {result['ratio_vs_rowwise']} vs row-wise,"
        f" {result['ratio_vs_scikit_learn']} vs scikit-learn"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
