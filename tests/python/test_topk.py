"""The one-pass top-K against a brute-force numpy reference."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from proactive_recs.estimators import topk as topk_module
from proactive_recs.estimators.topk import (
    apply_boost,
    distinct_pairs,
    merge_topk,
    owner_blocks,
    topk_both,
    topk_pairs,
    topk_rows,
    topk_shared_score,
)


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


def test_topk_pairs_with_signs_zeros_and_missing_scores_matches_brute_force():
    rng = np.random.default_rng(5)
    values = np.array([-1.5, -0.0, 0.0, 0.5, 2.0, np.nan, np.inf], np.float32)
    for _ in range(100):
        n_owner, n_member = rng.integers(1, 30), rng.integers(1, 30)
        mask = rng.random((n_owner, n_member)) < 0.6
        owner, member = np.nonzero(mask)
        score = values[rng.integers(0, values.size, owner.size)]
        dense = np.full((n_owner, n_member), -np.inf, np.float32)
        finite = np.isfinite(score)
        dense[owner[finite], member[finite]] = score[finite] + np.float32(0)  # -0 is 0
        perm = rng.permutation(owner.size)
        k = int(rng.integers(1, 12))
        ids, vals = topk_pairs(owner[perm], member[perm], score[perm], n_owner, k)
        ref_ids, ref_vals = _brute_lists(dense, k)
        np.testing.assert_array_equal(ids, ref_ids)
        np.testing.assert_array_equal(vals + np.float32(0), ref_vals)


def test_topk_pairs_with_long_buckets_and_int32_indices_matches_brute_force():
    # Buckets of hundreds of pairs go through the partial selection, short ones through
    # the insertion sort; ties in score are frequent (few distinct values).
    rng = np.random.default_rng(6)
    for k in (1, 20, 64, 65, 100, 700):
        n_owner, n_member = 7, 600
        mask = rng.random((n_owner, n_member)) < rng.random((n_owner, 1))
        owner, member = np.nonzero(mask)
        score = rng.integers(-20, 20, owner.size).astype(np.float32) / 4
        dense = np.full((n_owner, n_member), -np.inf, np.float32)
        dense[owner, member] = score + np.float32(0)
        perm = rng.permutation(owner.size)
        ids, vals = topk_pairs(
            owner[perm].astype(np.int32), member[perm].astype(np.int32), score[perm], n_owner, k
        )
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


# ------------------------------------------------------------ the compiled kernel


def _lexsort_lists(S: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Full-matrix reference: per row, every entry > -inf (so neither -inf nor NaN) by
    (score desc, index asc) with np.lexsort; padded with -1 / -inf."""
    ids = np.full((S.shape[0], k), -1, np.int64)
    vals = np.full((S.shape[0], k), -np.inf, np.float32)
    for r in range(S.shape[0]):
        ok = np.flatnonzero(S[r] > -np.inf)
        best = ok[np.lexsort((ok, -S[r, ok]))][:k]
        ids[r, : best.size] = best
        vals[r, : best.size] = S[r, best]
    return ids, vals


def _reference(U, V, k_items, k_users, *, exclude=None, user_mask=None, item_mask=None,
               user_boost=None, item_boost=None, transform=None):  # fmt: skip
    """topk_both written out on the full score matrix."""
    with np.errstate(all="ignore"):
        S = (U.astype(np.float32) @ V.astype(np.float32).T).astype(np.float32)
        if transform is not None:
            S = np.asarray(transform(S), np.float32)
        if user_boost is not None or item_boost is not None:
            ub = np.ones(len(U), np.float32) if user_boost is None else user_boost
            ib = np.ones(len(V), np.float32) if item_boost is None else item_boost
            b = np.maximum(ub[:, None] * ib[None, :], np.float32(1e-6))
            S = np.where(S >= 0, S * b, S / b).astype(np.float32)
    if exclude is not None:
        coo = sp.coo_matrix(exclude)
        S[coo.row, coo.col] = -np.inf  # stored entries, explicit zeros included
    if user_mask is not None:
        S[~user_mask, :] = -np.inf
    if item_mask is not None:
        S[:, ~item_mask] = -np.inf
    return _lexsort_lists(S, k_items), _lexsort_lists(np.ascontiguousarray(S.T), k_users)


