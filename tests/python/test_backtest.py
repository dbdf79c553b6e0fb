"""Campaign backtest on a tiny world whose every number is checked by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from proactive_recs.data.interactions import normalise_interactions
from proactive_recs.notifications.backtest import (
    METRICS,
    POLICIES,
    mark_conversions,
    run_backtest,
    run_backtest_detailed,
)
from proactive_recs.notifications.campaign import validate_campaigns
from proactive_recs.notifications.frequency import FrequencyRules
from proactive_recs.notifications.planner import plan_run
from proactive_recs.notifications.triggers import select_trigger_items

START = pd.Timestamp("2026-01-05")
DAY = pd.Timedelta(days=1)

USERS = pd.DataFrame(
    {
        "user_id": ["u1", "u2", "u3", "u4", "u5"],
        "email": ["1@x", "2@x", "3@x", "4@x", "5@x"],
        "timezone": "UTC",
        "is_eligible": [True, True, True, True, False],
    }
)
ITEMS = pd.DataFrame(
    {
        "item_id": ["new1", "new2", "new3", "old"],
        "title": ["N1", "N2", "N3", "O"],
        "url": "u",
        "price": 1.0,
        "image_url": None,
        "category": "c",
        "available_from": [START - 2 * DAY, START - 2 * DAY, START + 5 * DAY, START - 100 * DAY],
        "available_until": pd.NaT,
    }
)
CAMPAIGNS = pd.DataFrame(
    [
        {
            "campaign_id": "new",
            "campaign_type": "item_push",
            "channel": "push",
            "trigger": "new_items",
            "trigger_days": 7,
            "item_list": None,
            "audience_size": 2,
            "min_relevance": 0.0,
            "priority": 1.0,
            "items_per_digest": None,
            "max_sends_per_user_week": None,
            "is_active": True,
        }
    ]
)
SCORES = pd.DataFrame(
    [
        ("new1", "u1", 0.9),
        ("new1", "u2", 0.8),
        ("new1", "u3", 0.1),
        ("new2", "u2", 0.7),
        ("new2", "u3", 0.6),
        ("new2", "u4", 0.5),
        ("new2", "u5", 0.99),
        ("new3", "u1", 0.9),
        ("new3", "u2", 0.4),
    ],
    columns=["item_id", "user_id", "score"],
)


def _interactions():
    rows = (
        [("u4", "old", -10 - k) for k in range(5)]
        + [("u3", "old", -20 - k) for k in range(3)]
        + [
            ("u1", "old", -30),
            ("u5", "new2", -1),  # the suppressed u5 makes new2 "popular"
            ("u1", "new1", 1),
            ("u3", "new2", 2),  # week 1 conversions
            ("u4", "new2", 7.5),  # after week 1's horizon, not a week-2 send: converts nothing
            ("u2", "new3", 8),
        ]
    )  # week 2 conversion
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "days"])
    frame["occurred_at"] = START + pd.to_timedelta(frame.pop("days"), unit="D")
    frame["event_type"] = "purchase"
    return frame


def score_fn(past: pd.DataFrame, t: pd.Timestamp, item_ids=None):
    """Fixed scores for the items available at ``t`` (both directions, same rows); with
    ``item_ids`` (the week's trigger items) those items' rows only, as the recommender's
    ``recommend_users(item_ids)`` gives them: the hand-checked figures below then also say
    that no policy reads another item's scores."""
    available = set(ITEMS.loc[ITEMS["available_from"] <= t, "item_id"])
    if item_ids is not None:
        available &= set(item_ids)
    scores = SCORES[SCORES["item_id"].isin(available)].copy()
    scores["rank"] = scores.groupby("item_id").cumcount() + 1
    return scores, scores[["user_id", "item_id", "rank", "score"]]


# Quiet hours off and no spacing, then the defaults (sends at 08:00): same numbers, because
# windows are counted back from each user's first send time, not from the run time.
RULES = [
    FrequencyRules(
        push_cap_per_week=1,
        adaptive_cadence=False,
        holdout_share=0.0,
        quiet_hours_start=0,
        quiet_hours_end=0,
        min_hours_between_sends=0,
    ),
    FrequencyRules(push_cap_per_week=1, adaptive_cadence=False, holdout_share=0.0),
]

EXPECTED = {
    # week 1: u1-new1 (converts), u2-new1, u3-new2 (converts), u4-new2; week 2: u1, u2-new3 (c)
    "configured": {
        "sends": 6,
        "conversions": 3,
        "conversions_per_send": 0.5,
        "users_reached": 4,
        "p95_sends_per_user_week": 1,
        "max_sends_per_user_week": 1,
    },
    # new2 (1 earlier user) beats new1 (none): new2 to u1..u4, then new3 to u1..u4
    "carpet_bomb": {
        "sends": 8,
        "conversions": 2,
        "conversions_per_send": 0.25,
        "users_reached": 4,
        "p95_sends_per_user_week": 1,
        "max_sends_per_user_week": 1,
    },
    # u4 (5 interactions) and u3 (3, then 4) get every item: only u3-new2 converts
    "heavy_users": {
        "sends": 6,
        "conversions": 1,
        "conversions_per_send": 1 / 6,
        "users_reached": 2,
        "p95_sends_per_user_week": 2,
        "max_sends_per_user_week": 2,
    },
    # The planner with activity as the score (u4 5 interactions, u3 3, u1 1; u2 none), one
    # push a week each, 2 per item, at most the configured 4 then 2 sends: week 1 u4-new1
    # (ties by item), u3-new1, u1-new2 (new1 is full); week 2 (u3 4, u1 2 by then) new3 to
    # u4 and u3. None of these pairs is bought in its week.
    "heavy_users_capped": {
        "sends": 5,
        "conversions": 0,
        "conversions_per_send": 0.0,
        "users_reached": 3,
        "p95_sends_per_user_week": 1,
        "max_sends_per_user_week": 1,
    },
    # new1 -> u1, u2; new2 -> u2, u3 (u5 suppressed); new3 -> u1, u2; u2 gets 2 in week 1
    "topk_no_allocation": {
        "sends": 6,
        "conversions": 3,
        "conversions_per_send": 0.5,
        "users_reached": 3,
        "p95_sends_per_user_week": 1.8,
        "max_sends_per_user_week": 2,
    },
}


@pytest.mark.parametrize("rules", RULES, ids=["no_quiet_hours", "default_quiet_hours"])
def test_backtest_hand_checked(rules):
    result = run_backtest_detailed(
        _interactions(),
        USERS,
        ITEMS,
        CAMPAIGNS,
        rules,
        score_fn,
        START,
        weeks=2,
        conversion_days=7,
        cap_push_per_week=1,
    )
    summary = result.summary
    assert list(summary.columns) == ["policy", "metric", "value"]
    assert len(summary) == len(POLICIES) * len(METRICS)
    got = {(p, m): v for p, m, v in summary.itertuples(index=False)}
    for policy, metrics in EXPECTED.items():
        for metric, value in metrics.items():
            assert got[(policy, metric)] == pytest.approx(value), (policy, metric)
    configured = result.sends[result.sends["policy"] == "configured"]
    assert sorted(
        zip(configured["user_id"], configured["item_id"], configured["converted"], strict=True)
    ) == [
        ("u1", "new1", True),
        ("u1", "new3", False),
        ("u2", "new1", False),
        ("u2", "new3", True),
        ("u3", "new2", True),
        ("u4", "new2", False),
    ]
    weekly = result.weekly.set_index(["policy", "week_start"])
    assert weekly.loc[("configured", START + 7 * DAY), "sends"] == 2
    assert weekly.groupby("policy")["sends"].sum().to_dict() == {
        p: EXPECTED[p]["sends"] for p in POLICIES
    }
    assert weekly.groupby("policy")["conversions"].sum().to_dict() == {
        p: EXPECTED[p]["conversions"] for p in POLICIES
    }


def test_every_policy_reads_consent_per_channel_as_the_run_does():
    # u4, the most active user, has no push consent; u5 is suppressed altogether.
    users = USERS.assign(is_email_eligible=True, is_push_eligible=[True, True, True, False, True])
    result = run_backtest_detailed(
        _interactions(),
        users,
        ITEMS,
        CAMPAIGNS,
        RULES[0],
        score_fn,
        START,
        weeks=2,
        conversion_days=7,
        cap_push_per_week=1,
    )
    sends = result.sends
    assert set(sends["policy"]) == set(POLICIES)
    assert not sends["user_id"].isin(["u4", "u5"]).any()
    # heavy_users: u4's slots go to the next most active users, u3 then u1, for each of the
    # 2 items of week 1 and the 1 item of week 2.
    heavy = sends[sends["policy"] == "heavy_users"]
    assert len(heavy) == 6 and set(heavy["user_id"]) == {"u1", "u3"}


def test_configured_policy_is_plan_run_itself():
    rules = RULES[0]
    result = run_backtest_detailed(
        _interactions(), USERS, ITEMS, CAMPAIGNS, rules, score_fn, START, weeks=1, conversion_days=7
    )
    campaign = validate_campaigns(CAMPAIGNS)[0]
    past = _interactions()[lambda f: f["occurred_at"] < START]
    item_user, user_item = score_fn(past, START)
    plan = plan_run(
        CAMPAIGNS,
        rules,
        USERS,
        None,
        ITEMS,
        item_user,
        user_item,
        None,
        None,
        START,
        trigger_items={"new": select_trigger_items(campaign, ITEMS, None, None, START)},
    )
    configured = result.sends[result.sends["policy"] == "configured"]
    assert list(configured["send_id"]) == list(plan.audience["send_key"])
    assert list(configured["sent_at"]) == list(plan.audience["scheduled_send_at"])


def test_run_backtest_returns_the_summary_and_holdout_is_not_sent():
    rules = FrequencyRules(holdout_share=1.0)
    summary = run_backtest(
        _interactions(), USERS, ITEMS, CAMPAIGNS, rules, score_fn, START, weeks=1, conversion_days=7
    )
    values = summary.set_index(["policy", "metric"])["value"]
    assert values[("configured", "sends")] == 0
    assert values[("configured", "conversions_per_send")] == 0
    assert values[("topk_no_allocation", "sends")] == 4


def test_mark_conversions_for_digests_and_windows():
    sends = pd.DataFrame(
        {"user_id": ["u1", "u1", "u2"], "sent_items": [("a", "b"), ("c",), ("a",)]}
    )
    interactions = pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u2"],
            "item_id": ["b", "c", "a"],
            "occurred_at": [START + DAY, START + 3 * DAY, START - DAY],
        }
    )
    out = mark_conversions(sends, interactions, START, conversion_days=3)
    assert out["converted"].tolist() == [True, False, False]  # c is at the horizon: excluded
    assert out["converted_at"].iloc[0] == START + DAY


