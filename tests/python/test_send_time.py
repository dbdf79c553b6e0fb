"""When to send: local slots, the smoothed profiles, the capture metric and the prior strength
and window chosen on the validation window, checked by hand and on worlds with known habits."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import ONLINE_RETAIL_CSV
from proactive_recs.notifications.send_time import (
    HOURS,
    POPULATION,
    PRIOR_STRENGTHS,
    WINDOW_HOURS,
    SendTimeModel,
    capture_share,
    choose_send_time,
    fit_send_times,
    local_slots,
)


def test_slots_are_local_hours_split_by_weekday_and_weekend():
    instants = pd.Series(
        pd.to_datetime(
            [
                "2024-01-06 10:00",  # Saturday 11:00 in Paris -> weekend slot 24 + 11
                "2024-01-08 23:30",  # Monday 18:30 in New York -> weekday slot 18
                "2024-01-07 23:30",  # Sunday 23:30 UTC, read in the default zone (UTC)
                "2024-01-05 23:30",  # Friday 23:30 UTC = Saturday 00:30 in Tokyo... +9 h
            ]
        )
    )
    zones = pd.Series(["Europe/Paris", "America/New_York", "Not/AZone", "Asia/Tokyo"])
    slots, defaulted = local_slots(instants, zones)
    assert slots.tolist() == [HOURS + 11, 18, HOURS + 23, HOURS + 8]
    assert defaulted == 1  # the unknown zone is counted
    slots, defaulted = local_slots(instants, pd.Series([None] * 4), "Europe/Paris")
    assert defaulted == 4 and slots[0] == HOURS + 11


def _events(user, hours, start="2024-01-01"):
    """One event per listed weekday hour (Mondays to Fridays in turn), UTC."""
    day0 = pd.Timestamp(start)  # a Monday
    rows = []
    for n, hour in enumerate(hours):
        day = day0 + pd.Timedelta(days=7 * (n // 5) + n % 5)
        rows.append((user, day + pd.Timedelta(hours=hour)))
    return pd.DataFrame(rows, columns=["user_id", "occurred_at"])


def test_profiles_are_counts_plus_pseudo_events_spread_like_the_prior():
    events = pd.concat([_events("heavy", [9] * 8), _events("light", [20])], ignore_index=True)
    model = SendTimeModel(prior_strength=2.0, min_events=5).fit(events)
    times = model.send_times()
    frame = times.frame().set_index("user_id")
    counts = np.zeros(48)
    counts[9], counts[20] = 8, 1
    population = (counts + 1 / 48) / (counts.sum() + 1)
    np.testing.assert_allclose(model.population_, population)
    light = np.zeros(48)
    light[20] = 1
    np.testing.assert_allclose(frame.loc["light", "hour_profile"], (light + 2 * population) / 3)
    assert frame.loc["heavy", "send_time_basis"] == "personal"
    assert frame.loc["light", "send_time_basis"] == "population"
    assert frame.loc["heavy", "weekday_hour"] == 9
    # the light user's one event at 20:00 weighs less than the prior's pull toward 9:00
    assert frame.loc["light", "weekday_hour"] == 9
    assert 0 < frame.loc["heavy", "confidence"] <= 1
    assert model.population_hours()[0] == 9


def test_a_segment_prior_sits_between_the_user_and_the_population():
    events = pd.concat(
        [_events(f"night{k}", [22] * 6) for k in range(5)]
        + [_events(f"day{k}", [8] * 6) for k in range(10)],
        ignore_index=True,
    )
    users = pd.DataFrame(
        {
            "user_id": [f"night{k}" for k in range(5)]
            + [f"day{k}" for k in range(10)]
            + ["new_night_owl"],
            "timezone": "UTC",
            "segment": ["night"] * 5 + ["day"] * 10 + ["night"],
        }
    )
    frame = SendTimeModel(prior_strength=3.0).fit(events, users).send_times().frame()
    newcomer = frame.set_index("user_id").loc["new_night_owl"]
    # no event of their own: their segment's hour, not the population's (8:00)
    assert newcomer["send_time_basis"] == "segment" and newcomer["weekday_hour"] == 22


def test_capture_counts_each_users_events_within_the_tolerance_by_hand():
    events = pd.concat([_events("a", [9, 10, 12, 23]), _events("b", [0, 5])], ignore_index=True)
    hours = pd.Series({"a": 10, "b": 23})
    # a: 9 and 10 within 1 h of 10 (2 of 4); b: 0 is 1 h from 23 circularly (1 of 2)
    assert capture_share(events, None, hours, hours, tolerance_hours=1) == pytest.approx(
        (2 / 4 + 1 / 2) / 2
    )
    # a: 9, 10, 12 within 3 h; b: 0 only
    assert capture_share(events, None, hours, hours, tolerance_hours=3) == pytest.approx(
        (3 / 4 + 1 / 2) / 2
    )
    # one hour for everybody (the population baseline)
    assert capture_share(events, None, 10, 10, tolerance_hours=0) == pytest.approx((1 / 4) / 2)


def _habit_world(personal: bool, n_users=120, days=120, seed=0):
    """Every user acts about once a day. With ``personal`` each user keeps their own hour
    (spread over the day); without, every act is at a random hour around 19:00 for everyone,
    so a user's own few counts are noise around the population's habit."""
    rng = np.random.default_rng(seed)
    rows = []
    start = pd.Timestamp("2024-01-01")
    for user in range(n_users):
        own = int(rng.integers(0, 24))
        for day in range(days):
            if rng.random() < 0.3:
                hour = own if personal else int(np.clip(rng.normal(19, 2.5), 0, 23))
                rows.append((f"u{user:03d}", start + pd.Timedelta(days=day, hours=hour)))
    return pd.DataFrame(rows, columns=["user_id", "occurred_at"]), start + pd.Timedelta(days=days)


@pytest.mark.parametrize("personal", [True, False])
def test_the_settings_are_chosen_on_the_window_before_the_run(personal):
    events, end = _habit_world(personal)
    as_of = end - pd.Timedelta(days=30)
    fitted, selection = fit_send_times(events, None, as_of=as_of, horizon_days=30)
    # every window with every strength and the prior alone was scored
    assert len(selection) == len(WINDOW_HOURS) * (len(PRIOR_STRENGTHS) + 1)
    assert selection["chosen"].sum() == 1
    chosen = selection[selection["chosen"]].iloc[0]
    assert (fitted.prior_strength, fitted.window_hours) == (
        chosen["prior_strength"],
        chosen["window_hours"],
    )
    if personal:
        # own habits: a personal profile is served, and it captured more than the population's
        # hour at every tolerance on the window before the run
        assert np.isfinite(fitted.prior_strength) and chosen["may_serve"]
        alone = selection[
            np.isinf(selection["prior_strength"])
            & (selection["window_hours"] == chosen["window_hours"])
        ].iloc[0]
        assert chosen["capture_1"] > alone["capture_1"] + 0.5
        assert chosen["capture_3"] > alone["capture_3"]
    else:
        # own counts are noise around the population's habit: the served model is the
        # population's hour, or a profile that lost to it nowhere on that window
        assert np.isinf(fitted.prior_strength) or fitted.prior_strength >= 10.0
    later_dropped = events[events["occurred_at"] < as_of]
    again, again_selection = fit_send_times(later_dropped, None, as_of=as_of, horizon_days=30)
    assert (again.prior_strength, again.window_hours) == (
        fitted.prior_strength,
        fitted.window_hours,
    )
    pd.testing.assert_frame_equal(again_selection, selection)
    # the final model, counted from the slots read once, is a plain fit on the same events
    model = SendTimeModel(
        prior_strength=fitted.prior_strength, window_hours=fitted.window_hours
    ).fit(later_dropped)
    np.testing.assert_array_equal(fitted.counts_, model.counts_)
    # the personal slots beat the population's hour on the next 30 days where habits are own
    times = model.send_times()
    test = events[events["occurred_at"] >= as_of]
    personal_share = capture_share(
        test,
        None,
        pd.Series(times.weekday_hour, index=times.user_ids),
        pd.Series(times.weekend_hour, index=times.user_ids),
        tolerance_hours=1,
    )
    population_share = capture_share(test, None, *model.population_hours(), tolerance_hours=1)
    if personal:
        assert personal_share > population_share + 0.5
    else:
        assert personal_share >= population_share - 0.02


def _choice_by_rule(figures: pd.DataFrame) -> tuple[int, float]:
    """choose_send_time's rule written out row by row: a personal pair may be served when it
    captures at least as much as its window's prior alone at every tolerance; the best mean
    capture among those that may, ties to the stronger prior, then the narrower window."""
    best = None
    for row in figures.itertuples(index=False):
        alone = figures[
            (figures["window_hours"] == row.window_hours) & np.isinf(figures["prior_strength"])
        ].iloc[0]
        allowed = math.isinf(row.prior_strength) or (
            row.capture_1 >= alone["capture_1"] and row.capture_3 >= alone["capture_3"]
        )
        if not allowed:
            continue
        key = ((row.capture_1 + row.capture_3) / 2, row.prior_strength, -row.window_hours)
        if best is None or key > best[0]:
            best = (key, (row.window_hours, row.prior_strength))
    return best[1]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 8), st.integers(0, 8)),
        min_size=len(WINDOW_HOURS) * (len(PRIOR_STRENGTHS) + 1),
        max_size=len(WINDOW_HOURS) * (len(PRIOR_STRENGTHS) + 1),
    )
)
def test_the_choice_follows_the_rule_written_out(captures):
    # few distinct values (eighths), so that ties between candidates are common
    pairs = [(w, s) for w in WINDOW_HOURS for s in (*PRIOR_STRENGTHS, POPULATION)]
    figures = pd.DataFrame(
        [(w, s, a / 8, b / 8) for (w, s), (a, b) in zip(pairs, captures, strict=True)],
        columns=["window_hours", "prior_strength", "capture_1", "capture_3"],
    )
    chosen = choose_send_time(figures)
    assert chosen["chosen"].sum() == 1
    row = chosen[chosen["chosen"]].iloc[0]
    assert (row["window_hours"], row["prior_strength"]) == _choice_by_rule(figures)


@pytest.mark.parametrize("strength", [1.0, 10.0, 100.0, POPULATION])
@pytest.mark.parametrize("window", [0, 1, 3])
def test_hours_match_the_window_of_each_profile_summed_slot_by_slot(strength, window):
    """SendTimeModel._hours scores an hour from the counts' window and the prior's (one row
    per distinct prior) instead of windowing every user's smoothed profile; the hours must
    be those of the profile itself, windowed slot by slot here (circular within each kind
    of day), with a user's own mass breaking ties."""
    rng = np.random.default_rng(7)
    users = pd.DataFrame(
        {"user_id": [f"u{n:02d}" for n in range(60)], "segment": ["a", "b", None] * 20}
    )
    rows = []
    for user in users["user_id"]:
        for _ in range(int(rng.integers(0, 12))):
            rows.append(
                (
                    user,
                    pd.Timestamp("2024-03-04")
                    + pd.Timedelta(hours=float(rng.integers(0, 24 * 14))),
                )
            )
    events = pd.DataFrame(rows, columns=["user_id", "occurred_at"])
    model = SendTimeModel(prior_strength=strength, window_hours=window).fit(events, users)
    times = model.send_times()
    for r, profile in enumerate(times.profiles):
        for half, got in ((0, times.weekday_hour[r]), (1, times.weekend_hour[r])):
            day = profile[half * HOURS : (half + 1) * HOURS]
            worth = [
                sum(day[(h + d) % HOURS] for d in range(-window, window + 1)) + 1e-6 * day[h]
                for h in range(HOURS)
            ]
            assert got == int(np.argmax(worth))


