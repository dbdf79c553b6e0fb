"""The single entry point the dbt Python models call: :func:`score`.

``score(interactions, users, items, run_date, params)`` returns the served product:

* ``user_item_scores`` — top ``k_items`` items per servable user;
* ``item_user_scores`` — top ``k_users`` users per servable item;
* the MF user / item factors, and the parameters actually used.

What serves (``ScoreResult.stage``):

``two_stage`` (default)
    MF candidates + :class:`~proactive_recs.ranker.PropensityRanker` trained on past
    windows; the score is the probability that the user newly interacts with the item
    within ``horizon_days``, times the boosts.
``mf``
    Plain MF dot products (``second_stage`` off, or not enough labelled history to
    train the ranker), boosted with the sign-aware rule of :mod:`proactive_recs.topk`.
``popularity``
    Too little data to factorise (fewer than ``min_interactions`` rows, or no more
    users / items than ``factors``): items by number of distinct buyers (last horizon
    first), users by number of distinct items, weighted by their taste for the item's
    category when it has one. A warning is logged and every row has ``is_fallback``
    True.

Within ``two_stage`` / ``mf``, a servable user without any interaction before
``run_date`` gets the popularity list and a servable item without any interaction (a
brand-new item) gets the category-weighted heavy-users list; those rows have
``is_fallback`` True as well.

Business rules, applied in every stage: a user is servable when ``is_eligible`` and
``passes_filter``; an item when ``passes_filter`` and ``available_from <= run_date <
available_until`` (null bounds are open). Pairs the user already interacted with are
excluded unless ``allow_repeats``. ``user boost x item boost`` multiplies the score
before the top-K cut, so K rows come back whenever K candidates pass.
"""

from __future__ import annotations

import copy
import logging
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from . import metrics
from .interactions import (
    build_interaction_matrix,
    interactions_before,
    new_pairs_matrix,
    normalise_interactions,
)
from .mf import ImplicitMF
from .ranker import (
    PropensityRanker,
    build_snapshot,
    candidate_pairs,
    pair_features,
    training_frame,
)
from .topk import apply_boost, topk_both, topk_pairs

__all__ = ["DEFAULT_PARAMS", "MF_KEYS", "ScoreResult", "resolve_params", "score", "tune_mf"]

log = logging.getLogger(__name__)

DEFAULT_PARAMS: dict = {
    # output
    "k_items": 20,
    "k_users": 100,
    "allow_repeats": False,
    # confidence matrix and matrix factorization
    "half_life_days": None,
    "factors": 64,
    "regularization": 0.05,
    "alpha": 1.0,
    "iterations": 15,
    "random_state": 0,
    # threads for implicit, the booster and BLAS; 0 = all cores. One thread is the
    # default because on small data and busy machines extra threads cost more than
    # they bring (Online Retail: 60 s with 1 thread, 53 s with 2).
    "num_threads": 1,
    # MF hyper-parameters picked on the last horizon before run_date (see tune_mf)
    "tune": True,
    "tune_grid": [
        {"factors": 32},
        {"factors": 64},
        {"factors": 128},
        {"factors": 64, "alpha": 4.0},
    ],
    # second stage
    "second_stage": True,
    "horizon_days": 30,
    "training_windows": 3,
    "candidates_per_user": 200,
    "candidates_per_item": 300,
    "active_candidates_per_item": 300,
    "popular_candidates_per_user": 100,
    "negative_rate": 0.1,
    "ranker_max_iter": 100,
    "ranker_learning_rate": 0.1,
    "min_positives": 50,
    # fallback
    "min_interactions": 20,
    # memory: users per block of the top-K pass (None = about 64 MB of scores)
    "block_size": None,
}

MF_KEYS = ("factors", "regularization", "alpha", "iterations", "random_state", "num_threads")


@dataclass
class ScoreResult:
    """Frames returned by :func:`score`.

    user_item_scores : user_id, item_id, rank (1 = best), score, is_fallback
    item_user_scores : item_id, user_id, rank, score, is_fallback
    user_factors : user_id, factor_00, factor_01, ... (users with an MF factor)
    item_factors : item_id, factor_00, ...
    params : parameter, value (str) — every parameter used, after tuning
    stage : 'two_stage', 'mf' or 'popularity'
    """

    user_item_scores: pd.DataFrame
    item_user_scores: pd.DataFrame
    user_factors: pd.DataFrame
    item_factors: pd.DataFrame
    params: pd.DataFrame
    stage: str
    diagnostics: dict = field(default_factory=dict)


