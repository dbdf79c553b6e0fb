"""Second stage: the probability that a user newly interacts with an item within a horizon.

Matrix factorization alone ranks *affinity*; who actually buys in the next weeks also
depends on how active the user is, how recent and how popular the item is, and on
short-term co-purchase patterns. The second stage learns that mix from the past:

1. A :class:`Snapshot` is the state of the shop as of a date: the confidence matrix,
   an :class:`~proactive_recs.estimators.mf.ImplicitMF` fitted on it, per-user activity features,
   per-item popularity features and an item-item co-purchase similarity.
2. :func:`candidate_pairs` proposes (user, item) pairs: each user's MF top items and the
   currently popular items, each item's MF top users and the most active users. Both
   directions come from single passes of :func:`~proactive_recs.estimators.topk.topk_both`.
3. :func:`pair_features` describes every candidate pair by MF and co-purchase affinity
   plus the user's and the item's features.
4. :func:`training_frame` replays this at earlier dates (``run_date - w * horizon`` for
   w = 1..windows), labels each candidate with "interacted with the item for the first
   time within the next horizon", and :class:`PropensityRanker` (gradient boosting) is
   fitted on the result. Every label lies before ``run_date``: nothing from the future
   of the run is used.

At serving time the same candidates and features are built as of ``run_date`` and the
ranker's probability is the score (see ``recommender/two_stage.py``). Because the score is a
calibrated probability of the same event for every pair, one model orders both
directions: a user's items and an item's users (each direction may use its own number of
the booster's first trees: ``PropensityRanker.tree_counts_``).
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from functools import cached_property

import numba
import numpy as np
import pandas as pd
import scipy.sparse as sp

from proactive_recs.data.interactions import (
    InteractionMatrix,
    build_interaction_matrix,
    interactions_before,
    new_pairs_matrix,
)
from proactive_recs.estimators.mf import ImplicitMF, MFWarmStart, warm_start_item_factors
from proactive_recs.estimators.topk import (
    _best_sorted,
    _jit,
    _key,
    _key_index,
    _key_score,
    distinct_pairs,
    topk_both,
    topk_shared_score,
)
from proactive_recs.estimators.tree_inference import (
    flatten,
    predict_positive_proba,
    staged_positive_proba,
)
from proactive_recs.estimators.weighted_binning import batched_weighted_binning

__all__ = [
    "PropensityRanker",
    "Snapshot",
    "TrainingData",
    "build_snapshot",
    "candidate_pairs",
    "capped_negative_rate",
    "explain_pairs",
    "item_similarity",
    "history_affinity",
    "pair_feature_matrix",
    "pair_feature_names",
    "pair_features",
    "training_frame",
]

log = logging.getLogger(__name__)

_DAY_NS = 86_400 * 10**9
_YEAR_DAYS = 365.0


@dataclass(frozen=True)
class Snapshot:
    """Everything the second stage knows as of ``as_of`` (interactions strictly before)."""

    as_of: pd.Timestamp
    horizon_days: float
    data: InteractionMatrix
    mf: ImplicitMF
    user_features: pd.DataFrame  # one row per data.user_ids position
    item_features: pd.DataFrame  # one row per data.item_ids position
    similarity: sp.csr_matrix  # items x items, co-purchase cosine, top neighbours
    recent: sp.csr_matrix  # users x items confidence with a short half-life
    category_share: np.ndarray | None  # users x categories share of history, or None
    item_category: np.ndarray  # category code per item, -1 when unknown
    categories: pd.Index  # category names; item_category codes index into it

    @cached_property
    def mf_score_spread(self):
        """((per item: mean, std of its MF scores over users), (per user: over items)),
        computed once per snapshot for the standardised MF features."""
        U, V = self.mf.user_factors_, self.mf.item_factors_
        return _score_spread(V, U), _score_spread(U, V)


# --------------------------------------------------------------------------- features


def _ages_days(occurred: pd.Series, as_of: pd.Timestamp) -> np.ndarray:
    ns = as_of.value - occurred.to_numpy(dtype="datetime64[ns]").astype(np.int64)
    return ns / _DAY_NS


def _pair_ages(u: np.ndarray, i: np.ndarray, age: np.ndarray, n_items: int):
    """Per distinct (user, item) pair: user, item, age of the last and the first event."""
    code = u.astype(np.int64) * n_items + i
    if not code.size:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0), np.zeros(0)
    # a sort and two reductions over the runs of equal codes: a third of pandas' groupby
    order = np.argsort(code, kind="stable")
    code, age = code[order], np.asarray(age, dtype=np.float64)[order]
    starts = np.flatnonzero(np.r_[True, code[1:] != code[:-1]])
    codes = code[starts]
    return (
        codes // n_items,
        codes % n_items,
        np.minimum.reduceat(age, starts),
        np.maximum.reduceat(age, starts),
    )


def _count(index: np.ndarray, size: int, mask: np.ndarray | None = None) -> np.ndarray:
    if mask is not None:
        index = index[mask]
    return np.bincount(index, minlength=size).astype(np.float32)


def _activity_features(rows, data: InteractionMatrix, as_of, horizon_days, items_frame):
    """User and item features as of ``as_of`` from the interactions before it.

    Windows are expressed in horizons (h, 3h) so that the same definitions suit a weekly
    and a monthly campaign; the "last year" window is the year-ago version of the horizon
    about to be predicted, which is what captures seasonal shoppers and seasonal items.
    """
    n_u, n_i = data.n_users, data.n_items
    h = float(horizon_days)
    u = data.user_positions(rows["user_id"])
    i = data.item_positions(rows["item_id"])
    age = _ages_days(rows["occurred_at"], as_of)
    pu, pi, last_age, first_age = _pair_ages(u, i, age, n_i)

    # An "order" is one (user, timestamp): the cleaned data has one row per order line.
    t_code = pd.factorize(rows["occurred_at"])[0].astype(np.int64)
    order_code, first_row = np.unique(u * (t_code.max() + 1) + t_code, return_index=True)
    order_user = u[first_row]
    order_age = age[first_row]

    uf = pd.DataFrame(index=pd.RangeIndex(n_u))
    uf["u_items"] = _count(pu, n_u)
    uf["u_orders"] = _count(order_user, n_u)
    since_last = np.full(n_u, np.inf)
    np.minimum.at(since_last, u, age)
    since_first = np.full(n_u, -np.inf)
    np.maximum.at(since_first, u, age)
    uf["u_since_last"] = since_last
    uf["u_since_first"] = since_first
    uf["u_order_gap"] = since_first / np.maximum(uf["u_orders"] - 1, 1)
    uf["u_overdue"] = since_last / np.maximum(uf["u_order_gap"], 1.0)
    uf["u_new_per_order"] = uf["u_items"] / np.maximum(uf["u_orders"], 1)
    for name, width in (("h", h), ("3h", 3 * h)):
        uf[f"u_items_{name}"] = _count(pu, n_u, last_age < width)
        uf[f"u_new_{name}"] = _count(pu, n_u, first_age < width)
        uf[f"u_orders_{name}"] = _count(order_user, n_u, order_age < width)
    year_ago = (age >= _YEAR_DAYS - h) & (age < _YEAR_DAYS)
    ly_pairs = np.unique(u[year_ago].astype(np.int64) * n_i + i[year_ago])
    uf["u_items_last_year"] = _count(ly_pairs // n_i, n_u)
    uf["u_strength"] = np.asarray(data.matrix.sum(axis=1)).ravel()

    itf = pd.DataFrame(index=pd.RangeIndex(n_i))
    itf["i_users"] = _count(pi, n_i)
    for name, width in (("7d", 7.0), ("h", h), ("3h", 3 * h)):
        itf[f"i_users_{name}"] = _count(pi, n_i, last_age < width)
    itf["i_new_users_h"] = _count(pi, n_i, first_age < h)
    first_sale = np.full(n_i, -np.inf)
    np.maximum.at(first_sale, i, age)
    last_sale = np.full(n_i, np.inf)
    np.minimum.at(last_sale, i, age)
    itf["i_since_first"] = first_sale
    itf["i_since_last"] = last_sale
    itf["i_users_last_year"] = _count(ly_pairs % n_i, n_i)
    year_before = (age >= _YEAR_DAYS) & (age < _YEAR_DAYS + h)
    lyb_pairs = np.unique(u[year_before].astype(np.int64) * n_i + i[year_before])
    itf["i_users_last_year_before"] = _count(lyb_pairs % n_i, n_i)
    itf["i_price"] = np.nan
    itf["i_available_for"] = np.nan
    itf["i_available_left"] = np.nan
    if items_frame is not None and len(items_frame):
        frame = items_frame.drop_duplicates("item_id").set_index("item_id").reindex(data.item_ids)
        if "price" in frame:
            itf["i_price"] = pd.to_numeric(frame["price"], errors="coerce").to_numpy()
        if "available_from" in frame:
            start = pd.to_datetime(frame["available_from"])
            itf["i_available_for"] = ((as_of - start).dt.total_seconds() / 86400.0).to_numpy()
        if "available_until" in frame:
            until = pd.to_datetime(frame["available_until"])
            itf["i_available_left"] = ((until - as_of).dt.total_seconds() / 86400.0).to_numpy()
    return uf.astype(np.float32), itf.astype(np.float32)


@_jit(parallel=True, nogil=True)
def _top_cosine_neighbours(
    col_ptr, col_users, row_ptr, row_items, buyers, neighbours, first
):  # pragma: no cover - compiled; tested through item_similarity
    """For each item c: its co-buyer counts with every other item (its buyers' histories
    walked into one count array), cosine = count / sqrt(buyers_c * buyers_j), and the
    ``neighbours`` best as (row, value): value desc, lower row first among equals.

    Items are split into contiguous tasks (``first``); a task owns one count array and
    clears only the entries it touched, so the work is the co-purchase products, never
    items x items, and the memory one count array per task plus the kept neighbours."""
    n_items = col_ptr.size - 1
    out_rows = np.empty((n_items, neighbours), dtype=np.int32)
    out_vals = np.empty((n_items, neighbours), dtype=np.float32)
    out_len = np.zeros(n_items, dtype=np.int64)
    for task in numba.prange(first.size - 1):
        counts = np.zeros(n_items, dtype=np.int64)
        touched = np.empty(n_items, dtype=np.int64)
        # one row of keys that sort as (value desc, row asc): topk's candidate keys, and its
        # selection (a numba sort or partition here took ~25 s to compile)
        keys = np.empty((1, n_items), dtype=np.uint64)
        for c in range(first[task], first[task + 1]):
            n_touched = 0
            for p in range(col_ptr[c], col_ptr[c + 1]):
                user = col_users[p]
                for q in range(row_ptr[user], row_ptr[user + 1]):
                    j = row_items[q]
                    if j != c:
                        if counts[j] == 0:
                            touched[n_touched] = j
                            n_touched += 1
                        counts[j] += 1
            for t in range(n_touched):
                j = touched[t]
                # the division in float64, then float32: what the sparse product gave
                keys[0, t] = _key(np.float32(counts[j] / np.sqrt(buyers[j] * buyers[c])), j)
                counts[j] = 0
            kept = _best_sorted(keys, 0, n_touched, neighbours)
            for t in range(kept):
                out_rows[c, t] = _key_index(keys[0, t])
                out_vals[c, t] = _key_score(keys[0, t])
            out_len[c] = kept
    return out_rows, out_vals, out_len


def item_similarity(seen: sp.spmatrix, neighbours: int = 200) -> sp.csr_matrix:
    """Cosine similarity of items' buyer sets, keeping each item's ``neighbours`` most
    similar items (column-wise) so the matrix stays sparse on large catalogs.

    ``result[j, i]`` is the similarity of j to i when j is among i's top neighbours, so a
    user's affinity to item i is ``history_row @ result[:, i]``.

    The co-purchase matrix ``B.T @ B`` is never held: a compiled kernel counts each item's
    co-buyers from its buyers' histories and keeps only the top neighbours by a partial
    selection (on the benchmark's M interactions, 100k users x 18k items: 1.8 s, where
    sparse column blocks and a full sort of each took 11.6 s for the same matrix).
    """
    B = sp.csr_matrix(seen)
    n_items = B.shape[1]
    kept = int(min(max(neighbours, 0), max(n_items - 1, 0)))
    if B.nnz == 0 or kept == 0:
        return sp.csr_matrix((n_items, n_items), dtype=np.float32)
    Bc = B.tocsc()  # every stored entry is a purchase: ``seen`` is a pattern
    buyers = np.diff(Bc.indptr).astype(np.float64)
    # Tasks of about equal work (the products of each item's buyers' histories).
    work = np.asarray(Bc.T @ np.diff(B.indptr).astype(np.float64)).ravel()
    n_tasks = min(n_items, 8 * numba.get_num_threads())
    bounds = np.searchsorted(np.cumsum(work), np.linspace(0, work.sum(), n_tasks + 1)[1:-1])
    first = np.unique(np.concatenate([[0], bounds, [n_items]])).astype(np.int64)
    rows, vals, lengths = _top_cosine_neighbours(
        Bc.indptr.astype(np.int64),
        Bc.indices.astype(np.int64),
        B.indptr.astype(np.int64),
        B.indices.astype(np.int64),
        buyers,
        kept,
        first,
    )
    mask = np.arange(kept)[None, :] < lengths[:, None]
    cols = np.broadcast_to(np.arange(n_items)[:, None], mask.shape)[mask]
    return sp.csr_matrix((vals[mask], (rows[mask], cols)), shape=(n_items, n_items))


def build_snapshot(
    interactions: pd.DataFrame,
    as_of,
    *,
    horizon_days: float,
    mf_params: dict,
    half_life_days: float | None = None,
    items: pd.DataFrame | None = None,
    similarity_neighbours: int = 200,
    mf_warm_start: MFWarmStart | None = None,
) -> Snapshot:
    """State as of ``as_of``: users/items with at least one interaction before it, MF
    fitted on their confidence matrix, features and co-purchase similarity.

    With ``mf_warm_start`` MF starts from those item factors (items new since then from
    small random ones) and runs its ``iterations`` sweeps instead of ``mf_params``'."""
    as_of = pd.Timestamp(as_of)
    rows = interactions_before(interactions, as_of)
    data = build_interaction_matrix(rows, as_of, half_life_days=half_life_days)
    if mf_warm_start is None:
        mf = ImplicitMF(**mf_params).fit(data.matrix)
    else:
        start, _ = warm_start_item_factors(
            data.item_ids, mf_warm_start, mf_params.get("random_state")
        )
        mf = ImplicitMF(**{**mf_params, "iterations": mf_warm_start.iterations}).fit(
            data.matrix, item_factors_init=start
        )
    uf, itf = _activity_features(rows, data, as_of, horizon_days, items)
    recent = build_interaction_matrix(
        rows,
        as_of,
        half_life_days=max(float(horizon_days) / 2.0, 1.0),
        user_ids=data.user_ids,
        item_ids=data.item_ids,
    ).matrix
    category_share, item_category = None, np.full(data.n_items, -1, dtype=np.int64)
    categories = pd.Index([], dtype=object)
    if items is not None and "category" in items and items["category"].notna().any():
        cats = items.drop_duplicates("item_id").set_index("item_id")["category"]
        codes, categories = pd.factorize(cats.reindex(data.item_ids))
        item_category = codes.astype(np.int64)  # NaN -> -1
        n_cat = len(categories)
        has = item_category >= 0
        onehot = sp.csr_matrix(
            (np.ones(int(has.sum()), np.float32), (np.flatnonzero(has), item_category[has])),
            shape=(data.n_items, n_cat),
        )
        per_cat = np.asarray((data.seen @ onehot).todense(), dtype=np.float32)
        category_share = per_cat / np.maximum(per_cat.sum(axis=1, keepdims=True), 1.0)
    return Snapshot(
        as_of=as_of,
        horizon_days=float(horizon_days),
        data=data,
        mf=mf,
        user_features=uf,
        item_features=itf,
        similarity=item_similarity(data.seen, similarity_neighbours),
        recent=recent,
        category_share=category_share,
        item_category=item_category,
        categories=pd.Index(categories),
    )