def _assert_same(got, ref, exact_scores=True):
    (ui, ui_v), (iu, iu_v) = ref
    np.testing.assert_array_equal(got.user_items, ui)
    np.testing.assert_array_equal(got.item_users, iu)
    if exact_scores:
        np.testing.assert_array_equal(got.user_item_scores, ui_v)
        np.testing.assert_array_equal(got.item_user_scores, iu_v)
    else:
        np.testing.assert_allclose(got.user_item_scores, ui_v, rtol=1e-5)
        np.testing.assert_allclose(got.item_user_scores, iu_v, rtol=1e-5)
    assert got.user_items.dtype == np.int64 and got.item_users.dtype == np.int64
    assert got.user_item_scores.dtype == np.float32 and got.item_user_scores.dtype == np.float32


@pytest.fixture(params=[1, 2, 3, 5], ids=lambda p: f"parts{p}")
def parts(request, monkeypatch):
    """Run the kernel with 1, 2, 3 or 5 thread parts (more parts than threads is allowed:
    the parts are independent); the result must not depend on it."""
    monkeypatch.setattr(topk_module, "_n_parts", lambda: request.param)
    return request.param


def _special_case(rng):
    """Small integer factors (exact products, many ties) with some NaN / inf entries,
    masks, boosts of 0 and of non-powers of two, exclusions with explicit zeros and
    duplicates, and k up to beyond the number of candidates."""
    n_users, n_items = (int(x) for x in rng.integers(1, 90, 2))
    f = int(rng.integers(1, 4))
    U = rng.integers(-2, 3, (n_users, f)).astype(np.float32)
    V = rng.integers(-2, 3, (n_items, f)).astype(np.float32)
    for A in (U, V):
        special = rng.random(A.shape) < 0.03
        A[special] = rng.choice([np.nan, np.inf, -np.inf], special.sum())
    nnz = int(rng.integers(0, n_users * n_items // 3 + 1))
    rows, cols = rng.integers(0, n_users, nnz), rng.integers(0, n_items, nnz)
    data = rng.choice([0.0, 1.0, 2.0], nnz)  # explicit zeros are exclusions too
    exclude = sp.coo_matrix((data, (rows, cols)), shape=(n_users, n_items))
    return (
        U,
        V,
        {
            "exclude": exclude if rng.random() < 0.8 else None,
            "user_mask": (rng.random(n_users) < 0.8) if rng.random() < 0.7 else None,
            "item_mask": (rng.random(n_items) < 0.8) if rng.random() < 0.7 else None,
            "user_boost": rng.choice([0.0, 0.5, 1.0, 3.0], n_users).astype(np.float32)
            if rng.random() < 0.5
            else None,
            "item_boost": rng.choice([0.0, 0.25, 1.0, 2.0, 3.0], n_items).astype(np.float32)
            if rng.random() < 0.5
            else None,
        },
    )


def test_kernel_matches_the_full_matrix_reference(parts):
    rng = np.random.default_rng(100 + parts)
    for _ in range(60):
        U, V, options = _special_case(rng)
        k_items, k_users = (int(x) for x in rng.integers(0, 100, 2))
        block = int(rng.choice([1, 2, 3, 7, 64, 1000]))
        got = topk_both(U, V, k_items=k_items, k_users=k_users, block_size=block, **options)
        _assert_same(got, _reference(U, V, k_items, k_users, **options))


def test_transform_path_matches_the_reference(parts):
    # With a transform the blocks are scored by numpy and selected by the kernel in a
    # second call: same result. log1p of negative products gives NaN (never selected).
    rng = np.random.default_rng(7)
    for _ in range(25):
        U, V, options = _special_case(rng)
        k_items, k_users = (int(x) for x in rng.integers(0, 60, 2))
        block = int(rng.choice([1, 5, 64]))
        transform = np.log1p if rng.random() < 0.5 else (lambda s: np.float32(2) * s - 1)
        with np.errstate(all="ignore"):
            got = topk_both(
                U, V, k_items=k_items, k_users=k_users, block_size=block, transform=transform,
                **options,
            )  # fmt: skip
        _assert_same(got, _reference(U, V, k_items, k_users, transform=transform, **options))


def test_long_lists_and_many_replacements(parts):
    # Scores rising with the user index: every user beats every item's current list, so
    # the item buffers fill and shrink again and again; rising with the item index
    # likewise for the users' buffers. Plus rows long enough for the row floor and for
    # full 64-entry segments, and heavy ties (the integer part repeats).
    n_users, n_items = 700, 900
    u = np.arange(n_users, dtype=np.float32) % 50
    i = np.arange(n_items, dtype=np.float32) % 70
    U = np.stack([u, np.ones(n_users, np.float32), u % 3], axis=1)
    V = np.stack([np.ones(n_items, np.float32), i, i % 5 - 2], axis=1)
    for k_items, k_users in [(1, 1), (7, 13), (50, 50), (200, 300)]:
        got = topk_both(U, V, k_items=k_items, k_users=k_users, block_size=33)
        _assert_same(got, _reference(U, V, k_items, k_users))


def test_gaussian_factors_with_threads_and_block_sizes(parts):
    rng = np.random.default_rng(1)
    U = rng.standard_normal((500, 16)).astype(np.float32)
    V = rng.standard_normal((300, 16)).astype(np.float32)
    exclude = sp.random(500, 300, density=0.1, random_state=2, format="csr")
    ref = _reference(U, V, 20, 30, exclude=exclude)
    for block in (1, 17, 500):
        got = topk_both(U, V, k_items=20, k_users=30, exclude=exclude, block_size=block)
        # Scores may differ in the last bit from the full product; the lists do not.
        _assert_same(got, ref, exact_scores=False)


def test_numba_threads_do_not_change_the_result():
    import numba

    rng = np.random.default_rng(3)
    U = rng.integers(-3, 4, (400, 3)).astype(np.float32)
    V = rng.integers(-3, 4, (250, 3)).astype(np.float32)
    before = numba.get_num_threads()
    try:
        results = []
        for threads in sorted({1, numba.config.NUMBA_NUM_THREADS}):
            numba.set_num_threads(threads)
            results.append(topk_both(U, V, k_items=9, k_users=11, block_size=7))
    finally:
        numba.set_num_threads(before)
    for other in results[1:]:
        np.testing.assert_array_equal(other.user_items, results[0].user_items)
        np.testing.assert_array_equal(other.item_users, results[0].item_users)
    _assert_same(results[0], _reference(U, V, 9, 11))


def test_nan_and_infinite_scores():
    # User 0 scores +inf on items 1 and 2 (ties: lower index first), NaN on item 0;
    # user 1 scores -inf everywhere (nothing selectable: padded list).
    U = np.array([[1.0, 0.0], [-np.inf, 0.0]], np.float32)
    V = np.array([[np.nan, 1.0], [np.inf, 0.0], [np.inf, 1.0], [1.0, 0.0]], np.float32)
    with np.errstate(all="ignore"):
        got = topk_both(U, V, k_items=4, k_users=2)
    np.testing.assert_array_equal(got.user_items, [[1, 2, 3, -1], [-1, -1, -1, -1]])
    np.testing.assert_array_equal(got.user_item_scores[0], [np.inf, np.inf, 1.0, -np.inf])
    np.testing.assert_array_equal(got.item_users, [[-1, -1], [0, -1], [0, -1], [0, -1]])


@pytest.mark.parametrize(
    "n_users, n_items, k_items, k_users",
    [(0, 5, 3, 3), (4, 0, 3, 3), (0, 0, 2, 2), (3, 4, 0, 0), (3, 4, 0, 2), (3, 4, 5, 0)],
)
def test_empty_inputs_and_zero_k(n_users, n_items, k_items, k_users):
    U = np.ones((n_users, 2), np.float32)
    V = np.ones((n_items, 2), np.float32)
    got = topk_both(U, V, k_items=k_items, k_users=k_users)
    assert got.user_items.shape == got.user_item_scores.shape == (n_users, k_items)
    assert got.item_users.shape == got.item_user_scores.shape == (n_items, k_users)
    _assert_same(got, _reference(U, V, k_items, k_users))


def test_zero_width_factors_score_zero():
    got = topk_both(np.ones((3, 0)), np.ones((4, 0)), k_items=2, k_users=5)
    np.testing.assert_array_equal(got.user_items, [[0, 1]] * 3)
    np.testing.assert_array_equal(got.item_users, [[0, 1, 2, -1, -1]] * 4)
    assert (got.user_item_scores == 0).all()


def test_everything_masked_gives_padding():
    U = np.ones((3, 2), np.float32)
    V = np.ones((4, 2), np.float32)
    got = topk_both(U, V, k_items=2, k_users=2, user_mask=np.zeros(3, bool))
    assert (got.user_items == -1).all() and (got.item_users == -1).all()
    assert np.isneginf(got.user_item_scores).all() and np.isneginf(got.item_user_scores).all()


def test_factor_layouts_and_dtypes_are_accepted():
    rng = np.random.default_rng(9)
    U = rng.integers(-2, 3, (60, 4)).astype(np.float64)
    V = rng.integers(-2, 3, (40, 4)).astype(np.float64)
    ref = _reference(U, V, 5, 6)
    for u, v in [(U, V), (np.asfortranarray(U), V[::-1][::-1]), (U.astype(np.int64), V.T.T)]:
        _assert_same(topk_both(u, v, k_items=5, k_users=6), ref)


def test_bad_arguments_are_rejected():
    U, V = np.ones((3, 2)), np.ones((4, 2))
    with pytest.raises(ValueError, match="same width"):
        topk_both(U, np.ones((4, 3)), k_items=1, k_users=1)
    with pytest.raises(ValueError, match="exclude must have shape"):
        topk_both(U, V, k_items=1, k_users=1, exclude=sp.csr_matrix((4, 3)))
    with pytest.raises(ValueError, match="one entry per"):
        topk_both(U, V, k_items=1, k_users=1, user_mask=np.ones(4, bool))
    with pytest.raises(ValueError, match=">= 0"):
        topk_both(U, V, k_items=-1, k_users=1)
    with pytest.raises(ValueError, match="elementwise"):
        topk_both(U, V, k_items=1, k_users=1, transform=lambda s: s[:1])


def test_topk_rows_wide_rows_with_ties_nan_and_inf(parts):
    rng = np.random.default_rng(12)
    for n_cols, k in [(63, 5), (64, 64), (129, 3), (2000, 10), (5000, 40)]:
        S = rng.integers(-3, 4, (30, n_cols)).astype(np.float32)
        S[rng.random(S.shape) < 0.1] = -np.inf
        S[rng.random(S.shape) < 0.05] = np.nan
        S[rng.random(S.shape) < 0.01] = np.inf
        S[3] = np.nan  # a row without candidates
        S[4] = 0.0
        S[4, ::2] = -0.0  # -0 and +0 tie
        ids, vals = topk_rows(S, k)
        ref_ids, ref_vals = _lexsort_lists(S, k)
        np.testing.assert_array_equal(ids, ref_ids)
        np.testing.assert_array_equal(vals, ref_vals)


def test_buffer_compaction_keeps_the_best():
    # The pivot of a compaction comes from a sample; whatever the order of the buffer
    # (sorted, reversed, random, the best at the sampled positions or away from them),
    # the k best keys stay and the threshold is the score of a kept key ranked >= k.
    from proactive_recs.estimators.topk import _compact, _key, _key_score

    rng = np.random.default_rng(0)
    for n, k in [(116, 50), (36, 10), (17, 1), (216, 100)]:
        scores = rng.integers(-5, 6, n).astype(np.float32)
        keys = np.array([_key(s, i) for i, s in enumerate(scores)], np.uint64)
        best = np.sort(keys)[:k]
        orders = [np.arange(n), np.arange(n)[::-1], rng.permutation(n)]
        orders += [np.argsort(keys), np.argsort(keys)[::-1]]
        for order in orders:
            buf = keys[order][None, :].copy()
            length, thr = _compact(buf, 0, n, k)
            kept = buf[0, :length]
            assert k <= length < n
            assert set(best.tolist()) <= set(kept.tolist())
            assert len(set(kept.tolist())) == length  # nothing duplicated
            kept_scores = np.array([_key_score(x) for x in kept], np.float32)
            assert thr in kept_scores
            # a later entry (higher index) scoring <= thr is beaten by >= k kept keys
            assert (kept_scores >= thr).sum() >= k
            # every dropped key is beaten by at least k kept ones
            dropped = np.setdiff1d(keys, kept)
            assert all((kept < d).sum() >= k for d in dropped)


def test_numba_without_a_cache_location_falls_back(recwarn):
    # A function whose source file numba cannot locate (here: defined by exec) cannot be
    # cached; the kernel is then compiled per process with a warning instead of failing.
    namespace: dict = {}
    exec("def plus_one(x):\n    return x + 1\n", namespace)
    with pytest.warns(RuntimeWarning, match="cannot cache plus_one"):
        compiled = topk_module._jit()(namespace["plus_one"])
    assert compiled(1) == 2


def test_concurrent_calls_agree_and_restore_the_blas_threads():
    # topk_both limits BLAS to one thread per numba thread while it runs; calls from
    # several Python threads at once must still give their own results and leave the
    # BLAS thread counts as they were.
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_info

    def blas_threads():
        return {
            i["filepath"]: i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"
        }

    rng = np.random.default_rng(21)
    cases = [rng.integers(-3, 4, (int(n), 3)).astype(np.float32) for n in (50, 80, 120, 30)]
    V = rng.integers(-3, 4, (70, 3)).astype(np.float32)
    topk_both(cases[0], V, k_items=1, k_users=1)  # loads every BLAS the kernel uses
    before = blas_threads()
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda U: topk_both(U, V, k_items=6, k_users=8), cases * 3))
    assert blas_threads() == before
    for U, result in zip(cases * 3, got, strict=True):
        _assert_same(result, _reference(U, V, 6, 8))