def _coerce(key: str, value, default):
    """dbt vars sometimes arrive as text: turn "64" / "0.5" / "true" / "none" into the
    type of the default."""
    if not isinstance(value, str):
        return value
    text = value.strip().lower()
    if text in ("none", "null", ""):
        return None
    if isinstance(default, bool):
        if text not in ("true", "false", "1", "0"):
            raise ValueError(f"parameter {key!r}: expected a boolean, got {value!r}")
        return text in ("true", "1")
    if isinstance(default, int) or key in ("half_life_days", "block_size"):
        number = float(text)
        return int(number) if number.is_integer() and not isinstance(default, float) else number
    if isinstance(default, float):
        return float(text)
    return value


def resolve_params(params: dict | None) -> dict:
    """Defaults overlaid with ``params``. Unknown keys are ignored with a warning so that a
    typo in a dbt var is visible but does not stop the run; values given as text are
    coerced to the type of their default."""
    resolved = copy.deepcopy(DEFAULT_PARAMS)
    for key, value in (params or {}).items():
        if key not in DEFAULT_PARAMS:
            log.warning("unknown parameter %r ignored", key)
            continue
        resolved[key] = _coerce(key, value, DEFAULT_PARAMS[key])
    return resolved


def _mf_params(p: dict) -> dict:
    return {key: p[key] for key in MF_KEYS}


# ------------------------------------------------------------------- input hygiene


def _naive_utc(values: pd.Series) -> pd.Series:
    out = pd.to_datetime(values)
    if getattr(out.dt, "tz", None) is not None:
        out = out.dt.tz_convert("UTC").dt.tz_localize(None)
    return out


def _bool_column(frame: pd.DataFrame, name: str) -> np.ndarray:
    if name not in frame:
        return np.ones(len(frame), dtype=bool)
    return frame[name].fillna(False).astype(bool).to_numpy()


def _boost_column(frame: pd.DataFrame) -> np.ndarray:
    if "boost" not in frame:
        return np.ones(len(frame), dtype=np.float32)
    boost = pd.to_numeric(frame["boost"], errors="coerce").fillna(1.0).to_numpy(np.float32)
    return np.clip(boost, 0.0, None)


@dataclass(frozen=True)
class _Universe:
    """Ids that may be served and their boosts, keyed by id."""

    user_ids: pd.Index  # every user known to the run
    user_servable: np.ndarray
    user_boost: np.ndarray
    item_ids: pd.Index
    item_servable: np.ndarray
    item_boost: np.ndarray
    items: pd.DataFrame | None  # normalised items frame (for features)


def _universe(interactions, users, items, run_date) -> _Universe:
    if users is not None and len(users):
        users = users.drop_duplicates("user_id")
        user_ids = pd.Index(users["user_id"].astype(str))
        servable = _bool_column(users, "is_eligible") & _bool_column(users, "passes_filter")
        user_boost = _boost_column(users)
    else:
        user_ids = pd.Index(np.sort(interactions["user_id"].unique()))
        servable = np.ones(len(user_ids), dtype=bool)
        user_boost = np.ones(len(user_ids), dtype=np.float32)
    items_norm = None
    if items is not None and len(items):
        items_norm = items.drop_duplicates("item_id").copy()
        items_norm["item_id"] = items_norm["item_id"].astype(str)
        item_ids = pd.Index(items_norm["item_id"])
        ok = _bool_column(items_norm, "passes_filter")
        if "available_from" in items_norm:
            start = _naive_utc(items_norm["available_from"])
            items_norm["available_from"] = start
            ok &= (start.isna() | (start <= run_date)).to_numpy()
        if "available_until" in items_norm:
            until = _naive_utc(items_norm["available_until"])
            items_norm["available_until"] = until
            ok &= (until.isna() | (until > run_date)).to_numpy()
        item_boost = _boost_column(items_norm)
    else:
        item_ids = pd.Index(np.sort(interactions["item_id"].unique()))
        ok = np.ones(len(item_ids), dtype=bool)
        item_boost = np.ones(len(item_ids), dtype=np.float32)
    return _Universe(user_ids, servable, user_boost, item_ids, ok, item_boost, items_norm)


