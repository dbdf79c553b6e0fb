"""The one-pass top-K against a brute-force numpy reference."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from proactive_recs.topk import apply_boost, topk_both, topk_pairs, topk_rows


def _brute_lists(S: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Reference top-k of every row: sort all finite entries by (score desc, index asc)."""
    ids = np.full((S.shape[0], k), -1)
    vals = np.full((S.shape[0], k), -np.inf, dtype=np.float32)
    for r in range(S.shape[0]):
        finite = [c for c in range(S.shape[1]) if S[r, c] > -np.inf]
        best = sorted(finite, key=lambda c: (-S[r, c], c))[:k]
        ids[r, : len(best)] = best
        vals[r, : len(best)] = S[r, best]
    return ids, vals


def _brute_both(U, V, k_items, k_users, exclude, user_mask, item_mask, user_boost, item_boost):
    S = (U.astype(np.float32) @ V.astype(np.float32).T).astype(np.float32)
    # The documented rule, written out: s * b for s >= 0, s / b for s < 0, b >= 1e-6.
    b = np.maximum(user_boost[:, None] * item_boost[None, :], np.float32(1e-6))
    S = np.where(S >= 0, S * b, S / b).astype(np.float32)
    S[exclude.toarray() != 0] = -np.inf
    S[~user_mask, :] = -np.inf
    S[:, ~item_mask] = -np.inf
    ui = _brute_lists(S, k_items)
    iu = _brute_lists(np.ascontiguousarray(S.T), k_users)
    return ui, iu


def _random_case(rng, integer: bool):
    n_users, n_items, f = rng.integers(1, 40), rng.integers(1, 40), rng.integers(1, 5)
    if integer:  # small integers: many exact ties
        U = rng.integers(-2, 3, (n_users, f)).astype(np.float32)
        V = rng.integers(-2, 3, (n_items, f)).astype(np.float32)
    else:
        U = rng.standard_normal((n_users, f)).astype(np.float32)
        V = rng.standard_normal((n_items, f)).astype(np.float32)
    exclude = sp.random(n_users, n_items, density=0.2, random_state=rng, format="csr")
    user_mask = rng.random(n_users) < 0.85
    item_mask = rng.random(n_items) < 0.85
    user_boost = rng.choice([0.0, 0.5, 1.0, 2.0], n_users).astype(np.float32)
    item_boost = rng.choice([0.25, 1.0, 3.0], n_items).astype(np.float32)
    return U, V, exclude, user_mask, item_mask, user_boost, item_boost


@pytest.mark.parametrize("integer", [False, True])
def test_both_directions_match_brute_force(integer):
    rng = np.random.default_rng(7 + integer)
    for _ in range(120):
        U, V, exclude, umask, imask, ub, ib = _random_case(rng, integer)
        k_items, k_users = int(rng.integers(0, 9)), int(rng.integers(0, 9))
        block = int(rng.integers(1, 12))
        got = topk_both(
            U, V, k_items=k_items, k_users=k_users, exclude=exclude, user_mask=umask,
            item_mask=imask, user_boost=ub, item_boost=ib, block_size=block,
        )  # fmt: skip
        (ui, ui_v), (iu, iu_v) = _brute_both(U, V, k_items, k_users, exclude, umask, imask, ub, ib)
        np.testing.assert_array_equal(got.user_items, ui)
        np.testing.assert_array_equal(got.item_users, iu)
        # Integer factors multiply exactly; Gaussian ones may differ in the last bit
        # between a block product and the full product.
        np.testing.assert_allclose(got.user_item_scores, ui_v, rtol=1e-5)
        np.testing.assert_allclose(got.item_user_scores, iu_v, rtol=1e-5)