@settings(max_examples=60, deadline=None)
@given(
    n_owners=st.integers(0, 12),
    n_members=st.integers(1, 9),
    widths=st.lists(st.integers(0, 6), min_size=0, max_size=4),
    seed=st.integers(0, 2**31 - 1),
)
def test_distinct_pairs_is_the_sorted_union_of_the_lists(n_owners, n_members, widths, seed):
    """Lists in both orientations, with padding and repeats, against a set union."""
    rng = np.random.default_rng(seed)
    owner_lists, member_lists, expected = [], [], set()
    for k, width in enumerate(widths):
        by_owner = k % 2 == 0
        rows, limit = (n_owners, n_members) if by_owner else (n_members, n_owners)
        lists = (
            rng.integers(-1, max(limit, 1), size=(rows, width))
            if limit
            else (np.full((rows, width), -1))
        )
        (owner_lists if by_owner else member_lists).append(lists)
        for r, c in zip(*np.nonzero(lists >= 0), strict=True):
            expected.add((r, int(lists[r, c])) if by_owner else (int(lists[r, c]), r))
    owners, members = distinct_pairs(n_owners, owner_lists, member_lists)
    got = list(zip(owners.tolist(), members.tolist(), strict=True))
    assert got == sorted(expected)
    assert owners.dtype == members.dtype == np.int32  # half the memory of int64 pairs
    # consuming the lists (so their memory can go) gives the same pairs and empties them
    consumed = distinct_pairs(n_owners, list(owner_lists), member_lists, consume=True)
    assert consumed[0].tolist() == owners.tolist() and consumed[1].tolist() == members.tolist()
    assert member_lists == []