# ------------------------------------------------------------------------- tuning


def tune_mf(
    interactions: pd.DataFrame,
    run_date,
    *,
    horizon_days: float,
    base_params: dict,
    grid: list[dict],
    half_life_days: float | None = None,
    block_size: int | None = None,
) -> tuple[dict, pd.DataFrame]:
    """Pick MF hyper-parameters on the last ``horizon_days`` before ``run_date``.

    Each configuration (``base_params`` updated with one grid entry) is fitted on the
    interactions before ``run_date - horizon_days`` and scored on the new pairs of the
    window up to ``run_date`` with the §5 protocol; the objective is user_to_item
    ndcg@10 + item_to_user recall@100, because the factors serve both directions.
    Returns the chosen MF parameters and one row per configuration tried.
    """
    run_date = pd.Timestamp(run_date)
    split = run_date - pd.Timedelta(days=horizon_days)
    base = build_interaction_matrix(
        interactions_before(interactions, split), split, half_life_days=half_life_days
    )
    truth = new_pairs_matrix(interactions_before(interactions, run_date), base, split, run_date)
    best, best_value, rows = dict(base_params), -np.inf, []
    if truth.nnz == 0 or base.n_users <= 1 or base.n_items <= 1:
        return best, pd.DataFrame(rows)
    users_q = np.diff(truth.indptr) > 0
    truth_t = sp.csr_matrix(truth.T)
    items_q = np.diff(truth_t.indptr) > 0
    for entry in grid:
        params = {**base_params, **entry}
        if min(base.n_users, base.n_items) <= params["factors"]:
            continue
        mf = ImplicitMF(**params).fit(base.matrix)
        top = topk_both(
            mf.user_factors_,
            mf.item_factors_,
            k_items=10,
            k_users=100,
            exclude=base.seen,
            block_size=block_size,
        )
        ndcg = metrics.ranking_metrics(
            top.user_items[users_q], truth[users_q], ks=[10], metrics=("ndcg",)
        )[("ndcg", 10)]
        recall = metrics.ranking_metrics(
            top.item_users[items_q], truth_t[items_q], ks=[100], metrics=("recall",)
        )[("recall", 100)]
        value = ndcg + recall
        rows.append({**entry, "ndcg@10": ndcg, "recall@100": recall, "objective": value})
        if value > best_value:
            best, best_value = params, value
    return best, pd.DataFrame(rows)


# ------------------------------------------------------------------------ scoring


def _frame(owner_ids, member_ids, lists, scores, fallback, owner_col, member_col):
    n_owner, k = lists.shape
    owner = np.repeat(np.arange(n_owner), k)
    member = lists.ravel()
    ok = member >= 0
    return pd.DataFrame(
        {
            owner_col: np.asarray(owner_ids, dtype=object)[owner[ok]],
            member_col: np.asarray(member_ids, dtype=object)[member[ok]],
            "rank": np.tile(np.arange(1, k + 1), n_owner)[ok].astype(np.int64),
            "score": scores.ravel()[ok].astype(np.float64),
            "is_fallback": np.repeat(np.asarray(fallback, dtype=bool), k)[ok],
        }
    )


def _factor_frame(ids, factors, id_col):
    cols = {id_col: np.asarray(ids, dtype=object)}
    for f in range(factors.shape[1]):
        cols[f"factor_{f:02d}"] = factors[:, f].astype(np.float64)
    return pd.DataFrame(cols)


def _seen_over(interactions, user_ids, item_ids) -> sp.csr_matrix:
    return build_interaction_matrix(interactions, None, user_ids=user_ids, item_ids=item_ids).seen


_MAX_AFFINITY_CELLS = 50_000_000  # users x categories above which category affinity is skipped


