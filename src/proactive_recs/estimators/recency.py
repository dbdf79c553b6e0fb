"""Recency baselines: the lists a skeptic tries before believing in a learned model.

* ``recent_popularity`` (user -> item): items by the number of distinct users who
  interacted with them in the last ``window_days`` before ``as_of``; ties (most items at a
  short window) by the same count over all the history.
* ``recently_active_users`` (item -> user): users by the number of distinct items they
  interacted with in the last ``window_days``; ties by the all-history count.

Both are the same list for every query (minus what the query already has). The window is
a hyper-parameter: :func:`choose_recency_window` picks it on the validation window before
the run, like MF's settings (:mod:`proactive_recs.recommender.tuning`), never on a test
window.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from proactive_recs.estimators.topk import topk_both

__all__ = [
    "RECENCY_WINDOWS_DAYS",
    "recency_lists",
    "recent_activity",
]

# The windows tried on validation; None = all the history (plain popularity / heavy users).
RECENCY_WINDOWS_DAYS = (3, 7, 14, 30, 90, None)


def recent_activity(
    interactions: pd.DataFrame,
    as_of,
    window_days: float | None,
    user_ids: pd.Index,
    item_ids: pd.Index,
) -> tuple[np.ndarray, np.ndarray]:
    """Distinct users per item and distinct items per user with an interaction in
    ``[as_of - window_days, as_of)`` (all rows before ``as_of`` when the window is None),
    on the given indexes; ids outside them are ignored. Returns (per_item, per_user)."""
    as_of = pd.Timestamp(as_of)
    at = interactions["occurred_at"]
    keep = at < as_of
    if window_days is not None:
        keep &= at >= as_of - pd.Timedelta(days=float(window_days))
    rows = interactions[keep.to_numpy()]
    n_u, n_i = len(user_ids), len(item_ids)
    u = user_ids.get_indexer(rows["user_id"])
    i = item_ids.get_indexer(rows["item_id"])
    ok = (u >= 0) & (i >= 0)
    pairs = np.unique(u[ok].astype(np.int64) * n_i + i[ok])
    per_item = np.bincount(pairs % n_i, minlength=n_i).astype(np.float64)
    per_user = np.bincount(pairs // n_i, minlength=n_u).astype(np.float64)
    return per_item, per_user


def _with_ties_broken(recent: np.ndarray, overall: np.ndarray) -> np.ndarray:
    """``recent`` first, then ``overall`` among equal recent counts: the overall count
    scaled into [0, 0.5) is added (recent counts are whole numbers)."""
    return recent + 0.5 * overall / (overall.max() + 1.0 if overall.size else 1.0)


def recency_lists(
    interactions: pd.DataFrame,
    as_of,
    *,
    user_ids: pd.Index,
    item_ids: pd.Index,
    exclude,
    item_window_days: float | None,
    user_window_days: float | None,
    k_items: int,
    k_users: int,
):
    """Top-K lists of both baselines over the given indexes, without the ``exclude`` pairs
    (a users x items sparse matrix): ``recent_popularity`` user -> item lists (``k_items``)
    and ``recently_active_users`` item -> user lists (``k_users``), as
    :func:`~proactive_recs.estimators.topk.topk_both` returns them (``user_items``,
    ``item_users``)."""
    all_items, all_users = recent_activity(interactions, as_of, None, user_ids, item_ids)
    recent_items, _ = recent_activity(interactions, as_of, item_window_days, user_ids, item_ids)
    _, recent_users = recent_activity(interactions, as_of, user_window_days, user_ids, item_ids)
    n_u, n_i = len(user_ids), len(item_ids)
    by_item = topk_both(
        np.ones((n_u, 1)),
        _with_ties_broken(recent_items, all_items)[:, None],
        k_items=k_items,
        k_users=0,
        exclude=exclude,
    )
    by_user = topk_both(
        _with_ties_broken(recent_users, all_users)[:, None],
        np.ones((n_i, 1)),
        k_items=0,
        k_users=k_users,
        exclude=exclude,
    )
    return by_item.user_items, by_user.item_users
