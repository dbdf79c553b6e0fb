"""Recency baselines: hand-checked counts and lists, and the window chosen on validation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from proactive_recs.estimators.recency import recency_lists, recent_activity
from proactive_recs.recommender.tuning import choose_recency_windows

AS_OF = pd.Timestamp("2026-03-01")
DAY = pd.Timedelta(days=1)


def _rows(rows):
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "days_before"])
    frame["occurred_at"] = AS_OF - pd.to_timedelta(frame.pop("days_before"), unit="D")
    frame["event_type"] = "purchase"
    return frame


# a: 3 buyers long ago; b: 2 buyers 5 days ago (u1 twice: one distinct user); c: 1 buyer
# 2 days ago; a row at as_of itself is not before it.
HISTORY = _rows(
    [
        ("u1", "a", 60),
        ("u2", "a", 61),
        ("u3", "a", 62),
        ("u1", "b", 5),
        ("u1", "b", 4.5),
        ("u4", "b", 5),
        ("u5", "c", 2),
        ("u5", "a", 0),
    ]
)
USERS = pd.Index(["u1", "u2", "u3", "u4", "u5"])
ITEMS = pd.Index(["a", "b", "c"])


def test_recent_activity_counts_distinct_pairs_in_the_window():
    per_item, per_user = recent_activity(HISTORY, AS_OF, 7, USERS, ITEMS)
    assert per_item.tolist() == [0, 2, 1]
    assert per_user.tolist() == [1, 0, 0, 1, 1]
    per_item, per_user = recent_activity(HISTORY, AS_OF, None, USERS, ITEMS)
    assert per_item.tolist() == [3, 2, 1]
    assert per_user.tolist() == [2, 1, 1, 1, 1]


def test_recency_lists_rank_by_the_window_then_by_all_history():
    nothing_seen = sp.csr_matrix((len(USERS), len(ITEMS)))
    lists = {}
    for days in (7, 3, None):
        user_items, item_users = recency_lists(
            HISTORY,
            AS_OF,
            user_ids=USERS,
            item_ids=ITEMS,
            exclude=nothing_seen,
            item_window_days=days,
            user_window_days=days,
            k_items=3,
            k_users=5,
        )
        lists[days] = (
            [ITEMS[j] for j in user_items[0]],
            [USERS[j] for j in item_users[0]],
        )
    assert lists[7][0] == ["b", "c", "a"]
    assert lists[3][0] == ["c", "a", "b"]  # only c is recent; a (3 buyers) before b (2)
    assert lists[None][0] == ["a", "b", "c"]
    # users: u5 (c, 2 days ago) is the only one active in 3 days; u1 leads all history
    assert lists[3][1][:2] == ["u5", "u1"]
    assert lists[None][1][0] == "u1"


def _trending_world(seed=0):
    """Item j is on sale from day 5j to 5j+25; each day 30 random users buy random items on
    sale, so what sold last week predicts next month far better than all-time sales."""
    rng = np.random.default_rng(seed)
    rows = []
    for day in range(200):
        on_sale = [j for j in range(40) if 5 * j <= day < 5 * j + 25]
        for _ in range(30):
            rows.append((f"u{rng.integers(300)}", f"i{rng.choice(on_sale)}", 200 - day))
    return _rows(rows)


def test_the_window_is_chosen_on_validation_and_beats_all_history_there():
    world = _trending_world()
    chosen, tried = choose_recency_windows(world, AS_OF, horizon_days=30)
    assert list(tried["window_days"]) == [3, 7, 14, 30, 90, None]
    best = tried["ndcg@10"].max()
    assert chosen["item_window_days"] in (3, 7, 14)
    assert tried.loc[tried["window_days"].eq(chosen["item_window_days"]), "ndcg@10"].item() == best
    everything = tried.loc[tried["window_days"].isna(), "ndcg@10"].item()
    assert best > 2 * everything
    # Nothing after the validation window is read: the choice ignores rows from the run on.
    later = pd.concat([world, _rows([("u1", "i39", -3)] * 50)], ignore_index=True)
    assert choose_recency_windows(later, AS_OF, horizon_days=30)[0] == chosen


def test_no_validation_data_means_all_history():
    chosen, tried = choose_recency_windows(HISTORY.iloc[:0], AS_OF, horizon_days=30)
    assert chosen == {"item_window_days": None, "user_window_days": None}
    assert tried.empty