def test_only_conversion_event_types_convert_a_send():
    """A view of the sent item is interest, not a conversion (var
    proactive_recs_conversion_event_types); the first conversion event is the one kept."""
    sends = pd.DataFrame({"user_id": ["u1", "u2"], "sent_items": [("a",), ("a",)]})
    interactions = pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u2"],
            "item_id": ["a", "a", "a"],
            "occurred_at": [START + DAY, START + 2 * DAY, START + DAY],
            "is_conversion": [False, True, False],
        }
    )
    out = mark_conversions(sends, interactions, START, conversion_days=7)
    assert out["converted"].tolist() == [True, False]
    assert out["converted_at"].iloc[0] == START + 2 * DAY


def test_digests_are_replayed_on_request_and_convert_on_any_item():
    digest = pd.DataFrame(
        [
            {
                "campaign_id": "dg",
                "campaign_type": "digest",
                "channel": "email",
                "trigger": None,
                "trigger_days": None,
                "item_list": None,
                "audience_size": None,
                "min_relevance": 0.0,
                "priority": 1.0,
                "items_per_digest": 2,
                "max_sends_per_user_week": None,
                "is_active": True,
            }
        ]
    )
    campaigns = pd.concat([CAMPAIGNS, digest], ignore_index=True)
    result = run_backtest_detailed(
        _interactions(),
        USERS,
        ITEMS,
        campaigns,
        RULES[0],
        score_fn,
        START,
        weeks=1,
        conversion_days=7,
        include_digests=True,
    )
    sends = result.sends
    digests = sends[(sends["policy"] == "configured") & (sends["campaign_id"] == "dg")]
    # Week 1 pushes take new1 / new2 for u1..u4; u2's and u3's digests show the other item.
    assert sorted(
        zip(digests["user_id"], digests["sent_items"], digests["converted"], strict=True)
    ) == [("u2", ("new2",), False), ("u3", ("new1",), False)]
    assert set(sends.loc[sends["policy"] != "configured", "campaign_id"]) == {"new"}
    without = run_backtest(
        _interactions(),
        USERS,
        ITEMS,
        campaigns,
        RULES[0],
        score_fn,
        START,
        weeks=1,
        conversion_days=7,
    )
    assert without.set_index(["policy", "metric"])["value"][("configured", "sends")] == 4