# ------------------------------------------------------------------------- candidates


def candidate_pairs(
    snap: Snapshot,
    *,
    per_user: int,
    per_item: int,
    active_per_item: int,
    popular_per_user: int,
    exclude: sp.spmatrix | None = None,
    user_mask: np.ndarray | None = None,
    item_mask: np.ndarray | None = None,
    user_boost: np.ndarray | None = None,
    item_boost: np.ndarray | None = None,
    block_size: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (user, item) candidate pairs sorted by (user, item).

    MF proposes each user's ``per_user`` best items and each item's ``per_item`` best
    users in one pass; recency-popularity proposes ``popular_per_user`` items per user
    and activity proposes ``active_per_item`` users per item, which recovers buyers and
    items MF under-scores (heavy users with diffuse taste, this month's sellers). Masks,
    exclusions and boosts apply here already so that every proposed pair is servable and
    boosted pairs get their chance to be proposed.
    """
    mf = snap.mf
    by_user, by_item = [], []  # lists per user (of items) and per item (of users)
    by_mf = topk_both(
        mf.user_factors_,
        mf.item_factors_,
        k_items=per_user,
        k_users=per_item,
        exclude=exclude,
        user_mask=user_mask,
        item_mask=item_mask,
        user_boost=user_boost,
        item_boost=item_boost,
        block_size=block_size,
    )
    by_user.append(by_mf.user_items)
    by_item.append(by_mf.item_users)
    # its scores are not needed here: ~0.5 GB at 1M users x 100 items and 100k items x 300 users
    del by_mf
    uf, itf = snap.user_features, snap.item_features
    n_u, n_i = snap.data.n_users, snap.data.n_items
    # Activity and popularity are one score shared by every owner: each owner takes the
    # first members of one sorted order that it does not exclude (what topk_both gives for
    # the rank-one product, without scoring users x items: 10^11 pairs at 1M x 100k).
    if active_per_item:
        activity = np.log1p(uf["u_items"].to_numpy()) + np.log1p(uf["u_items_3h"].to_numpy())
        # [0]: the lists only (scores kept in a name would stay alive until the return)
        active_users = topk_shared_score(
            activity + 1.0,
            n_i,
            active_per_item,
            exclude=None if exclude is None else sp.csr_matrix(exclude).T,
            owner_mask=item_mask,
            member_mask=user_mask,
            member_boost=user_boost,
        )[0]
        by_item.append(active_users)
        del active_users  # by_item's is the last reference: distinct_pairs lets it go
    if popular_per_user:
        # Recent buyers first; all-time buyers break ties among this period's sellers.
        popularity = np.log1p(itf["i_users_h"].to_numpy()) + 1e-3 * np.log1p(
            itf["i_users"].to_numpy()
        )
        popular_items = topk_shared_score(
            popularity + 1.0,
            n_u,
            popular_per_user,
            exclude=exclude,
            owner_mask=user_mask,
            member_mask=item_mask,
            member_boost=item_boost,
        )[0]
        by_user.append(popular_items)
        del popular_items
    return distinct_pairs(n_u, owner_lists=by_user, member_lists=by_item, consume=True)


# --------------------------------------------------------------------------- pairs


@_jit(parallel=True, nogil=True)
def _affinity_kernel(
    starts, users, i, left_ptr, left_idx, left_val, sim_ptr, sim_idx, sim_val, tasks
):
    """``(left @ sim)[u, i]`` for pairs grouped by user: ``starts[g]:starts[g + 1]`` are
    the pairs of ``users[g]``. Per user, the sim rows of its history are added into a dense
    row once and read at the user's items, then cleared; each task has its own row."""
    n_groups = users.size
    n_items = sim_ptr.size - 1
    out = np.zeros(i.size, dtype=np.float32)
    for task in numba.prange(tasks):
        row = np.zeros(n_items, dtype=np.float64)
        for g in range(task * n_groups // tasks, (task + 1) * n_groups // tasks):
            u = users[g]
            for p in range(left_ptr[u], left_ptr[u + 1]):
                h, weight = left_idx[p], np.float64(left_val[p])
                for q in range(sim_ptr[h], sim_ptr[h + 1]):
                    row[sim_idx[q]] += weight * np.float64(sim_val[q])
            for r in range(starts[g], starts[g + 1]):
                out[r] = row[i[r]]
            for p in range(left_ptr[u], left_ptr[u + 1]):
                h = left_idx[p]
                for q in range(sim_ptr[h], sim_ptr[h + 1]):
                    row[sim_idx[q]] = 0.0
    return out


def history_affinity(left: sp.csr_matrix, similarity: sp.csr_matrix, u, i) -> np.ndarray:
    """``(left @ similarity)[u, i]`` (float32) for pairs sorted by user, without forming
    the product: a user's history rows are summed once for all of its pairs."""
    u = np.asarray(u, dtype=np.int64)
    if not u.size:
        return np.zeros(0, dtype=np.float32)
    starts = np.flatnonzero(np.r_[True, u[1:] != u[:-1]])
    # the matrices' own arrays, whatever their dtypes (the kernel widens each value to
    # float64 as it reads it): scoring calls this per chunk, so nothing is copied per call
    left = sp.csr_matrix(left)
    similarity = sp.csr_matrix(similarity)
    return _affinity_kernel(
        np.append(starts, u.size).astype(np.int64),
        u[starts],
        np.asarray(i, dtype=np.int64),
        left.indptr,
        left.indices,
        left.data,
        similarity.indptr,
        similarity.indices,
        similarity.data,
        min(starts.size, 4 * numba.get_num_threads()),  # a few tasks per thread: balance
    )


PAIR_COLUMNS = ("mf", "mf_z_item", "mf_z_user", "knn", "knn_mean", "knn_recent", "category_share")


def pair_feature_names(snap: Snapshot) -> list[str]:
    """The columns of :func:`pair_features`, in order: the pair's, the user's, the item's."""
    return [*PAIR_COLUMNS, *snap.user_features.columns, *snap.item_features.columns]


@_jit(parallel=True, nogil=True)
def _fill_pair_columns(
    out,
    dest,
    U,
    V,
    u,
    i,
    col_mean,
    col_std,
    row_mean,
    row_std,
    knn,
    knn_recent,
    n_hist,
    item_category,
    category_share,
):
    """Write the pair columns (:data:`PAIR_COLUMNS`, in that order; ``dest[c]`` is the
    column of ``out`` for the c-th, -1 when not asked for) row by row: one pass over the
    pairs' matrix instead of one strided pass per column (a pass costs as much as the
    whole matrix, as each row is its own cache line). The MF score is the dot product of
    the factor rows, summed in float64; ``category_share`` has no columns when the items
    have no categories (the share is then NaN)."""
    with_share = category_share.shape[1] > 0
    for r in numba.prange(u.size):
        a, b = u[r], i[r]
        mf = 0.0
        for k in range(U.shape[1]):
            mf += U[a, k] * V[b, k]
        if dest[0] >= 0:
            out[r, dest[0]] = mf
        if dest[1] >= 0:
            out[r, dest[1]] = (mf - col_mean[b]) / col_std[b]
        if dest[2] >= 0:
            out[r, dest[2]] = (mf - row_mean[a]) / row_std[a]
        if dest[3] >= 0:
            out[r, dest[3]] = knn[r]
        if dest[4] >= 0:
            out[r, dest[4]] = knn[r] / max(n_hist[a], np.float32(1.0))
        if dest[5] >= 0:
            out[r, dest[5]] = knn_recent[r]
        if dest[6] >= 0:
            share = np.nan
            if with_share and item_category[b] >= 0:
                share = category_share[a, item_category[b]]
            out[r, dest[6]] = share


@_jit(parallel=True, nogil=True)
def _gather_into(out, dest, table, rows):
    """``out[r, dest[k]] = table[rows[r], k]``: per-user or per-item features copied into
    the pairs' matrix row by row (numpy's fancy assignment goes column by column)."""
    for r in numba.prange(rows.size):
        source = rows[r]
        for k in range(dest.size):
            out[r, dest[k]] = table[source, k]


def _score_spread(rows: np.ndarray, others: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``rows``: mean and standard deviation (plus 1e-6) of its MF scores
    against every row of ``others``, in closed form from ``others``' mean and covariance."""
    mean = rows @ others.mean(axis=0)
    spread = np.einsum("ij,jk,ik->i", rows, np.cov(others.T), rows)
    return mean, np.sqrt(np.maximum(spread, 0)) + 1e-6


def _fill_pairs(out: np.ndarray, dest: np.ndarray, snap: Snapshot, u, i) -> None:
    """The pair columns of ``(u, i)`` (pairs sorted by user) into ``out`` (see
    :func:`_fill_pair_columns`); the co-purchase affinities only when asked for."""
    u = np.asarray(u, np.int64)
    i = np.asarray(i, np.int64)
    (col_mean, col_std), (row_mean, row_std) = snap.mf_score_spread
    none = np.zeros(0, dtype=np.float32)
    wants_knn = dest[3] >= 0 or dest[4] >= 0
    knn = history_affinity(snap.data.seen, snap.similarity, u, i) if wants_knn else none
    recent = history_affinity(snap.recent, snap.similarity, u, i) if dest[5] >= 0 else none
    share = snap.category_share
    _fill_pair_columns(
        out,
        dest,
        snap.mf.user_factors_,
        snap.mf.item_factors_,
        u,
        i,
        col_mean,
        col_std,
        row_mean,
        row_std,
        knn,
        recent,
        np.ascontiguousarray(snap.user_features["u_items"].to_numpy(np.float32)),
        np.asarray(snap.item_category, dtype=np.int64),
        np.zeros((0, 0), dtype=np.float32) if share is None else share,
    )


def pair_feature_matrix(snap: Snapshot, u: np.ndarray, i: np.ndarray, columns=None) -> np.ndarray:
    """:func:`pair_features` as one C-ordered float32 array (pairs x ``columns``, all of
    :func:`pair_feature_names` by default): what the compiled tree walk reads, built
    without a frame per part and without copies to reorder columns."""
    names = pair_feature_names(snap) if columns is None else list(columns)
    position = {name: j for j, name in enumerate(names)}
    unknown = set(names) - set(pair_feature_names(snap))
    if unknown:
        raise ValueError(f"pair_feature_matrix: unknown feature columns {sorted(unknown)}")
    out = np.empty((len(u), len(names)), dtype=np.float32)
    dest = np.array([position.get(name, -1) for name in PAIR_COLUMNS], dtype=np.int64)
    _fill_pairs(out, dest, snap, u, i)
    parts = [  # (column names, values, which row of values each pair reads)
        (list(snap.user_features), snap.user_features.to_numpy(np.float32), u),
        (list(snap.item_features), snap.item_features.to_numpy(np.float32), i),
    ]
    for part_names, values, rows in parts:
        keep = [k for k, name in enumerate(part_names) if name in position]
        if keep:
            _gather_into(
                out,
                np.array([position[part_names[k]] for k in keep], dtype=np.int64),
                np.ascontiguousarray(values[:, keep], dtype=np.float32),
                np.asarray(rows, dtype=np.int64),
            )
    return out


def pair_features(snap: Snapshot, u: np.ndarray, i: np.ndarray) -> pd.DataFrame:
    """Feature frame for pairs (u, i) given as index arrays sorted by user.

    Pair features: the MF score, the same score standardised over the item's column and
    over the user's row (closed form from the factors' means and covariances, so no full
    score matrix is needed), co-purchase affinity (sum of the user's items' similarity
    to i, its mean per history item, and a recency-weighted version), and the share of
    the user's history in the item's category. Then the user's and the item's features.
    """
    return pd.DataFrame(pair_feature_matrix(snap, u, i), columns=pair_feature_names(snap))


# --------------------------------------------------------------------------- training


@dataclass
class TrainingData:
    """Labelled pairs from past snapshots.

    X, y, window : warm pairs (candidates of items with history), their labels and the
        window each row comes from (1 = the last horizon before the run date).
    X_cold, y_cold : pairs of items that were brand-new at their snapshot (see
        :func:`proactive_recs.estimators.coldstart.cold_training_examples`); empty when not asked
        for or when no past snapshot had a new item with a buyer.
    last_snapshot : the snapshot of window 1 (as of one horizon before the run date), or
        None when there was too little history for it; stage selection replays the fit
        there (two_stage.Recommender._replay).
    negative_rate : the share of the warm negatives kept (the rate asked for, or lower when
        ``max_rows`` capped it); each kept negative stands for ``1 / negative_rate``.
    """

    X: pd.DataFrame
    y: np.ndarray
    window: np.ndarray
    X_cold: pd.DataFrame
    y_cold: np.ndarray
    last_snapshot: Snapshot | None = None
    negative_rate: float = 1.0


def training_frame(
    interactions: pd.DataFrame,
    run_date,
    *,
    horizon_days: float,
    windows: int,
    mf_params: dict,
    candidate_params: dict,
    half_life_days: float | None = None,
    items: pd.DataFrame | None = None,
    negative_rate: float = 0.1,
    cold_items: bool = False,
    cold_active_per_item: int | None = None,
    random_state=None,
    max_rows: int | None = None,
) -> TrainingData:
    """Labelled candidate pairs from ``windows`` past snapshots before ``run_date``.

    Snapshot w is taken at ``run_date - w * horizon_days``; its candidates are labelled 1
    when the user interacted with the item for the first time in the following horizon.
    Negatives are subsampled at ``negative_rate`` here already (a window has millions of
    candidates and about 0.5 % positives); :class:`PropensityRanker` re-weights them.
    Snapshots without a positive (or with too little history) are skipped. With
    ``cold_items`` (and an ``items`` frame) the same snapshots also yield examples for
    items that were new at the time; their candidates take ``cold_active_per_item`` most
    active users (``candidate_params["active_per_item"]`` when None), as at serving.
    ``random_state`` seeds the negative sampling: one stream per window and per kind of
    example (:func:`_sampling_rng`).

    ``max_rows`` (None: no cap) bounds the warm rows at about that many: the first window
    with a positive fixes a lower negative rate for every window when ``negative_rate``
    would exceed it (:func:`capped_negative_rate`). Positives are all kept. The draws are
    the same, compared with a lower threshold, so a capped frame is a subset of the
    uncapped one; the rate used is returned for the re-weighting.
    """
    from proactive_recs.estimators.coldstart import cold_training_examples

    run_date = pd.Timestamp(run_date)
    frames, labels, window_of, cold_frames, cold_labels = [], [], [], [], []
    last_snapshot, rate = None, None
    for w in range(1, windows + 1):
        as_of = run_date - pd.Timedelta(days=w * horizon_days)
        history = interactions_before(interactions, as_of)
        if history["user_id"].nunique() <= mf_params.get("factors", 0) or (
            history["item_id"].nunique() <= mf_params.get("factors", 0)
        ):
            log.info("training window %s skipped: too little history", as_of.date())
            break
        snap = build_snapshot(
            history,
            as_of,
            horizon_days=horizon_days,
            mf_params=mf_params,
            half_life_days=half_life_days,
            items=items,
        )
        if w == 1:
            last_snapshot = snap
        end = as_of + pd.Timedelta(days=horizon_days)
        u, i = candidate_pairs(snap, exclude=snap.data.seen, **candidate_params)
        truth = new_pairs_matrix(interactions, snap.data, as_of, end)
        y = _pair_labels(truth, u, i)
        if y.any():
            if rate is None:
                rate = capped_negative_rate(negative_rate, y, windows, max_rows)
            keep = _kept_rows(y, rate, _sampling_rng(random_state, w, "warm"))
            frames.append(pair_features(snap, u[keep], i[keep]))
            labels.append(y[keep])
            window_of.append(np.full(int(keep.sum()), w))
        log.info(
            "training window %s: %d candidates, %d positives, negatives kept at rate %.4g",
            as_of.date(),
            y.size,
            int(y.sum()),
            negative_rate if rate is None else rate,
        )
        if cold_items and items is not None:
            future = interactions[
                (interactions["occurred_at"] >= as_of) & (interactions["occurred_at"] < end)
            ]
            cold = cold_training_examples(
                snap,
                items,
                future,
                per_item=candidate_params["per_item"],
                active_per_item=(
                    candidate_params["active_per_item"]
                    if cold_active_per_item is None
                    else cold_active_per_item
                ),
                negative_rate=negative_rate,
                rng=_sampling_rng(random_state, w, "new"),
                block_size=candidate_params.get("block_size"),
            )
            if cold is not None:
                cold_frames.append(cold[0])
                cold_labels.append(cold[1])

    def stack(parts, part_labels):
        if not parts:
            return pd.DataFrame(), np.zeros(0, dtype=bool)
        return pd.concat(parts, ignore_index=True), np.concatenate(part_labels)

    X, y = stack(frames, labels)
    X_cold, y_cold = stack(cold_frames, cold_labels)
    window = np.concatenate(window_of) if window_of else np.zeros(0, dtype=np.int64)
    rate = negative_rate if rate is None else rate
    return TrainingData(X, y, window, X_cold, y_cold, last_snapshot, rate)


def capped_negative_rate(
    negative_rate: float, y: np.ndarray, windows: int, max_rows: int | None
) -> float:
    """The share of negatives to keep so that ``windows`` windows like this one (labels
    ``y``: the most recent window, usually the largest) hold about ``max_rows`` rows with
    every positive kept; ``negative_rate`` when that is already within the cap. At least as
    many negatives as positives are kept whatever the cap: below that the booster would
    learn the sampling rather than the shop.

    Why a cap: the booster's fit grows with its rows (at 100k users x 20k items about 9.5M
    rows, ~110 s a fit, and a weekly run fits it about a dozen times), while a few million rows
    hold every positive and far more negatives than the booster's leaves need.
    """
    if max_rows is None:
        return float(negative_rate)
    positives = int(np.count_nonzero(y))
    negatives = y.size - positives
    if negatives == 0:
        return float(negative_rate)
    budget = max(int(max_rows) / max(int(windows), 1) - positives, positives)
    return float(min(negative_rate, budget / negatives))


# Pairs labelled and sampled per chunk: a window at 1M users holds ~200M candidate pairs,
# and scipy's fancy indexing (float values and index copies) or one uniform draw per pair
# made at once took GBs on top of the window's snapshot.
PAIR_CHUNK = 1 << 22


def _pair_labels(truth: sp.csr_matrix, u: np.ndarray, i: np.ndarray) -> np.ndarray:
    """``truth[u, i] > 0`` for each pair, a chunk of pairs at a time."""
    y = np.empty(len(u), dtype=bool)
    for start in range(0, len(u), PAIR_CHUNK):
        part = slice(start, start + PAIR_CHUNK)
        y[part] = np.asarray(truth[u[part], i[part]]).ravel() > 0
    return y


def _kept_rows(y: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Every positive and each negative with probability ``rate``: ``y | (rng.random(n) <
    rate)``, drawn a chunk at a time from the same stream (so the same draws)."""
    keep = y.copy()
    for start in range(0, len(y), PAIR_CHUNK):
        part = slice(start, start + PAIR_CHUNK)
        keep[part] |= rng.random(keep[part].size) < rate
    return keep


def _sampling_rng(random_state, window: int, kind: str) -> np.random.Generator:
    """The negative-sampling stream of one training window and one kind of example ('warm'
    or 'new' items), each its own: adding a window, or changing how new items' candidates
    are drawn, leaves every other sample as it was, so a comparison of two settings sees
    the settings and not a reshuffle of the negatives (one shared stream moved the demo's
    user -> item ndcg@10 by 0.01 when only the new items' setting changed)."""
    key = (int(window), ("warm", "new").index(kind))
    return np.random.default_rng(np.random.SeedSequence(random_state, spawn_key=key))


def _platt(log_odds, y, weight):
    """Logistic map of the log-odds, or None if it would not be increasing."""
    from sklearn.linear_model import LogisticRegression

    if not (y.any() and (~y).any()):
        return None
    model = LogisticRegression(C=1e6)  # two parameters: no penalty needed
    model.fit(log_odds[:, None], y, sample_weight=weight)
    return model if model.coef_[0, 0] > 0 else None  # decreasing would invert the ranking


def _log_loss(prob, y, weight) -> float:
    p = np.clip(np.asarray(prob, dtype=np.float64), 1e-9, 1 - 1e-9)
    return float(-(weight * np.where(y, np.log(p), np.log1p(-p))).sum() / weight.sum())


def _log_odds(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-9, 1 - 1e-9)
    return np.log(p) - np.log1p(-p)


# Tree counts, as fractions of max_iter, that a fitted ranker can serve besides its
# default count: coarse enough that picking among them on one validation window is not
# chasing noise, spread so that a few trees (a smooth, activity-led probability) and all
# of them (finer distinctions between a user's items) are both on offer.
TREE_GRID = (0.1, 0.2, 0.35, 0.5, 0.75, 1.0)


class PropensityRanker:
    """Gradient-boosted P(new interaction within the horizon | pair features).

    Parameters
    ----------
    max_iter, learning_rate, max_leaf_nodes, min_samples_leaf, l2_regularization :
        passed to ``HistGradientBoostingClassifier``. Leaves are kept large because many
        rows share a user's features and small leaves memorise individual users.
    negative_weight : weight of each negative row; the inverse of the negative sampling
        rate used to build the training frame keeps the probabilities calibrated.
    calibration : 'auto', 'logistic' or 'none'; uses the ``window`` of each row given to
        :meth:`fit` (1 = the last horizon before the run date, 2 = the one before, ...).
        'logistic': the booster is fitted on windows >= 2 and a logistic map of its
        log-odds (Platt scaling, weighted like the booster) on window 1, a validation window
        the booster never saw. 'none': the booster is fitted on every window, no map (the
        negative re-weighting already makes it a probability). 'auto' picks between the
        two by replaying both procedures one window back and scoring them on window 1 with
        the weighted log-loss (a proper score: it rewards calibration and ranking):
        booster on windows >= 2 alone, against booster on windows >= 3 plus a map fitted
        on window 2. With fewer than three windows it cannot replay and takes 'none'.
        Logistic rather than isotonic: the map is strictly increasing, so it never merges
        candidates into ties and the ranking stays the booster's.
    tree_selection : when True (and windows 1 and >= 2 both hold positives and negatives),
        the number of trees is chosen on the validation window: a booster of ``max_iter``
        trees is fitted on windows >= 2, and the count whose staged predictions give the
        lowest weighted log-loss on window 1 is the default count, the one the calibration
        replay uses and :meth:`predict_proba` serves. More trees than that memorise the past
        windows for the probability as a whole (on Online Retail the validation AUC falls
        from 0.80 at 20 trees to 0.78 at 100). The served booster then keeps ``max_iter``
        trees so that the counts of :data:`TREE_GRID` can be served too: a caller that
        ranks for one purpose (the recommender, per direction: selection.py) picks its
        own count among ``tree_counts_``. Boosting is sequential and this booster does not
        subsample, so its first n trees are the booster a fit of n trees would give.
    random_state : seeds the booster.

    Attributes
    ----------
    model_ : the fitted ``HistGradientBoostingClassifier``
    n_trees_ : the default count of trees (``max_iter`` unless ``tree_selection`` chose)
    tree_counts_ : the counts :meth:`predict_proba` can serve (ascending): ``n_trees_``,
        and with ``tree_selection`` the fractions :data:`TREE_GRID` of ``max_iter``
    tree_selection_check_ : {'log_loss_at_max_iter': ..., 'log_loss_at_n_trees': ...} on
        window 1 when the count was chosen, else {}
    feature_names_in_ : columns used (those of ``fit`` with at least one value)
    base_rate_ : weighted share of positives in the training data
    calibrators_ : {count: fitted ``LogisticRegression`` on the log-odds of the first
        ``count`` trees} when the map is used, else {}
    calibrator_ : the map at ``n_trees_`` (``calibrators_[n_trees_]``), or None
    calibration_check_ : {'log_loss_without_map': ..., 'log_loss_with_map': ...} of the
        replay on window 1 ('auto' with >= 3 windows), else {}
    fitted_on_older_windows_ : True when ``model_`` was fitted on windows >= 2 (the maps
        are then fitted on window 1), False when on every window
    validation_model_ : the probe booster of the tree-count choice (windows >= 2,
        ``max_iter`` trees), kept for :meth:`validation_ranker` until
        :meth:`drop_validation_model`; None when not fitted
    """

    def __init__(
        self,
        max_iter: int = 100,
        learning_rate: float = 0.1,
        max_leaf_nodes: int = 15,
        min_samples_leaf: int = 200,
        l2_regularization: float = 1.0,
        negative_weight: float = 10.0,
        calibration: str = "auto",
        tree_selection: bool = True,
        random_state=None,
    ):
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.min_samples_leaf = min_samples_leaf
        self.l2_regularization = l2_regularization
        self.negative_weight = negative_weight
        self.calibration = calibration
        self.tree_selection = tree_selection
        self.random_state = random_state

    # The flattened trees are a cache of model_ for scoring, in the layout of the code that
    # made it: never stored with the ranker (stored stages are read by later code), and
    # dropped from a ranker stored before this rule, so each process flattens its own.
    def __getstate__(self) -> dict:
        return {**self.__dict__, "flat_trees_": None}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update({**state, "flat_trees_": None})

    def fit(self, X: pd.DataFrame, y, window=None) -> PropensityRanker:
        """Fit on (X, y); ``window`` (one per row, 1 = most recent) drives the calibration
        step (see ``calibration``). Without it, or without a positive in the windows a
        step needs, the booster uses every row and no map is fitted."""
        if self.calibration not in ("auto", "logistic", "none"):
            raise ValueError(
                f"calibration must be 'auto', 'logistic' or 'none', got {self.calibration!r}"
            )
        y = np.asarray(y, dtype=bool)
        window = np.ones(y.size, np.int64) if window is None else np.asarray(window)
        # Columns without a single value (no prices, no categories in this shop) carry no
        # information and trip the booster's binning: leave them out.
        used = [c for c in X.columns if X[c].notna().any()]
        walk_dtype = _walk_dtype(X[c].dtype for c in used)  # what the compiled walk reads

        def rows_of(rows, dtype=np.float64):
            # The boosters are fitted on float64 arrays, which is what scikit-learn turns a
            # frame into anyway (the same values); built a column at a time, without a frame
            # copy of the used columns and one of the rows on the way (at the 1.5M-row cap
            # each is ~200 MB more at the peak of every fit).
            return _rows_array(X, used, rows, dtype)

        weight = np.where(y, 1.0, float(self.negative_weight))
        self.feature_names_in_ = used
        self.calibrator_, self.calibrators_, self.calibration_check_ = None, {}, {}
        self.tree_selection_check_ = {}
        self.flat_trees_ = None  # the booster flattened for scoring, made at the first use
        self.base_rate_ = float(y.sum() / weight.sum())
        self.n_trees_ = int(self.max_iter)
        self.validation_model_, self.fitted_on_older_windows_ = None, False

        def fit_on(rows, n_trees=None):
            booster = self._booster(self.n_trees_ if n_trees is None else n_trees)
            with batched_weighted_binning(booster.max_bins):  # same bins, one sort a feature
                return booster.fit(rows_of(rows), y[rows], sample_weight=weight[rows])

        def usable(rows):
            return bool(y[rows].any() and (~y[rows]).any())

        last, older = window == 1, window >= 2
        # window 1 scored by a booster of windows >= 2 (the count chosen, when it is)
        without, probe = None, None
        if self.tree_selection and usable(last) and usable(older):
            probe = fit_on(older)
            without = self._choose_tree_count(
                probe, rows_of(last, walk_dtype), y[last], weight[last]
            )
            self.validation_model_ = probe
        use_map = self.calibration == "logistic"
        if self.calibration == "auto":
            oldest = window >= 3
            if usable(last) and usable(window == 2) and usable(oldest):
                if without is None:
                    without = fit_on(older).predict_proba(rows_of(last))[:, 1]
                previous = fit_on(oldest)
                platt = _platt(
                    _log_odds(previous.predict_proba(rows_of(window == 2))[:, 1]),
                    y[window == 2],
                    weight[window == 2],
                )
                if platt is not None:
                    raw = _log_odds(previous.predict_proba(rows_of(last))[:, 1])
                    with_map = platt.predict_proba(raw[:, None])[:, 1]
                    self.calibration_check_ = {
                        "log_loss_without_map": _log_loss(without, y[last], weight[last]),
                        "log_loss_with_map": _log_loss(with_map, y[last], weight[last]),
                    }
                    use_map = (
                        self.calibration_check_["log_loss_with_map"]
                        < self.calibration_check_["log_loss_without_map"]
                    )
        counts = {self.n_trees_}
        if self.tree_selection:
            counts |= {max(1, round(f * int(self.max_iter))) for f in TREE_GRID}
        self.tree_counts_ = tuple(sorted(counts))
        served_trees = max(self.tree_counts_)
        if use_map and usable(last) and usable(older):
            # the probe is this booster when it has as many trees (the fit is deterministic)
            same = probe is not None and probe.max_iter == served_trees
            self.model_ = probe if same else fit_on(older, served_trees)
            # one map per count, each on the log-odds of that many first trees
            at_counts = self._booster_proba_at(rows_of(last, walk_dtype), self.tree_counts_)
            for column, count in enumerate(self.tree_counts_):
                platt = _platt(_log_odds(at_counts[:, column]), y[last], weight[last])
                if platt is not None:
                    self.calibrators_[count] = platt
            self.calibrator_ = self.calibrators_.get(self.n_trees_)
            if self.calibrator_ is not None:
                # a count whose map would reverse the ranking is not offered
                self.tree_counts_ = tuple(sorted(self.calibrators_))
                self.fitted_on_older_windows_ = True
                return self
            self.calibrators_ = {}
            self.flat_trees_ = None
        self.model_ = fit_on(np.ones(y.size, bool), served_trees)
        return self

    def validation_ranker(self) -> PropensityRanker | None:
        """This ranker as trained without window 1 (the last horizon before the run date),
        to score that window as unseen data (stage selection): itself when its booster was
        fitted on windows >= 2 (with the probability maps); else the tree-count choice's
        probe (the booster of the same settings on windows >= 2, ``max_iter`` trees, no
        maps); None when neither was fitted."""
        if getattr(self, "fitted_on_older_windows_", False):
            return self
        if getattr(self, "validation_model_", None) is None:
            return None
        replay = copy.copy(self)
        replay.model_, replay.validation_model_ = self.validation_model_, None
        replay.calibrators_, replay.calibrator_, replay.flat_trees_ = {}, None, None
        replay.tree_counts_ = tuple(
            count for count in self.tree_counts_ if count <= self.validation_model_.max_iter
        )
        return replay

    def drop_validation_model(self) -> None:
        """Forget the probe booster once stage selection has used it (it is not served,
        and the stored stages need not carry a second booster)."""
        self.validation_model_ = None

    def _booster_proba_at(self, X: np.ndarray, counts) -> np.ndarray:
        """P(class 1) of the booster's first ``counts[c]`` trees, column c, for the array
        ``X`` (columns in ``feature_names_in_`` order): the compiled kernels
        (tree_inference.py, same numbers, one pass for every count) when they cover the
        model, else scikit-learn's staged predictions."""
        if getattr(self, "flat_trees_", None) is None:
            self.flat_trees_ = flatten(self.model_) or False
        if self.flat_trees_ is not False:
            return predict_positive_proba(self.flat_trees_, X, list(counts))
        out = np.empty((X.shape[0], len(counts)), dtype=np.float64)
        if hasattr(self.model_, "feature_names_in_"):  # a booster stored fitted on a frame
            X = pd.DataFrame(X, columns=self.feature_names_in_)
        for n_trees, proba in enumerate(self.model_.staged_predict_proba(X), start=1):
            for column, count in enumerate(counts):
                if count == n_trees:
                    out[:, column] = proba[:, 1]
        return out

    def _choose_tree_count(self, probe, X_last, y_last, weight_last) -> np.ndarray:
        """Set ``n_trees_`` to the count of ``probe``'s first trees (a booster of
        ``max_iter`` trees fitted on windows >= 2) with the lowest weighted log-loss on
        window 1 (``X_last``: its rows, an array as _features_array makes it); return the
        probabilities of window 1 at that count. A booster without subsampling grows the
        same first trees whatever its ``max_iter``, so these are the probabilities of a
        booster of ``n_trees_`` trees fitted on the same rows."""
        best_loss, at_best, loss = np.inf, None, np.inf
        trees = flatten(probe)
        if trees is None:
            staged = (proba[:, 1] for proba in probe.staged_predict_proba(X_last))
        else:  # the compiled walk, same numbers (tree_inference.py)
            staged = staged_positive_proba(trees, X_last)
        for n_trees, proba in enumerate(staged, start=1):
            loss = _log_loss(proba, y_last, weight_last)
            if loss < best_loss:  # strictly: fewer trees on a tie
                best_loss, at_best, self.n_trees_ = loss, proba, n_trees
        self.tree_selection_check_ = {
            "log_loss_at_max_iter": loss,
            "log_loss_at_n_trees": best_loss,
        }
        return at_best

    def _booster(self, n_trees: int | None = None):
        from sklearn.ensemble import HistGradientBoostingClassifier

        return HistGradientBoostingClassifier(
            max_iter=self.max_iter if n_trees is None else n_trees,
            learning_rate=self.learning_rate,
            max_leaf_nodes=self.max_leaf_nodes,
            min_samples_leaf=self.min_samples_leaf,
            l2_regularization=self.l2_regularization,
            early_stopping=False,
            random_state=self.random_state,
        )

    def predict_proba(self, X: pd.DataFrame | np.ndarray, n_trees: int | None = None) -> np.ndarray:
        """(n, 2) probabilities of the first ``n_trees`` trees (None: ``n_trees_``, the
        default count; else one of ``tree_counts_``). ``X`` is a frame holding the fit's
        columns, or an array whose columns are ``feature_names_in_`` in that order (what
        :func:`pair_feature_matrix` builds for scoring without a frame)."""
        positive = self.positive_proba_at(X, [self.n_trees_ if n_trees is None else n_trees])
        return np.column_stack([1.0 - positive[:, 0], positive[:, 0]])

    def positive_proba_at(self, X: pd.DataFrame | np.ndarray, counts) -> np.ndarray:
        """P(class 1) at several tree counts (each one of ``tree_counts_``), one column per
        count, from one walk over the trees; each column calibrated by its count's map."""
        if not hasattr(self, "model_"):
            raise RuntimeError("PropensityRanker is not fitted yet")
        counts = [int(count) for count in counts]
        offered = self.tree_counts_
        unknown = sorted(set(counts) - set(offered))
        if unknown:
            raise ValueError(
                f"PropensityRanker: no calibrated probability at {unknown} trees; this ranker"
                f" serves {list(offered)}"
            )
        if isinstance(X, pd.DataFrame):
            X = _features_array(X[self.feature_names_in_])
        elif X.ndim != 2 or X.shape[1] != len(self.feature_names_in_):
            raise ValueError(
                f"PropensityRanker.predict_proba: expected {len(self.feature_names_in_)} "
                f"columns ({self.feature_names_in_}), got an array of shape {X.shape}"
            )
        proba = self._booster_proba_at(X, counts)
        for column, count in enumerate(counts):
            calibrator = self.calibrators_.get(count)
            if calibrator is not None:
                proba[:, column] = calibrator.predict_proba(_log_odds(proba[:, column])[:, None])[
                    :, 1
                ]
        return proba


def _rows_array(X: pd.DataFrame, columns: list[str], rows: np.ndarray, dtype) -> np.ndarray:
    """``X.loc[rows, columns]`` (``rows`` a boolean mask) as one C-ordered ``dtype`` array,
    filled a column at a time: only the result and one column's rows are made."""
    index = np.flatnonzero(rows)
    out = np.empty((index.size, len(columns)), dtype=dtype)
    for j, column in enumerate(columns):
        values = X[column]
        if isinstance(values.dtype, np.dtype):
            out[:, j] = values.to_numpy()[index]
        else:  # a nullable extension type: its missing values are NaN, as scikit-learn reads them
            out[:, j] = values.to_numpy(dtype=np.float64, na_value=np.nan)[index]
    return out


def _walk_dtype(dtypes) -> type:
    """The float type that holds columns of ``dtypes`` without changing a value: float32 when
    every one is float32, else float64 (what scikit-learn would compare against its
    thresholds)."""
    return np.float32 if all(dtype == np.float32 for dtype in dtypes) else np.float64


def _features_array(X: pd.DataFrame) -> np.ndarray:
    """The frame as one float array without changing a value (:func:`_walk_dtype`)."""
    return X.to_numpy(dtype=_walk_dtype(X.dtypes))


def explain_pairs(
    seen: sp.csr_matrix,
    similarity: sp.csr_matrix,
    u: np.ndarray,
    i: np.ndarray,
) -> np.ndarray:
    """For each pair (u, i): the item of u's history that contributes most to the
    co-purchase affinity of u for i (the ``knn`` feature sums ``similarity[j, i]`` over
    u's history j), i.e. the "because you bought X". -1 when no history item is a
    co-purchase neighbour of i. Ties go to the lower item index."""
    u = np.asarray(u, dtype=np.int64)
    i = np.asarray(i, dtype=np.int64)
    if u.size == 0:
        return np.full(0, -1, dtype=np.int64)
    seen = sp.csr_matrix(seen)
    sim = sp.csr_matrix(similarity)
    sim.sort_indices()
    return _explain_kernel(
        seen.indptr.astype(np.int64),
        seen.indices.astype(np.int64),
        sim.indptr.astype(np.int64),
        sim.indices.astype(np.int64),
        sim.data.astype(np.float32),
        u,
        i,
    )


@_jit(parallel=True)
def _explain_kernel(seen_ptr, seen_idx, sim_ptr, sim_idx, sim_val, u, i):
    # One pass per pair over the user's history; similarity[j, i] by binary search in
    # row j (about 200 sorted neighbours), so nothing of size pairs x history is built.
    out = np.full(u.size, -1, dtype=np.int64)
    for p in numba.prange(u.size):
        target = i[p]
        best_j, best_v = -1, np.float32(0.0)
        for q in range(seen_ptr[u[p]], seen_ptr[u[p] + 1]):
            j = seen_idx[q]
            lo, hi = sim_ptr[j], sim_ptr[j + 1]
            while lo < hi:
                mid = (lo + hi) // 2
                if sim_idx[mid] < target:
                    lo = mid + 1
                else:
                    hi = mid
            if lo < sim_ptr[j + 1] and sim_idx[lo] == target:
                v = sim_val[lo]
                if v > best_v or (v == best_v and v > 0 and j < best_j):
                    best_j, best_v = j, v
        out[p] = best_j
    return out