def _popularity_lists(interactions, uni: _Universe, p, run_date, users_sel, items_sel, exclude):
    """Heuristic lists for users and items the model cannot score.

    Users get the most popular items: distinct buyers over the last ``horizon_days``,
    all-time distinct buyers breaking ties (so tiny or stale data still ranks). Items get
    the most active users (distinct items bought), and when the item has a category,
    users weighted by the share of their history in that category first: a day-0
    audience for a brand-new item is the active buyers of its category. Boosts,
    masks and exclusions apply as everywhere.
    """
    seen = _seen_over(interactions, uni.user_ids, uni.item_ids)
    recent_rows = interactions[
        interactions["occurred_at"] >= run_date - pd.Timedelta(days=float(p["horizon_days"]))
    ]
    recent = _seen_over(recent_rows, uni.user_ids, uni.item_ids)
    item_pop = np.asarray(recent.sum(axis=0)).ravel() + 1e-3 * np.asarray(seen.sum(axis=0)).ravel()
    user_act = np.asarray(seen.sum(axis=1)).ravel().astype(np.float32)
    n_u, n_i = len(uni.user_ids), len(uni.item_ids)
    by_pop = topk_both(
        np.ones((n_u, 1)),
        item_pop[:, None],
        k_items=p["k_items"],
        k_users=0,
        exclude=exclude,
        user_mask=uni.user_servable & users_sel,
        item_mask=uni.item_servable,
        user_boost=uni.user_boost,
        item_boost=uni.item_boost,
        block_size=p["block_size"],
    )
    user_vecs, item_vecs = user_act[:, None], np.ones((n_i, 1), np.float32)
    category = None
    if uni.items is not None and "category" in uni.items:
        category = pd.factorize(uni.items.set_index("item_id")["category"].reindex(uni.item_ids))[0]
    if category is not None and (category >= 0).any():
        n_cat = int(category.max()) + 1
        if n_u * n_cat <= _MAX_AFFINITY_CELLS:
            has = category >= 0
            onehot = sp.csr_matrix(
                (np.ones(int(has.sum()), np.float32), (np.flatnonzero(has), category[has])),
                shape=(n_i, n_cat),
            )
            per_cat = np.asarray((seen @ onehot).todense(), dtype=np.float32)
            share = per_cat / np.maximum(per_cat.sum(axis=1, keepdims=True), 1.0)
            # score(u, i) = activity(u) * (share of u's history in cat(i) + 0.05); items
            # without a category: activity(u) alone.
            user_vecs = np.hstack([user_act[:, None] * share, 0.05 * user_act[:, None]])
            item_vecs = np.zeros((n_i, n_cat + 1), np.float32)
            item_vecs[np.flatnonzero(has), category[has]] = 1.0
            item_vecs[:, -1] = np.where(has, 1.0, 20.0)
    by_act = topk_both(
        user_vecs,
        item_vecs,
        k_items=0,
        k_users=p["k_users"],
        exclude=exclude,
        user_mask=uni.user_servable,
        item_mask=uni.item_servable & items_sel,
        user_boost=uni.user_boost,
        item_boost=uni.item_boost,
        block_size=p["block_size"],
    )
    return by_pop, by_act


def _params_frame(p: dict) -> pd.DataFrame:
    return pd.DataFrame({"parameter": list(p.keys()), "value": [str(v) for v in p.values()]})


def score(
    interactions: pd.DataFrame | None,
    users: pd.DataFrame | None = None,
    items: pd.DataFrame | None = None,
    run_date=None,
    params: dict | None = None,
) -> ScoreResult:
    """Score users x items as of ``run_date`` and return the served top-K frames.

    Parameters
    ----------
    interactions : user_id, item_id, occurred_at (UTC naive), event_type, event_weight,
        quantity. Rows at or after ``run_date`` are ignored.
    users : user_id, is_eligible, passes_filter, boost (all optional but user_id). None:
        every user of the interactions, eligible, boost 1.
    items : item_id, category, price, available_from, available_until, passes_filter,
        boost. None: every item of the interactions, always available, boost 1.
    run_date : timestamp; default: midnight after the last interaction.
    params : overrides of :data:`DEFAULT_PARAMS`.

    Never raises on thin or empty data: it falls back to popularity (see module doc).
    """
    p = resolve_params(params)
    frame = normalise_interactions(interactions)
    if run_date is None:
        last = frame["occurred_at"].max() if len(frame) else pd.Timestamp("1970-01-01")
        run_date = last.normalize() + pd.Timedelta(days=1)
    run_date = pd.Timestamp(run_date)
    if run_date.tzinfo is not None:
        run_date = run_date.tz_convert("UTC").tz_localize(None)
    frame = interactions_before(frame, run_date)
    uni = _universe(frame, users, items, run_date)
    # Interactions of users/items outside the universe cannot be served; they still
    # inform the model (co-purchase patterns) when the universe is given explicitly.
    exclude_all = None if p["allow_repeats"] else _seen_over(frame, uni.user_ids, uni.item_ids)

    n_users_known = frame["user_id"].nunique()
    n_items_known = frame["item_id"].nunique()
    too_small = (
        len(frame) < p["min_interactions"]
        or n_users_known <= p["factors"]
        or n_items_known <= p["factors"]
    )
    if too_small:
        log.warning(
            "falling back to popularity: %d interactions, %d users, %d items "
            "(need >= %d interactions and more users and items than factors=%d)",
            len(frame),
            n_users_known,
            n_items_known,
            p["min_interactions"],
            p["factors"],
        )
        return _popularity_result(frame, uni, p, exclude_all, run_date)

    diagnostics: dict = {}
    threads = int(p["num_threads"]) or None
    with warnings.catch_warnings(), threadpool_limits(limits=threads):
        # implicit warns about BLAS threads even though fit limits them itself.
        warnings.simplefilter("ignore", RuntimeWarning)
        return _model_result(frame, uni, p, exclude_all, run_date, diagnostics)