def test_the_scorer_is_asked_for_the_weeks_trigger_items_unless_digests_are_replayed():
    """Without digests each week asks for its trigger items' audiences alone (the new items
    on sale that week: new1 and new2, then new3); with digests, for every list (None)."""
    asked = []

    def recording(past, t, item_ids):
        asked.append((t, None if item_ids is None else list(item_ids)))
        return score_fn(past, t, item_ids)

    run_backtest(_interactions(), USERS, ITEMS, CAMPAIGNS, RULES[0], recording, START, weeks=2)
    assert asked == [(START, ["new1", "new2"]), (START + 7 * DAY, ["new3"])]
    asked.clear()
    digest = CAMPAIGNS.assign(
        campaign_id="dg", campaign_type="digest", trigger=None, trigger_days=None,
        audience_size=None, items_per_digest=2,
    )  # fmt: skip
    campaigns = pd.concat([CAMPAIGNS, digest], ignore_index=True)
    run_backtest(
        _interactions(), USERS, ITEMS, campaigns, RULES[0], recording, START, weeks=1,
        include_digests=True,
    )  # fmt: skip
    assert asked == [(START, None)]


def test_each_week_is_scored_on_its_past_rows_normalised_as_they_are():
    """A week's scorer gets the rows before the week already normalised, so the recommender's
    fit takes them as they are (at L a normalising copy of 20M rows was a GB and ~35 s a
    week)."""
    weeks, weights = [], []

    def recording(past, t, item_ids):
        weeks.append((t, normalise_interactions(past) is past, len(past)))
        weights.append(past["event_weight"].to_numpy())
        return score_fn(past, t, item_ids)

    interactions = _interactions().sample(frac=1.0, random_state=3)  # rows in no time order
    times = normalise_interactions(interactions)["occurred_at"]
    run_backtest(interactions, USERS, ITEMS, CAMPAIGNS, RULES[0], recording, START, weeks=2)
    second = START + 7 * DAY
    assert weeks == [
        (START, True, int((times < START).sum())),
        (second, True, int((times < second).sum())),
    ]
    assert weeks[0][2] < weeks[1][2] < len(interactions)  # true subsets, growing
    # both weeks' rows are slices of one time-ordered frame, not copies of their own
    assert np.shares_memory(weights[0], weights[1])