def test_the_prior_alone_gives_everybody_the_population_profile():
    events = pd.concat([_events("a", [9] * 12), _events("b", [21] * 3)], ignore_index=True)
    alone = SendTimeModel(prior_strength=POPULATION).fit(events).send_times()
    np.testing.assert_allclose(alone.profiles[0], alone.profiles[1])
    assert set(alone.basis) == {"population"}  # nobody's own counts moved their profile
    strong = SendTimeModel(prior_strength=1e9).fit(events).send_times()
    np.testing.assert_allclose(alone.profiles, strong.profiles, atol=1e-7)
    # with segments too: a segment's prior is the population's, so the basis says population
    users = pd.DataFrame({"user_id": ["a", "b"], "segment": ["s1", "s2"]})
    segmented = SendTimeModel(prior_strength=POPULATION).fit(events, users).send_times()
    np.testing.assert_allclose(segmented.profiles, alone.profiles)
    assert set(segmented.basis) == {"population"}


def test_nothing_to_compare_on_keeps_the_defaults_and_says_so():
    """No event before the validation window (a new shop, or empty sources): the default
    settings, an empty selection, and a reason instead of figures; never an error."""
    from proactive_recs.notifications.send_time import send_time_choice

    events = _events("a", [9, 10])
    as_of = events["occurred_at"].max() + pd.Timedelta(hours=1)
    fitted, selection = fit_send_times(events, None, as_of=as_of, horizon_days=30)
    defaults = SendTimeModel()
    assert (fitted.prior_strength, fitted.window_hours) == (
        defaults.prior_strength,
        defaults.window_hours,
    )
    assert selection.empty and {"may_serve", "chosen"} <= set(selection.columns)
    assert "defaults" in send_time_choice(selection)["send_time_reason"]
    none, empty_selection = fit_send_times(events.iloc[:0], None, as_of=as_of, horizon_days=30)
    assert empty_selection.empty and none.send_times().frame().empty


