"""Day-0 audiences: the attribute model, fold-in, the day-0 ranker through two_stage.score,
explanations, calibration and the cold_items evaluation segment."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from proactive_recs.estimators.coldstart import ItemAttributeModel, category_affinity_vectors
from proactive_recs.estimators.mf import ImplicitMF
from proactive_recs.estimators.ranker import (
    PropensityRanker,
    capped_negative_rate,
    explain_pairs,
    item_similarity,
    training_frame,
)
from proactive_recs.evaluation.protocol import evaluate
from proactive_recs.recommender.two_stage import score

RUN_DATE = pd.Timestamp("2024-06-01")
GROUP_WORDS = ["alpha", "beta", "gamma", "delta"]
NOUNS = ["mug", "lamp", "scarf", "vase", "card", "tin"]
FAST = {
    "factors": 8,
    "iterations": 8,
    "tune": False,
    "training_windows": 3,
    "horizon_days": 30,
    "candidates_per_user": 30,
    "candidates_per_item": 60,
    "active_candidates_per_item": 20,
    "cold_active_candidates_per_item": 20,
    "popular_candidates_per_user": 10,
    "min_positives": 20,
    "k_items": 5,
    "k_users": 30,
}


# ------------------------------------------------------------------ attribute model


def test_attribute_model_learns_what_each_attribute_says():
    rng = np.random.default_rng(0)
    n, f = 400, 6
    category = rng.integers(0, 3, n)
    word = rng.integers(0, 4, n)
    centre = rng.normal(size=(3, f))
    word_dir = rng.normal(size=(4, f))
    factors = centre[category] + 0.5 * word_dir[word] + 0.05 * rng.normal(size=(n, f))
    items = pd.DataFrame(
        {
            "item_id": [f"i{i}" for i in range(n)],
            "title": [f"{GROUP_WORDS[w]} thing" for w in word],
            "category": [f"c{c}" for c in category],
            "price": rng.uniform(1, 50, n),
            "url": [f"https://shop/{i}" for i in range(n)],  # not an attribute
        }
    )
    model = ItemAttributeModel(alpha=0.1).fit(items, factors)
    new = pd.DataFrame(
        {
            "item_id": ["a", "b", "nothing", "unknown_words"],
            "title": ["gamma thing", "alpha thing", None, "zzz qqq"],
            "category": ["c2", "c0", None, "c9"],
            "price": [10.0, 20.0, None, None],
        }
    )
    assert model.usable(new).tolist() == [True, True, False, False]
    pred = model.predict(new)
    for row, (c, w) in enumerate([(2, 2), (0, 0)]):
        expected = centre[c] + 0.5 * word_dir[w]
        assert np.linalg.norm(pred[row] - expected) < 0.25 * np.linalg.norm(expected)
    assert "url" not in ItemAttributeModel.attribute_columns(items)
    # no rows at all (a training window without new items): nothing usable, no error
    assert model.usable(new.iloc[:0]).tolist() == []


def test_attribute_model_without_any_attribute_marks_nothing_usable():
    items = pd.DataFrame({"item_id": ["a", "b", "c"]})
    model = ItemAttributeModel().fit(items, np.ones((3, 2)))
    assert not model.usable(items).any()
    with pytest.raises(RuntimeError, match="not fitted"):
        ItemAttributeModel().predict(items)


# ------------------------------------------------------------------ fold-in


def _matrix(seed=1):
    rng = np.random.default_rng(seed)
    X = sp.random(300, 80, density=0.05, random_state=seed, format="csr", dtype=np.float32)
    X.data[:] = rng.integers(1, 4, X.nnz)
    return X


def test_fold_in_is_the_exact_als_item_step():
    X = _matrix()
    mf = ImplicitMF(factors=8, use_cg=False, iterations=5, alpha=2.0, random_state=0).fit(X)
    # implicit's last half-iteration solves the items against the final user factors.
    folded = mf.fold_in_items(sp.csr_matrix(X.T)[:20])
    np.testing.assert_allclose(folded, mf.item_factors_[:20], atol=1e-4)


def test_fold_in_with_a_prior_and_no_interaction_shrinks_towards_it():
    X = _matrix()
    mf = ImplicitMF(factors=8, alpha=2.0, random_state=0).fit(X)
    prior = np.random.default_rng(3).normal(size=(2, 8))
    U = mf.user_factors_.astype(float)
    gram = U.T @ U
    mu = np.trace(gram) / 8
    got = mf.fold_in_items(sp.csr_matrix((2, 300)), prior=prior)
    expected = np.linalg.solve(gram + (mf.regularization + mu) * np.eye(8), mu * prior.T).T
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    # Interactions pull the vector towards the buyers: the buyers' scores go up.
    buyers = np.arange(10)
    evidence = sp.csr_matrix((np.full(10, 3.0), (np.zeros(10, int), buyers)), shape=(1, 300))
    moved = mf.fold_in_items(evidence, prior=prior[:1])
    assert (U[buyers] @ moved[0]).mean() > (U[buyers] @ got[0]).mean()


# ------------------------------------------------------------------ explanations


def test_explanation_is_the_history_item_most_similar_to_the_recommendation():
    rng = np.random.default_rng(0)
    seen = sp.random(60, 40, density=0.15, random_state=2, format="csr")
    seen.data[:] = 1.0
    sim = item_similarity(seen, neighbours=6)
    u = np.repeat(np.arange(60), 4)
    i = rng.integers(0, 40, u.size)
    got = explain_pairs(seen, sim, u, i)
    dense = sim.toarray()
    for p in range(u.size):
        history = seen[u[p]].indices
        values = dense[history, i[p]]
        best = history[values == values.max()].min() if (values > 0).any() else -1
        assert got[p] == best
    assert (got >= 0).any() and (got == -1).any()


def test_item_similarity_matches_brute_force_cosine_top_neighbours():
    # A sparse random pattern, and a tiny dense one where many similarities tie exactly.
    sparse = sp.random(400, 90, density=0.05, random_state=5, format="csr")
    ties = sp.csr_matrix(np.random.default_rng(3).integers(0, 2, size=(6, 30)).astype(float))
    for seen in (sparse, ties):
        seen.data[:] = 1.0
        dense = seen.toarray()
        n_items = dense.shape[1]
        buyers = dense.sum(axis=0)
        cosine = (dense.T @ dense) / np.sqrt(np.outer(buyers, buyers) + 1e-300)
        np.fill_diagonal(cosine, 0.0)
        # one neighbour, a few, and more than there are items
        for neighbours in (1, 5, 500):
            got = item_similarity(seen, neighbours=neighbours).toarray()
            for i in range(n_items):
                column = cosine[:, i]
                positive = np.flatnonzero(column > 0)
                # Reference: the top `neighbours` by similarity, lower row first among equals.
                order = positive[np.lexsort((positive, -np.round(column[positive], 6)))]
                expected = np.zeros(n_items)
                expected[order[:neighbours]] = column[order[:neighbours]]
                np.testing.assert_allclose(got[:, i], expected, atol=1e-6)
    empty = item_similarity(sp.csr_matrix((5, 4)), neighbours=3)
    assert empty.shape == (4, 4) and empty.nnz == 0


# ------------------------------------------------------------------ category affinity


def test_category_affinity_ranks_by_share_then_activity():
    share = np.array([[1.0, 0.0], [0.5, 0.5], [1.0, 0.0], [0.0, 1.0]])
    activity = np.array([1.0, 9.0, 3.0, 2.0])
    users, items = category_affinity_vectors(share, activity, np.array([0, 1, -1]))
    scores = users @ items.T
    assert list(np.argsort(-scores[:, 0], kind="stable")) == [2, 0, 1, 3]  # share, then activity
    assert list(np.argsort(-scores[:, 1], kind="stable")) == [3, 1, 2, 0]
    assert list(np.argsort(-scores[:, 2], kind="stable")) == [1, 2, 3, 0]  # activity alone


# ------------------------------------------------------------------ calibration


def _drifting(drift_per_window, seed=0, n_per_window=8_000):
    """Three windows (3 = oldest); the log-odds of buying move by ``drift_per_window``
    from one window to the next."""
    rng = np.random.default_rng(seed)
    window = np.repeat([3, 2, 1], n_per_window)
    x = rng.normal(size=window.size)
    shift = drift_per_window * (3 - window)
    y = rng.random(window.size) < 1 / (1 + np.exp(-(x + shift - 1.0)))
    return pd.DataFrame({"x": x}), y, window


def test_logistic_calibration_matches_the_validation_rate_and_keeps_the_order():
    X, y, window = _drifting(-1.0)
    last = window == 1
    plain = PropensityRanker(calibration="none", negative_weight=1.0, random_state=0).fit(
        X[~last], y[~last]
    )
    calibrated = PropensityRanker(calibration="logistic", negative_weight=1.0, random_state=0)
    calibrated.fit(X, y, window=window)
    assert calibrated.calibrator_ is not None
    p_plain = plain.predict_proba(X[last])[:, 1]
    p_cal = calibrated.predict_proba(X[last])[:, 1]
    observed = y[last].mean()
    # An unpenalised logistic map with an intercept matches the mean where it was fitted.
    assert abs(p_cal.mean() - observed) < 0.005
    assert p_plain.mean() - observed > 0.1  # what calibration fixed
    # Strictly increasing map: the booster's order is kept, no ties are created.
    raw = _first_trees_proba(calibrated.model_, X[last], calibrated.n_trees_)
    order = np.argsort(raw, kind="stable")
    assert (np.diff(p_cal[order]) >= 0).all()
    assert len(np.unique(p_cal)) == len(np.unique(raw))


def _as_fitted(booster, X):
    """``X`` as ``booster`` was fitted: a frame for one fitted on a frame (here), an array for
    one the ranker fitted (on float64 arrays, scikit-learn's own type for a frame)."""
    return X if hasattr(booster, "feature_names_in_") else X.to_numpy(np.float64)


def _first_trees_proba(booster, X, n_trees):
    """scikit-learn's own P(class 1) after the booster's first ``n_trees`` trees."""
    for n, proba in enumerate(booster.staged_predict_proba(_as_fitted(booster, X)), start=1):
        if n == n_trees:
            return proba[:, 1]
    raise AssertionError(f"the booster has fewer than {n_trees} trees")


def test_auto_calibration_keeps_the_map_when_the_replay_says_it_helps():
    X, y, window = _drifting(-1.0)
    auto = PropensityRanker(negative_weight=1.0, random_state=0).fit(X, y, window=window)
    check = auto.calibration_check_
    assert check["log_loss_with_map"] < check["log_loss_without_map"]
    assert auto.calibrator_ is not None


def test_auto_calibration_declines_when_the_booster_is_already_calibrated():
    X, y, window = _drifting(0.0, seed=1)
    auto = PropensityRanker(negative_weight=1.0, random_state=0).fit(X, y, window=window)
    check = auto.calibration_check_
    assert check["log_loss_with_map"] >= check["log_loss_without_map"]
    assert auto.calibrator_ is None
    # ... and the booster is refitted on every window, validation rows included.
    # (with the tree count chosen on window 1)
    everything = PropensityRanker(
        calibration="none", negative_weight=1.0, max_iter=auto.n_trees_, random_state=0
    )
    np.testing.assert_allclose(auto.predict_proba(X), everything.fit(X, y).predict_proba(X))


def _overfittable(seed=0, n_per_window=1_500, noise_columns=6):
    """Three windows of one weak signal among noise columns: more trees fit the noise."""
    rng = np.random.default_rng(seed)
    window = np.repeat([3, 2, 1], n_per_window)
    X = pd.DataFrame(rng.normal(size=(window.size, noise_columns + 1))).add_prefix("x")
    y = rng.random(window.size) < 1 / (1 + np.exp(-(0.7 * X["x0"].to_numpy() - 1.5)))
    return X, y, window


def test_tree_count_is_the_best_of_every_count_on_the_validation_window():
    """Every count's weighted log-loss on window 1, from the staged predictions of a
    booster fitted on windows >= 2; the chosen count is the first minimum, and boosters
    fitted afresh with counts around it score what the staged predictions said."""
    X, y, window = _overfittable()
    params = dict(max_iter=40, min_samples_leaf=20, negative_weight=3.0, random_state=0)
    ranker = PropensityRanker(calibration="none", **params).fit(X, y, window=window)
    older, last = window >= 2, window == 1
    weight = np.where(y, 1.0, 3.0)

    def log_loss(p):
        p = np.clip(p, 1e-9, 1 - 1e-9)
        return -np.sum(weight[last] * np.where(y[last], np.log(p), np.log1p(-p))) / np.sum(
            weight[last]
        )

    def booster(n):
        model = PropensityRanker(calibration="none", **{**params, "max_iter": n})._booster()
        return model.fit(X[older], y[older], sample_weight=weight[older])

    losses = [log_loss(p[:, 1]) for p in booster(40).staged_predict_proba(X[last])]
    best = int(np.argmin(losses)) + 1
    assert ranker.n_trees_ == best < 40  # the noise does get fitted
    # the served booster keeps every tree, so that the grid's counts can be served too;
    # its default probability is that of its first `best` trees
    assert ranker.model_.n_iter_ == 40
    assert ranker.tree_counts_ == tuple(sorted({best, 4, 8, 14, 20, 30, 40}))
    np.testing.assert_array_equal(
        ranker.predict_proba(X)[:, 1], _first_trees_proba(ranker.model_, X, best)
    )
    for n in sorted({max(best - 1, 1), best, best + 1, 40}):
        assert log_loss(booster(n).predict_proba(X[last])[:, 1]) == pytest.approx(
            losses[n - 1], rel=1e-9
        )
    check = ranker.tree_selection_check_
    assert check["log_loss_at_n_trees"] == pytest.approx(losses[best - 1], rel=1e-9)
    assert check["log_loss_at_max_iter"] == pytest.approx(losses[-1], rel=1e-9)
    # switched off, or without a validation window: every tree
    off = PropensityRanker(calibration="none", tree_selection=False, **params)
    assert off.fit(X, y, window=window).model_.n_iter_ == 40
    assert off.tree_counts_ == (40,)
    with pytest.raises(ValueError, match=r"no calibrated probability at \[20\] trees"):
        off.predict_proba(X, n_trees=20)
    assert PropensityRanker(calibration="none", **params).fit(X, y).model_.n_iter_ == 40


@pytest.mark.parametrize("calibration", ["none", "logistic"])
def test_the_validation_ranker_never_saw_window_1(calibration):
    """What stage selection scores window 1 with: a booster fitted on windows >= 2 alone
    (equal to one fitted afresh on those rows), with the ranker's maps only when the served
    booster is that one; the probe is forgotten once used."""
    X, y, window = _overfittable()
    params = dict(max_iter=40, min_samples_leaf=20, negative_weight=3.0, random_state=0)
    ranker = PropensityRanker(calibration=calibration, **params).fit(X, y, window=window)
    older, weight = window >= 2, np.where(y, 1.0, 3.0)
    fresh = PropensityRanker(calibration="none", **params)._booster()
    fresh.fit(X[older], y[older], sample_weight=weight[older])
    replay = ranker.validation_ranker()
    assert replay.model_.n_iter_ == 40
    np.testing.assert_array_equal(
        replay.model_.predict_proba(_as_fitted(replay.model_, X)), fresh.predict_proba(X)
    )
    assert replay.n_trees_ == ranker.n_trees_ and replay.tree_counts_ == ranker.tree_counts_
    if calibration == "logistic":  # the served booster is the one of windows >= 2
        assert replay is ranker and ranker.calibrator_ is not None
        ranker.drop_validation_model()
        assert ranker.validation_ranker() is ranker
        return
    # the served booster saw every window; the replay is the probe, without maps
    assert replay is not ranker and replay.calibrators_ == {} and replay.calibrator_ is None
    assert not np.array_equal(
        ranker.model_.predict_proba(_as_fitted(ranker.model_, X)), fresh.predict_proba(X)
    )
    np.testing.assert_array_equal(
        replay.predict_proba(X)[:, 1], _first_trees_proba(fresh, X, ranker.n_trees_)
    )
    ranker.drop_validation_model()
    assert ranker.validation_ranker() is None


@pytest.mark.parametrize("calibration", ["logistic", "none"])
def test_every_offered_count_serves_what_a_ranker_of_that_many_trees_would(calibration):
    """One fitted ranker serves several tree counts (the recommender picks one per
    direction): at each, its probabilities are those of a ranker fitted with exactly that
    many trees and the same calibration, map included, and one walk gives them all."""
    X, y, window = _overfittable(seed=3)
    params = dict(min_samples_leaf=20, negative_weight=3.0, calibration=calibration)
    ranker = PropensityRanker(max_iter=40, random_state=0, **params).fit(X, y, window=window)
    counts = ranker.tree_counts_
    assert len(counts) >= 6 and ranker.n_trees_ in counts and max(counts) == 40
    together = ranker.positive_proba_at(X, counts)
    for column, n in enumerate(counts):
        alone = PropensityRanker(max_iter=n, tree_selection=False, random_state=0, **params)
        alone.fit(X, y, window=window)
        assert (alone.calibrator_ is not None) == (n in ranker.calibrators_)
        np.testing.assert_allclose(ranker.predict_proba(X, n_trees=n), alone.predict_proba(X))
        np.testing.assert_array_equal(together[:, column], ranker.predict_proba(X, n)[:, 1])
    if calibration == "logistic":  # a map per count, each fitted on its own log-odds
        slopes = {n: ranker.calibrators_[n].coef_[0, 0] for n in counts}
        assert len(set(slopes.values())) == len(counts)


# ------------------------------------------------------------------ day-0 audiences


def _shop(seed=0, n_users=300, n_items=160, n_events=12_000):
    """Four taste groups; item g, g + 4, ... belong to group g and say so in their title
    (only half carry the category); half the items launch during the 200 days, so past
    windows have brand-new items to learn from."""
    rng = np.random.default_rng(seed)
    start = RUN_DATE - pd.Timedelta(days=200)
    launch = np.where(np.arange(n_items) < n_items // 2, 0.0, rng.uniform(0, 190, n_items))
    group = rng.integers(0, 4, n_users)
    activity = rng.gamma(0.8, 1.0, n_users)
    users = rng.choice(n_users, n_events, p=activity / activity.sum())
    day = rng.uniform(0, 200, n_events)
    pick = np.empty(n_events, dtype=np.int64)
    for e in range(n_events):
        on_sale = np.flatnonzero(launch <= day[e])
        mine = on_sale[on_sale % 4 == group[users[e]]]
        pool = mine if (rng.random() < 0.85 and mine.size) else on_sale
        pick[e] = rng.choice(pool)
    interactions = pd.DataFrame(
        {
            "user_id": [f"u{u:03d}" for u in users],
            "item_id": [f"i{i:03d}" for i in pick],
            "occurred_at": (start + pd.to_timedelta(day, unit="D")).floor("min"),
            "event_type": "purchase",
            "event_weight": 5.0,
            "quantity": 1.0,
        }
    )
    items = pd.DataFrame(
        {
            "item_id": [f"i{i:03d}" for i in range(n_items)],
            "title": [f"{GROUP_WORDS[i % 4]} {NOUNS[i % 6]}" for i in range(n_items)],
            "category": [f"g{i % 4}" if i % 2 else None for i in range(n_items)],
            "price": 10.0 + (np.arange(n_items) % 7),
            "available_from": start + pd.to_timedelta(launch, unit="D"),
            "available_until": pd.NaT,
        }
    )
    extra = pd.DataFrame(
        {
            "item_id": ["fresh_gamma", "blank", "soon_beta", "far_future"],
            "title": ["gamma vase", None, "beta lamp", "alpha mug"],
            "category": [None, None, None, None],
            "price": [12.0, None, 11.0, 10.0],
            "available_from": [
                RUN_DATE - pd.Timedelta(days=1),
                RUN_DATE - pd.Timedelta(days=1),
                RUN_DATE + pd.Timedelta(days=5),
                RUN_DATE + pd.Timedelta(days=60),
            ],
            "available_until": pd.NaT,
        }
    )
    user_frame = pd.DataFrame(
        {"user_id": [f"u{u:03d}" for u in range(n_users)], "is_eligible": True}
    )
    return interactions, user_frame, pd.concat([items, extra], ignore_index=True), group


@pytest.fixture(scope="module")
def shop():
    return _shop()


@pytest.fixture(scope="module")
def served(shop):
    interactions, users, items, _ = shop
    return score(interactions, users, items, RUN_DATE, FAST)


def test_each_window_and_kind_of_example_samples_its_own_negatives(shop):
    """Adding a training window, or drawing new items' candidates differently, leaves every
    other window's and kind's examples as they were (one shared random stream reshuffled
    all negatives whenever one setting changed)."""
    interactions, _, items, _ = shop
    common = _small_training(items, negative_rate=0.1, cold_items=True)

    def frame(**changed):
        return training_frame(interactions, RUN_DATE, **{**common, **changed})

    two = frame(windows=2, cold_active_per_item=20)
    three = frame(windows=3, cold_active_per_item=20)
    other_cold = frame(windows=2, cold_active_per_item=5)
    first_two = three.window <= 2
    assert (three.window == 3).any() and len(two.y) == first_two.sum()
    pd.testing.assert_frame_equal(
        three.X[first_two].reset_index(drop=True), two.X.reset_index(drop=True)
    )
    assert np.array_equal(three.y[first_two], two.y)
    assert len(three.y_cold) > len(two.y_cold)
    # new items' candidates drawn differently: warm examples untouched, new ones changed
    pd.testing.assert_frame_equal(other_cold.X, two.X)
    assert np.array_equal(other_cold.y, two.y)
    assert len(other_cold.y_cold) != len(two.y_cold)
    # a different seed does draw other negatives
    reseeded = frame(windows=2, cold_active_per_item=20, random_state=1)
    assert np.array_equal(reseeded.y.sum(), two.y.sum()) and len(reseeded.y) != len(two.y)


def test_a_row_cap_keeps_every_positive_and_a_reweighted_subset_of_the_negatives(shop):
    """max_rows lowers the negative rate (fixed on window 1, the same for every window), keeps
    all positives, draws a subset of the uncapped negatives, and the reweighted base rate
    stays that of the uncapped frame (the booster's probabilities stay calibrated)."""
    interactions, _, items, _ = shop
    common = _small_training(items, windows=3, negative_rate=0.5)
    full = training_frame(interactions, RUN_DATE, **common)
    assert full.negative_rate == 0.5
    cap = len(full.y) // 3
    capped = training_frame(interactions, RUN_DATE, max_rows=cap, **common)

    # the rate, computed by hand from window 1's labels of the uncapped frame: its kept
    # negatives are half of window 1's negatives in expectation, positives all kept
    last = full.window == 1
    positives_1 = int(full.y[last].sum())
    negatives_1 = round((~full.y[last]).sum() / 0.5)
    assert capped.negative_rate < 0.5
    assert capped.negative_rate == pytest.approx((cap / 3 - positives_1) / negatives_1, rel=0.1)
    assert len(capped.y) == pytest.approx(cap, rel=0.15)
    assert capped.y.sum() == full.y.sum()  # every positive kept

    def keys(frame):
        columns = [frame.X[c].round(6) for c in ("mf", "mf_z_item", "mf_z_user")]
        return set(zip(frame.window, frame.y, *columns, strict=True))

    assert keys(capped) <= keys(full)  # the same draws against a lower threshold

    def weighted_rate(frame):
        weight = np.where(frame.y, 1.0, 1.0 / frame.negative_rate)
        return frame.y.sum() / weight.sum()

    assert weighted_rate(capped) == pytest.approx(weighted_rate(full), rel=0.1)
    # no cap, or one the frame is within: the frame as asked
    roomy = training_frame(interactions, RUN_DATE, max_rows=10 * len(full.y), **common)
    assert roomy.negative_rate == 0.5 and np.array_equal(roomy.y, full.y)


@pytest.mark.parametrize(
    ("positives", "negatives", "windows", "max_rows", "expected"),
    [
        (100, 9_900, 3, None, 0.1),  # no cap
        (100, 9_900, 3, 30_000, 0.1),  # 10,000 rows a window fit in 30,000
        (100, 9_900, 3, 3_000, 900 / 9_900),  # 1,000 a window: 100 positives, 900 negatives
        (100, 9_900, 2, 100, 100 / 9_900),  # the cap below the positives: as many negatives
        (50, 0, 3, 10, 0.1),  # nothing to sample
    ],
)
def test_capped_negative_rate_by_hand(positives, negatives, windows, max_rows, expected):
    y = np.r_[np.ones(positives, bool), np.zeros(negatives, bool)]
    assert capped_negative_rate(0.1, y, windows, max_rows) == pytest.approx(expected)


def _group_share(frame, group, wanted):
    users = frame["user_id"].str[1:].astype(int).to_numpy()
    return float(np.mean(group[users] == wanted))


def test_a_new_item_gets_a_day_zero_audience_from_its_title(shop, served):
    *_, group = shop
    assert served.diagnostics["cold_training_positives"] >= FAST["min_positives"]
    iu = served.item_user_scores
    fresh = iu[iu["item_id"] == "fresh_gamma"]
    assert len(fresh) == FAST["k_users"]
    assert (fresh["basis"] == "attributes").all() and not fresh["is_fallback"].any()
    assert fresh["score"].between(0, 1).all()
    assert _group_share(fresh, group, 2) >= 0.7  # a random audience would be about 0.25
    assert (iu.loc[~iu["item_id"].isin(["fresh_gamma"]), "basis"] == "history").all()


def test_new_items_take_their_own_count_of_most_active_users(shop):
    """Warm and new items have a most-active-users setting each: with no affinity
    candidates, every new item's audience is the same few most active users, while the
    warm items' lists still draw on the larger warm count."""
    interactions, users, items, _ = shop
    params = {
        **FAST,
        "candidates_per_item": 0,
        "active_candidates_per_item": 40,
        "cold_active_candidates_per_item": 7,
    }
    result = score(interactions, users, items, RUN_DATE, params)
    audiences = pd.concat([result.item_user_scores, result.prelaunch_item_user_scores])
    new = audiences[audiences["basis"] == "attributes"]
    assert set(new["item_id"]) == {"fresh_gamma", "soon_beta"}
    per_item = new.groupby("item_id")["user_id"].apply(frozenset)
    assert per_item.map(len).tolist() == [7, 7] and per_item.nunique() == 1
    counts = interactions.groupby("user_id")["item_id"].nunique()
    assert counts[list(per_item.iloc[0])].min() > counts.median()
    warm = audiences[audiences["basis"] == "history"]
    assert warm["user_id"].nunique() > 40


def test_an_item_nobody_knows_anything_about_is_listed_not_served(served):
    assert "blank" not in set(served.item_user_scores["item_id"])
    assert "blank" not in set(served.prelaunch_item_user_scores["item_id"])
    assert served.unscored_items.to_dict("records") == [
        {"item_id": "blank", "reason": "no_interactions_and_no_usable_attributes"}
    ]


def test_upcoming_items_get_prelaunch_audiences_only(shop, served):
    *_, group = shop
    pre = served.prelaunch_item_user_scores
    assert set(pre["item_id"]) == {"soon_beta"}  # far_future is beyond prelaunch_days
    assert _group_share(pre, group, 1) >= 0.7
    for frame in (served.item_user_scores, served.user_item_scores):
        assert not {"soon_beta", "far_future"} & set(frame["item_id"])


def test_explanations_point_into_the_users_history(shop, served):
    interactions, *_ = shop
    ui = served.user_item_scores
    explained = ui[ui["because_item_id"].notna()]
    assert len(explained) > 0.5 * len(ui)
    history = set(zip(interactions["user_id"], interactions["item_id"], strict=True))
    assert all(
        (u, b) in history
        for u, b in zip(explained["user_id"], explained["because_item_id"], strict=True)
    )


def test_cold_items_segment_in_the_evaluation(shop):
    interactions, users, items, _ = shop
    cutoff = RUN_DATE - pd.Timedelta(days=30)
    result = evaluate(
        interactions, users, items, cutoff=cutoff, horizon_days=30, params=FAST,
        cold_item_fraction=0.25, models=("served",),
    )  # fmt: skip
    m = result.metrics
    cold = m[m["segment"] == "cold_items"].set_index(["model", "metric", "k"])["value"]
    assert {"served", "category_affinity", "heavy_users", "random"} <= set(
        cold.index.get_level_values(0)
    )
    assert cold[("served", "recall", 100)] > 2 * cold[("random", "recall", 100)]
    held = result.params.set_index(["model", "parameter"])["value"]
    assert int(held[("served", "cold_items_held_out")]) > 0


# ------------------------------------------------------------------ reproducibility


def _canonical_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame's rows in one order (by every column), for an order-free comparison."""
    frame = frame.reset_index(drop=True)
    return frame.sort_values(list(frame.columns), kind="mergesort").reset_index(drop=True)


def test_score_does_not_depend_on_the_row_order_of_any_input(shop):
    """Issue 13: builds of the same data differed because the warehouse returns rows in no
    particular order. Day-0 audiences followed the items frame's order (the day-0 ranker's
    negatives were sampled in that order), popularity ties the users / items order, and
    the per-pair sums of event weights the interactions order."""
    interactions, users, items, _ = shop
    rng = np.random.default_rng(7)
    # Unequal weights (so a pair's sum depends on the order it is added in) and boosts
    # with ties (so equal scores need a tie-break that is not a row position).
    interactions = interactions.assign(
        event_weight=rng.choice([0.1, 0.7, 1.3, 5.0], len(interactions))
    )
    users = users.assign(boost=rng.choice([1.0, 1.5], len(users)))
    params = {**FAST, "k_users": 20}
    first = score(interactions, users, items, RUN_DATE, params)
    assert (first.item_user_scores["basis"] == "attributes").any()
    assert len(first.prelaunch_item_user_scores)

    def shuffled(frame, seed):
        return frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)

    second = score(
        shuffled(interactions, 1), shuffled(users, 2), shuffled(items, 3), RUN_DATE, params
    )
    assert first.stage == second.stage
    for name in (
        "user_item_scores",
        "item_user_scores",
        "prelaunch_item_user_scores",
        "unscored_items",
        "user_factors",
        "item_factors",
        "params",
    ):
        pd.testing.assert_frame_equal(
            _canonical_rows(getattr(first, name)),
            _canonical_rows(getattr(second, name)),
            check_exact=True,
            obj=name,
        )


def test_a_nullable_feature_column_fits_like_a_float_one_with_nan():
    """The ranker builds its boosters' float64 arrays itself: a pandas nullable column's
    missing values must reach them as NaN, as scikit-learn reads such a frame."""
    X, y, window = _overfittable()
    with_gaps = X.assign(x1=X["x1"].where(X.index % 5 != 0))
    nullable = with_gaps.assign(x1=with_gaps["x1"].astype("Float64"))
    assert nullable["x1"].isna().sum() == len(X) // 5
    params = dict(max_iter=20, negative_weight=3.0, random_state=0)
    expected = PropensityRanker(**params).fit(with_gaps, y, window=window)
    got = PropensityRanker(**params).fit(nullable, y, window=window)
    np.testing.assert_array_equal(got.predict_proba(with_gaps), expected.predict_proba(with_gaps))


def test_pairs_are_labelled_and_sampled_a_chunk_at_a_time_as_at_once(shop, monkeypatch):
    """A window's candidate pairs are labelled and their negatives drawn in chunks (at 1M
    users a window holds ~200M pairs); the labels are those of the truth matrix read pair by
    pair, the draws those of one call on the same stream, so the frame does not change."""
    import proactive_recs.estimators.ranker as ranker

    rng = np.random.default_rng(5)
    truth = sp.random(50, 40, density=0.1, format="csr", random_state=7)
    u, i = rng.integers(0, 50, 1000), rng.integers(0, 40, 1000)
    monkeypatch.setattr(ranker, "PAIR_CHUNK", 37)
    dense = truth.toarray()
    y = ranker._pair_labels(truth, u, i)
    assert np.array_equal(y, np.array([dense[a, b] > 0 for a, b in zip(u, i, strict=True)]))
    kept = ranker._kept_rows(y, 0.3, np.random.default_rng(11))
    assert np.array_equal(kept, y | (np.random.default_rng(11).random(1000) < 0.3))

    interactions, _, items, _ = shop
    common = _small_training(items, windows=2)
    chunked = training_frame(interactions, RUN_DATE, **common)
    monkeypatch.setattr(ranker, "PAIR_CHUNK", 1 << 40)  # one chunk
    whole = training_frame(interactions, RUN_DATE, **common)
    pd.testing.assert_frame_equal(chunked.X, whole.X)
    assert np.array_equal(chunked.y, whole.y) and np.array_equal(chunked.window, whole.window)
    assert chunked.y.sum() > 0 and len(chunked.y) > 2 * 37


def _small_training(items, **changed) -> dict:
    """training_frame's arguments for the small shop of these tests (``changed`` on top)."""
    return dict(
        horizon_days=FAST["horizon_days"],
        mf_params={"factors": 8, "iterations": 8, "random_state": 0},
        candidate_params=dict(per_user=30, per_item=40, active_per_item=20, popular_per_user=10),
        items=items,
        random_state=0,
        **changed,
    )
