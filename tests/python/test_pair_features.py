"""The second stage's pair features against brute force over the whole score matrix.

Scoring builds the features straight into one float32 array (pair_feature_matrix, with the
compiled history_affinity instead of sparse products): every value is checked here against
the definition computed the slow way, and the ranker must give the same probabilities from
the array as from the frame it was fitted on.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from test_two_stage import RUN_DATE, synthetic_interactions

from proactive_recs.estimators.ranker import (
    PAIR_COLUMNS,
    PropensityRanker,
    _pair_ages,
    build_snapshot,
    candidate_pairs,
    history_affinity,
    pair_feature_matrix,
    pair_feature_names,
    pair_features,
)

MF = {"factors": 8, "iterations": 6, "random_state": 0}


@pytest.fixture(scope="module")
def snapshot_and_pairs():
    interactions = synthetic_interactions(n_users=120, n_items=60, n_events=3000, seed=3)
    item_ids = sorted(interactions["item_id"].unique())
    items = pd.DataFrame(
        {
            "item_id": item_ids,
            # a third of the items without a category: their category_share is missing
            "category": [None if k % 3 == 0 else f"c{k % 4}" for k in range(len(item_ids))],
            "price": np.linspace(1.0, 30.0, len(item_ids)),
        }
    )
    snap = build_snapshot(interactions, RUN_DATE, horizon_days=14.0, mf_params=MF, items=items)
    u, i = candidate_pairs(snap, per_user=12, per_item=15, active_per_item=6, popular_per_user=4)
    return snap, u, i


def test_every_feature_matches_its_definition(snapshot_and_pairs):
    snap, u, i = snapshot_and_pairs
    frame = pair_features(snap, u, i)
    assert list(frame.columns) == pair_feature_names(snap)
    assert all(dtype == np.float32 for dtype in frame.dtypes)

    U = snap.mf.user_factors_.astype(np.float64)
    V = snap.mf.item_factors_.astype(np.float64)
    scores = U @ V.T
    mf = scores[u, i]
    column_z = (mf - scores.mean(axis=0)[i]) / (scores.std(axis=0, ddof=1)[i] + 1e-6)
    row_z = (mf - scores.mean(axis=1)[u]) / (scores.std(axis=1, ddof=1)[u] + 1e-6)
    similarity = snap.similarity.toarray().astype(np.float64)
    knn = (snap.data.seen.toarray() @ similarity)[u, i]
    knn_recent = (snap.recent.toarray().astype(np.float64) @ similarity)[u, i]
    history = np.asarray((snap.data.seen > 0).sum(axis=1)).ravel()[u]

    def close(name, expected):
        np.testing.assert_allclose(frame[name], expected, rtol=2e-4, atol=2e-5, err_msg=name)

    close("mf", mf)
    close("mf_z_item", column_z)
    close("mf_z_user", row_z)
    close("knn", knn)
    close("knn_mean", knn / np.maximum(history, 1))
    close("knn_recent", knn_recent)
    assert (frame["knn"] > 0).mean() > 0.5, "the affinity check needs non-zero values"

    category = snap.item_category[i]
    by_hand = np.full(u.size, np.nan)
    seen = snap.data.seen.toarray() > 0
    for row, user in enumerate(u):
        if category[row] >= 0:
            bought = np.flatnonzero(seen[user])
            in_category = (snap.item_category[bought] == category[row]).sum()
            with_category = (snap.item_category[bought] >= 0).sum()
            by_hand[row] = in_category / max(with_category, 1)
    close("category_share", by_hand)
    assert frame["category_share"].isna().any() and frame["category_share"].notna().any()

    for column in snap.user_features.columns:
        np.testing.assert_array_equal(frame[column], snap.user_features[column].to_numpy()[u])
    for column in snap.item_features.columns:
        np.testing.assert_array_equal(frame[column], snap.item_features[column].to_numpy()[i])


def test_the_matrix_holds_the_asked_columns_in_the_asked_order(snapshot_and_pairs):
    snap, u, i = snapshot_and_pairs
    frame = pair_features(snap, u, i)
    names = pair_feature_names(snap)
    asked = [names[k] for k in np.random.default_rng(0).permutation(len(names))[:15]]
    matrix = pair_feature_matrix(snap, u, i, asked)
    assert matrix.dtype == np.float32 and matrix.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(matrix, frame[asked].to_numpy())
    with pytest.raises(ValueError, match="unknown feature columns.*'not_a_feature'"):
        pair_feature_matrix(snap, u, i, ["mf", "not_a_feature"])
    assert set(PAIR_COLUMNS) <= set(names)


def test_history_affinity_equals_the_product_including_empty_histories():
    rng = np.random.default_rng(7)
    left = sp.random(40, 30, density=0.1, format="lil", random_state=1, dtype=np.float32)
    left.rows[5], left.data[5] = [], []  # a user without history
    left = left.tocsr()
    similarity = sp.random(30, 30, density=0.2, format="csr", random_state=2, dtype=np.float32)
    u = np.sort(rng.integers(0, 40, 500))
    i = rng.integers(0, 30, 500)
    u[:3] = 5
    expected = (left.toarray().astype(np.float64) @ similarity.toarray())[u, i]
    got = history_affinity(left, similarity, u, i)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
    assert (got[:3] == 0).all()
    assert history_affinity(left, similarity, np.zeros(0, np.int64), np.zeros(0)).size == 0


def test_pair_ages_are_each_pairs_last_and_first_event_by_brute_force():
    """The users' and items' activity features count pairs by the age of their last and
    first event: each distinct (user, item) once, in code order, with the min and max age."""
    rng = np.random.default_rng(5)
    u = rng.integers(0, 30, 2000)
    i = rng.integers(0, 40, 2000)
    age = np.round(rng.random(2000) * 90, 1)  # ties between events of a pair
    expected = {}
    for a, b, x in zip(u, i, age, strict=True):
        low, high = expected.get((a, b), (np.inf, -np.inf))
        expected[(a, b)] = (min(low, x), max(high, x))
    users, items, last, first = _pair_ages(u, i, age, 40)
    assert list(zip(users, items, strict=True)) == sorted(expected)
    assert [(x, y) for x, y in zip(last, first, strict=True)] == [
        expected[k] for k in sorted(expected)
    ]
    assert all(part.size == 0 for part in _pair_ages(u[:0], i[:0], age[:0], 40))


def test_the_ranker_gives_the_same_probabilities_from_the_array_and_the_frame(
    snapshot_and_pairs,
):
    snap, u, i = snapshot_and_pairs
    frame = pair_features(snap, u, i)
    y = (np.random.default_rng(1).random(u.size) < 0.2) | (frame["knn"].to_numpy() > 1.0)
    ranker = PropensityRanker(max_iter=20, random_state=0).fit(frame, y)
    matrix = pair_feature_matrix(snap, u, i, ranker.feature_names_in_)
    np.testing.assert_array_equal(ranker.predict_proba(matrix), ranker.predict_proba(frame))
    with pytest.raises(ValueError, match="expected .* columns"):
        ranker.predict_proba(matrix[:, :-1])


def test_candidates_are_the_union_of_the_four_proposals_by_brute_force(snapshot_and_pairs):
    """candidate_pairs against the definition: MF's best items per user and users per item,
    the most active users per item and the most popular items per user, each ranked over
    the whole boosted score matrix with exclusions and masks, ties to the lower index."""
    snap = snapshot_and_pairs[0]
    n_u, n_i = snap.data.n_users, snap.data.n_items
    rng = np.random.default_rng(5)
    exclude = snap.data.seen.tocsr()
    user_mask, item_mask = rng.random(n_u) < 0.9, rng.random(n_i) < 0.9
    user_boost = rng.choice([0.5, 1.0, 2.0], n_u).astype(np.float32)  # powers of two: exact
    item_boost = rng.choice([0.25, 1.0, 4.0], n_i).astype(np.float32)
    sizes = {"per_user": 7, "per_item": 9, "active_per_item": 5, "popular_per_user": 6}
    u, i = candidate_pairs(
        snap, exclude=exclude, user_mask=user_mask, item_mask=item_mask,
        user_boost=user_boost, item_boost=item_boost, **sizes,
    )  # fmt: skip

    def boosted(S):
        b = np.maximum(user_boost[:, None] * item_boost[None, :], np.float32(1e-6))
        S = np.where(S >= 0, S * b, S / b).astype(np.float32)
        S[exclude.toarray() != 0] = -np.inf
        S[~user_mask, :] = -np.inf
        S[:, ~item_mask] = -np.inf
        return S

    def best(S, k):  # (row, column) of each row's k best finite entries
        return {
            (r, c)
            for r in range(S.shape[0])
            for c in sorted(np.flatnonzero(S[r] > -np.inf), key=lambda c: (-S[r, c], c))[:k]
        }

    uf, itf = snap.user_features, snap.item_features
    mf = boosted(snap.mf.user_factors_.astype(np.float32) @ snap.mf.item_factors_.T)
    activity = (np.log1p(uf["u_items"]) + np.log1p(uf["u_items_3h"])).to_numpy() + 1.0
    popularity = (np.log1p(itf["i_users_h"]) + 1e-3 * np.log1p(itf["i_users"])).to_numpy() + 1.0
    active = boosted(np.repeat(activity.astype(np.float32)[:, None], n_i, axis=1))
    popular = boosted(np.repeat(popularity.astype(np.float32)[None, :], n_u, axis=0))
    expected = (
        best(mf, sizes["per_user"])
        | {(r, c) for c, r in best(mf.T.copy(), sizes["per_item"])}
        | {(r, c) for c, r in best(active.T.copy(), sizes["active_per_item"])}
        | best(popular, sizes["popular_per_user"])
    )
    assert set(zip(u.tolist(), i.tolist(), strict=True)) == expected
    assert len(expected) == u.size  # distinct
    assert (np.diff(u) >= 0).all()  # sorted by user