@settings(max_examples=80, deadline=None)
@given(
    n_owners=st.integers(1, 8),
    n_members=st.integers(1, 40),
    k=st.integers(0, 7),
    n_parts=st.integers(1, 5),
    seed=st.integers(0, 2**31 - 1),
)
def test_merging_the_top_k_of_disjoint_parts_is_the_top_k_of_all(
    n_owners, n_members, k, n_parts, seed
):
    """The item -> user cut of a scoring run done a block of users at a time: the members
    split into parts (blocks), each part cut on its own, the cuts merged one by one, must
    equal one cut over every pair: ties (few distinct scores, -0 and 0) included."""
    rng = np.random.default_rng(seed)
    values = np.array([-1.0, -0.0, 0.0, 0.5, 2.0], np.float32)
    mask = rng.random((n_owners, n_members)) < 0.7
    owner, member = np.nonzero(mask)
    score = values[rng.integers(0, values.size, owner.size)]
    expected = topk_pairs(owner, member, score, n_owners, k)
    part_of_member = rng.integers(0, n_parts, n_members)
    ids, vals = topk_pairs(owner[:0], member[:0], score[:0], n_owners, k)  # all padding
    for part in rng.permutation(n_parts):
        here = part_of_member[member] == part
        merge_topk(ids, vals, *topk_pairs(owner[here], member[here], score[here], n_owners, k))
    np.testing.assert_array_equal(ids, expected[0])
    np.testing.assert_array_equal(vals, expected[1])