def test_the_weekly_scorer_chooses_stages_in_the_first_week_and_applies_the_choice_after():
    """The dbt backtest's score_fn: every week trains its own rankers; stage selection and
    the category weight are chosen at week 1 and applied to later weeks, which serve what a
    fit given week 1's choices serves; with decide_once=False every week chooses again."""
    from test_two_stage import FAST, RUN_DATE, synthetic_interactions

    from proactive_recs.recommender.two_stage import Recommender
    from proactive_recs.warehouse.notifications_io import replay_params, weekly_scorer

    interactions = synthetic_interactions()
    params = {**FAST, "stage_selection": True}
    weekly = replay_params(params)
    assert weekly["tune"] is False and weekly["training_windows"] == 1
    weeks = [RUN_DATE - pd.Timedelta(days=14), RUN_DATE - pd.Timedelta(days=7)]
    pasts = [interactions[interactions["occurred_at"] < t] for t in weeks]

    def fit(week, choices=None):
        return Recommender(weekly).fit(pasts[week], as_of=weeks[week], choices=choices)

    first = fit(0)
    assert first.ranker_ is not None and first.selection_.replay.startswith("fitted again")
    given = fit(1, choices=first.trained_stages())
    assert given.stages_used_ == "trained in this fit"  # its own rankers
    assert given.ranker_ is not first.ranker_
    assert given.selection_.user_to_item == first.selection_.user_to_item
    assert given.selection_.replay == f"chosen by the fit as of {weeks[0]:%Y-%m-%d %H:%M}"
    assert given.category_choice_ == first.category_choice_
    own = fit(1)
    assert own.selection_.replay.startswith("fitted again")

    def same(scored, fitted):
        expected = fitted.recommend()
        pd.testing.assert_frame_equal(scored[0], expected.item_user_scores)
        pd.testing.assert_frame_equal(scored[1], expected.user_item_scores)

    deciding_once = weekly_scorer(None, None, params)
    same(deciding_once(pasts[0], weeks[0]), first)
    same(deciding_once(pasts[1], weeks[1]), given)
    deciding_weekly = weekly_scorer(None, None, params, decide_once=False)
    deciding_weekly(pasts[0], weeks[0])
    same(deciding_weekly(pasts[1], weeks[1]), own)
    # asked for a week's trigger items: their audiences from the same fit, no user lists
    audiences, user_lists = deciding_weekly(pasts[1], weeks[1], ["i007", "i010"])
    whole = own.recommend().item_user_scores
    expected = whole[whole["item_id"].isin(["i007", "i010"])].reset_index(drop=True)
    assert expected["item_id"].nunique() == 2
    pd.testing.assert_frame_equal(audiences, expected)
    assert user_lists.empty
    # choices of other settings are not applied: the fit chooses again
    other = Recommender({**weekly, "factors": 6}).fit(
        pasts[1], as_of=weeks[1], choices=first.trained_stages()
    )
    assert other.selection_.replay.startswith("fitted again")