def test_bad_settings_stop_naming_them():
    events = _events("a", [9])
    with pytest.raises(ValueError, match="prior_strength"):
        SendTimeModel(prior_strength=0).fit(events)
    with pytest.raises(ValueError, match="window_hours"):
        SendTimeModel(window_hours=12).fit(events)
    with pytest.raises(RuntimeError, match="before fit"):
        SendTimeModel().send_times()


# ---------------------------------------------------------------- scheduling


def test_the_preferred_time_is_the_profiles_best_allowed_hour_within_the_delay():
    from zoneinfo import ZoneInfo

    from proactive_recs.notifications.frequency import FrequencyRules
    from proactive_recs.notifications.send_time import preferred_send_time

    rules = FrequencyRules(quiet_hours_start=21, quiet_hours_end=8)
    paris = ZoneInfo("Europe/Paris")  # UTC+1 in January
    anchor = pd.Timestamp("2024-01-08 08:20")  # Monday 09:20 in Paris
    latest = anchor + pd.Timedelta(hours=24)
    likes = np.full(48, 0.1 / 46)

    def profile(*hours):
        out = likes.copy()
        out[list(hours)] = 0.45
        return out

    # 17:00 local on a weekday -> 16:00 UTC the same day
    assert preferred_send_time(anchor, latest, paris, profile(17), rules) == pd.Timestamp(
        "2024-01-08 16:00"
    )
    # a liked hour inside quiet hours (22:00) is never chosen: its window reaches 21:00 and
    # 23:00, also quiet, so the best allowed hour is any other (the anchor, first)
    assert preferred_send_time(anchor, latest, paris, profile(22), rules) == anchor
    # a liked 21:00 pulls toward 20:00 (its window holds 21:00), the last hour before quiet
    assert preferred_send_time(anchor, latest, paris, profile(21), rules) == pd.Timestamp(
        "2024-01-08 19:00"
    )
    # a liked hour already passed today comes tomorrow, if the delay allows...
    assert preferred_send_time(anchor, latest, paris, profile(8), rules) == pd.Timestamp(
        "2024-01-09 07:00"
    )
    # ...else the anchor stays: nothing better within a 2 h delay than now
    two_hours = anchor + pd.Timedelta(hours=2)
    assert preferred_send_time(anchor, two_hours, paris, profile(8), rules) == anchor
    # a profile that is not 48 finite shares, or a latest before the anchor: the anchor
    assert preferred_send_time(anchor, latest, paris, [np.nan], rules) == anchor
    earlier = anchor - pd.Timedelta(hours=1)
    assert preferred_send_time(anchor, earlier, paris, profile(17), rules) == anchor