def test_wide_rows_use_the_sampled_bound_and_stay_exact():
    # Rows much wider than 8k take the strided-sample bound of the user direction; small
    # blocks with k_users=7 exercise many merges of the running item lists.
    rng = np.random.default_rng(3)
    U = rng.standard_normal((60, 4)).astype(np.float32)
    V = rng.integers(-1, 2, (700, 4)).astype(np.float32)  # heavy ties
    got = topk_both(U, V, k_items=5, k_users=7, block_size=16)
    ones = np.ones(60, bool), np.ones(700, bool), np.ones(60, np.float32), np.ones(700, np.float32)
    (ui, ui_v), (iu, iu_v) = _brute_both(U, V, 5, 7, sp.csr_matrix((60, 700)), *ones)
    np.testing.assert_array_equal(got.user_items, ui)
    np.testing.assert_array_equal(got.item_users, iu)
    np.testing.assert_array_equal(got.item_user_scores, iu_v)


def test_exclusions_and_masks_never_appear():
    rng = np.random.default_rng(11)
    U = rng.standard_normal((300, 8)).astype(np.float32)
    V = rng.standard_normal((120, 8)).astype(np.float32)
    exclude = sp.random(300, 120, density=0.3, random_state=1, format="csr")
    umask = rng.random(300) < 0.7
    imask = rng.random(120) < 0.7
    got = topk_both(
        U, V, k_items=10, k_users=25, exclude=exclude, user_mask=umask, item_mask=imask,
        block_size=37,
    )  # fmt: skip
    dense = exclude.toarray() != 0
    for u in range(300):
        items = got.user_items[u][got.user_items[u] >= 0]
        assert not umask[u] or len(items) == min(10, int((imask & ~dense[u]).sum()))
        assert umask[u] or len(items) == 0
        assert imask[items].all() and not dense[u, items].any()
    for i in range(120):
        users = got.item_users[i][got.item_users[i] >= 0]
        assert imask[i] or len(users) == 0
        assert umask[users].all() and not dense[users, i].any()


def test_short_lists_are_padded():
    U = np.ones((2, 1), np.float32)
    V = np.array([[1.0], [2.0]], np.float32)
    got = topk_both(U, V, k_items=4, k_users=3, exclude=sp.csr_matrix([[0, 1], [0, 0]]))
    np.testing.assert_array_equal(got.user_items, [[0, -1, -1, -1], [1, 0, -1, -1]])
    assert np.isneginf(got.user_item_scores[0, 1:]).all()
    np.testing.assert_array_equal(got.item_users, [[0, 1, -1], [1, -1, -1]])


def test_ties_go_to_the_lower_index():
    U = np.ones((5, 1), np.float32)
    V = np.ones((6, 1), np.float32)
    got = topk_both(U, V, k_items=3, k_users=2, block_size=2)
    assert (got.user_items == [0, 1, 2]).all()
    assert (got.item_users == [0, 1]).all()


def test_deterministic():
    rng = np.random.default_rng(5)
    U = rng.integers(-3, 4, (200, 3)).astype(np.float32)
    V = rng.integers(-3, 4, (90, 3)).astype(np.float32)
    a = topk_both(U, V, k_items=7, k_users=9, block_size=13)
    b = topk_both(U, V, k_items=7, k_users=9, block_size=64)
    np.testing.assert_array_equal(a.user_items, b.user_items)
    np.testing.assert_array_equal(a.item_users, b.item_users)


@pytest.mark.parametrize("raw", [-3.0, -0.5, 0.0, 0.5, 4.0])
def test_a_boost_lifts_a_candidate_whatever_the_sign_of_its_score(raw):
    # Two items with the same raw score for the user; the boosted one must rank first,
    # for positive, zero and negative scores alike.
    U = np.array([[1.0]], np.float32)
    V = np.array([[raw], [raw]], np.float32)
    got = topk_both(U, V, k_items=2, k_users=0, item_boost=np.array([1.0, 2.0], np.float32))
    if raw == 0.0:  # 0 * b == 0: an exact tie, lower index first
        assert got.user_items[0].tolist() == [0, 1]
    else:
        assert got.user_items[0].tolist() == [1, 0]