@pytest.mark.parametrize(
    ("cap", "windows", "replay_cap"),
    [(3_000_000, 3, 1_000_000), (1000, 3, 334), (1000, 1, 1000), (2, 5, 1), (None, 3, None)],
)
def test_the_replay_keeps_the_served_fits_row_budget_per_window(cap, windows, replay_cap):
    from proactive_recs.warehouse.notifications_io import replay_params

    params = {"max_training_rows": cap, "training_windows": windows, "factors": 6}
    assert replay_params(params) == {
        "max_training_rows": replay_cap,
        "training_windows": 1,
        "tune": False,
        "factors": 6,
    }
    # the default cap and window count when the served settings leave them out
    assert replay_params({})["max_training_rows"] == 500_000


def test_the_replays_ranker_samples_negatives_at_the_served_rankers_rate():
    """Where the cap binds, the served fit (two windows, 1,000 rows) and the replay's
    one-window fit (500 rows) keep the same share of negatives: both fix it on the same most
    recent window, with the same budget per window."""
    from test_two_stage import FAST, RUN_DATE, synthetic_interactions

    from proactive_recs.recommender.two_stage import Recommender
    from proactive_recs.warehouse.notifications_io import replay_params

    interactions = synthetic_interactions()
    served = {**FAST, "max_training_rows": 1000, "stage_selection": False}
    assert served["training_windows"] == 2
    fits = [
        Recommender(settings).fit(interactions, as_of=RUN_DATE).params_used_
        for settings in (served, replay_params(served))
    ]
    rates = [fit["training_negative_rate"] for fit in fits]
    assert rates[0] < 0.1  # the cap binds (negative_rate 0.1 would keep more)
    assert rates[0] == rates[1]
    assert fits[1]["training_rows"] <= 500 + 5 < fits[0]["training_rows"]


def test_each_weeks_freed_memory_goes_back_before_the_next_weeks_fit(monkeypatch):
    """The trim runs once per week, after the week's frames are gone and before the next
    week's scorer fits: what each call sees is the scorer calls made so far."""
    from proactive_recs.notifications import backtest as backtest_module

    scored, trims = [], []

    def recording(past, t, item_ids):
        scored.append(t)
        return score_fn(past, t, item_ids)

    monkeypatch.setattr(
        backtest_module, "return_freed_memory", lambda: trims.append(len(scored)) or True
    )
    run_backtest(_interactions(), USERS, ITEMS, CAMPAIGNS, RULES[0], recording, START, weeks=2)
    assert trims == [1, 2]
