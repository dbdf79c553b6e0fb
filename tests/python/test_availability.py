"""Availability has one home per instant: SQL's flag at the run, the library's rule
elsewhere (proactive_recs.data.availability), and the two agree."""

import numpy as np
import pandas as pd

from proactive_recs.data.availability import available_at, upcoming_within

AS_OF = pd.Timestamp("2026-11-01")
ITEMS = pd.DataFrame(
    {
        "item_id": ["open", "started", "starts_now", "ends_now", "ended", "future", "aware"],
        "available_from": [
            None,
            "2026-10-01",
            "2026-11-01",
            None,
            None,
            "2026-11-05",
            "2026-11-01T00:30+01:00",
        ],
        "available_until": [None, None, None, "2026-11-01", "2026-10-15", None, None],
    }
)


def test_the_rule_on_the_dates_is_half_open_with_null_bounds_open():
    got = dict(zip(ITEMS["item_id"], available_at(ITEMS, AS_OF), strict=True))
    assert got == {
        "open": True,
        "started": True,
        "starts_now": True,  # from is inclusive
        "ends_now": False,  # until is exclusive
        "ended": False,
        "future": False,
        "aware": True,  # 00:30 at +01:00 is 23:30 UTC the day before
    }


def test_an_aware_as_of_is_the_same_instant_in_utc():
    berlin = pd.Timestamp("2026-11-01 01:00", tz="Europe/Berlin")  # = 00:00 UTC
    assert (available_at(ITEMS, berlin) == available_at(ITEMS, AS_OF)).all()


def test_sqls_flag_is_read_at_its_own_instant_and_only_there():
    # a flag that contradicts the dates shows which of the two was read
    flagged = ITEMS.assign(is_available=~available_at(ITEMS, AS_OF), availability_as_of=AS_OF)
    assert (available_at(flagged, AS_OF) == flagged["is_available"]).all()
    later = AS_OF + pd.Timedelta(days=1)
    assert (available_at(flagged, later) == available_at(ITEMS, later)).all()


def test_a_null_flag_is_not_available():
    flagged = ITEMS.assign(is_available=pd.array([None] * len(ITEMS), dtype="boolean"))
    flagged["availability_as_of"] = AS_OF
    assert not available_at(flagged, AS_OF).any()


def test_upcoming_is_within_the_prelaunch_days_and_not_over_before_it_starts():
    items = pd.DataFrame(
        {
            "item_id": ["soon", "later", "now", "empty_window"],
            "available_from": ["2026-11-03", "2026-12-01", "2026-11-01", "2026-11-03"],
            "available_until": [None, None, None, "2026-11-03"],
        }
    )
    assert upcoming_within(items, AS_OF, 14).tolist() == [True, False, False, False]
    assert not upcoming_within(items, AS_OF, 0).any()


def test_the_library_rule_equals_int_item_availability_on_the_demo(demo_con):
    sql = demo_con.execute(
        "select item_id, available_from, available_until, availability_status,"
        " availability_as_of from int_item_availability"
    ).df()
    assert sql["availability_as_of"].nunique() == 1
    as_of = sql["availability_as_of"].iloc[0]
    dates_only = sql[["item_id", "available_from", "available_until"]]
    python = available_at(dates_only, as_of)
    assert np.array_equal(python, (sql["availability_status"] == "available").to_numpy())
    assert sql["availability_status"].value_counts().size == 3  # all three states occur
    upcoming = upcoming_within(dates_only, as_of, 10_000)
    assert np.array_equal(upcoming, (sql["availability_status"] == "upcoming").to_numpy())