def test_boost_applies_before_the_cut():
    # Item 2 has the lowest raw score but a boost large enough to enter the top 1.
    U = np.array([[1.0]], np.float32)
    V = np.array([[3.0], [2.0], [-1.0]], np.float32)
    got = topk_both(U, V, k_items=1, k_users=1, item_boost=np.array([1, 1, 100], np.float32))
    assert got.user_items[0].tolist() == [0]  # -1 / 100 is still below 3
    got = topk_both(U, V, k_items=1, k_users=1, item_boost=np.array([0.1, 0.1, 1], np.float32))
    assert got.user_items[0].tolist() == [0]  # 0.3 > 0.2 > -1
    V = np.array([[3.0], [2.0], [1.0]], np.float32)
    got = topk_both(U, V, k_items=1, k_users=1, item_boost=np.array([1, 1, 5], np.float32))
    assert got.user_items[0].tolist() == [2]  # 1 * 5 > 3


@settings(max_examples=200, deadline=None)
@given(
    s=st.floats(-1e6, 1e6, allow_nan=False, width=32),
    b1=st.floats(0.0, 1e3, width=32),
    b2=st.floats(0.0, 1e3, width=32),
)
def test_apply_boost_is_monotone_in_the_boost(s, b1, b2):
    lo, hi = sorted([b1, b2])
    score = np.array([s], np.float32)
    assert apply_boost(score, hi)[0] >= apply_boost(score, lo)[0]


@settings(max_examples=200, deadline=None)
@given(
    s1=st.floats(-1e6, 1e6, allow_nan=False, width=32),
    s2=st.floats(-1e6, 1e6, allow_nan=False, width=32),
    b=st.floats(0.0, 1e3, width=32),
)
def test_apply_boost_keeps_the_order_of_equally_boosted_scores(s1, s2, b):
    lo, hi = sorted([s1, s2])
    out = apply_boost(np.array([lo, hi], np.float32), b)
    assert out[1] >= out[0]


def test_topk_rows_matches_brute_force_with_nan_and_ties():
    rng = np.random.default_rng(2)
    S = rng.integers(-2, 3, (50, 30)).astype(np.float32)
    S[rng.random(S.shape) < 0.2] = -np.inf
    S[rng.random(S.shape) < 0.05] = np.nan
    ids, vals = topk_rows(S, 6)
    ref_ids, ref_vals = _brute_lists(np.where(np.isnan(S), -np.inf, S), 6)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_array_equal(vals, ref_vals)


def test_topk_pairs_matches_brute_force():
    rng = np.random.default_rng(4)
    for _ in range(50):
        n_owner, n_member = rng.integers(1, 15), rng.integers(1, 15)
        dense = np.full((n_owner, n_member), -np.inf, np.float32)
        mask = rng.random((n_owner, n_member)) < 0.5
        dense[mask] = rng.integers(0, 4, mask.sum())
        owner, member = np.nonzero(mask)
        perm = rng.permutation(owner.size)
        k = int(rng.integers(0, 6))
        ids, vals = topk_pairs(owner[perm], member[perm], dense[mask][perm], n_owner, k)
        ref_ids, ref_vals = _brute_lists(dense, k)
        np.testing.assert_array_equal(ids, ref_ids)
        np.testing.assert_array_equal(vals, ref_vals)


def test_transform_is_applied_before_the_boost():
    # With expit, a raw score of -2 becomes 0.12, and a boost of 3 (0.36) beats the
    # unboosted 0.27 of a raw -1: on probabilities the boost is a plain multiplier.
    from scipy.special import expit

    U = np.array([[1.0]], np.float32)
    V = np.array([[-1.0], [-2.0]], np.float32)
    boost = np.array([1.0, 3.0], np.float32)
    got = topk_both(U, V, k_items=2, k_users=0, item_boost=boost, transform=expit)
    assert got.user_items[0].tolist() == [1, 0]
    np.testing.assert_allclose(got.user_item_scores[0], [3 * expit(-2.0), expit(-1.0)], rtol=1e-6)
    # Without the transform the sign-aware rule divides: -2 / 3 = -0.67 > -1.
    got = topk_both(U, V, k_items=2, k_users=0, item_boost=boost)
    assert got.user_items[0].tolist() == [1, 0]
    np.testing.assert_allclose(got.user_item_scores[0], [-2.0 / 3.0, -1.0], rtol=1e-6)