def test_preferred_times_in_blocks_of_users_are_each_users_own(monkeypatch):
    """Users are scored a block at a time (memory at a million users): with blocks of 7,
    anchors days apart, several zones and unusable profiles, every user gets the moment
    computed for them alone."""
    from proactive_recs.notifications import send_time
    from proactive_recs.notifications.frequency import FrequencyRules, resolve_timezones

    rng = np.random.default_rng(5)
    n = 60
    rules = FrequencyRules(quiet_hours_start=22, quiet_hours_end=7)
    start = pd.Timestamp("2024-03-29 05:10")  # a spring-forward weekend in Europe
    anchors = start + pd.to_timedelta(rng.integers(0, 4 * 24 * 60, n), unit="min")
    latest = start + pd.Timedelta(days=3)
    zones = list(
        resolve_timezones(rng.choice(["Europe/Paris", "Asia/Tokyo", "America/New_York"], n))
    )
    profiles = [rng.dirichlet(np.ones(48)) for _ in range(n)]
    profiles[3], profiles[11] = [np.nan] * 48, [0.5, 0.5]
    monkeypatch.setattr(send_time, "_USERS_PER_BLOCK", 7)
    got = send_time.preferred_send_times(anchors, latest, zones, profiles, rules)
    alone = [
        send_time.preferred_send_time(a, latest, z, p, rules)
        for a, z, p in zip(anchors, zones, profiles, strict=True)
    ]
    assert list(pd.DatetimeIndex(got)) == alone
    assert got[3] == anchors[3] and got[11] == anchors[11]
    assert (pd.DatetimeIndex(got) != anchors).sum() > n / 2  # most users wait for their hour


