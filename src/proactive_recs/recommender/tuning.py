"""Choosing the MF hyper-parameters on a validation window before the run.

The last ``horizon_days`` before the run play the test window's part: each grid entry is
fitted on the interactions before them and scored on the new pairs inside them with the
objective that says "better" everywhere (:data:`~proactive_recs.evaluation.metrics.
OBJECTIVE_K_ITEMS` / ``OBJECTIVE_K_USERS``). The served model's first stage and the
evaluation's ``als`` baseline are both tuned here, so they can be compared.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from proactive_recs.data.interactions import (
    build_interaction_matrix,
    interactions_before,
    new_pairs_matrix,
)
from proactive_recs.estimators.mf import ImplicitMF
from proactive_recs.estimators.topk import topk_both
from proactive_recs.evaluation import metrics

__all__ = ["MF_KEYS", "mf_params", "tune_mf"]

# The settings that are MF's own hyper-parameters (ImplicitMF's parameters).
MF_KEYS = ("factors", "regularization", "alpha", "iterations", "random_state", "num_threads")


def mf_params(settings: dict) -> dict:
    """The MF hyper-parameters among the recommender's settings."""
    return {key: settings[key] for key in MF_KEYS}


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
            k_items=metrics.OBJECTIVE_K_ITEMS,
            k_users=metrics.OBJECTIVE_K_USERS,
            exclude=base.seen,
            block_size=block_size,
        )
        k_items, k_users = metrics.OBJECTIVE_K_ITEMS, metrics.OBJECTIVE_K_USERS
        ndcg = metrics.ranking_metrics(
            top.user_items[users_q], truth[users_q], ks=[k_items], metrics=("ndcg",)
        )[("ndcg", k_items)]
        recall = metrics.ranking_metrics(
            top.item_users[items_q], truth_t[items_q], ks=[k_users], metrics=("recall",)
        )[("recall", k_users)]
        value = ndcg + recall
        rows.append(
            {**entry, f"ndcg@{k_items}": ndcg, f"recall@{k_users}": recall, "objective": value}
        )
        if value > best_value:
            best, best_value = params, value
    return best, pd.DataFrame(rows)
