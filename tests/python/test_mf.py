"""ImplicitMF: scikit-learn conventions, determinism, and that it learns something."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from proactive_recs.estimators.mf import ImplicitMF, MFWarmStart, warm_start_item_factors


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


def _relative_distance(model: ImplicitMF, reference: ImplicitMF) -> float:
    scores = model.user_factors_ @ model.item_factors_.T
    target = reference.user_factors_ @ reference.item_factors_.T
    return float(np.linalg.norm(scores - target) / np.linalg.norm(target))


def test_a_warm_start_from_a_fits_item_factors_lands_where_that_fit_did():
    """One sweep from a converged fit's item factors (as int8 codes times a scale per item,
    as stages store them) scores within a few % of it; one sweep from random factors is far
    off."""
    from proactive_recs.recommender.stages import warm_start_payload

    X = _two_groups()
    full = ImplicitMF(factors=8, iterations=15, regularization=0.1, random_state=0).fit(X)
    payload = warm_start_payload(range(X.shape[1]), full.item_factors_)
    stored = payload["mf_item_factors"] * payload["mf_item_scale"][:, None]
    kept = stored.copy()
    warm = ImplicitMF(factors=8, iterations=1, regularization=0.1, random_state=1)
    warm.fit(X, item_factors_init=stored)
    cold = ImplicitMF(factors=8, iterations=1, regularization=0.1, random_state=1).fit(X)
    assert _relative_distance(warm, full) < 0.05
    assert _relative_distance(cold, full) > 0.3
    # the given factors are copied, not written to
    np.testing.assert_array_equal(stored, kept)
    again = ImplicitMF(factors=8, iterations=1, regularization=0.1, random_state=1)
    again.fit(X, item_factors_init=stored)
    np.testing.assert_array_equal(again.user_factors_, warm.user_factors_)


def test_a_warm_start_of_the_wrong_shape_is_refused_naming_both_shapes():
    X = _two_groups()
    with pytest.raises(ValueError, match=r"40 items x 8 factors, got \(40, 4\)"):
        ImplicitMF(factors=8, iterations=1).fit(X, item_factors_init=np.zeros((40, 4)))


def test_warm_start_item_factors_keep_known_items_and_seed_new_ones():
    warm = MFWarmStart(
        item_ids=np.array(["b", "a", "gone"], dtype=object),
        item_factors=np.array([[1, 2], [3, 4], [5, 6]], dtype=np.float16),
        iterations=2,
    )
    start, known = warm_start_item_factors(["a", "new", "b"], warm, random_state=7)
    assert known == 2 and start.dtype == np.float32 and start.shape == (3, 2)
    np.testing.assert_array_equal(start[[0, 2]], [[3, 4], [1, 2]])
    assert ((start[1] >= 0) & (start[1] < 0.01)).all()  # implicit's own starting range
    again, _ = warm_start_item_factors(["a", "new", "b"], warm, random_state=7)
    np.testing.assert_array_equal(again, start)


def test_stages_keep_item_factors_as_int8_codes_and_a_scale_up_to_the_size_cap(monkeypatch):
    from proactive_recs.recommender import stages

    factors = np.array([[0.5, -1.0, 0.25], [0.0, 0.0, 0.0], [2.0, 1.0, -0.01]], np.float32)
    payload = stages.warm_start_payload(["a", "b", "c"], factors)
    assert list(payload["mf_item_ids"]) == ["a", "b", "c"]
    codes, scale = payload["mf_item_factors"], payload["mf_item_scale"]
    assert codes.dtype == np.int8 and scale.dtype == np.float32
    np.testing.assert_array_equal(np.abs(codes).max(axis=1), [127, 0, 127])
    # each value within half a step of its item's scale (a zero vector stays zero)
    assert (np.abs(codes * scale[:, None] - factors) <= scale[:, None] / 2 + 1e-7).all()
    monkeypatch.setattr(stages, "MAX_WARM_START_BYTES", 3 * 3 + 3 * 4 - 1)  # one byte short
    assert stages.warm_start_payload(["a", "b", "c"], factors) == {}


def test_a_warm_start_says_why_it_is_off():
    """stages.warm_start: MF starts from the stored item factors only when there are some, of
    the width MF fits, and sweeps are asked for; otherwise the reason goes to model_parameters."""
    import pandas as pd

    from proactive_recs.recommender.stages import TrainedStages, warm_start

    stages = TrainedStages(
        as_of=pd.Timestamp("2024-07-01"),
        settings={},
        mf_params={},
        mf_item_ids=np.array(["a", "b"], dtype=object),
        mf_item_factors=np.array([[1, 0, 0, -127], [0, 2, 0, 0]], dtype=np.int8),
        mf_item_scale=np.array([0.5, 0.25], dtype=np.float32),
    )
    warm, why = warm_start(stages, {"factors": 4}, 3)
    assert warm.iterations == 3 and list(warm.item_ids) == ["a", "b"]
    np.testing.assert_array_equal(warm.item_factors, [[0.5, 0, 0, -63.5], [0, 0.5, 0, 0]])
    assert why == "3 sweeps from the item factors of the stages as of 2024-07-01 00:00 (2 items)"
    assert warm_start(stages, {"factors": 8}, 3) == (
        None,
        "off: the stored item factors have 4 factors, MF fits 8",
    )
    assert warm_start(stages, {"factors": 4}, 0)[1] == "off: mf_warm_start_iterations is 0"
    assert warm_start(None, {"factors": 4}, 3)[1] == "off: no stored stages"
