"""Choosing the MF hyper-parameters on a validation window before the run.

The last ``horizon_days`` before the run play the test window's part: each grid entry is
fitted on the interactions before them and scored on the new pairs inside them with the
objective that says "better" everywhere (:data:`~proactive_recs.evaluation.metrics.
OBJECTIVE_K_ITEMS` / ``OBJECTIVE_K_USERS``). The served model's first stage and the
evaluation's ``als`` baseline are both tuned here, so they can be compared.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from proactive_recs.data.interactions import (
    build_interaction_matrix,
    interactions_before,
    new_pairs_matrix,
)
from proactive_recs.estimators.mf import ImplicitMF
from proactive_recs.estimators.recency import RECENCY_WINDOWS_DAYS, recency_lists
from proactive_recs.estimators.topk import topk_both
from proactive_recs.evaluation import metrics

__all__ = [
    "MF_KEYS",
    "ValidationWindow",
    "choose_recency_windows",
    "mf_params",
    "tune_mf",
    "validation_window",
]

# The settings that are MF's own hyper-parameters (ImplicitMF's parameters).
MF_KEYS = ("factors", "regularization", "alpha", "iterations", "random_state", "num_threads")


def mf_params(settings: dict) -> dict:
    """The MF hyper-parameters among the recommender's settings."""
    return {key: settings[key] for key in MF_KEYS}


@dataclass
class ValidationWindow:
    """The last ``horizon_days`` before a run, playing the test window's part.

    ``base``: the interactions before ``split`` (the models' training data); ``truth``: the
    new pairs in ``[split, run_date)`` over ``base``'s index, and ``truth_t`` its transpose;
    ``users_q`` / ``items_q``: the queries of each direction (owners with a new pair)."""

    split: pd.Timestamp
    base: object
    truth: sp.csr_matrix
    truth_t: sp.csr_matrix
    users_q: np.ndarray
    items_q: np.ndarray

    @property
    def usable(self) -> bool:
        return self.truth.nnz > 0 and self.base.n_users > 1 and self.base.n_items > 1

    def objective(self, user_items: np.ndarray | None, item_users: np.ndarray | None) -> dict:
        """user -> item ndcg@OBJECTIVE_K_ITEMS and item -> user recall@OBJECTIVE_K_USERS of
        the given lists (None = that direction not scored)."""
        k_items, k_users = metrics.OBJECTIVE_K_ITEMS, metrics.OBJECTIVE_K_USERS
        out = {}
        if user_items is not None:
            out[f"ndcg@{k_items}"] = metrics.ranking_metrics(
                user_items[self.users_q], self.truth[self.users_q], ks=[k_items], metrics=("ndcg",)
            )[("ndcg", k_items)]
        if item_users is not None:
            out[f"recall@{k_users}"] = metrics.ranking_metrics(
                item_users[self.items_q],
                self.truth_t[self.items_q],
                ks=[k_users],
                metrics=("recall",),
            )[("recall", k_users)]
        return out

    def per_query(self, user_items: np.ndarray | None, item_users: np.ndarray) -> dict:
        """The two objectives per query (the values :meth:`objective` averages):
        {'user_to_item': ndcg per user query, 'item_to_user': recall per item query};
        ``user_items`` None: the item -> user side only."""
        k_users = metrics.OBJECTIVE_K_USERS
        truth_iu = self.truth_t[self.items_q]
        out = {}
        if user_items is not None:
            out["user_to_item"] = self.user_query_ndcg(
                user_items[self.users_q], np.arange(int(self.users_q.sum()))
            )
        return {
            **out,
            "item_to_user": metrics.recall_per_query(
                metrics.hits_matrix(item_users[self.items_q], truth_iu),
                np.diff(truth_iu.indptr),
                k_users,
            ),
        }

    def user_query_ndcg(self, user_items: np.ndarray, queries: np.ndarray) -> np.ndarray:
        """ndcg@OBJECTIVE_K_ITEMS of the user queries numbered ``queries`` (positions among
        the window's user queries, in ``users_q``'s order), ``user_items`` holding their
        lists (one row each, items over ``base``'s index): stage selection scores a block
        of users' lists as it is cut, instead of keeping every list."""
        truth = self.truth[np.flatnonzero(self.users_q)[queries]]
        return metrics.ndcg_per_query(
            metrics.hits_matrix(user_items, truth),
            np.diff(truth.indptr),
            metrics.OBJECTIVE_K_ITEMS,
        )


