"""Frequency rules: the building blocks one by one (plan_run end to end: test_campaigns.py)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proactive_recs.notifications.frequency import (
    FrequencyRules,
    cadence_allowance,
    campaign_allowance,
    channel_allowance,
    holdout_score,
    in_quiet_hours,
    is_holdout,
    leave_quiet_hours,
    make_send_key,
    recently_sent_items,
    schedule_sends,
    send_anchors,
)

RUN = pd.Timestamp("2026-11-02 00:00")
ZONES = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Asia/Kolkata",
    "Australia/Lord_Howe",
    "America/Santiago",
    "Pacific/Chatham",
]


def _sends(rows):
    """rows: (send_id, user_id, campaign_id, item_id, channel, hours relative to RUN)."""
    frame = pd.DataFrame(
        rows, columns=["send_id", "user_id", "campaign_id", "item_id", "channel", "hours"]
    )
    frame["sent_at"] = RUN + pd.to_timedelta(frame.pop("hours"), unit="h")
    return frame


def _events(rows):
    """rows: (send_id, event_type, hours relative to RUN)."""
    frame = pd.DataFrame(rows, columns=["send_id", "event_type", "hours"])
    frame["occurred_at"] = RUN + pd.to_timedelta(frame.pop("hours"), unit="h")
    return frame


NO_SENDS = _sends([])
NO_EVENTS = _events([])


# --------------------------------------------------------------------------- rules


def test_rules_defaults_and_from_dict():
    rules = FrequencyRules()
    assert (rules.cap("email"), rules.cap("push")) == (3, 2)
    assert (rules.ceiling("email"), rules.ceiling("push")) == (5, 3)
    assert rules.quiet_hours_start == 21 and rules.quiet_hours_end == 8
    built = FrequencyRules.from_dict(
        {
            "email_cap_per_week": "4",
            "adaptive_cadence": "false",
            "holdout_share": None,
            "min_hours_between_sends": 12,
        }
    )
    assert built.email_cap_per_week == 4 and built.adaptive_cadence is False
    assert built.holdout_share == 0.05 and built.min_hours_between_sends == 12.0
    assert FrequencyRules.from_dict(None) == FrequencyRules()


def test_rules_reject_typos_and_bad_values():
    with pytest.raises(ValueError, match="email_cap_per_wek"):
        FrequencyRules.from_dict({"email_cap_per_wek": 3})
    assert FrequencyRules.from_dict({"other_var": 1}, strict=False) == FrequencyRules()
    with pytest.raises(ValueError, match="default_timezone"):
        FrequencyRules(default_timezone="Mars/Olympus")
    with pytest.raises(ValueError, match="cadence_floor"):
        FrequencyRules(cadence_floor=3, push_cap_per_week=2)
    with pytest.raises(ValueError, match="quiet_hours_end"):
        FrequencyRules(quiet_hours_end=24)
    with pytest.raises(ValueError, match="not an integer"):
        FrequencyRules.from_dict({"push_cap_per_week": 2.5})


# --------------------------------------------------------------------------- holdout, keys


def test_holdout_is_a_salted_sha256_and_hits_the_share():
    expected = int.from_bytes(hashlib.sha256(b"salt|u42").digest()[:8], "big") / 2**64
    assert holdout_score("u42", "salt") == expected
    # Pinned: the value must never change between releases or machines.
    assert holdout_score("u1", "proactive_recs") == pytest.approx(0.7519820837000819, abs=0)
    ids = [f"u{i}" for i in range(20_000)]
    share = is_holdout(ids, FrequencyRules()).mean()
    assert 0.045 < share < 0.055
    other_salt = is_holdout(ids, FrequencyRules(holdout_salt="other"))
    assert (other_salt != is_holdout(ids, FrequencyRules())).any()
    assert not is_holdout(ids[:100], FrequencyRules(holdout_share=0.0)).any()
    assert is_holdout(ids[:100], FrequencyRules(holdout_share=1.0)).all()


def test_send_key_is_deterministic_and_distinguishes_every_part():
    key = make_send_key("2026-11-01", "c", "u1", None)
    text = b"2026-11-01T00:00:00|c|u1|"
    assert key == hashlib.sha256(text).hexdigest()[:32] == "946fb771806b451b93014d397a165275"
    assert make_send_key(pd.Timestamp("2026-11-01"), "c", "u1", np.nan) == key
    variants = {
        make_send_key("2026-11-02", "c", "u1", None),
        make_send_key("2026-11-01", "d", "u1", None),
        make_send_key("2026-11-01", "c", "u2", None),
        make_send_key("2026-11-01", "c", "u1", "i1"),
    }
    assert key not in variants and len(variants) == 4


# --------------------------------------------------------------------------- quiet hours


def _local(ts: pd.Timestamp, zone: str) -> datetime:
    return ts.to_pydatetime().replace(tzinfo=UTC).astimezone(ZoneInfo(zone))


@pytest.mark.parametrize(
    "at, zone, expected",
    [
        ("2026-11-02 22:00", "UTC", "2026-11-03 08:00"),  # evening: next morning
        ("2026-11-02 03:00", "UTC", "2026-11-02 08:00"),  # night: same morning
        ("2026-11-02 12:00", "UTC", "2026-11-02 12:00"),  # day: unchanged
        ("2026-11-02 08:00", "UTC", "2026-11-02 08:00"),  # the end hour itself is allowed
        ("2026-11-02 21:00", "UTC", "2026-11-03 08:00"),  # the start hour is quiet
        ("2026-11-02 00:00", "Europe/Berlin", "2026-11-02 07:00"),  # 01:00 CET -> 08:00 CET
        ("2026-11-02 00:00", "Asia/Kolkata", "2026-11-02 02:30"),  # 05:30 IST -> 08:00 IST
    ],
)
def test_leave_quiet_hours_examples(at, zone, expected):
    rules = FrequencyRules()
    got = leave_quiet_hours(pd.Timestamp(at), ZoneInfo(zone), rules)
    assert got == pd.Timestamp(expected)


def test_quiet_hours_across_dst_transitions():
    rules = FrequencyRules()
    berlin = ZoneInfo("Europe/Berlin")
    # Spring forward on 2026-03-29: 08:00 local is 07:00 UTC the day before, 06:00 UTC after.
    assert leave_quiet_hours(pd.Timestamp("2026-03-27 23:00"), berlin, rules) == pd.Timestamp(
        "2026-03-28 07:00"
    )
    assert leave_quiet_hours(pd.Timestamp("2026-03-28 22:00"), berlin, rules) == pd.Timestamp(
        "2026-03-29 06:00"
    )
    # Quiet hours ending inside the gap (02:00 does not exist): the first instant after it.
    ends_in_gap = FrequencyRules(quiet_hours_start=21, quiet_hours_end=2)
    assert leave_quiet_hours(pd.Timestamp("2026-03-29 00:30"), berlin, ends_in_gap) == pd.Timestamp(
        "2026-03-29 01:00"
    )  # 03:00 CEST
    # Fall back in New York on 2026-11-01: 01:00 local happens twice; the first one counts.
    new_york = ZoneInfo("America/New_York")
    ends_ambiguous = FrequencyRules(quiet_hours_start=22, quiet_hours_end=1)
    assert leave_quiet_hours(
        pd.Timestamp("2026-11-01 04:30"), new_york, ends_ambiguous
    ) == pd.Timestamp("2026-11-01 05:00")  # 01:00 EDT


def test_quiet_hours_daytime_window_and_none():
    assert in_quiet_hours(datetime(2026, 1, 1, 13, 30), 13, 15)
    assert not in_quiet_hours(datetime(2026, 1, 1, 15, 0), 13, 15)
    assert not in_quiet_hours(datetime(2026, 1, 1, 3, 0), 8, 8)  # start == end: none


@settings(max_examples=300, deadline=None)
@given(
    minutes=st.integers(0, 2 * 366 * 24 * 60),
    zone=st.sampled_from(ZONES),
    start=st.integers(0, 23),
    end=st.integers(0, 23),
)
def test_leave_quiet_hours_is_the_first_allowed_instant(minutes, zone, start, end):
    rules = FrequencyRules(quiet_hours_start=start, quiet_hours_end=end)
    at = pd.Timestamp("2025-06-01") + pd.Timedelta(minutes=minutes)
    got = leave_quiet_hours(at, ZoneInfo(zone), rules)
    assert got >= at
    assert not in_quiet_hours(_local(got, zone), start, end)
    if got > at:  # nothing between at and got was allowed: one minute before is still quiet
        assert in_quiet_hours(_local(got - pd.Timedelta(minutes=1), zone), start, end)
        assert got - at <= pd.Timedelta(hours=25)


@settings(max_examples=100, deadline=None)
@given(
    minutes=st.integers(0, 366 * 24 * 60),
    zone=st.sampled_from(ZONES),
    n=st.integers(1, 5),
    gap=st.sampled_from([0.0, 6.0, 20.0, 30.0]),
)
def test_schedule_spacing_and_quiet_hours(minutes, zone, n, gap):
    rules = FrequencyRules(min_hours_between_sends=gap)
    anchor = pd.Timestamp("2026-01-01") + pd.Timedelta(minutes=minutes)
    times = schedule_sends(anchor, n, ZoneInfo(zone), rules)
    assert len(times) == n and times[0] >= anchor
    assert all(b - a >= pd.Timedelta(hours=gap) for a, b in zip(times, times[1:], strict=False))
    assert not any(in_quiet_hours(_local(t, zone), 21, 8) for t in times)


def test_send_anchor_spacing_from_history_and_timezones():
    rules = FrequencyRules(min_hours_between_sends=20)
    users = pd.DataFrame(
        {"user_id": ["a", "b", "c", "d"], "timezone": ["UTC", "UTC", None, "Not/AZone"]}
    )
    sends = _sends(
        [
            ("s1", "a", "x", "i", "push", -10),  # 10 h ago -> run + 10 h
            ("s2", "b", "x", "i", "push", -30),  # 30 h ago -> run time, then quiet
            ("s3", "c", "x", "i", "email", 30),
        ]
    )  # scheduled later: after it
    anchors = send_anchors(users, sends, RUN, rules)
    assert anchors["a"] == RUN + pd.Timedelta(hours=10)
    assert anchors["b"] == RUN + pd.Timedelta(hours=8)  # 00:00 UTC is quiet until 08:00
    assert anchors["c"] == pd.Timestamp("2026-11-04 08:00")  # 30 h + 20 h = 02:00 -> 08:00
    assert anchors["d"] == RUN + pd.Timedelta(hours=8)  # unknown zone -> default UTC


# --------------------------------------------------------------------------- cadence


def test_cadence_allowance_hand_cases():
    rules = FrequencyRules()  # email cap 3 (floor 1, ceiling 5), block 3, grace 48 h
    days = 24
    sends = _sends(
        [
            # responder: one open in the lookback -> +1
            ("r1", "responder", "x", None, "email", -10 * days),
            # ignorer: 7 old ignored sends -> streak 7 -> -2
            *[(f"g{k}", "ignorer", "x", None, "email", -(k + 3) * days) for k in range(7)],
            # mixed: ignored, responded, then 3 ignored -> +1 - 1
            ("m0", "mixed", "x", None, "email", -20 * days),
            ("m1", "mixed", "x", None, "email", -15 * days),
            *[(f"m{k}", "mixed", "x", None, "email", -(k + 3) * days) for k in range(2, 5)],
            # pending: three unanswered sends inside the grace period -> no verdict
            *[(f"p{k}", "pending", "x", None, "email", -(k + 1)) for k in range(3)],
            # outside the lookback -> ignored entirely
            *[(f"o{k}", "old", "x", None, "email", -(40 + k) * days) for k in range(6)],
            # push sends do not move the email allowance
            *[(f"q{k}", "responder", "x", None, "push", -(k + 3) * days) for k in range(9)],
        ]
    )
    events = _events(
        [
            ("r1", "open", -9 * days),
            ("m1", "click", -14 * days),
            ("m0", "delivered", -19 * days),  # delivered is not a response
            ("r1", "conversion", 5),
        ]
    )  # after the run: unknown yet (no effect)
    out = cadence_allowance(
        ["responder", "ignorer", "mixed", "pending", "old", "new"], sends, events, RUN, rules
    ).set_index(["user_id", "channel"])
    email = out.xs("email", level="channel")["allowance"].to_dict()
    assert email == {"responder": 4, "ignorer": 1, "mixed": 3, "pending": 3, "old": 3, "new": 3}
    assert out.loc[("ignorer", "email"), "ignored_streak"] == 7
    assert out.loc[("responder", "push"), "allowance"] == 1  # 9 ignored: 2 - 3 -> floor 1
    assert out.loc[("new", "push"), "allowance"] == 2
    fixed = cadence_allowance(
        ["responder", "ignorer"], sends, events, RUN, FrequencyRules(adaptive_cadence=False)
    )
    assert fixed.set_index(["user_id", "channel"])["allowance"].to_dict() == {
        ("responder", "email"): 3,
        ("responder", "push"): 2,
        ("ignorer", "email"): 3,
        ("ignorer", "push"): 2,
    }
    off = cadence_allowance(["responder"], sends, events, RUN, FrequencyRules(push_cap_per_week=0))
    assert off.set_index("channel").loc["push", "allowance"] == 0


def test_cadence_ceiling():
    rules = FrequencyRules(push_cap_per_week=3, push_cadence_ceiling=3)
    sends = _sends([("a", "u", "x", None, "push", -100)])
    events = _events([("a", "click", -99)])
    out = cadence_allowance(["u"], sends, events, RUN, rules)
    assert out.set_index("channel").loc["push", "allowance"] == 3


# --------------------------------------------------------------------------- windows


def test_channel_and_campaign_windows_count_back_from_the_anchor():
    rules = FrequencyRules(adaptive_cadence=False, email_cap_per_week=3)
    anchor = RUN + pd.Timedelta(hours=8)
    anchors = pd.Series([anchor], index=pd.Index(["u"], name="user_id"))
    week = 7 * 24
    sends = _sends(
        [
            ("a", "u", "c1", "i1", "email", 8 - week),  # exactly 7 days before the anchor: out
            ("b", "u", "c1", "i2", "email", 8 - week + 1 / 3600),  # one second later: in
            ("c", "u", "c2", "i3", "email", 30),  # scheduled after the run: in
            ("d", "u", "c1", "i4", "push", -1),
            ("e", "other", "c1", "i4", "email", -1),
        ]
    )
    out = channel_allowance(anchors, sends, NO_EVENTS, RUN, rules).set_index("channel")
    assert out.loc["email", "used"] == 2 and out.loc["email", "remaining"] == 1
    assert out.loc["push", "used"] == 1 and out.loc["push", "remaining"] == 1
    pairs = pd.DataFrame(
        {"user_id": ["u", "u", "u"], "campaign_id": ["c1", "c2", "c3"], "cap": [2, 1, None]}
    )
    camp = campaign_allowance(pairs, anchors, sends).set_index("campaign_id")
    assert camp.loc["c1", "used"] == 2 and camp.loc["c1", "remaining"] == 0  # b and d
    assert camp.loc["c2", "remaining"] == 0
    assert pd.isna(camp.loc["c3", "remaining"])  # no campaign cap


def test_recently_sent_items_window():
    rules = FrequencyRules(item_repeat_window_days=30)
    sends = _sends(
        [
            ("a", "u", "c", "i1", "push", -30 * 24),  # exactly 30 days: out
            ("b", "u", "c", "i2", "push", -30 * 24 + 1),
            ("c", "u", "c", "i3", "push", 5),  # scheduled later: in
            ("d", "u", "c", None, "email", -1),
        ]
    )  # digests carry no item
    pairs = recently_sent_items(sends, RUN, rules)
    assert sorted(map(tuple, pairs.to_numpy())) == [("u", "i2"), ("u", "i3")]


# --------------------------------------------------------------------------- time zones


@pytest.mark.parametrize(
    "written, offset_in_january",
    [
        ("America/Los_Angeles", -8),
        ("america/los_angeles", -8),  # any case
        (" AMERICA/LOS_ANGELES ", -8),
        ("-08:00", -8),
        ("UTC-8", -8),
        ("GMT-8", -8),  # as people mean it: eight hours behind
        ("PST", -8),
        ("pst", -8),
        ("UTC+5:30", 5.5),
        ("+0530", 5.5),
        ("IST", 5.5),
        ("CET", 1),
        ("utc", 0),
    ],
)
def test_time_zones_resolve_from_names_offsets_and_abbreviations(written, offset_in_january):
    from datetime import datetime

    from proactive_recs.notifications.frequency import is_known_timezone, resolve_timezone

    zone = resolve_timezone(written, "Europe/Berlin")
    assert is_known_timezone(written)
    offset = datetime(2026, 1, 15, 12, tzinfo=zone).utcoffset().total_seconds() / 3600
    assert offset == offset_in_january


@pytest.mark.parametrize("written", ["Mars/Olympus", "GMT+99", "nowhere", "+25:00"])
def test_unknown_time_zones_fall_back_to_the_default_and_are_diagnosed(written):
    from datetime import datetime

    from proactive_recs.diagnostics import run_diagnostics
    from proactive_recs.notifications.frequency import is_known_timezone, resolve_timezone

    assert not is_known_timezone(written)
    zone = resolve_timezone(written, "Europe/Berlin")
    assert datetime(2026, 1, 15, tzinfo=zone).utcoffset().total_seconds() == 3600
    # each distinct zone is resolved once: every user who wrote it is diagnosed
    users = pd.DataFrame(
        {
            "user_id": ["a", "b", "c", "d", "e"],
            "timezone": [written, "PST", None, f" {written} ", "  "],
        }
    )
    empty = pd.DataFrame({"user_id": [], "item_id": [], "is_fallback": []})
    diagnostics = run_diagnostics(users, empty, empty, "Europe/Berlin")
    assert diagnostics[["diagnostic", "subject_id", "raw_value"]].values.tolist() == [
        ["timezone_fallback", "a", written],
        ["timezone_fallback", "d", f" {written} "],
    ]


def test_quiet_hours_hold_in_a_zone_written_as_an_abbreviation():
    """'PST' used to become UTC: a 02:00 UTC send is 18:00 in Los Angeles (allowed), but a
    06:00 UTC send is 22:00 there and must move to 08:00 local = 16:00 UTC."""
    from proactive_recs.notifications.frequency import leave_quiet_hours, resolve_timezone

    rules = FrequencyRules()
    zone = resolve_timezone("pst")
    assert leave_quiet_hours(pd.Timestamp("2026-01-15 02:00"), zone, rules) == pd.Timestamp(
        "2026-01-15 02:00"
    )
    assert leave_quiet_hours(pd.Timestamp("2026-01-15 06:00"), zone, rules) == pd.Timestamp(
        "2026-01-15 16:00"
    )


# --------------------------------------------------------------------------- send ledger


def test_unconfirmed_planned_sends_count_for_caps_but_get_no_cadence_verdict():
    """Seven old sends nobody answered take the allowance down; the same seven sends planned
    but not confirmed by the send tool say nothing (they may not have gone out)."""
    from proactive_recs.notifications.frequency import cadence_allowance, channel_allowance

    run = pd.Timestamp("2026-11-20")
    sent = [run - pd.Timedelta(days=d) for d in range(3, 10)]
    sends = pd.DataFrame(
        {
            "send_id": [f"s{i}" for i in range(7)],
            "user_id": "u",
            "campaign_id": "c",
            "item_id": None,
            "channel": "email",
            "sent_at": sent,
        }
    )
    rules = FrequencyRules()
    confirmed = cadence_allowance(["u"], sends, None, run, rules).set_index("channel")
    pending = cadence_allowance(
        ["u"], sends.assign(is_confirmed=False), None, run, rules
    ).set_index("channel")
    assert confirmed.loc["email", "allowance"] == 3 - 7 // 3
    assert pending.loc["email", "allowance"] == 3
    # both count as used sends of the rolling week, confirmed or not
    anchors = pd.Series([run], index=pd.Index(["u"], name="user_id"))
    for frame in (sends, sends.assign(is_confirmed=False)):
        used = channel_allowance(anchors, frame, None, run, rules).set_index("channel")
        assert used.loc["email", "used"] == 4  # sent 3..6 days before the run


def test_an_email_to_one_account_counts_for_every_account_of_the_mailbox():
    from proactive_recs.notifications.candidates import mailbox_history
    from proactive_recs.notifications.frequency import normalize_sends

    users = pd.DataFrame(
        {"user_id": ["a", "b", "c"], "email": ["Nina@x.com", " nina@x.com", "c@x.com"]}
    )
    history = normalize_sends(
        pd.DataFrame(
            {
                "send_id": ["s1", "s2"],
                "user_id": ["a", "a"],
                "campaign_id": "c",
                "item_id": ["i1", "i2"],
                "channel": ["email", "push"],
                "sent_at": pd.Timestamp("2026-11-01"),
            }
        )
    )
    out = mailbox_history(history, users)
    assert sorted(map(tuple, out[["user_id", "send_id"]].values.tolist())) == [
        ("a", "s1"),
        ("a", "s2"),
        ("b", "s1"),  # the e-mail, not the push (a device, not a mailbox)
    ]
