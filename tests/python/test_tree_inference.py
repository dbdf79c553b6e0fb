"""The compiled tree walk gives scikit-learn's own probabilities, bit for bit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier

from proactive_recs.estimators.tree_inference import (
    MAX_TABLE_SPLITS,
    flatten,
    predict_positive_proba,
    staged_positive_proba,
)


def _data(n, seed, dtype):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6)).astype(dtype)
    X[rng.random(X.shape) < 0.1] = np.nan  # missing values go where each split learned
    X[:, 5] = np.round(X[:, 5])  # few distinct values: thresholds fall between them
    logit = np.nan_to_num(X[:, 0]) - 2 * np.nan_to_num(X[:, 1]) * np.nan_to_num(X[:, 2])
    y = rng.random(n) < 1 / (1 + np.exp(-logit))
    return X, y


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_same_probabilities_as_scikit_learn(dtype):
    X, y = _data(6000, 0, dtype)
    model = HistGradientBoostingClassifier(
        max_iter=60, max_leaf_nodes=15, early_stopping=False, random_state=0
    ).fit(X, y, sample_weight=np.where(y, 1.0, 10.0))
    trees = flatten(model)
    assert trees is not None and trees.roots.size == 60
    assert trees.tables is not None  # the ranker's shape is scored by decision tables
    fresh, _ = _data(20_000, 1, dtype)
    fresh[:50] = np.nan  # rows with nothing known
    fresh[50:60] = np.inf
    expected = model.predict_proba(fresh)[:, 1]
    assert np.array_equal(predict_positive_proba(trees, fresh), expected)
    # a frame's columns, as the ranker passes them
    frame = pd.DataFrame(fresh, columns=[f"f{k}" for k in range(6)])
    assert np.array_equal(predict_positive_proba(trees, frame.to_numpy()), expected)


def test_first_trees_give_the_staged_probabilities_of_scikit_learn():
    """Several counts from one walk: column c is what scikit-learn's staged prediction
    gives after that many trees (counts in any order, repeats allowed)."""
    X, y = _data(4000, 2, np.float32)
    model = HistGradientBoostingClassifier(
        max_iter=30, max_leaf_nodes=15, early_stopping=False, random_state=0
    ).fit(X, y)
    fresh, _ = _data(5000, 3, np.float32)
    staged = [proba[:, 1] for proba in model.staged_predict_proba(fresh)]
    trees = flatten(model)
    counts = [17, 1, 30, 5, 17]
    got = predict_positive_proba(trees, fresh, counts)
    assert got.shape == (5000, 5)
    for column, count in enumerate(counts):
        assert np.array_equal(got[:, column], staged[count - 1])
    assert np.array_equal(predict_positive_proba(trees, fresh, 12), staged[11])
    with pytest.raises(ValueError, match=r"1\.\.30"):
        predict_positive_proba(trees, fresh, [0, 5])
    with pytest.raises(ValueError, match=r"1\.\.30"):
        predict_positive_proba(trees, fresh, 31)


@pytest.mark.parametrize("max_bytes", [1, 5000 * 8 * 7, 1 << 30])
def test_staged_walk_yields_every_count_as_scikit_learn_does(max_bytes):
    """One probability array per count, 1..all trees, equal to scikit-learn's staged
    predictions whether the counts are walked one at a time, in groups of 7 (the last
    group shorter), or all at once."""
    X, y = _data(4000, 4, np.float64)
    model = HistGradientBoostingClassifier(
        max_iter=30, max_leaf_nodes=15, early_stopping=False, random_state=0
    ).fit(X, y, sample_weight=np.where(y, 1.0, 10.0))
    fresh, _ = _data(5000, 5, np.float64)
    expected = [proba[:, 1] for proba in model.staged_predict_proba(fresh)]
    got = list(staged_positive_proba(flatten(model), fresh, max_bytes=max_bytes))
    assert len(got) == len(expected) == 30
    for count, (ours, theirs) in enumerate(zip(got, expected, strict=True), start=1):
        assert np.array_equal(ours, theirs), count


def test_models_the_kernel_does_not_cover_are_left_to_scikit_learn():
    X, y = _data(2000, 0, np.float64)
    categorical = HistGradientBoostingClassifier(
        max_iter=5, categorical_features=[5], random_state=0
    ).fit(np.where(np.isnan(X), 0, np.abs(X)), y)
    assert flatten(categorical) is None
    three = np.digitize(X[:, 0], [-0.5, 0.5])
    multi = HistGradientBoostingClassifier(max_iter=5, random_state=0).fit(X, three)
    assert flatten(multi) is None


def test_a_stored_ranker_flattens_its_trees_again_when_read():
    """The flattened trees are a scoring cache in the layout of the code that made it: a
    pickled ranker (stored stages) does not carry them, and a ranker stored with a cache of
    another layout scores with its own trees flattened anew, the same probabilities."""
    import pickle
    import types

    from proactive_recs.estimators.ranker import PropensityRanker

    X, y = _data(3000, 6, np.float32)
    frame = pd.DataFrame(X, columns=[f"f{k}" for k in range(6)])
    ranker = PropensityRanker(max_iter=20, min_samples_leaf=20, random_state=0).fit(frame, y)
    fresh = pd.DataFrame(_data(2000, 7, np.float32)[0], columns=frame.columns)
    expected = ranker.predict_proba(fresh)
    assert ranker.flat_trees_ is not None  # scoring made the cache
    stored = pickle.loads(pickle.dumps(ranker))
    assert stored.flat_trees_ is None
    assert np.array_equal(stored.predict_proba(fresh), expected)
    # a cache of another layout (fields the walk cannot use) in a stored ranker
    state = {**ranker.__dict__, "flat_trees_": types.SimpleNamespace(nodes=None)}
    old = PropensityRanker.__new__(PropensityRanker)
    old.__setstate__(state)
    assert np.array_equal(old.predict_proba(fresh), expected)


def test_trees_too_big_for_tables_are_walked_row_by_row_with_the_same_numbers():
    """Trees of more than MAX_TABLE_SPLITS splits have no decision tables; the row-wise
    walk scores them, scikit-learn's numbers all the same (also at intermediate counts)."""
    X, y = _data(8000, 8, np.float32)
    model = HistGradientBoostingClassifier(
        max_iter=12, max_leaf_nodes=MAX_TABLE_SPLITS + 8, min_samples_leaf=5, random_state=0
    ).fit(X, y)
    trees = flatten(model)
    splits = np.diff(np.append(trees.roots, trees.feature.size)) // 2
    assert splits.max() > MAX_TABLE_SPLITS and trees.tables is None
    fresh, _ = _data(5000, 9, np.float32)
    staged = [proba[:, 1] for proba in model.staged_predict_proba(fresh)]
    got = predict_positive_proba(trees, fresh, [3, 12])
    assert np.array_equal(got[:, 0], staged[2]) and np.array_equal(got[:, 1], staged[11])