def validation_window(
    interactions: pd.DataFrame, run_date, *, horizon_days: float, half_life_days=None
) -> ValidationWindow:
    """Split the interactions before ``run_date`` at ``run_date - horizon_days``."""
    run_date = pd.Timestamp(run_date)
    split = run_date - pd.Timedelta(days=horizon_days)
    base = build_interaction_matrix(
        interactions_before(interactions, split), split, half_life_days=half_life_days
    )
    truth = new_pairs_matrix(interactions_before(interactions, run_date), base, split, run_date)
    truth_t = sp.csr_matrix(truth.T)
    return ValidationWindow(
        split, base, truth, truth_t, np.diff(truth.indptr) > 0, np.diff(truth_t.indptr) > 0
    )


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
    window up to ``run_date`` with the evaluation protocol (docs/evaluation.md); the objective
    is user_to_item ndcg@10 + item_to_user recall@100 (metrics.OBJECTIVE_K_*), because the
    factors serve both directions.

    Returns the chosen MF parameters and one row per configuration tried.
    """
    window = validation_window(
        interactions, run_date, horizon_days=horizon_days, half_life_days=half_life_days
    )
    best, best_value, rows = dict(base_params), -np.inf, []
    if not window.usable:
        return best, pd.DataFrame(rows)
    base = window.base
    for entry in grid:
        params = {**base_params, **entry}
        if min(base.n_users, base.n_items) <= params["factors"]:
            continue
        mf = ImplicitMF(**params).fit(base.matrix)
        top = topk_both(
            mf.user_factors_,
            mf.item_factors_,
            k_items=metrics.OBJECTIVE_K_ITEMS,
            k_users=metrics.OBJECTIVE_K_USERS,
            exclude=base.seen,
            block_size=block_size,
        )
        scores = window.objective(top.user_items, top.item_users)
        value = sum(scores.values())
        rows.append({**entry, **scores, "objective": value})
        if value > best_value:
            best, best_value = params, value
    return best, pd.DataFrame(rows)


def choose_recency_windows(
    interactions: pd.DataFrame,
    run_date,
    *,
    horizon_days: float,
    windows=RECENCY_WINDOWS_DAYS,
) -> tuple[dict, pd.DataFrame]:
    """The recency baselines' windows, each picked on the validation window before
    ``run_date`` by its own direction's objective (ties: the first window of ``windows``).

    Returns ({"item_window_days": ..., "user_window_days": ...}, one row per window tried
    with both objectives); both None (all the history) when there is nothing to validate on.
    """
    window = validation_window(interactions, run_date, horizon_days=horizon_days)
    chosen = {"item_window_days": None, "user_window_days": None}
    if not window.usable:
        return chosen, pd.DataFrame(columns=["window_days"])
    train = interactions_before(interactions, window.split)
    k_items, k_users = metrics.OBJECTIVE_K_ITEMS, metrics.OBJECTIVE_K_USERS
    rows = []
    for days in windows:
        user_items, item_users = recency_lists(
            train,
            window.split,
            user_ids=window.base.user_ids,
            item_ids=window.base.item_ids,
            exclude=window.base.seen,
            item_window_days=days,
            user_window_days=days,
            k_items=k_items,
            k_users=k_users,
        )
        rows.append({"window_days": days, **window.objective(user_items, item_users)})
    tried = pd.DataFrame(rows)
    tried["window_days"] = pd.Series(list(windows), dtype=object)  # None stays None
    best_items = tried[f"ndcg@{k_items}"].to_numpy().argmax()
    best_users = tried[f"recall@{k_users}"].to_numpy().argmax()
    chosen["item_window_days"] = windows[best_items]
    chosen["user_window_days"] = windows[best_users]
    return chosen, tried