def test_merge_topk_refuses_lists_of_different_shapes():
    ids, vals = topk_pairs(np.zeros(0, int), np.zeros(0, int), np.zeros(0), 3, 2)
    other = topk_pairs(np.zeros(0, int), np.zeros(0, int), np.zeros(0), 3, 4)
    with pytest.raises(ValueError, match="shapes differ"):
        merge_topk(ids, vals, *other)


@settings(max_examples=100, deadline=None)
@given(
    counts=st.lists(st.integers(0, 9), min_size=0, max_size=30),
    max_pairs=st.integers(1, 25),
)
def test_owner_blocks_cover_the_pairs_and_never_split_an_owner(counts, max_pairs):
    owner = np.repeat(np.arange(len(counts)), counts)
    blocks = owner_blocks(owner, max_pairs)
    bounds = [0] + [b for _, b in blocks]
    assert [a for a, _ in blocks] == bounds[:-1] and bounds[-1] == owner.size  # a cover
    for a, b in blocks:
        assert b > a
        if a > 0:
            assert owner[a - 1] != owner[a]  # the cut falls between two owners
        # a block outgrows max_pairs by less than one owner's pairs, unless it holds an
        # owner with more than max_pairs pairs
        sizes = np.bincount(owner[a:b])
        assert b - a < max_pairs + max(counts) or sizes.max() > max_pairs


