"""The closed-loop simulation: its checks catch each broken promise, and a short loop is clean."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from proactive_recs.notifications.frequency import FrequencyRules, holdout_score
from proactive_recs_tools import simulate as sim
from proactive_recs_tools.simulate import RULES, check, simulate

RULES_ = FrequencyRules()
USERS = pd.DataFrame(
    {
        "user_id": ["a", "b", "b2", "c"],
        "email": ["a@x.com", "b@x.com", " B@X.com", "c@x.com"],
        "timezone": ["Europe/Paris", "UTC", "UTC", "america/los_angeles"],
    }
)
EMPTY_HISTORY = pd.DataFrame({"user_id": [], "channel": [], "item_id": [], "sent_at": []})


def _sends(rows):
    frame = pd.DataFrame(rows, columns=["user_id", "channel", "item_id", "sent_at"])
    frame["sent_at"] = pd.to_datetime(frame["sent_at"])
    frame["suppressed_when_planned"] = False
    return frame


def _not_holdout(prefix="a"):
    return next(
        u for u in (f"{prefix}{i}" for i in range(100)) if holdout_score(u, "proactive_recs") > 0.05
    )


def test_clean_sends_have_no_violation():
    sends = _sends(
        [
            ("a", "email", "i1", "2026-11-02 10:00"),
            ("a", "push", "i2", "2026-11-03 10:00"),
            ("b", "email", None, "2026-11-02 10:00"),
        ]
    )
    assert check(sends, EMPTY_HISTORY, USERS, RULES_) == dict.fromkeys(RULES, 0)


@pytest.mark.parametrize(
    "rule, rows",
    [
        # six e-mails in 7 days (ceiling 5), a day apart
        ("cap_per_user", [("a", "email", f"i{d}", f"2026-11-0{d} 10:00") for d in range(1, 7)]),
        # b and b2 share a mailbox: 3 + 3 e-mails in one week
        (
            "cap_per_mailbox",
            [("b", "email", f"i{d}", f"2026-11-0{d} 10:00") for d in (1, 3, 5)]
            + [("b2", "email", f"j{d}", f"2026-11-0{d} 10:00") for d in (2, 4, 6)],
        ),
        (
            "min_spacing",
            [("a", "email", "i1", "2026-11-02 10:00"), ("a", "push", "i2", "2026-11-02 16:00")],
        ),
        (
            "item_repeat",
            [("a", "push", "i1", "2026-11-02 10:00"), ("a", "push", "i1", "2026-11-20 10:00")],
        ),
        # 23:00 in Paris
        ("quiet_hours", [("a", "email", "i1", "2026-11-02 22:00")]),
        # 22:00 in Los Angeles, written in lower case
        ("quiet_hours", [("c", "email", "i1", "2026-11-03 06:00")]),
    ],
)
def test_each_broken_promise_is_counted(rule, rows):
    violations = check(_sends(rows), EMPTY_HISTORY, USERS, RULES_)
    assert violations[rule] > 0
    # a user's own e-mails are also their mailbox's
    also = {"cap_per_user": {"cap_per_mailbox"}}.get(rule, set())
    assert all(v == 0 for k, v in violations.items() if k != rule and k not in also), violations


def test_history_counts_toward_the_windows():
    history = _sends([("a", "email", f"h{d}", f"2026-10-2{d} 10:00") for d in range(5, 9)])
    sends = _sends(
        [("a", "email", "i1", "2026-10-30 10:00"), ("a", "email", "i2", "2026-10-31 10:00")]
    )
    assert check(sends, history, USERS, RULES_)["cap_per_user"] > 0


def test_suppressed_and_holdout_sends_are_counted():
    sends = _sends([("a", "email", "i1", "2026-11-02 10:00")])
    sends["suppressed_when_planned"] = True
    assert check(sends, EMPTY_HISTORY, USERS, RULES_)["suppressed"] == 1
    held = next(
        u for u in (f"h{i}" for i in range(1000)) if holdout_score(u, "proactive_recs") < 0.05
    )
    users = pd.concat(
        [USERS, pd.DataFrame({"user_id": [held], "email": [None], "timezone": ["UTC"]})]
    )
    assert (
        check(_sends([(held, "push", "i1", "2026-11-02 10:00")]), EMPTY_HISTORY, users, RULES_)[
            "holdout"
        ]
        == 1
    )


@pytest.mark.dbt
def test_a_short_closed_loop_keeps_every_promise(tmp_path):
    """Two daily runs with next-day write-back on a small generated world (the 28-day figures
    for each write-back delay are in docs/frequency_rules.md §11)."""
    result = simulate(
        days=2,
        users=250,
        items=80,
        history_days=90,
        seed=3,
        delay="1",
        work=tmp_path,
        start="2026-11-01",
        run_hour=6,
        shared_mailboxes=8,
        say=lambda *_: None,
    )
    assert result["sends"] > 0
    assert result["violations"] == dict.fromkeys(RULES, 0)
    assert 0 < result["expected_conversions_per_send"] <= 1
    # the holdout is planned like everyone else (the ledger counts what it would have had)
    per_week = result["planned_per_user_week"]
    assert per_week["holdout"] <= 1.25 * per_week["sent"]
    # campaign_lift, built once the horizon has passed, against the planted lift
    measured = [e for e in result["lift"] if e["lower"] is not None]
    assert measured and all(e["all_weeks_complete"] for e in result["lift"])
    for e in measured:
        assert e["lower"] <= e["measured_lift"] <= e["upper"]
        assert e["planted_lift"] > 0 and e["users_holdout"] > 0
    assert {e["reason"] for e in result["lift"] if e["lower"] is None} <= {
        "no holdout users: no lift to measure",
        "every planned user was held out",
    }


def _world(active_hour=None, zone=("UTC",), organic=0.0):
    items = pd.DataFrame(
        {
            "item_id": ["i1", "i2"],
            "category": ["a", "a"],
            "available_from": [pd.NaT, pd.NaT],
            "available_until": [pd.NaT, pd.Timestamp("2026-11-02 12:00")],  # i2: 2 days
        }
    )
    return sim.World(
        tables={},
        taste=np.ones((1, 1)),
        categories=("a",),
        taste_row={"u1": 0, "u2": 0},
        initial_sends=pd.DataFrame(),
        items=items,
        organic=np.full((1, 2), organic),
        active_hour=None if active_hour is None else np.array([active_hour]),
        zone=zone,
    )


def test_timing_falls_with_the_distance_from_the_planted_hour_in_local_time():
    world = _world(active_hour=18, zone=("Europe/Berlin",))  # UTC+1 in November
    assert world.timing("u1", pd.Timestamp("2026-11-03 17:30")) == pytest.approx(1.0)
    two_hours = sim.TIMING_FLOOR + (1 - sim.TIMING_FLOOR) * np.exp(-0.5)
    assert world.timing("u1", pd.Timestamp("2026-11-03 15:30")) == pytest.approx(two_hours)
    # across midnight: 23:30 local is 5 h from 18:30, 06:30 local is 12 h (the floor)
    assert world.timing("u1", pd.Timestamp("2026-11-03 22:30")) == pytest.approx(
        sim.TIMING_FLOOR + (1 - sim.TIMING_FLOOR) * np.exp(-0.5 * 2.5**2)
    )
    assert world.timing("u1", pd.Timestamp("2026-11-03 05:30")) == pytest.approx(
        sim.TIMING_FLOOR, abs=1e-6
    )
    assert _world().timing("u1", pd.Timestamp("2026-11-03 05:30")) == 1.0  # no habits
    assert world.timing("stranger", pd.Timestamp("2026-11-03 05:30")) == 1.0


def test_planted_lift_by_hand():
    """Per user: 1 - prod(1 - organic)(1 - send) sent, 1 - prod(1 - organic) held out; a
    digest converts through its first item; a send of another campaign that converts one of
    the campaign's items counts (the holdout gets none); organic counts the days on sale."""
    q, horizon = 0.01, 3
    world = _world(organic=q)
    run = pd.Timestamp("2026-11-02 06:00")  # the window: 11-02 to 11-04
    at = run + pd.Timedelta(hours=4)
    sent = pd.DataFrame(
        {
            "campaign_id": ["push", "push", "digest"],
            "channel": ["push", "push", "email"],
            "user_id": ["u1", "u2", "u1"],
            "item_id": ["i1", "i2", None],
            "item_ids": [["i1"], ["i2"], ["i1", "i2"]],
            "run_date": [run, run, run],
            "sent_at": [at, at, at + pd.Timedelta(hours=20)],
            "p_conversion": [0.1, 0.3, 0.2],
        }
    )
    out = sim.planted_lift(world, sent, horizon).set_index("campaign_id")
    o1 = 1 - (1 - q) ** 3  # i1 on sale every day of the window
    o2 = 1 - (1 - q) ** 1  # i2 until 2026-11-02 12:00: one day of the window
    s1 = 1 - (1 - 0.1) * (1 - 0.2)  # u1's i1: the push and the digest (its first item)
    push = ((1 - o1) * s1 + (1 - o2) * 0.3) / 2
    digest = (1 - o1) * (1 - o2) * s1  # i2 of u1's digest: no send converts it
    assert out.loc["push", "planted_lift"] == pytest.approx(push)
    assert out.loc["digest", "planted_lift"] == pytest.approx(digest)
    assert out.loc["push", "users"] == 2
    # a send after the window does not count
    late = sent.assign(sent_at=[at, at, run + pd.Timedelta(days=4)])
    out = sim.planted_lift(world, late, horizon).set_index("campaign_id")
    assert out.loc["push", "planted_lift"] == pytest.approx(((1 - o1) * 0.1 + (1 - o2) * 0.3) / 2)


