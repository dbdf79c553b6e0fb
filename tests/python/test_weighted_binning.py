"""The batched weighted binning gives scikit-learn's own bin edges and boosters."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.ensemble._hist_gradient_boosting import binning
from sklearn.ensemble._hist_gradient_boosting.binning import _BinMapper

from proactive_recs.estimators.weighted_binning import batched_weighted_binning, weighted_edges


def _weighted_rows(seed: int, n: int = 3_000):
    """Columns of several kinds: continuous, few distinct values, heavy ties, NaNs; weights
    of 1 and 10 (the rankers' positives and sampled negatives) and some zeros."""
    rng = np.random.default_rng(seed)
    X = np.column_stack(
        [
            rng.normal(size=n),
            rng.integers(0, 5, n).astype(float),  # fewer distinct values than bins
            np.round(rng.exponential(size=n), 1),  # ties
            np.where(rng.random(n) < 0.3, np.nan, rng.gamma(2.0, size=n)),  # missing values
            rng.lognormal(size=n) * 1e3,
        ]
    )
    weight = np.where(rng.random(n) < 0.2, 1.0, 10.0)
    weight[rng.random(n) < 0.05] = 0.0
    y = rng.random(n) < 1 / (1 + np.exp(-X[:, 0] + 0.1 * X[:, 2]))
    return X, y, weight


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("n_bins", [256, 33])
def test_the_edges_are_scikit_learns_per_edge_ones(seed, n_bins):
    X, _, weight = _weighted_rows(seed)
    reference = _BinMapper(n_bins=n_bins, subsample=None).fit(X, sample_weight=weight)
    with batched_weighted_binning(n_bins - 1):
        batched = _BinMapper(n_bins=n_bins, subsample=None).fit(X, sample_weight=weight)
    assert len(batched.bin_thresholds_) == X.shape[1]
    for got, expected in zip(batched.bin_thresholds_, reference.bin_thresholds_, strict=True):
        np.testing.assert_array_equal(got, expected)
    # the percentile function is scikit-learn's again once the block is left
    assert binning._weighted_percentile.__module__.startswith("sklearn")


def test_a_booster_fitted_inside_is_the_booster_fitted_outside():
    X, y, weight = _weighted_rows(3, n=5_000)

    def fit():
        model = HistGradientBoostingClassifier(max_iter=30, early_stopping=False, random_state=0)
        return model.fit(X, y, sample_weight=weight)

    reference = fit()
    with batched_weighted_binning(255):
        batched = fit()
    edges, reference_edges = (m._bin_mapper.bin_thresholds_ for m in (batched, reference))
    for got, expected in zip(edges, reference_edges, strict=True):
        np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(batched.predict_proba(X), reference.predict_proba(X))


def test_other_calls_of_the_percentile_function_are_left_alone():
    rng = np.random.default_rng(4)
    values, weight = rng.normal(size=500), rng.random(500)
    expected = binning._weighted_percentile(values, weight, 37.0, average=True)
    with batched_weighted_binning(255):
        # a rank that is not one of the binner's edges goes straight to scikit-learn
        assert binning._weighted_percentile(values, weight, 37.0, average=True) == expected


@pytest.mark.parametrize("seed", range(40))
def test_every_edge_equals_scikit_learns_weighted_percentile(seed):
    """Small columns with many ties and whole weights (the search lands exactly on a
    cumulative weight often, where the rule averages), zero weights included."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 60))
    values = rng.integers(0, 8, n).astype(np.float64)
    weights = rng.integers(0, 4, n).astype(np.float64)
    weights[rng.integers(0, n)] = 1.0  # at least one weight
    ranks = np.linspace(0, 100, num=int(rng.integers(3, 40)))[1:-1]
    got = weighted_edges(values, weights, ranks)
    for rank, edge in zip(ranks, got, strict=True):
        expected = binning._weighted_percentile(values, weights, rank, average=True)
        assert edge == expected, (rank, values.tolist(), weights.tolist())