def test_the_evaluation_compares_served_with_the_population_and_uniform_hours():
    from proactive_recs.notifications.send_time import evaluate_send_time

    events, end = _habit_world(personal=True)
    cutoff = end - pd.Timedelta(days=30)
    table, choice = evaluate_send_time(events, None, cutoff=cutoff, horizon_days=30)
    values = table.set_index(["model", "k"])["value"]
    assert set(table["direction"]) == {"send_time"} and set(table["metric"]) == {"capture"}
    assert values[("uniform", 1)] == pytest.approx(3 / 24)
    assert values[("uniform", 3)] == pytest.approx(7 / 24)
    assert values[("served", 1)] > values[("population", 1)] + 0.5
    # the same figure the library gives by hand: chosen before the cutoff, read after it
    fitted, _ = fit_send_times(
        events[events["occurred_at"] < cutoff], None, as_of=cutoff, horizon_days=30
    )
    times = SendTimeModel(prior_strength=fitted.prior_strength, window_hours=fitted.window_hours)
    chosen = times.fit(events[events["occurred_at"] < cutoff]).send_times()
    test = events[events["occurred_at"] >= cutoff]
    by_hand = capture_share(
        test,
        None,
        pd.Series(chosen.weekday_hour, index=chosen.user_ids),
        pd.Series(chosen.weekend_hour, index=chosen.user_ids),
        tolerance_hours=1,
    )
    assert values[("served", 1)] == pytest.approx(by_hand)
    # the choice is recorded with its validation figures
    assert choice["send_time_window_hours"] == str(fitted.window_hours)
    assert choice["send_time_prior_strength"] == f"{fitted.prior_strength:g}"
    assert "personal hours" in choice["send_time_reason"]
    assert evaluate_send_time(events.iloc[:0], None, cutoff=cutoff, horizon_days=30)[0].empty