@settings(max_examples=100, deadline=None)
@given(
    n_owners=st.integers(1, 12),
    n_members=st.integers(1, 30),
    k=st.integers(0, 8),
    owners_are_rows=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_a_shared_score_gives_what_the_rank_one_product_gives(
    n_owners, n_members, k, owners_are_rows, seed
):
    """Candidate generation's popular items per user and active users per item: one
    sorted order walked per owner must list exactly what topk_both lists for the rank-one
    product, in either direction, with exclusions, masks, boosts, ties, signs, -inf and
    NaN."""
    rng = np.random.default_rng(seed)
    values = np.array([-2.0, -0.0, 0.0, 0.5, 0.5, 3.0, -np.inf, np.nan], np.float32)
    score = values[rng.integers(0, values.size, n_members)]
    exclude = sp.random(n_owners, n_members, density=0.3, random_state=rng, format="csr")
    owner_mask = rng.random(n_owners) < 0.8
    member_mask = rng.random(n_members) < 0.8
    member_boost = rng.choice([0.0, 0.5, 1.0, 4.0], n_members).astype(np.float32)
    ones = np.ones((n_owners, 1), np.float32)
    if owners_are_rows:  # users ranking items by popularity
        ref = topk_both(
            ones,
            score[:, None],
            k_items=k,
            k_users=0,
            exclude=exclude,
            user_mask=owner_mask,
            item_mask=member_mask,
            item_boost=member_boost,
        )
        expected = ref.user_items, ref.user_item_scores
    else:  # items ranking users by activity: the exclusions come transposed
        ref = topk_both(
            score[:, None],
            ones,
            k_items=0,
            k_users=k,
            exclude=exclude.T,
            user_mask=member_mask,
            item_mask=owner_mask,
            user_boost=member_boost,
        )
        expected = ref.item_users, ref.item_user_scores
    ids, vals = topk_shared_score(
        score, n_owners, k, exclude=exclude, owner_mask=owner_mask,
        member_mask=member_mask, member_boost=member_boost,
    )  # fmt: skip
    np.testing.assert_array_equal(ids, expected[0])
    np.testing.assert_array_equal(vals, expected[1])


def test_a_shared_score_refuses_exclusions_of_another_shape():
    with pytest.raises(ValueError, match="exclude must have shape"):
        topk_shared_score(np.ones(4), 3, 2, exclude=sp.csr_matrix((3, 5)))


def test_topk_pairs_refuses_member_indices_that_do_not_fit_its_keys():
    with pytest.raises(ValueError, match="2\\*\\*32"):
        topk_pairs(np.array([0]), np.array([2**32]), np.array([1.0], np.float32), 1, 1)