def test_trees_of_the_most_splits_use_every_bit_of_the_code():
    """A tree of MAX_TABLE_SPLITS splits still gets a table, and its last split is the
    code's top bit (the kernel keeps codes in 16 bits): scikit-learn's numbers, missing
    values on both sides of the splits included."""
    X, y = _data(20_000, 12, np.float32)
    model = HistGradientBoostingClassifier(
        max_iter=10,
        max_leaf_nodes=MAX_TABLE_SPLITS + 1,
        min_samples_leaf=5,
        early_stopping=False,
        random_state=0,
    ).fit(X, y)
    trees = flatten(model)
    splits = np.diff(trees.tables.split_start)
    assert splits.max() == MAX_TABLE_SPLITS
    # splits that send missing values left and splits that send them right
    assert trees.tables.missing_left.any() and not trees.tables.missing_left.all()
    fresh, _ = _data(20_000, 13, np.float32)
    expected = model.predict_proba(fresh)[:, 1]
    assert np.array_equal(predict_positive_proba(trees, fresh), expected)


def test_float32_values_beside_a_threshold_go_where_scikit_learn_sends_them():
    """The tables compare float32 features with each threshold rounded down to float32;
    scikit-learn compares them as float64. Values on and just beside every split's
    threshold (the float32 below, at and above it) must leave by the same side."""
    X, y = _data(6000, 10, np.float64)  # float64 thresholds, float32 rows to score
    model = HistGradientBoostingClassifier(
        max_iter=40, max_leaf_nodes=15, early_stopping=False, random_state=0
    ).fit(X, y)
    trees = flatten(model)
    assert trees.tables is not None
    split = ~trees.is_leaf & np.isfinite(trees.threshold)
    rng = np.random.default_rng(11)
    rows = []
    for feature, threshold in zip(trees.feature[split], trees.threshold[split], strict=True):
        at = np.float32(threshold)
        for value in (
            np.nextafter(at, np.float32(-np.inf)),
            at,
            np.nextafter(at, np.float32(np.inf)),
        ):
            row = rng.normal(size=6).astype(np.float32)
            row[feature] = value
            rows.append(row)
    fresh = np.array(rows, dtype=np.float32)
    # some thresholds must round up to float32 (that value goes right, though a plain
    # float32 comparison would send it left), or this test would prove nothing
    thresholds = trees.threshold[split]
    assert (thresholds.astype(np.float32).astype(np.float64) > thresholds).any()
    expected = model.predict_proba(fresh)[:, 1]
    assert np.array_equal(predict_positive_proba(trees, fresh), expected)
