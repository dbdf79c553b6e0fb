"""ImplicitMF: scikit-learn conventions, determinism, and that it learns something."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from proactive_recs.estimators.mf import ImplicitMF


def _two_groups(seed=0, n_users=60, n_items=40):
    """Users 0..29 buy items 0..19, users 30..59 buy items 20..39 (each ~half of them)."""
    rng = np.random.default_rng(seed)
    dense = np.zeros((n_users, n_items), np.float32)
    half_u, half_i = n_users // 2, n_items // 2
    dense[:half_u, :half_i] = rng.random((half_u, half_i)) < 0.5
    dense[half_u:, half_i:] = rng.random((n_users - half_u, n_items - half_i)) < 0.5
    return sp.csr_matrix(dense)


def test_init_stores_parameters_unchanged_and_fit_returns_self():
    model = ImplicitMF(factors=8, regularization=0.1, alpha=2.0, iterations=5, random_state=3)
    assert model.get_params()["factors"] == 8 and model.random_state == 3
    assert model.fit(_two_groups()) is model
    assert model.user_factors_.shape == (60, 8) and model.user_factors_.dtype == np.float32
    assert model.item_factors_.shape == (40, 8) and model.item_factors_.dtype == np.float32
    assert (model.n_users_, model.n_items_) == (60, 40)


def test_same_seed_gives_identical_factors():
    X = _two_groups()
    a = ImplicitMF(factors=8, iterations=5, random_state=42).fit(X)
    b = ImplicitMF(factors=8, iterations=5, random_state=42).fit(X)
    np.testing.assert_array_equal(a.user_factors_, b.user_factors_)
    np.testing.assert_array_equal(a.item_factors_, b.item_factors_)


def test_different_seeds_differ():
    X = _two_groups()
    a = ImplicitMF(factors=8, iterations=5, random_state=1).fit(X)
    b = ImplicitMF(factors=8, iterations=5, random_state=2).fit(X)
    assert not np.array_equal(a.item_factors_, b.item_factors_)


def test_thread_count_does_not_change_the_result():
    X = _two_groups()
    a = ImplicitMF(factors=8, iterations=5, random_state=0, num_threads=1).fit(X)
    b = ImplicitMF(factors=8, iterations=5, random_state=0, num_threads=2).fit(X)
    np.testing.assert_array_equal(a.user_factors_, b.user_factors_)


def test_numpy_random_state_is_accepted():
    X = _two_groups()
    a = ImplicitMF(factors=4, iterations=3, random_state=np.random.RandomState(5)).fit(X)
    b = ImplicitMF(factors=4, iterations=3, random_state=np.random.RandomState(5)).fit(X)
    np.testing.assert_array_equal(a.user_factors_, b.user_factors_)


def test_learns_the_block_structure():
    X = _two_groups()
    model = ImplicitMF(factors=4, iterations=10, regularization=0.1, random_state=0).fit(X)
    scores = model.user_factors_ @ model.item_factors_.T
    own = np.r_[scores[:30, :20].ravel(), scores[30:, 20:].ravel()].mean()
    other = np.r_[scores[:30, 20:].ravel(), scores[30:, :20].ravel()].mean()
    assert own > other + 0.3
    u, i = np.array([0, 45]), np.array([3, 30])
    np.testing.assert_allclose(model.predict(u, i), scores[u, i], rtol=1e-5)


def test_predict_before_fit_raises():
    with pytest.raises(RuntimeError):
        ImplicitMF().predict([0], [0])


def test_set_params_rejects_unknown_keys():
    with pytest.raises(ValueError):
        ImplicitMF().set_params(colour="red")
