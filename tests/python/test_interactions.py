"""The confidence matrix: weights, quantities, decay, the as-of cut and the id index."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from proactive_recs.data.interactions import (
    INTERACTION_COLUMNS,
    build_interaction_matrix,
    interactions_before,
    new_pairs_matrix,
    normalise_interactions,
    text_ids,
)

AS_OF = pd.Timestamp("2024-03-11")


def _frame(rows):
    return pd.DataFrame(
        rows,
        columns=["user_id", "item_id", "occurred_at", "event_type", "event_weight", "quantity"],
    ).assign(occurred_at=lambda f: pd.to_datetime(f["occurred_at"]))


EVENTS = _frame(
    [
        # user a, item x: a view (weight 1, qty 1) 10 days ago and a purchase (weight 5,
        # qty 3) 20 days ago
        ("a", "x", "2024-03-01", "view", 1.0, 1.0),
        ("a", "x", "2024-02-20", "purchase", 5.0, 3.0),
        # user b, item y: one add_to_cart (weight 3, qty 1) today-1
        ("b", "y", "2024-03-10", "add_to_cart", 3.0, 1.0),
        # at / after as_of: ignored
        ("b", "x", "2024-03-11", "purchase", 5.0, 1.0),
        ("c", "z", "2024-04-01", "purchase", 5.0, 1.0),
    ]
)


def test_confidence_without_decay():
    m = build_interaction_matrix(EVENTS, AS_OF)
    assert list(m.user_ids) == ["a", "b"]
    assert list(m.item_ids) == ["x", "y"]
    # (a, x): 1 * log2(1 + 1) + 5 * log2(1 + 3) = 1 + 10 = 11 -> log1p(11) = 2.4849
    assert m.matrix[0, 0] == pytest.approx(math.log1p(11.0), rel=1e-6)
    # (b, y): 3 * log2(2) = 3 -> log1p(3) = 1.3863
    assert m.matrix[1, 1] == pytest.approx(math.log1p(3.0), rel=1e-6)
    assert m.matrix.nnz == 2


def test_confidence_with_half_life():
    m = build_interaction_matrix(EVENTS, AS_OF, half_life_days=10)
    # view 10 days old: 1 * 0.5 = 0.5; purchase 20 days old: 10 * 0.25 = 2.5 -> log1p(3)
    assert m.matrix[0, 0] == pytest.approx(math.log1p(3.0), rel=1e-6)
    # cart 1 day old: 3 * 0.5 ** 0.1
    assert m.matrix[1, 1] == pytest.approx(math.log1p(3 * 0.5**0.1), rel=1e-6)


def test_seen_survives_a_decay_that_underflows():
    m = build_interaction_matrix(EVENTS, AS_OF, half_life_days=1e-3)
    assert m.matrix.nnz == 0  # confidence underflowed to 0 in float32
    assert m.seen[0, 0] == 1 and m.seen[1, 1] == 1


def test_explicit_index_keeps_empty_rows_and_drops_unknown_ids():
    m = build_interaction_matrix(EVENTS, AS_OF, user_ids=["z", "a"], item_ids=["x", "w"])
    assert m.matrix.shape == (2, 2)
    assert m.matrix[1, 0] > 0  # (a, x)
    assert m.matrix.sum() == pytest.approx(m.matrix[1, 0])  # (b, y) dropped
    assert list(m.user_positions(["a", "q"])) == [1, -1]


def test_row_order_does_not_change_the_matrix():
    a = build_interaction_matrix(EVENTS, AS_OF)
    b = build_interaction_matrix(EVENTS.sample(frac=1, random_state=3), AS_OF)
    assert (a.matrix != b.matrix).nnz == 0


def test_empty_frame():
    m = build_interaction_matrix(EVENTS.iloc[:0], AS_OF)
    assert m.matrix.shape == (0, 0)


def test_new_pairs_matrix_only_keeps_first_time_pairs_of_known_ids():
    base = build_interaction_matrix(EVENTS, AS_OF)
    later = pd.concat(
        [
            EVENTS,
            _frame(
                [
                    ("a", "x", "2024-03-12", "purchase", 5.0, 1.0),  # repeat: not new
                    ("a", "y", "2024-03-12", "purchase", 5.0, 1.0),  # new
                    ("a", "y", "2024-03-13", "purchase", 5.0, 1.0),  # same pair again
                    ("q", "y", "2024-03-12", "purchase", 5.0, 1.0),  # unknown user
                    ("b", "x", "2024-05-01", "purchase", 5.0, 1.0),  # after the window
                ]
            ),
        ]
    )
    new = new_pairs_matrix(later, base, AS_OF, AS_OF + pd.Timedelta(days=30))
    # (b, x) on 2024-03-11 is inside the window and new to b.
    assert sorted(zip(*new.nonzero(), strict=True)) == [(0, 1), (1, 0)]
    assert set(new.data) == {1.0}


def test_normalise_interactions():
    raw = pd.DataFrame(
        {
            "user_id": ["1", "2", None, "4"],
            "item_id": ["x", "y", "z", "w"],
            "occurred_at": pd.to_datetime(
                [
                    "2024-01-01 12:00+02:00",
                    "2024-01-02 00:00+00:00",
                    "2024-01-03 00:00+00:00",
                    "2024-01-04 00:00+00:00",
                ],
                utc=True,
            ),
            "quantity": [2, 0, 1, np.nan],
        }
    )
    out = normalise_interactions(raw)
    # The null user and the zero quantity go; a missing quantity counts as 1.
    assert out["user_id"].tolist() == ["1", "4"]
    assert out["occurred_at"].iloc[0] == pd.Timestamp("2024-01-01 10:00")
    assert out["event_weight"].tolist() == [1.0, 1.0]
    assert out["quantity"].tolist() == [2.0, 1.0]
    assert normalise_interactions(None).empty


def test_normalising_a_normalised_frame_returns_it_without_a_copy():
    raw = pd.DataFrame(
        {
            "user_id": [1, 2, 2],
            "item_id": ["a", "b", "c"],
            "occurred_at": pd.to_datetime(["2026-01-01", "2026-01-02", "2026-01-03"]),
            "event_type": ["purchase"] * 3,
            "event_weight": [1.0, 1.0, 1.0],
            "quantity": [1.0, 2.0, 0.0],  # the last row is dropped
        }
    )
    once = normalise_interactions(raw)
    assert once is not raw and len(once) == 2 and once["user_id"].tolist() == ["1", "2"]
    assert normalise_interactions(once) is once
    # every row before the date: the same frame; some after: a filtered copy
    assert interactions_before(once, "2026-02-01") is once
    earlier = interactions_before(once, "2026-01-02")
    assert len(earlier) == 1
    # ... numbered like a normalised frame, so a fit on the earlier rows (a replay, a
    # backtest week) takes them as they are instead of copying and re-typing them again
    assert normalise_interactions(earlier) is earlier
    assert once.index.tolist() == [0, 1]  # the caller's frame keeps its numbering
    later = once.iloc[::-1]  # a frame numbered otherwise is filtered by position all the same
    assert interactions_before(later, "2026-01-02")["user_id"].tolist() == ["1"]
    # integer ids are not normalised yet
    assert normalise_interactions(once.assign(user_id=[1, 2])) is not once


def test_text_ids_are_the_series_itself_when_already_text():
    text = pd.Series(["u1", "u2", None], dtype=object)
    kept = text.iloc[:2]
    assert text_ids(kept) is kept  # no new array of every cell
    assert text_ids(pd.Series([7, 10])).tolist() == ["7", "10"]
    assert text_ids(pd.Series(["a", 3], dtype=object)).tolist() == ["a", "3"]


def test_the_earlier_rows_of_a_frame_in_time_order_are_a_slice_of_it():
    """The backtest sorts the interactions by time once; every fit's earlier rows (training
    windows, the replay one horizon back) are then its first rows, sharing their data."""
    rng = np.random.default_rng(3)
    times = pd.Timestamp("2026-01-01") + pd.to_timedelta(rng.integers(0, 60, 500), unit="D")
    frame = normalise_interactions(
        pd.DataFrame(
            {
                "user_id": rng.integers(0, 40, 500).astype(str),
                "item_id": rng.integers(0, 30, 500).astype(str),
                "occurred_at": times,
                "event_type": "purchase",
                "event_weight": 1.0,
                "quantity": 1.0,
            }
        )
    )
    ordered = frame.sort_values("occurred_at", kind="stable", ignore_index=True)
    for as_of in ("2026-01-01", "2026-01-20", "2026-02-10", "2026-03-02"):
        cut = pd.Timestamp(as_of)
        expected = frame[frame["occurred_at"] < cut]
        # shuffled: a filtered copy, in the frame's order
        pd.testing.assert_frame_equal(
            interactions_before(frame, cut), expected.reset_index(drop=True)
        )
        in_order = interactions_before(ordered, cut)
        pd.testing.assert_frame_equal(
            in_order, ordered[ordered["occurred_at"] < cut].reset_index(drop=True)
        )
        if 0 < len(in_order) < len(ordered):
            assert normalise_interactions(in_order) is in_order
            for column in ("user_id", "occurred_at", "event_weight"):
                assert np.shares_memory(in_order[column].to_numpy(), ordered[column].to_numpy())
    assert ordered.index.equals(pd.RangeIndex(500))  # the caller's frame is left as it was


@pytest.mark.dbt
def test_int_interactions_is_read_once_without_a_normalising_copy(demo_con, monkeypatch):
    """The dbt table comes in the library's own column order and types, so normalising the
    frame read from it returns it as it is: one copy of the interactions per model."""
    import proactive_recs.data.interactions as interactions_module
    from proactive_recs.warehouse.recommender_io import read_interactions

    relation = demo_con.sql("select * from main.int_interactions")
    # DuckDB gives its TIMESTAMP in microseconds, the library works in nanoseconds: reading
    # must fix that one column, or normalising would copy and re-type the whole frame
    assert str(relation.limit(1).df()["occurred_at"].dtype) == "datetime64[us]"
    verdicts = []
    real_check = interactions_module._already_normalised
    monkeypatch.setattr(
        interactions_module,
        "_already_normalised",
        lambda frame, cols: verdicts.append(real_check(frame, cols)) or verdicts[-1],
    )
    frame = read_interactions(relation)
    assert verdicts == [True]  # the frame read was taken as it is, not copied
    assert str(frame["occurred_at"].dtype) == "datetime64[ns]"
    assert list(frame.columns) == list(INTERACTION_COLUMNS)
    assert normalise_interactions(frame) is frame
    assert frame["is_conversion"].any() and not frame["is_conversion"].all()
