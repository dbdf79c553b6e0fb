"""User -> category scores: how much each user likes each category, for every pair.

Two signals rank a user's categories. The user's own history: the share of their past
interactions in each category (``category_history``, hard to beat for loyal users, blind
to new tastes). And matrix factorization: a category's profile is the mean latent factor
of its items, and the user's affinity to it is the dot product with that profile (the
mean MF score the user gives the category's items), standardised over the categories.

The served score is ``share + weight * affinity``. The weight is chosen on the validation
window (the last horizon before the run, never a test window) among
:data:`CATEGORY_BLEND_WEIGHTS`, from 0 (the history alone, MF only breaking ties) to
infinity (MF alone): :func:`choose_category_blend`. The recommender makes that choice in the
weekly fit (``model_parameters``: ``category_weight`` and why) and the daily
``category_scores`` model applies it. Ranked per user (1 = best). Evaluated with the time
split of docs/evaluation.md in direction ``user_to_category``: relevant categories are those
of the items the user interacts with in the test window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from proactive_recs.data.interactions import (
    build_interaction_matrix,
    interactions_before,
    normalise_interactions,
    text_ids,
)
from proactive_recs.estimators.mf import ImplicitMF
from proactive_recs.estimators.threads import single_threaded_blas
from proactive_recs.evaluation import metrics

CATEGORY_KS = (1, 3)
# share + weight * standardised MF affinity; 0 = the history alone (MF breaks ties),
# inf = MF alone. The first best on the validation window wins: the simpler model on ties.
CATEGORY_BLEND_WEIGHTS = (0.0, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, math.inf)
CATEGORY_OBJECTIVE = ("ndcg", 1)  # metric and k the weight is chosen on
_TIE_BREAK = 1e-9


@dataclass(frozen=True)
class CategoryChoice:
    """The weight of MF against the user's own history in user -> category scores.

    weight : in :data:`CATEGORY_BLEND_WEIGHTS` (inf = MF alone: the choice when nothing
        could be compared)
    validation : the objective per weight on the validation window (empty if not compared)
    reason : why, in words
    """

    weight: float = math.inf
    validation: dict = field(default_factory=dict)
    reason: str = "MF profiles (not compared)"

    def as_params(self) -> dict:
        """Flat entries for ``model_parameters``."""
        out = {"category_weight": self.weight, "category_weight_reason": self.reason}
        for weight, value in self.validation.items():
            out[f"category_validation_weight_{weight}"] = round(float(value), 6)
        return out


def category_shares(history: pd.DataFrame, user_ids, categories, items) -> np.ndarray:
    """(users x categories) share of each user's past interactions (rows of ``history``)
    with items of each category; a row sums to 1, or to 0 without such an interaction."""
    category_of = items.set_index(items["item_id"].astype(str))["category"].dropna()
    # text ids as they are: astype(str) copied both id columns of a 20M-row history at L
    item_category = category_of.reindex(text_ids(history["item_id"])).to_numpy()
    known = pd.notna(item_category)
    rows = pd.Index(user_ids).get_indexer(text_ids(history["user_id"])[known])
    cols = pd.Index(categories).get_indexer(item_category[known])
    ok = (rows >= 0) & (cols >= 0)
    counts = np.zeros((len(user_ids), len(categories)))
    np.add.at(counts, (rows[ok], cols[ok]), 1.0)
    return counts / np.maximum(counts.sum(axis=1, keepdims=True), 1.0)


def blend_category_scores(affinity: np.ndarray, shares: np.ndarray, weight: float) -> np.ndarray:
    """share + weight x (the user's MF affinity standardised over the categories); weight 0
    is the history with MF breaking its ties, inf the MF affinity alone (as it is: the
    standardising would not change a user's order)."""
    if math.isinf(weight):
        return affinity
    spread = affinity.std(axis=1, keepdims=True)
    z = (affinity - affinity.mean(axis=1, keepdims=True)) / np.where(spread > 0, spread, 1.0)
    return shares + (weight if weight > 0 else _TIE_BREAK) * z


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


def user_category_scores(
    user_factors, item_factors, items, history=None, weight: float = math.inf
) -> pd.DataFrame:
    """Every (user, category) with a score and a rank, from the run's factor tables and,
    for a finite ``weight``, the users' history (``history``: the interactions before the
    run) blended as :func:`blend_category_scores` says."""
    user_ids, users = _factor_matrix(user_factors, "user_id")
    item_ids, item_matrix = _factor_matrix(item_factors, "item_id")
    categories, profiles = category_profiles(item_ids, item_matrix, items)
    if len(user_ids) == 0 or len(categories) == 0:
        return score_matrix_to_frame([], [], np.zeros((0, 0)))
    with single_threaded_blas():  # the same bits whatever else runs in the process
        affinity = users @ profiles.T
    if math.isinf(weight) or history is None:
        shares = np.zeros_like(affinity)
        weight = math.inf
    else:
        shares = category_shares(history, user_ids, categories, items)
    return score_matrix_to_frame(
        user_ids, categories, blend_category_scores(affinity, shares, weight)
    )


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


@dataclass(frozen=True)
class _Window:
    """One time split for user -> category: MF affinities and history shares as of the
    split, and the categories each user turned to in the window after it."""

    affinity: np.ndarray  # users x categories (users who turned to a category)
    shares: np.ndarray
    relevant: np.ndarray  # bool


def _window(interactions, items, start, end, mf_params, random_state) -> _Window | None:
    """The split at ``start`` scored on [start, end), or None when nothing can be scored
    (no category, no history or no category interaction in the window)."""
    category_of = items.set_index(items["item_id"].astype(str))["category"].dropna()
    # The recommender's interactions are normalised already: then the frame itself, not a
    # copy with re-typed ids (at L, 20M rows: about a GB on top of the fit's own state,
    # which made this choice the peak of the backtest's first week; docs/benchmark.md).
    frame = normalise_interactions(interactions)
    train = interactions_before(frame, start)
    test = frame[(frame["occurred_at"] >= start) & (frame["occurred_at"] < end)]
    if len(category_of) == 0 or len(train) == 0 or len(test) == 0:
        return None
    matrix = build_interaction_matrix(train, start)
    if min(matrix.n_users, matrix.n_items) <= (mf_params or {}).get("factors", 0):
        return None
    mf = ImplicitMF(**{"random_state": random_state, **(mf_params or {})}).fit(matrix.matrix)
    categories, profiles = category_profiles(matrix.item_ids, mf.item_factors_, items)
    users = matrix.user_ids
    test = test[test["user_id"].isin(users) & test["item_id"].isin(category_of.index)]
    if len(categories) == 0 or len(test) == 0:
        return None
    relevant = np.zeros((len(users), len(categories)), dtype=bool)
    relevant[
        users.get_indexer(test["user_id"]),
        pd.Index(categories).get_indexer(category_of.reindex(test["item_id"]).to_numpy()),
    ] = True
    keep = relevant.any(axis=1)
    with single_threaded_blas():
        affinity = mf.user_factors_.astype(np.float64) @ profiles.T
    shares = category_shares(train, users, categories, items)
    return _Window(affinity[keep], shares[keep], relevant[keep])


def _objective(window: _Window, weight: float) -> float:
    metric, k = CATEGORY_OBJECTIVE
    row = [
        r
        for r in _ranked_metrics(
            "blend", blend_category_scores(window.affinity, window.shares, weight), window.relevant
        )
        if r["metric"] == metric and r["k"] == k
    ]
    return float(row[0]["value"])


def choose_category_blend(
    interactions: pd.DataFrame,
    items: pd.DataFrame,
    *,
    as_of,
    horizon_days: float,
    mf_params: dict | None = None,
    random_state: int = 0,
) -> CategoryChoice:
    """The weight of :data:`CATEGORY_BLEND_WEIGHTS` that ranks best (ndcg@1) the categories
    users turned to in the last horizon before ``as_of``, from MF and shares as of its
    start; the first best wins, so the history alone on ties. Nothing to compare on: MF
    alone, and the reason says why."""
    as_of = pd.Timestamp(as_of)
    start = as_of - pd.Timedelta(days=float(horizon_days))
    window = _window(interactions, items, start, as_of, mf_params, random_state)
    if window is None:
        return CategoryChoice(
            reason=f"MF profiles: no category interaction to compare on in {start} .. {as_of}"
        )
    validation = {w: _objective(window, w) for w in CATEGORY_BLEND_WEIGHTS}
    best = max(validation, key=lambda w: (validation[w], -CATEGORY_BLEND_WEIGHTS.index(w)))
    metric, k = CATEGORY_OBJECTIVE
    return CategoryChoice(
        weight=best,
        validation=validation,
        reason=(
            f"weight {best} had the best {metric}@{k} on the last horizon before the run"
            f" ({validation[best]:.4f}; history alone {validation[0.0]:.4f},"
            f" MF alone {validation[math.inf]:.4f})"
        ),
    )


def evaluate_user_to_category(
    interactions: pd.DataFrame,
    items: pd.DataFrame,
    *,
    cutoff,
    horizon_days: float,
    mf_params: dict | None = None,
    served_weight: float | None = None,
    random_state: int = 0,
) -> pd.DataFrame:
    """The time split of docs/evaluation.md for user_to_category: models 'served' (the
    blend with ``served_weight``, chosen on the validation window before the cutoff when
    not given), 'category_history', 'mf_profiles' and 'random'."""
    cutoff = pd.Timestamp(cutoff)
    end = cutoff + pd.Timedelta(days=float(horizon_days))
    window = _window(interactions, items, cutoff, end, mf_params, random_state)
    if window is None:
        return pd.DataFrame(columns=["model", "direction", "segment", "metric", "k", "value"])
    if served_weight is None:
        served_weight = choose_category_blend(
            interactions_before(interactions, cutoff),
            items,
            as_of=cutoff,
            horizon_days=horizon_days,
            mf_params=mf_params,
            random_state=random_state,
        ).weight
    rng = np.random.default_rng(random_state)
    rows = []
    for model, weight in (
        ("served", served_weight),
        ("category_history", 0.0),
        ("mf_profiles", math.inf),
    ):
        scores = blend_category_scores(window.affinity, window.shares, weight)
        rows += _ranked_metrics(model, scores, window.relevant)
    rows += _ranked_metrics("random", rng.random(window.affinity.shape), window.relevant)
    return pd.DataFrame(rows)