def test_a_user_first_seen_in_the_test_window_is_judged_at_the_priors_hour():
    """user_send_times has a row for every known user, so a user with no event before the
    cutoff is sent at the prior's hour; the evaluation must judge them there too (before,
    without a users frame they had no hour at all and counted as misses)."""
    from proactive_recs.notifications.send_time import evaluate_send_time

    events, end = _habit_world(personal=False)
    cutoff = end - pd.Timedelta(days=30)
    newcomers = pd.DataFrame(
        {
            "user_id": [f"new{n}" for n in range(40)],
            "occurred_at": [cutoff + pd.Timedelta(days=1 + n % 20, hours=19) for n in range(40)],
        }
    )
    events = pd.concat([events, newcomers], ignore_index=True)
    without, _ = evaluate_send_time(events, None, cutoff=cutoff, horizon_days=30)
    everyone = pd.DataFrame({"user_id": pd.unique(events["user_id"])})
    given, _ = evaluate_send_time(events, everyone, cutoff=cutoff, horizon_days=30)
    pd.testing.assert_frame_equal(without, given)
    values = without.set_index(["model", "k"])["value"]
    # the newcomers act at the population's habit: the served model reaches them too
    assert values[("served", 1)] >= values[("population", 1)] - 0.02


@pytest.mark.online_retail
@pytest.mark.skipif(not ONLINE_RETAIL_CSV.exists(), reason="Online Retail data set not present")
@pytest.mark.parametrize("zone", ["UTC", "Europe/London"])
def test_online_retail_send_times_never_lose_to_the_population_hour(zone):
    """Online Retail's customers buy in office hours: a personal hour chosen for ±1 h alone
    lost to the population's hour at ±3 h (0.811 against 0.836 through dbt). Chosen as now,
    on the validation window, served is at least the population's hour at both tolerances
    (measured: UTC 0.4270 / 0.8340 against 0.4252 / 0.8260, personal at ±3 h; Europe/London
    the population's hour itself, equal)."""
    from test_evaluation import _online_retail_interactions

    from proactive_recs.notifications.send_time import evaluate_send_time

    events = _online_retail_interactions()[["user_id", "occurred_at"]]
    table, choice = evaluate_send_time(
        events, None, cutoff="2011-11-09", horizon_days=30, default_timezone=zone
    )
    values = table.set_index(["model", "k"])["value"]
    for k in (1, 3):
        assert values[("served", k)] >= values[("population", k)]
    assert "validation capture" in choice["send_time_reason"]


# ---------------------------------------------------------------- generated habits


def _generated(active_hours: bool):
    import proactive_recs_tools.generate as gen

    data = gen.generate(
        800, 100, 120, n_transactions=40_000, seed=3, dirt=False, active_hours=active_hours
    )
    table, users = data.tables["transactions"], data.tables["users"]
    events = pd.DataFrame(
        {
            "user_id": table["user_id"].astype(str),
            "occurred_at": pd.to_datetime(table["occurred_at"].astype(str), utc=True).dt.tz_convert(
                None
            ),
        }
    )
    zones = pd.DataFrame(
        {"user_id": users["user_id"].astype(str), "timezone": users["timezone"].astype(object)}
    )
    return events, zones, pd.Timestamp(data.manifest["run_date"])


def test_planted_habits_are_found_and_beat_the_population_hour():
    """The generator's planted hours (each user's own hour, local time): the personal slots
    must capture clearly more of the test window than the population's best hour; without
    planted hours they must not lose to it by more than noise."""
    from proactive_recs.notifications.send_time import evaluate_send_time

    for planted in (True, False):
        events, users, end = _generated(planted)
        table, _ = evaluate_send_time(
            events, users, cutoff=end - pd.Timedelta(days=30), horizon_days=30
        )
        values = table.set_index(["model", "k"])["value"]
        if planted:
            assert values[("served", 1)] > values[("population", 1)] + 0.2
            assert values[("served", 3)] > values[("population", 3)]
        else:
            assert values[("served", 1)] >= values[("population", 1)] - 0.03