def test_organic_purchases_follow_the_planted_rate():
    world = _world(organic=0.05)
    rng = np.random.default_rng(0)
    days = pd.date_range("2026-11-01", periods=400, freq="D")
    bought = sum(sim.organic_purchases(world, day, rng) for day in days)
    # i1 every day, i2 on two days (2026-11-01 and -02): expected 0.05 x 402
    assert bought == pytest.approx(0.05 * 402, rel=0.3)
    rows = [r for _, source, r in world.pending if source == "transactions"]
    assert len(rows) == bought and {r["event_type"] for r in rows} == {"purchase"}
    assert {r["item_id"] for r in rows if r["occurred_at"] > "2026-11-03"} == {"i1"}


def test_repeats_within_the_history_alone_are_not_the_packages():
    """The old system sent an item twice in 12 days; the package sends it 50 days later."""
    history = _sends(
        [("a", "push", "i1", "2026-09-11 10:00"), ("a", "push", "i1", "2026-09-23 10:00")]
    )
    sends = _sends([("a", "push", "i1", "2026-11-12 10:00")])
    assert check(sends, history, USERS, RULES_)["item_repeat"] == 0
    again = _sends([("a", "push", "i1", "2026-10-10 10:00")])
    assert check(again, history, USERS, RULES_)["item_repeat"] == 1
