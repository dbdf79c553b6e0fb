"""The closed-loop simulation: its checks catch each broken promise, and a short loop is clean."""

from __future__ import annotations

import pandas as pd
import pytest

from proactive_recs.notifications.frequency import FrequencyRules, holdout_score
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
    """Three daily runs with next-day write-back on a small generated world (the 28-day figures
    for each write-back delay are in docs/frequency_rules.md §11)."""
    result = simulate(
        days=3,
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


def test_repeats_within_the_history_alone_are_not_the_packages():
    """The old system sent an item twice in 12 days; the package sends it 50 days later."""
    history = _sends(
        [("a", "push", "i1", "2026-09-11 10:00"), ("a", "push", "i1", "2026-09-23 10:00")]
    )
    sends = _sends([("a", "push", "i1", "2026-11-12 10:00")])
    assert check(sends, history, USERS, RULES_)["item_repeat"] == 0
    again = _sends([("a", "push", "i1", "2026-10-10 10:00")])
    assert check(again, history, USERS, RULES_)["item_repeat"] == 1