def _popularity_result(frame, uni, p, exclude_all, run_date) -> ScoreResult:
    everyone_u = np.ones(len(uni.user_ids), dtype=bool)
    everyone_i = np.ones(len(uni.item_ids), dtype=bool)
    by_pop, by_act = _popularity_lists(frame, uni, p, run_date, everyone_u, everyone_i, exclude_all)
    ui = _frame(
        uni.user_ids,
        uni.item_ids,
        by_pop.user_items,
        by_pop.user_item_scores,
        everyone_u,
        "user_id",
        "item_id",
    )
    iu = _frame(
        uni.item_ids,
        uni.user_ids,
        by_act.item_users,
        by_act.item_user_scores,
        everyone_i,
        "item_id",
        "user_id",
    )
    return ScoreResult(
        user_item_scores=ui,
        item_user_scores=iu,
        user_factors=pd.DataFrame({"user_id": pd.Series(dtype=object)}),
        item_factors=pd.DataFrame({"item_id": pd.Series(dtype=object)}),
        params=_params_frame(p),
        stage="popularity",
    )


def _model_result(frame, uni, p, exclude_all, run_date, diagnostics) -> ScoreResult:
    horizon = float(p["horizon_days"])
    mf_params = _mf_params(p)
    if p["tune"] and p["tune_grid"]:
        mf_params, tried = tune_mf(
            frame,
            run_date,
            horizon_days=horizon,
            base_params=mf_params,
            grid=p["tune_grid"],
            half_life_days=p["half_life_days"],
            block_size=p["block_size"],
        )
        diagnostics["tuning"] = tried
    used = {**p, **mf_params}

    snap = build_snapshot(
        frame,
        run_date,
        horizon_days=horizon,
        mf_params=mf_params,
        half_life_days=p["half_life_days"],
        items=uni.items,
    )
    # Map the universe onto the snapshot's index (users/items with history).
    u_pos = uni.user_ids.get_indexer(snap.data.user_ids)
    i_pos = uni.item_ids.get_indexer(snap.data.item_ids)
    u_in, i_in = u_pos >= 0, i_pos >= 0
    user_mask = np.where(u_in, uni.user_servable[np.maximum(u_pos, 0)], False)
    item_mask = np.where(i_in, uni.item_servable[np.maximum(i_pos, 0)], False)
    user_boost = np.where(u_in, uni.user_boost[np.maximum(u_pos, 0)], 1.0).astype(np.float32)
    item_boost = np.where(i_in, uni.item_boost[np.maximum(i_pos, 0)], 1.0).astype(np.float32)
    exclude = None if p["allow_repeats"] else snap.data.seen

    ranker = None
    cand = dict(
        per_user=p["candidates_per_user"],
        per_item=p["candidates_per_item"],
        active_per_item=p["active_candidates_per_item"],
        popular_per_user=p["popular_candidates_per_user"],
        block_size=p["block_size"],
    )
    if p["second_stage"]:
        X, y = training_frame(
            frame,
            run_date,
            horizon_days=horizon,
            windows=int(p["training_windows"]),
            mf_params=mf_params,
            candidate_params=cand,
            half_life_days=p["half_life_days"],
            items=uni.items,
            negative_rate=p["negative_rate"],
            random_state=p["random_state"],
        )
        diagnostics["training_rows"] = int(len(y))
        diagnostics["training_positives"] = int(y.sum())
        if y.sum() >= p["min_positives"]:
            ranker = PropensityRanker(
                max_iter=p["ranker_max_iter"],
                learning_rate=p["ranker_learning_rate"],
                negative_weight=1.0 / p["negative_rate"],
                random_state=p["random_state"],
            ).fit(X, y)
        else:
            log.warning(
                "second stage skipped: %d positive examples in %d past windows (need %d);"
                " serving plain MF scores",
                int(y.sum()),
                p["training_windows"],
                p["min_positives"],
            )

    n_u, n_i = snap.data.n_users, snap.data.n_items
    if ranker is not None:
        u, i = candidate_pairs(
            snap,
            exclude=exclude,
            user_mask=user_mask,
            item_mask=item_mask,
            user_boost=user_boost,
            item_boost=item_boost,
            **cand,
        )
        prob = ranker.predict_proba(pair_features(snap, u, i))[:, 1].astype(np.float32)
        boosted = apply_boost(prob, user_boost[u] * item_boost[i])
        ui_lists, ui_scores = topk_pairs(u, i, boosted, n_u, p["k_items"])
        iu_lists, iu_scores = topk_pairs(i, u, boosted, n_i, p["k_users"])
        stage = "two_stage"
        diagnostics["candidates"] = int(u.size)
    else:
        top = topk_both(
            snap.mf.user_factors_,
            snap.mf.item_factors_,
            k_items=p["k_items"],
            k_users=p["k_users"],
            exclude=exclude,
            user_mask=user_mask,
            item_mask=item_mask,
            user_boost=user_boost,
            item_boost=item_boost,
            block_size=p["block_size"],
        )
        ui_lists, ui_scores, iu_lists, iu_scores = (
            top.user_items,
            top.user_item_scores,
            top.item_users,
            top.item_user_scores,
        )
        stage = "mf"
    # Only servable users get a list (masked users have empty rows already).
    ui = _frame(
        snap.data.user_ids,
        snap.data.item_ids,
        ui_lists,
        ui_scores,
        np.zeros(n_u, bool),
        "user_id",
        "item_id",
    )
    iu = _frame(
        snap.data.item_ids,
        snap.data.user_ids,
        iu_lists,
        iu_scores,
        np.zeros(n_i, bool),
        "item_id",
        "user_id",
    )

    # Cold users / items: servable but without history before run_date.
    cold_users = uni.user_servable & ~uni.user_ids.isin(snap.data.user_ids)
    cold_items = uni.item_servable & ~uni.item_ids.isin(snap.data.item_ids)
    if cold_users.any() or cold_items.any():
        by_pop, by_act = _popularity_lists(
            frame, uni, p, run_date, cold_users, cold_items, exclude_all
        )
        parts_ui = [ui]
        parts_iu = [iu]
        if cold_users.any():
            parts_ui.append(
                _frame(
                    uni.user_ids,
                    uni.item_ids,
                    by_pop.user_items,
                    by_pop.user_item_scores,
                    np.ones(len(uni.user_ids), bool),
                    "user_id",
                    "item_id",
                )
            )
        if cold_items.any():
            parts_iu.append(
                _frame(
                    uni.item_ids,
                    uni.user_ids,
                    by_act.item_users,
                    by_act.item_user_scores,
                    np.ones(len(uni.item_ids), bool),
                    "item_id",
                    "user_id",
                )
            )
        ui = pd.concat(parts_ui, ignore_index=True)
        iu = pd.concat(parts_iu, ignore_index=True)

    return ScoreResult(
        user_item_scores=ui,
        item_user_scores=iu,
        user_factors=_factor_frame(snap.data.user_ids, snap.mf.user_factors_, "user_id"),
        item_factors=_factor_frame(snap.data.item_ids, snap.mf.item_factors_, "item_id"),
        params=_params_frame(used),
        stage=stage,
        diagnostics=diagnostics,
    )
