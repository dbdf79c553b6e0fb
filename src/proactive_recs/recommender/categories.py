"""User -> category scores: how much each user likes each category, for every pair.

A category's profile is the mean latent factor of its items; a user's score for it is the
dot product of the user's factor with that profile, i.e. the mean MF score the user gives
the category's items. Ranked per user (1 = best). Evaluated with the time split of
docs/evaluation.md in direction ``user_to_category``: relevant categories are those of the
items the user interacts with in the test window; the baseline ``category_history`` ranks
categories by the user's own share of past interactions (hard to beat for loyal users,
blind to new tastes).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from proactive_recs.data.interactions import build_interaction_matrix, interactions_before
from proactive_recs.estimators.mf import ImplicitMF
from proactive_recs.estimators.threads import single_threaded_blas
from proactive_recs.evaluation import metrics

CATEGORY_KS = (1, 3)


def _factor_matrix(frame: pd.DataFrame, id_col: str) -> tuple[pd.Index, np.ndarray]:
    """ids and an (n, f) matrix from a frame of id + list-of-floats ``factors``, in id
    order: the factor tables come back from the warehouse in no particular order, and the
    category profiles sum item factors in row order (a float sum depends on its order)."""
    if len(frame) == 0:
        return pd.Index(frame[id_col].astype(str)), np.zeros((0, 0))
    frame = frame.assign(**{id_col: frame[id_col].astype(str)})
    frame = frame.sort_values(id_col, kind="mergesort")
    ids = pd.Index(frame[id_col])
    return ids, np.vstack([np.asarray(v, dtype=np.float64) for v in frame["factors"]])


def category_profiles(item_ids, item_factors: np.ndarray, items: pd.DataFrame):
    """(categories, profile matrix): mean item factor per non-null category."""
    category_of = items.set_index(items["item_id"].astype(str))["category"]
    categories = category_of.reindex(pd.Index(item_ids)).to_numpy()
    known = pd.notna(categories)
    names = np.array(sorted(set(categories[known])), dtype=object)
    if len(names) == 0 or item_factors.size == 0:
        return names, np.zeros((0, item_factors.shape[1] if item_factors.ndim == 2 else 0))
    codes = pd.Index(names).get_indexer(categories[known])
    sums = np.zeros((len(names), item_factors.shape[1]))
    np.add.at(sums, codes, item_factors[known])
    counts = np.bincount(codes, minlength=len(names))[:, None]
    return names, sums / counts


def score_matrix_to_frame(user_ids, categories, scores: np.ndarray) -> pd.DataFrame:
    """Long frame user_id, category, score, rank (1 = best; ties by category name)."""
    if scores.size == 0:
        return pd.DataFrame({"user_id": [], "category": [], "score": [], "rank": []})
    order = np.lexsort((np.broadcast_to(np.arange(len(categories)), scores.shape), -scores))
    ranks = np.empty_like(order)
    rows = np.arange(scores.shape[0])[:, None]
    ranks[rows, order] = np.arange(1, scores.shape[1] + 1)
    return pd.DataFrame(
        {
            "user_id": np.repeat(np.asarray(user_ids, dtype=object), len(categories)),
            "category": np.tile(categories, len(user_ids)),
            "score": scores.ravel(),
            "rank": ranks.ravel(),
        }
    )


def user_category_scores(user_factors, item_factors, items) -> pd.DataFrame:
    """Every (user, category) with a score and a rank, from the run's factor tables."""
    user_ids, users = _factor_matrix(user_factors, "user_id")
    item_ids, item_matrix = _factor_matrix(item_factors, "item_id")
    categories, profiles = category_profiles(item_ids, item_matrix, items)
    if len(user_ids) == 0 or len(categories) == 0:
        return score_matrix_to_frame([], [], np.zeros((0, 0)))
    with single_threaded_blas():  # the same bits whatever else runs in the process
        scores = users @ profiles.T
    return score_matrix_to_frame(user_ids, categories, scores)


def _ranked_metrics(model, scores, relevant: np.ndarray) -> list[dict]:
    """ndcg and recall at CATEGORY_KS for a (users, categories) score matrix."""
    order = np.argsort(-scores, axis=1, kind="stable")
    hits = np.take_along_axis(relevant, order, axis=1)
    n_relevant = relevant.sum(axis=1)
    rows = []
    for k in CATEGORY_KS:
        for name, fn in (("ndcg", metrics.ndcg_at_k), ("recall", metrics.recall_at_k)):
            rows.append(
                {
                    "model": model,
                    "direction": "user_to_category",
                    "segment": "all",
                    "metric": name,
                    "k": k,
                    "value": fn(hits, n_relevant, k),
                }
            )
    return rows


def evaluate_user_to_category(
    interactions: pd.DataFrame,
    items: pd.DataFrame,
    *,
    cutoff,
    horizon_days: float,
    mf_params: dict | None = None,
    random_state: int = 0,
) -> pd.DataFrame:
    """The time split of docs/evaluation.md for user_to_category: models 'served' (factor
    profiles, as the user_category_scores table computes them), 'category_history' and
    'random'."""
    cutoff = pd.Timestamp(cutoff)
    end = cutoff + pd.Timedelta(days=float(horizon_days))
    category_of = items.set_index(items["item_id"].astype(str))["category"].dropna()
    frame = interactions.assign(
        user_id=interactions["user_id"].astype(str), item_id=interactions["item_id"].astype(str)
    )
    train = interactions_before(frame, cutoff)
    test = frame[(frame["occurred_at"] >= cutoff) & (frame["occurred_at"] < end)]
    if len(category_of) == 0 or len(train) == 0 or len(test) == 0:
        return pd.DataFrame(columns=["model", "direction", "segment", "metric", "k", "value"])
    matrix = build_interaction_matrix(train, cutoff)
    mf = ImplicitMF(**(mf_params or {}), random_state=random_state).fit(matrix.matrix)
    categories, profiles = category_profiles(matrix.item_ids, mf.item_factors_, items)
    users = matrix.user_ids
    test = test[test["user_id"].isin(users) & test["item_id"].isin(category_of.index)]
    relevant = np.zeros((len(users), len(categories)), dtype=bool)
    relevant[
        users.get_indexer(test["user_id"]),
        pd.Index(categories).get_indexer(category_of.reindex(test["item_id"]).to_numpy()),
    ] = True
    keep = relevant.any(axis=1)
    history = train[train["item_id"].isin(category_of.index)]
    share = pd.crosstab(
        pd.Categorical(history["user_id"], categories=users),
        pd.Categorical(category_of.reindex(history["item_id"]).to_numpy(), categories=categories),
        dropna=False,
    ).to_numpy(dtype=np.float64)
    rng = np.random.default_rng(random_state)
    with single_threaded_blas():
        served = mf.user_factors_.astype(np.float64) @ profiles.T
    rows = []
    for model, scores in (
        ("served", served),
        ("category_history", share + 1e-9 * served),  # ties among unseen categories by MF
        ("random", rng.random(served.shape)),
    ):
        rows += _ranked_metrics(model, scores[keep], relevant[keep])
    return pd.DataFrame(rows)
