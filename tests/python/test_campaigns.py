"""Campaigns and plan_run: validation, triggers, candidates, and the rules end to end."""

from __future__ import annotations

from datetime import UTC
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from proactive_recs.notifications.campaign import Campaign, validate_campaigns
from proactive_recs.notifications.candidates import REJECTED_COLUMNS, digest_candidates
from proactive_recs.notifications.frequency import (
    FrequencyRules,
    cadence_allowance,
    holdout_score,
    in_quiet_hours,
    resolve_timezone,
)
from proactive_recs.notifications.planner import (
    AUDIENCE_COLUMNS,
    _digest_items,
    history_start,
    plan_run,
)
from proactive_recs.notifications.triggers import hidden_gem_stats, select_trigger_items

RUN = pd.Timestamp("2026-11-02 00:00")
DAY = pd.Timedelta(days=1)
CAMPAIGN_COLUMNS = [
    "campaign_id",
    "campaign_type",
    "channel",
    "trigger",
    "trigger_days",
    "item_list",
    "audience_size",
    "min_relevance",
    "priority",
    "items_per_digest",
    "max_sends_per_user_week",
    "is_active",
]


def _campaigns(*rows) -> pd.DataFrame:
    return pd.DataFrame([dict(zip(CAMPAIGN_COLUMNS, r, strict=True)) for r in rows])


def _items(rows) -> pd.DataFrame:
    """rows: (item_id, available_from days from RUN or None, available_until days or None)."""
    frame = pd.DataFrame(rows, columns=["item_id", "from_days", "until_days"])
    frame["available_from"] = [None if d is None else RUN + d * DAY for d in frame.pop("from_days")]
    frame["available_until"] = [
        None if d is None else RUN + d * DAY for d in frame.pop("until_days")
    ]
    frame["available_from"] = pd.to_datetime(frame["available_from"])
    frame["available_until"] = pd.to_datetime(frame["available_until"])
    for column in ("title", "url", "image_url", "category"):
        frame[column] = frame["item_id"].map(lambda i, c=column: f"{c}-{i}")
    frame["price"] = 9.5
    return frame


NO_SENDS = pd.DataFrame(
    {
        "send_id": [],
        "user_id": [],
        "campaign_id": [],
        "item_id": [],
        "channel": [],
        "sent_at": pd.Series(dtype="datetime64[ns]"),
    }
)
NO_EVENTS = pd.DataFrame(
    {"send_id": [], "event_type": [], "occurred_at": pd.Series(dtype="datetime64[ns]")}
)


# --------------------------------------------------------------------------- validation


VALID_PUSH = ("p", "item_push", "push", "new_items", 7, None, 10, 0.1, 1.0, None, 2, True)
VALID_DIGEST = ("d", "digest", "email", None, None, None, None, 0.0, 1.0, 5, 1, True)


def test_validate_campaigns_parses_and_defaults():
    table = _campaigns(
        VALID_PUSH,
        VALID_DIGEST,
        (
            "l",
            "item_push",
            "email",
            "item_list",
            None,
            " i2, i1 ,i2",
            5,
            None,
            None,
            None,
            None,
            "false",
        ),
    )
    parsed = {c.campaign_id: c for c in validate_campaigns(table)}
    assert list(parsed) == ["d", "l", "p"]
    assert parsed["l"].item_list == ("i2", "i1") and parsed["l"].is_active is False
    assert parsed["l"].priority == 1.0 and parsed["l"].min_relevance == 0.0
    assert parsed["l"].max_sends_per_user_week is None
    assert parsed["d"].items_per_digest == 5 and parsed["p"].audience_size == 10


@pytest.mark.parametrize(
    "column, value, message",
    [
        ("campaign_type", "sms_blast", "campaign_type"),
        ("channel", "sms", "channel"),
        ("channel", None, "channel"),
        ("trigger", "trending", "trigger"),
        ("trigger_days", None, "trigger_days"),
        ("audience_size", None, "audience_size"),
        ("audience_size", 0, "audience_size"),
        ("priority", "high", "priority"),
        ("is_active", None, "is_active"),
        ("max_sends_per_user_week", 1.5, "max_sends_per_user_week"),
    ],
)
def test_validate_campaigns_names_campaign_and_column(column, value, message):
    row = dict(zip(CAMPAIGN_COLUMNS, VALID_PUSH, strict=True)) | {column: value}
    with pytest.raises(ValueError, match=rf"'p'.*{message}"):
        validate_campaigns(pd.DataFrame([row]))


def test_validate_campaigns_other_errors():
    digest = dict(zip(CAMPAIGN_COLUMNS, VALID_DIGEST, strict=True))
    with pytest.raises(ValueError, match="'d'.*items_per_digest"):
        validate_campaigns(pd.DataFrame([digest | {"items_per_digest": None}]))
    with pytest.raises(ValueError, match="'d'.*trigger"):
        validate_campaigns(pd.DataFrame([digest | {"trigger": "new_items"}]))
    listed = dict(zip(CAMPAIGN_COLUMNS, VALID_PUSH, strict=True)) | {
        "trigger": "item_list",
        "item_list": " , ",
    }
    with pytest.raises(ValueError, match="'p'.*item_list"):
        validate_campaigns(pd.DataFrame([listed]))
    with pytest.raises(ValueError, match="'d'.*duplicated"):
        validate_campaigns(pd.DataFrame([digest, digest]))


# --------------------------------------------------------------------------- triggers


ITEMS = _items(
    [
        ("new", -3, None),
        ("edge_new", -7, None),
        ("old", -8, None),
        ("soon_gone", -30, 2),
        ("edge_gone", -30, 3),
        ("later_gone", -30, 4),
        ("upcoming", 1, None),
        ("expired", -30, 0),
        ("open", None, None),
    ]
)


@pytest.mark.parametrize(
    "trigger, days, item_list, expected",
    [
        ("new_items", 7, None, ["edge_new", "new"]),
        ("expiring", 3, None, ["edge_gone", "soon_gone"]),
        ("item_list", None, "open,expired,upcoming,old,nope", ["open", "old"]),
    ],
)
def test_select_trigger_items(trigger, days, item_list, expected):
    campaign = validate_campaigns(
        _campaigns(("c", "item_push", "push", trigger, days, item_list, 5, 0, 1, None, None, True))
    )[0]
    got = select_trigger_items(campaign, ITEMS, NO_SENDS, NO_EVENTS, RUN)
    assert got == expected


def _gem_history():
    """50 items' worth of sends: 'gem' converts often with little reach, 'hit' is everywhere."""
    rows, events = [], []
    plan = {"gem": (10, 6), "hit": (200, 20), "dud": (10, 0), "meh": (10, 1)}
    for item, (n, conversions) in plan.items():
        for k in range(n):
            send_id = f"{item}{k}"
            rows.append((send_id, f"u{k}", "c", item, "push", RUN - 5 * DAY))
            if k < conversions:
                events.append((send_id, "conversion", RUN - 4 * DAY))
    sends = pd.DataFrame(
        rows, columns=["send_id", "user_id", "campaign_id", "item_id", "channel", "sent_at"]
    )
    events = pd.DataFrame(events, columns=["send_id", "event_type", "occurred_at"])
    return sends, events


def test_hidden_gems_from_send_history():
    items = _items([(i, -60, None) for i in ("gem", "hit", "dud", "meh", "fresh")])
    sends, events = _gem_history()
    stats = hidden_gem_stats(items, sends, events, RUN).set_index("item_id")
    assert stats.loc["gem", "is_gem"] and not stats[stats.index != "gem"]["is_gem"].any()
    assert stats.loc["hit", "reach"] == 200 and stats["source"].eq("sends").all()
    campaign = Campaign("g", "item_push", "push", trigger="hidden_gems", audience_size=5)
    assert select_trigger_items(campaign, items, sends, events, RUN) == ["gem"]
    # Conversions after the run are not known yet: no conversion history, no gems.
    late = events.assign(occurred_at=RUN + DAY)
    assert select_trigger_items(campaign, items, sends, late, RUN) == []


def test_hidden_gems_fall_back_to_interactions_then_to_nothing():
    items = _items([(i, -60, None) for i in ("gem", "hit", "dud")])
    rows = (
        [(f"v{k}", "hit", "view") for k in range(60)]
        + [(f"v{k}", "hit", "purchase") for k in range(3)]
        + [(f"w{k}", "gem", "view") for k in range(8)]
        + [(f"w{k}", "gem", "purchase") for k in range(6)]
        + [(f"x{k}", "dud", "view") for k in range(8)]
    )
    interactions = pd.DataFrame(rows, columns=["user_id", "item_id", "event_type"])
    interactions["occurred_at"] = RUN - 2 * DAY
    campaign = Campaign("g", "item_push", "push", trigger="hidden_gems", audience_size=5)
    assert select_trigger_items(
        campaign, items, NO_SENDS, NO_EVENTS, RUN, interactions=interactions
    ) == ["gem"]
    assert select_trigger_items(campaign, items, NO_SENDS, NO_EVENTS, RUN) == []


def test_hidden_gems_read_the_users_conversion_types_not_purchase():
    """A streaming vocabulary: 'play' is the conversion (is_conversion from
    stg_event_type_weights); no event type is called purchase."""
    items = _items([(i, -60, None) for i in ("gem", "hit")])
    rows = (
        [(f"v{k}", "hit", "view", False) for k in range(60)]
        + [(f"v{k}", "hit", "play", True) for k in range(3)]
        + [(f"w{k}", "gem", "view", False) for k in range(8)]
        + [(f"w{k}", "gem", "play", True) for k in range(6)]
    )
    interactions = pd.DataFrame(rows, columns=["user_id", "item_id", "event_type", "is_conversion"])
    interactions["occurred_at"] = RUN - 2 * DAY
    campaign = Campaign("g", "item_push", "push", trigger="hidden_gems", audience_size=5)
    assert select_trigger_items(
        campaign, items, NO_SENDS, NO_EVENTS, RUN, interactions=interactions
    ) == ["gem"]
    nothing_converts = interactions.assign(is_conversion=False)
    assert (
        select_trigger_items(
            campaign, items, NO_SENDS, NO_EVENTS, RUN, interactions=nothing_converts
        )
        == []
    )


def test_interactions_given_as_a_function_are_read_only_for_the_fallback_and_once():
    items = _items([(i, -60, None) for i in ("gem", "hit")])
    interactions = pd.DataFrame(
        [(f"w{k}", "gem", "purchase") for k in range(6)]
        + [(f"v{k}", "hit", "view") for k in range(60)],
        columns=["user_id", "item_id", "event_type"],
    ).assign(occurred_at=RUN - 2 * DAY)
    reads = []

    def read():
        reads.append(1)
        return interactions

    campaigns = _campaigns(
        ("gems_a", "item_push", "push", "hidden_gems", None, None, 5, 0.0, 1.0, None, 1, True),
        ("gems_b", "item_push", "email", "hidden_gems", None, None, 5, 0.0, 1.0, None, 1, True),
    )
    world = dict(
        campaigns=campaigns,
        rules=None,
        users=pd.DataFrame({"user_id": ["w0"], "email": ["a@x"], "is_eligible": [True]}),
        targeting=None,
        items=items,
        item_user_scores=pd.DataFrame(columns=["item_id", "user_id", "rank", "score"]),
        user_item_scores=pd.DataFrame(columns=["user_id", "item_id", "rank", "score"]),
        run_date=RUN,
        interactions=read,
    )
    result = plan_run(sends=NO_SENDS, events=NO_EVENTS, **world)
    assert len(reads) == 1  # two hidden-gem campaigns, one read
    assert set(result.trigger_items["item_id"]) == {"gem"}
    # With conversions in the send history the interactions are not needed: never read.
    sends = pd.DataFrame(
        {
            "send_id": ["s1"],
            "user_id": ["w0"],
            "campaign_id": ["x"],
            "item_id": ["hit"],
            "channel": ["push"],
            "sent_at": [RUN - 3 * DAY],
        }
    )
    events = pd.DataFrame(
        {"send_id": ["s1"], "event_type": ["conversion"], "occurred_at": [RUN - 2 * DAY]}
    )
    reads.clear()
    plan_run(sends=sends, events=events, **world)
    assert reads == []


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(
        st.tuples(
            st.integers(0, 4),
            st.integers(0, 11),
            st.one_of(st.none(), st.sampled_from([0.0, 0.5, 1.0]), st.floats(0.0, 1.0)),
            st.one_of(st.none(), st.integers(1, 3)),
        ),
        min_size=1,
        max_size=50,
    ),
    recent=st.sets(st.tuples(st.integers(0, 5), st.integers(0, 12)), max_size=15),
    unavailable=st.sets(st.integers(0, 11), max_size=4),
    eligible=st.lists(st.booleans(), min_size=4, max_size=4),
    size=st.integers(1, 3),
    min_relevance=st.sampled_from([0.0, 0.3, 0.6]),
)
# ties on score and rank, broken by the item id as text (i10 < i2 < i3); null ranks last
@example(
    rows=[(0, 2, 0.5, 1), (0, 10, 0.5, 1), (0, 3, 0.5, None), (0, 4, 0.5, 1), (1, 5, 0.5, None)],
    recent=set(),
    unavailable=set(),
    eligible=[True] * 4,
    size=2,
    min_relevance=0.0,
)
def test_digest_candidates_match_a_row_by_row_reference(
    rows, recent, unavailable, eligible, size, min_relevance
):
    """Each scored user's digest (or its one rejection), worked out row by row in plain
    Python: the best score of each (user, item), the items available, not sent recently and
    relevant, best first (score, rank, item id), the score from the first ``size`` of them.
    User u4 is in no users table; users u0-u3 are suppressed where ``eligible`` says so.
    Scores and the scorer's ranks tie often (few distinct values, ranks may be null), and
    item ids sort differently as text than as numbers (i10 < i2), so the item-id tie-break
    is exercised."""
    campaign = Campaign("d", "digest", "email", items_per_digest=size, min_relevance=min_relevance)
    scores = pd.DataFrame(
        {
            "user_id": [f"u{u}" for u, _, _, _ in rows],
            "item_id": [f"i{i}" for _, i, _, _ in rows],
            "rank": [np.nan if r is None else float(r) for _, _, _, r in rows],
            "score": [np.nan if s is None else s for _, _, s, _ in rows],
        }
    )
    users = pd.DataFrame(
        {"user_id": [f"u{u}" for u in range(4)], "email": "a@x", "timezone": "UTC"}
    ).assign(is_eligible=eligible)
    recent_pairs = pd.DataFrame(
        {"user_id": [f"u{u}" for u, _ in recent], "item_id": [f"i{i}" for _, i in recent]},
        dtype=object,
    )
    available = {f"i{i}" for i in range(12)} - {f"i{i}" for i in unavailable}
    kept, rejected = digest_candidates(campaign, scores, available, users, None, recent_pairs)

    best: dict = {}  # (user, item) -> (score or None, rank): the best score, first on ties
    for u, i, s, rank in rows:
        old = best.get((u, i))
        if old is None or (s is not None and (old[0] is None or s > old[0])):
            best[(u, i)] = (s, rank)
    want_pools, want_scores, want_reasons = {}, {}, {}
    for u in sorted({u for u, _, _, _ in rows}):
        mine = [(i, s, r) for (uu, i), (s, r) in best.items() if uu == u]
        fresh = [(i, s, r) for i, s, r in mine if i not in unavailable and (u, i) not in recent]
        pool = sorted(
            [(i, s, r) for i, s, r in fresh if s is not None and s >= min_relevance],
            # nulls last: a null rank after every rank
            key=lambda x: (-x[1], x[2] is None, x[2] or 0, f"i{x[0]}"),
        )
        user = f"u{u}"
        if u == 4:
            want_reasons[user] = "unknown_user"
        elif not eligible[u]:
            want_reasons[user] = "suppressed"
        elif not any(i not in unavailable for i, _, _ in mine):
            want_reasons[user] = "no_available_items"
        elif not fresh:
            want_reasons[user] = "item_repeat"
        elif not pool:
            want_reasons[user] = "below_min_relevance"
        else:
            want_pools[user] = [(f"i{i}", s) for i, s, _ in pool]
            want_scores[user] = 1.0 - float(np.prod([1.0 - s for _, s, _ in pool[:size]]))

    assert dict(zip(rejected["user_id"], rejected["reason"], strict=True)) == want_reasons
    assert rejected["item_id"].isna().all()
    assert kept["user_id"].tolist() == sorted(want_pools)
    for _, row in kept.iterrows():
        assert row["digest_pool"] == want_pools[row["user_id"]]
        assert row["score"] == pytest.approx(want_scores[row["user_id"]], abs=1e-12)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    scores=st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 9), st.floats(0.0, 1.0)),
        min_size=1,
        max_size=60,
    ),
    pushable=st.sets(st.integers(0, 9), max_size=5),
    pushed_draw=st.lists(st.sets(st.integers(0, 9)), min_size=4, max_size=4),
    size=st.integers(1, 4),
)
def test_bounded_digest_pools_give_the_same_digests(scores, pushable, pushed_draw, size):
    """Leaving out pool entries that come after ``size`` non-pushable items changes no
    digest, whichever of the pushable items end up pushed to the user."""
    campaign = Campaign("d", "digest", "email", items_per_digest=size)
    user_item_scores = pd.DataFrame(
        {
            "user_id": [f"u{u}" for u, _, _ in scores],
            "item_id": [f"i{i}" for _, i, _ in scores],
            "rank": range(1, len(scores) + 1),
            "score": [s for _, _, s in scores],
        }
    )
    users = pd.DataFrame(
        {"user_id": [f"u{u}" for u in range(4)], "email": "a@x", "timezone": "UTC"}
    ).assign(is_eligible=True)
    recent = pd.DataFrame(columns=["user_id", "item_id"])
    available = {f"i{i}" for i in range(10)}
    pushable_ids = {f"i{i}" for i in pushable}
    full, rejected_full = digest_candidates(
        campaign, user_item_scores, available, users, None, recent
    )
    bounded, rejected_bounded = digest_candidates(
        campaign, user_item_scores, available, users, None, recent, pushable_ids
    )
    pd.testing.assert_frame_equal(
        full.drop(columns="digest_pool"), bounded.drop(columns="digest_pool")
    )
    pd.testing.assert_frame_equal(rejected_full, rejected_bounded)
    for (_, f), (_, b), pushed in zip(
        full.iterrows(), bounded.iterrows(), pushed_draw, strict=False
    ):
        assert len(b["digest_pool"]) <= len(f["digest_pool"])
        pushed_ids = {f"i{i}" for i in pushed} & pushable_ids
        assert _digest_items(b["digest_pool"], pushed_ids, size, {}) == _digest_items(
            f["digest_pool"], pushed_ids, size, {}
        )


# --------------------------------------------------------------------------- plan_run


def _world():
    campaigns = _campaigns(
        ("new_arrivals", "item_push", "push", "new_items", 7, None, 2, 0.1, 1.0, None, 1, True),
        ("last_chance", "item_push", "email", "expiring", 3, None, 5, 0.0, 1.2, None, None, True),
        ("weekly_digest", "digest", "email", None, None, None, None, 0.05, 0.5, 2, 1, True),
        ("paused", "item_push", "push", "item_list", None, "i1", 9, 0, 1, None, None, False),
    )
    users = pd.DataFrame(
        {
            "user_id": ["u1", "u2", "u3", "u4", "u5"],
            "email": ["a@x", "b@x", None, "d@x", "e@x"],
            "timezone": ["Europe/Berlin", None, "America/New_York", "bogus", "UTC"],
            "is_eligible": [True, True, True, False, True],
        }
    )
    items = _items(
        [("i1", -2, None), ("i2", -30, 2), ("i3", -60, None), ("i4", 1, None), ("i5", -1, None)]
    )
    item_user_scores = pd.DataFrame(
        {
            "item_id": ["i1"] * 5 + ["i2"] * 2 + ["i5"] * 2,
            "user_id": ["u1", "u2", "u3", "u4", "ghost", "u1", "u3", "u5", "u1"],
            "rank": [1, 2, 3, 4, 5, 1, 2, 1, 2],
            "score": [0.9, 0.5, 0.4, 0.8, 0.99, 0.3, 0.2, 0.05, 0.6],
        }
    )
    user_item_scores = pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u1", "u2", "u4", "u5", "u5"],
            "item_id": ["i1", "i2", "i3", "i3", "i3", "i4", "i3"],
            "rank": [1, 2, 3, 1, 1, 1, 2],
            "score": [0.6, 0.5, 0.2, 0.3, 0.9, 0.9, 0.01],
        }
    )
    sends = pd.DataFrame(
        {
            "send_id": ["s1", "s2"],
            "user_id": ["u2", "u1"],
            "campaign_id": ["x", "x"],
            "item_id": ["i9", "i5"],
            "channel": ["email", "push"],
            "sent_at": [RUN - pd.Timedelta(hours=5), RUN - 10 * DAY],
        }
    )
    events = pd.DataFrame(
        {"send_id": ["s1"], "event_type": ["open"], "occurred_at": [RUN - pd.Timedelta(hours=4)]}
    )
    targeting = pd.DataFrame(
        {
            "campaign_id": ["new_arrivals"],
            "user_id": ["u2"],
            "passes_filter": [True],
            "boost": [2.0],
        }
    )
    return dict(
        campaigns=campaigns,
        users=users,
        targeting=targeting,
        items=items,
        item_user_scores=item_user_scores,
        user_item_scores=user_item_scores,
        sends=sends,
        events=events,
        run_date=RUN,
    )


def test_plan_run_hand_example():
    world = _world()
    result = plan_run(rules=FrequencyRules(holdout_share=0.0), **world)
    audience = result.audience
    assert list(audience.columns) == AUDIENCE_COLUMNS
    assert list(result.rejected_candidates.columns) == REJECTED_COLUMNS
    got = [
        tuple(r)
        for r in audience[["user_id", "campaign_id", "item_id", "rank"]].itertuples(index=False)
    ]
    assert got == [
        ("u1", "new_arrivals", "i1", 1),
        ("u1", "weekly_digest", None, 2),
        ("u1", "last_chance", "i2", 3),
        ("u2", "new_arrivals", "i1", 1),
        ("u2", "weekly_digest", None, 2),
    ]
    rejected = {
        (r.campaign_id, r.user_id, r.item_id): r.reason
        for r in result.rejected_candidates.itertuples()
    }
    assert rejected == {
        ("new_arrivals", "u3", "i1"): "audience_full",  # u2's boost 2 puts u2 ahead of u3
        ("new_arrivals", "u4", "i1"): "suppressed",
        ("new_arrivals", "ghost", "i1"): "unknown_user",
        ("new_arrivals", "u5", "i5"): "below_min_relevance",
        ("new_arrivals", "u1", "i5"): "item_repeat",  # pushed 10 days ago
        ("last_chance", "u3", "i2"): "no_email",
        ("weekly_digest", "u4", None): "suppressed",
        ("weekly_digest", "u5", None): "below_min_relevance",  # i4 is upcoming, i3 too low
    }
    u1_digest = audience.loc[
        (audience["user_id"] == "u1") & (audience["campaign_id"] == "weekly_digest")
    ].iloc[0]
    # Scored on the top 2 (i1 0.6, i2 0.5), but both are pushed to u1 in this run: i3 instead.
    assert u1_digest["score"] == pytest.approx(1 - 0.4 * 0.5)
    assert u1_digest["expected_value"] == pytest.approx(0.8 * 0.5)
    assert u1_digest["digest_items"] == [
        {
            "item_id": "i3",
            "rank": 1,
            "score": 0.2,
            "title": "title-i3",
            "url": "url-i3",
            "price": 9.5,
            "image_url": "image_url-i3",
        }
    ]
    assert audience["digest_items"].isna().sum() == 3
    # Berlin: 00:00 UTC = 01:00 CET is quiet -> 08:00 CET; then 20 h later, out of quiet.
    u1 = audience[audience["user_id"] == "u1"]["scheduled_send_at"].tolist()
    assert u1 == [
        pd.Timestamp("2026-11-02 07:00"),
        pd.Timestamp("2026-11-03 07:00"),
        pd.Timestamp("2026-11-04 07:00"),
    ]
    # u2 (UTC by default) was e-mailed 5 h ago: first send 20 h later = 15:00 UTC.
    assert audience[audience["user_id"] == "u2"]["scheduled_send_at"].tolist() == [
        pd.Timestamp("2026-11-02 15:00"),
        pd.Timestamp("2026-11-03 11:00"),
    ]
    assert not audience["is_holdout"].any() and audience["send_key"].is_unique


def test_the_first_send_waits_for_the_best_hour_by_the_window_the_fit_chose():
    """user_send_times.window_hours says how a profile is read: a slot is worth the mass
    within that many hours of it. u1 (Europe/Berlin) acts mostly at 9:00, and also through
    13:00-19:00: within ±1 h the best hour is 9:00 (0.402 against 0.255 at 14:00); within
    ±3 h it is 12:00 (9:00-15:00 hold 0.658, 13:00-19:00 0.595)."""
    day = np.full(24, 0.001)
    day[9] = 0.4
    day[13:20] = 0.085
    profile = list(np.r_[day, day] / np.r_[day, day].sum())

    def first_send(window):
        send_times = pd.DataFrame(
            {
                "user_id": ["u1"],
                "send_time_basis": ["personal"],
                "hour_profile": [profile],
                "window_hours": [window],
            }
        )
        audience = plan_run(
            rules=FrequencyRules(holdout_share=0.0), send_times=send_times, **_world()
        ).audience
        first = audience[audience["user_id"] == "u1"].sort_values("rank").iloc[0]
        return _local(first["scheduled_send_at"], ZoneInfo("Europe/Berlin")).hour

    assert first_send(1) == 9
    assert first_send(3) == 12
    two = pd.DataFrame(
        {
            "user_id": ["u1", "u2"],
            "send_time_basis": ["personal"] * 2,
            "hour_profile": [profile] * 2,
            "window_hours": [1, 3],
        }
    )
    with pytest.raises(ValueError, match="user_send_times.window_hours"):
        plan_run(rules=FrequencyRules(holdout_share=0.0), send_times=two, **_world())


def test_plan_run_campaign_cap_counts_history_and_the_slot_goes_to_the_next_user():
    world = _world()
    world["sends"] = pd.concat(
        [
            world["sends"],
            pd.DataFrame(
                {
                    "send_id": ["s3"],
                    "user_id": ["u2"],
                    "campaign_id": ["new_arrivals"],
                    "item_id": ["i7"],
                    "channel": ["push"],
                    "sent_at": [RUN - 2 * DAY],
                }
            ),
        ]
    )
    result = plan_run(rules=FrequencyRules(holdout_share=0.0), **world)
    pushed = result.audience[result.audience["campaign_id"] == "new_arrivals"]
    assert sorted(pushed["user_id"]) == ["u1", "u3"]  # u3 takes u2's place
    reasons = result.rejected_candidates.set_index(["campaign_id", "user_id"])["reason"]
    assert reasons[("new_arrivals", "u2")] == "campaign_cap_reached"


def _mailbox_world(**flags):
    """u1 and u5 share one mailbox (written differently); u1 was e-mailed 3 days ago and
    the person opened it; both are scored for the e-mail item i2, u1 for the push item i1."""
    world = _world()
    world["users"] = world["users"].assign(email=["a@x", "b@x", None, "d@x", " A@X "], **flags)
    world["item_user_scores"] = pd.DataFrame(
        {
            "item_id": ["i2", "i2", "i1"],
            "user_id": ["u1", "u5", "u1"],
            "rank": [1, 2, 1],
            "score": [0.9, 0.8, 0.9],
        }
    )
    world["user_item_scores"] = world["user_item_scores"].iloc[:0]
    world["sends"] = pd.DataFrame(
        {
            "send_id": ["s1"],
            "user_id": ["u1"],
            "campaign_id": ["x"],
            "item_id": ["i9"],
            "channel": ["email"],
            "sent_at": [RUN - 3 * DAY],
        }
    )
    world["events"] = world["events"].assign(occurred_at=RUN - 2 * DAY)
    return world


def test_a_shared_mailbox_is_emailed_through_one_account_and_capped_as_one_person():
    rules = FrequencyRules(holdout_share=0.0, email_cap_per_week=1, adaptive_cadence=False)
    # Without the per-channel flags the planner cannot tell which account int_user_eligibility
    # would e-mail: neither is (when in doubt, don't send), each kept aside with its reason.
    result = plan_run(rules=rules, **_mailbox_world())
    emails = result.audience[result.audience["channel"] == "email"]
    assert emails.empty
    reasons = result.rejected_candidates.set_index(["campaign_id", "user_id"])["reason"]
    assert reasons[("last_chance", "u1")] == reasons[("last_chance", "u5")] == "shared_mailbox"
    assert ("new_arrivals", "u1") not in reasons  # pushes are per account: u1 still gets i1
    pushes = result.audience[result.audience["channel"] == "push"]
    assert pushes[["user_id", "item_id"]].values.tolist() == [["u1", "i1"]]

    # With them (u5 is the mailbox's e-mail account), u5 is capped by u1's e-mail: same person.
    picked = _mailbox_world(
        is_email_eligible=[False, True, True, True, True], is_push_eligible=True
    )
    result = plan_run(rules=rules, **picked)
    assert result.audience[result.audience["channel"] == "email"].empty
    reasons = result.rejected_candidates.set_index(["campaign_id", "user_id"])["reason"]
    assert reasons[("last_chance", "u5")] == "cap_reached"
    assert reasons[("last_chance", "u1")] == "suppressed"

    # Adaptive cadence: the open of u1's e-mail is the person's, so the mailbox may get one
    # more (cap 1 + bonus 1 = 2, one used): exactly one e-mail, to u5.
    adaptive = FrequencyRules(holdout_share=0.0, email_cap_per_week=1, cadence_floor=0)
    audience = plan_run(rules=adaptive, **picked).audience
    emails = audience[audience["channel"] == "email"]
    assert emails[["user_id", "item_id"]].values.tolist() == [["u5", "i2"]]


def test_plan_run_holdout_is_allocated_and_scheduled_apart():
    world = _world()
    everyone = plan_run(rules=FrequencyRules(holdout_share=1.0), **world).audience
    nobody = plan_run(rules=FrequencyRules(holdout_share=0.0), **world).audience
    assert everyone["is_holdout"].all() and everyone["scheduled_send_at"].isna().all()
    columns = ["send_key", "user_id", "campaign_id", "item_id", "rank"]
    pd.testing.assert_frame_equal(everyone[columns], nobody[columns])
    # the holdout's sends would have gone out exactly when the same sends to them would have
    assert everyone["holdout_send_at"].tolist() == nobody["scheduled_send_at"].tolist()
    assert nobody["holdout_send_at"].isna().all() and everyone["send_time_basis"].isna().all()


def test_plan_run_is_idempotent_and_ignores_row_order():
    world = _world()
    first = plan_run(rules=FrequencyRules(holdout_share=0.3), **world)
    second = plan_run(rules=FrequencyRules(holdout_share=0.3), **world)
    pd.testing.assert_frame_equal(first.audience, second.audience)
    pd.testing.assert_frame_equal(first.rejected_candidates, second.rejected_candidates)
    shuffled = {
        k: v.sample(frac=1.0, random_state=7).reset_index(drop=True)
        if isinstance(v, pd.DataFrame)
        else v
        for k, v in world.items()
    }
    third = plan_run(rules=FrequencyRules(holdout_share=0.3), **shuffled)
    pd.testing.assert_frame_equal(first.audience, third.audience)
    pd.testing.assert_frame_equal(first.rejected_candidates, third.rejected_candidates)


def test_plan_run_with_nothing_to_do():
    world = _world() | {
        "item_user_scores": pd.DataFrame(columns=["item_id", "user_id", "rank", "score"]),
        "user_item_scores": pd.DataFrame(columns=["user_id", "item_id", "rank", "score"]),
        "sends": None,
        "events": None,
    }
    result = plan_run(rules=None, **world)
    assert result.audience.empty and list(result.audience.columns) == AUDIENCE_COLUMNS
    assert result.rejected_candidates.empty


# --------------------------------------------------------------------------- properties


ZONES = [None, "UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Nope/Zone"]
RUN_TIMES = [
    pd.Timestamp("2026-03-28 22:30"),
    pd.Timestamp("2026-03-29 00:30"),
    pd.Timestamp("2026-11-01 04:30"),
    pd.Timestamp("2026-10-24 23:00"),
    pd.Timestamp("2026-07-01 12:00"),
]


@st.composite
def worlds(draw):
    run = draw(st.sampled_from(RUN_TIMES))
    n_users = draw(st.integers(1, 6))
    user_ids = [f"u{k}" for k in range(n_users)]
    users = pd.DataFrame(
        {
            "user_id": user_ids,
            "email": [draw(st.sampled_from(["x@y", "x@y", " X@y", "z@y", None])) for _ in user_ids],
            "timezone": [draw(st.sampled_from(ZONES)) for _ in user_ids],
            "is_eligible": [
                draw(st.sampled_from([True, True, True, False, None])) for _ in user_ids
            ],
        }
    )
    if draw(st.booleans()):  # per-channel flags, as int_user_eligibility writes them
        for channel in ("email", "push"):
            users[f"is_{channel}_eligible"] = [
                draw(st.sampled_from([True, True, False, None])) for _ in user_ids
            ]
    item_ids = [f"i{k}" for k in range(draw(st.integers(1, 5)))]
    items = pd.DataFrame(
        {
            "item_id": item_ids,
            "available_from": [
                run + pd.Timedelta(days=draw(st.integers(-40, 2))) for _ in item_ids
            ],
            "available_until": [
                None if draw(st.booleans()) else run + pd.Timedelta(days=draw(st.integers(0, 8)))
                for _ in item_ids
            ],
        }
    )
    items["available_until"] = pd.to_datetime(items["available_until"])
    for column in ("title", "url", "image_url"):
        items[column] = items["item_id"]
    items["price"] = 1.0
    campaigns = _campaigns(
        (
            "new",
            "item_push",
            "push",
            "new_items",
            draw(st.sampled_from([3, 30])),
            None,
            draw(st.integers(1, 4)),
            draw(st.sampled_from([0.0, 0.3])),
            1.0,
            None,
            draw(st.sampled_from([None, 0, 1, 2])),
            True,
        ),
        (
            "listed",
            "item_push",
            "email",
            "item_list",
            None,
            ",".join(item_ids),
            draw(st.integers(1, 4)),
            0.0,
            draw(st.sampled_from([0.5, 2.0])),
            None,
            draw(st.sampled_from([None, 1])),
            True,
        ),
        ("gone", "item_push", "push", "expiring", 5, None, 3, 0.0, 1.0, None, None, True),
        (
            "digest",
            "digest",
            "email",
            None,
            None,
            None,
            None,
            0.1,
            1.0,
            draw(st.integers(1, 3)),
            draw(st.sampled_from([None, 1])),
            True,
        ),
    )
    everyone = user_ids + ["ghost"]  # scores may name users the users table does not have
    pairs = draw(
        st.lists(
            st.tuples(st.sampled_from(everyone), st.sampled_from(item_ids), st.floats(0.0, 1.0)),
            min_size=3,
            max_size=40,
        )
    )
    scores = pd.DataFrame(pairs, columns=["user_id", "item_id", "score"])
    scores["rank"] = scores.groupby("item_id").cumcount() + 1
    # Every user (and a ghost) may have a few past or already scheduled sends; recent ones,
    # where the rules bite, are drawn more often.
    one_send = st.tuples(
        st.sampled_from(["new", "listed", "digest", "old"]),
        st.sampled_from([*item_ids, None]),
        st.sampled_from(["email", "push"]),
        st.integers(-35 * 24, 30) | st.integers(-8 * 24, 30) | st.integers(-30, 30),
    )
    history = [(user, *send) for user in everyone for send in draw(st.lists(one_send, max_size=3))]
    sends = pd.DataFrame(history, columns=["user_id", "campaign_id", "item_id", "channel", "hours"])
    sends["send_id"] = [f"s{k}" for k in range(len(sends))]
    sends["sent_at"] = run + pd.to_timedelta(sends.pop("hours"), unit="h")
    answered = [s for s in sends["send_id"] if draw(st.booleans())]
    events = pd.DataFrame(
        {
            "send_id": answered,
            "event_type": [draw(st.sampled_from(["open", "click", "delivered"])) for _ in answered],
            "occurred_at": [run - pd.Timedelta(hours=1)] * len(answered),
        }
    )
    cap = draw(st.sampled_from([0, 1, 2, 3, 3]))
    rules = FrequencyRules(
        email_cap_per_week=cap,
        push_cap_per_week=draw(st.sampled_from([0, 1, 2, 2])),
        email_cadence_ceiling=max(cap, 4),
        push_cadence_ceiling=3,
        min_hours_between_sends=draw(st.sampled_from([0.0, 6.0, 20.0])),
        holdout_share=draw(st.sampled_from([0.0, 0.0, 0.3, 1.0])),
        adaptive_cadence=draw(st.booleans()),
        cadence_floor=draw(st.sampled_from([0, 1])),
        cadence_grace_hours=0.0,
        send_time=draw(st.sampled_from(["personal", "personal", "off"])),
        send_time_max_delay_hours=draw(st.sampled_from([0.0, 6.0, 24.0, 72.0])),
    )
    # Learned send hours for some users (and the ghost): any profile may pull a send later,
    # never past the rules. Profiles that are not 48 finite shares are ignored.
    send_times = None
    if draw(st.booleans()):
        profiled = [u for u in everyone if draw(st.booleans())]
        hours = [draw(st.integers(0, 47)) for _ in profiled]
        send_times = pd.DataFrame(
            {
                "user_id": profiled,
                "send_time_basis": [
                    draw(st.sampled_from(["personal", "segment", "population"])) for _ in profiled
                ],
                "hour_profile": [
                    list(np.eye(48)[h] * 0.9 + 0.1 / 48) if draw(st.booleans()) else [np.nan]
                    for h in hours
                ],
            }
        )
    return dict(
        campaigns=campaigns,
        rules=rules,
        users=users,
        targeting=None,
        items=items,
        item_user_scores=scores,
        user_item_scores=scores.copy(),
        sends=sends,
        events=events,
        run_date=run,
        send_times=send_times,
    )


def _mailbox(email) -> str | None:
    """The mailbox of an address, written here independently of the package: trimmed and
    lower-cased, None when missing or blank."""
    if not isinstance(email, str) or not email.strip():
        return None
    return email.strip().lower()


def _local(ts: pd.Timestamp, zone) -> object:
    return ts.to_pydatetime().replace(tzinfo=UTC).astimezone(zone)


def _check_plan(world, result):
    rules, run = world["rules"], world["run_date"]
    audience, sends = result.audience, world["sends"]
    users = world["users"].set_index("user_id")
    # What chose each send's time: the user's profile basis when send times are on and the
    # user has a profile, 'off' otherwise; holdout rows are not sent and have none.
    profiled = world.get("send_times")
    basis_of = {}
    if profiled is not None and rules.send_time == "personal":
        basis_of = dict(zip(profiled["user_id"], profiled["send_time_basis"], strict=True))
    held = audience["is_holdout"]
    assert audience.loc[held, "send_time_basis"].isna().all()
    expected_basis = [basis_of.get(u, "off") for u in audience.loc[~held, "user_id"]]
    assert audience.loc[~held, "send_time_basis"].tolist() == expected_basis
    # Suppressed or unknown users never appear, nor anyone on a channel they may not get;
    # holdout exactly as the hash says.
    assert audience["user_id"].isin(users.index[users["is_eligible"].eq(True)]).all()
    for channel in ("email", "push"):
        if f"is_{channel}_eligible" in users:
            allowed = users.index[users[f"is_{channel}_eligible"].eq(True)]
            assert audience.loc[audience["channel"] == channel, "user_id"].isin(allowed).all()
    # A mailbox is one person: e-mail for at most one of its accounts in a run.
    mailbox = {u: _mailbox(e) for u, e in zip(users.index, users["email"], strict=True)}
    emailed = audience.loc[audience["channel"] == "email", "user_id"].unique()
    boxes = [mailbox[u] for u in emailed if mailbox[u] is not None]
    assert len(boxes) == len(set(boxes))
    expected_holdout = [
        holdout_score(u, rules.holdout_salt) < rules.holdout_share for u in audience["user_id"]
    ]
    assert audience["is_holdout"].tolist() == expected_holdout
    assert audience.loc[audience["is_holdout"], "scheduled_send_at"].isna().all()
    live = audience[~audience["is_holdout"]]
    assert live["scheduled_send_at"].notna().all()
    assert (live["scheduled_send_at"] >= run).all()
    # Allocation constraints (holdout rows included: they went through allocation).
    pushes = audience[audience["item_id"].notna()]
    assert not pushes.duplicated(["user_id", "item_id"]).any()
    sizes = dict(
        zip(world["campaigns"]["campaign_id"], world["campaigns"]["audience_size"], strict=True)
    )
    per_item = pushes.groupby(["campaign_id", "item_id"]).size()
    assert all(n <= sizes[c] for (c, _), n in per_item.items())

    # Caps in every rolling 7-day window, history + this run, per channel and campaign. The
    # e-mail cap's subject is the mailbox (all its accounts' e-mails, an open by any of them
    # counts for cadence); the push cap's is the account.
    def subject(user_id, channel):
        box = mailbox.get(user_id)
        return f"mailbox {box}" if channel == "email" and box is not None else user_id

    def with_subject(frame):
        return frame.assign(
            subject=[subject(u, c) for u, c in zip(frame["user_id"], frame["channel"], strict=True)]
        )

    live = with_subject(live)
    history = with_subject(sends)
    allowance = cadence_allowance(
        live["subject"].unique(),
        history.assign(user_id=history["subject"]),
        world["events"],
        run,
        rules,
    ).set_index(["user_id", "channel"])["allowance"]
    campaign_caps = dict(
        zip(
            world["campaigns"]["campaign_id"],
            world["campaigns"]["max_sends_per_user_week"],
            strict=True,
        )
    )
    columns = ["user_id", "subject", "campaign_id", "item_id", "channel", "sent_at"]
    everything = pd.concat(
        [
            history[columns].assign(is_history=True),
            live.rename(columns={"scheduled_send_at": "sent_at"})[columns].assign(is_history=False),
        ],
        ignore_index=True,
    )
    week = pd.Timedelta(days=7)
    for row in live.itertuples():
        s = row.scheduled_send_at
        window = everything[(everything["sent_at"] > s - week) & (everything["sent_at"] <= s)]
        on_channel = ((window["subject"] == row.subject) & (window["channel"] == row.channel)).sum()
        assert on_channel <= allowance[(row.subject, row.channel)]
        assert on_channel <= max(rules.cap(row.channel), rules.ceiling(row.channel))
        if not rules.adaptive_cadence:
            assert on_channel <= rules.cap(row.channel)
        cap = campaign_caps[row.campaign_id]
        if not pd.isna(cap):
            mine = window[window["user_id"] == row.user_id]
            assert (mine["campaign_id"] == row.campaign_id).sum() <= cap
        # Spacing against every other send of the user, history or this run, and against the
        # e-mails of the user's mailbox in the history.
        box = subject(row.user_id, "email")
        others = everything[
            (
                (everything["user_id"] == row.user_id)
                | (everything["is_history"] & (everything["subject"] == box))
            )
            & ~((everything["sent_at"] == s) & (everything["campaign_id"] == row.campaign_id))
        ]
        gaps = (others["sent_at"] - s).abs()
        assert (gaps >= pd.Timedelta(hours=rules.min_hours_between_sends)).all()
        # Quiet hours in the user's zone (unknown zones fall back to the default).
        zone = resolve_timezone(users.at[row.user_id, "timezone"], rules.default_timezone)
        assert not in_quiet_hours(_local(s, zone), rules.quiet_hours_start, rules.quiet_hours_end)
    # No item twice to a user within the repeat window (pushes and digest items alike).
    repeat = pd.Timedelta(days=rules.item_repeat_window_days)
    shown = []
    for r in audience.itertuples():
        at = run if pd.isna(r.scheduled_send_at) else r.scheduled_send_at
        item_ids = [r.item_id] if r.item_id is not None else [d["item_id"] for d in r.digest_items]
        shown += [(r.user_id, item_id, at) for item_id in item_ids]
    assert len(shown) == len({(u, i) for u, i, _ in shown})
    for user_id, item_id, at in shown:
        before = sends[(sends["user_id"] == user_id) & (sends["item_id"] == item_id)]
        assert ((before["sent_at"] - at).abs() >= repeat).all()
    # Nothing vanishes: every scored trigger pair is planned or rejected, exactly once.
    triggers = result.trigger_items
    scored = world["item_user_scores"].drop_duplicates(["item_id", "user_id"])
    expected = {
        (c, u, i)
        for c, i in zip(triggers["campaign_id"], triggers["item_id"], strict=True)
        for u in scored.loc[scored["item_id"] == i, "user_id"]
    }
    rejected = result.rejected_candidates
    planned = {(r.campaign_id, r.user_id, r.item_id) for r in pushes.itertuples()}
    dropped = [
        (r.campaign_id, r.user_id, r.item_id)
        for r in rejected.itertuples()
        if r.item_id is not None
    ]
    assert len(dropped) == len(set(dropped)) and planned.isdisjoint(dropped)
    assert planned | set(dropped) == expected


@settings(max_examples=40, deadline=None)
@given(
    eligibility=st.lists(
        st.sampled_from([True, False, None, np.nan, "true", "false"]), min_size=4, max_size=4
    ),
    scores=st.lists(
        st.tuples(
            st.sampled_from(["u1", "u2", "u3", "u4", "ghost", "u5"]),
            st.sampled_from(["i1", "i2", "i3", "i5"]),
            st.floats(0.0, 1.0),
        ),
        min_size=1,
        max_size=30,
    ),
    holdout=st.sampled_from([0.0, 0.5, 1.0]),
)
def test_no_suppressed_or_unknown_user_is_ever_planned(eligibility, scores, holdout):
    world = _world()
    world["users"] = world["users"].iloc[:4].assign(is_eligible=eligibility)
    table = pd.DataFrame(scores, columns=["user_id", "item_id", "score"]).assign(rank=1)
    world |= {"item_user_scores": table, "user_item_scores": table}
    rules = FrequencyRules(
        holdout_share=holdout, email_cap_per_week=5, push_cap_per_week=3, min_hours_between_sends=0
    )
    audience = plan_run(rules=rules, **world).audience
    allowed = {u for u, e in zip(["u1", "u2", "u3", "u4"], eligibility, strict=True) if e is True}
    assert set(audience["user_id"]) <= allowed
    live = audience[~audience["is_holdout"]]
    assert live["scheduled_send_at"].notna().all()
    assert audience.loc[audience["is_holdout"], "scheduled_send_at"].isna().all()


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(world=worlds())
def test_plan_run_respects_every_rule_whatever_the_input(world):
    result = plan_run(**world)
    _check_plan(world, result)
    again = plan_run(**world)
    pd.testing.assert_frame_equal(result.audience, again.audience)
    pd.testing.assert_frame_equal(result.rejected_candidates, again.rejected_candidates)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(world=worlds(), data=st.data())
def test_reading_the_history_from_history_start_plans_the_same_run(world, data):
    """notification_plan reads the send ledger from history_start on (and only the events
    of those sends) and the scores of the trigger items only, the ledger and the user ->
    item scores through functions: the plan must be the one the whole history and every
    score row, given as frames, give. Histories reach 90 days back, a hidden-gem
    campaign (with or without trigger_days) looks back its own way, conversions decide which
    items are gems."""
    run = world["run_date"]
    gem_days = data.draw(st.sampled_from([None, 2, 10, 45]), label="gem trigger_days")
    gems = ("gems", "item_push", "push", "hidden_gems", gem_days, None, 2, 0.0, 1.0, None, None)
    world["campaigns"] = pd.concat(
        [world["campaigns"], _campaigns((*gems, True))], ignore_index=True
    ).astype({"trigger_days": float})
    old = data.draw(
        st.lists(
            st.tuples(
                st.sampled_from(list(world["users"]["user_id"])),
                st.sampled_from(list(world["items"]["item_id"])),
                st.integers(-90 * 24, 0),
                st.sampled_from([None, "open", "conversion"]),
            ),
            max_size=30,
        ),
        label="older sends",
    )
    sends, events = world["sends"], world["events"]
    older = pd.DataFrame(
        {
            "send_id": [f"old{k}" for k in range(len(old))],
            "user_id": [row[0] for row in old],
            "campaign_id": "gems",
            "item_id": [row[1] for row in old],
            "channel": "push",
            "sent_at": [run + pd.Timedelta(hours=row[2]) for row in old],
        }
    )
    answered = [(f"old{k}", row[3], older["sent_at"][k]) for k, row in enumerate(old) if row[3]]
    world["sends"] = pd.concat([sends, older], ignore_index=True)
    world["events"] = pd.concat(
        [events, pd.DataFrame(answered, columns=["send_id", "event_type", "occurred_at"])],
        ignore_index=True,
    )
    whole = plan_run(**world)

    start = history_start(world["campaigns"], world["rules"], run)
    assert (start is None) == (gem_days is None)
    window = dict(world)
    if start is not None:
        window["sends"] = world["sends"][world["sends"]["sent_at"] >= start]
        window["events"] = world["events"][
            world["events"]["send_id"].isin(set(window["sends"]["send_id"]))
        ]
    asked = []

    def trigger_rows(item_ids):
        asked.append(list(item_ids))
        scores = world["item_user_scores"]
        return scores[scores["item_id"].isin(item_ids)]

    window["item_user_scores"] = trigger_rows
    # the ledger and the user -> item scores as the model passes them: read on demand
    window_sends, user_scores = window["sends"], world["user_item_scores"]
    window["sends"] = lambda: window_sends
    window["user_item_scores"] = lambda: user_scores
    windowed = plan_run(**window)
    pd.testing.assert_frame_equal(windowed.audience, whole.audience)
    pd.testing.assert_frame_equal(windowed.rejected_candidates, whole.rejected_candidates)
    pd.testing.assert_frame_equal(windowed.trigger_items, whole.trigger_items)
    assert len(asked) == 1 and set(asked[0]) == set(whole.trigger_items["item_id"])


def test_history_start_is_the_longest_look_back_of_the_rules():
    campaigns = _campaigns(
        ("d", "digest", "email", None, None, None, None, 0.0, 1.0, 3, None, True),
        ("g", "item_push", "push", "hidden_gems", 40, None, 5, 0.0, 1.0, None, None, False),
    )
    rules = {"item_repeat_window_days": 12, "cadence_lookback_days": 9}
    assert history_start(campaigns, rules, RUN) == RUN - 12 * DAY
    # an inactive hidden-gem campaign reads nothing; an active one its trigger_days
    campaigns.loc[1, "is_active"] = True
    assert history_start(campaigns, rules, RUN) == RUN - 40 * DAY
    # spacing and the rolling week count too
    rules = {"item_repeat_window_days": 1, "cadence_lookback_days": 2}
    assert history_start(campaigns.iloc[:1], rules, RUN) == RUN - 7 * DAY
    rules["min_hours_between_sends"] = 24 * 10
    assert history_start(campaigns.iloc[:1], rules, RUN) == RUN - 10 * DAY
    # a hidden-gem campaign without trigger_days counts every send it ever had
    campaigns.loc[1, "trigger_days"] = None
    assert history_start(campaigns, rules, RUN) is None


def test_a_gem_found_in_old_sends_is_found_in_the_history_read_from_history_start():
    items = _items([(i, -60, None) for i in ("gem", "hit", "dud", "meh")])
    sends, events = _gem_history()  # sent 5 days before RUN
    sends["sent_at"] -= 35 * DAY
    events["occurred_at"] -= 35 * DAY
    campaigns = _campaigns(
        ("g", "item_push", "push", "hidden_gems", 45, None, 5, 0.0, 1.0, None, None, True)
    )
    start = history_start(campaigns, {}, RUN)
    assert start == RUN - 45 * DAY
    read = sends[sends["sent_at"] >= start]
    (campaign,) = validate_campaigns(campaigns)
    assert select_trigger_items(campaign, items, read, events, RUN) == ["gem"]


def test_scheduling_across_spring_forward_in_the_user_zone():
    world = _world()
    world["users"] = world["users"].assign(timezone="Europe/Berlin")
    world["run_date"] = pd.Timestamp("2026-03-28 22:00")  # 23:00 CET, quiet
    world["items"] = world["items"].assign(
        available_from=lambda f: f["available_from"] - pd.Timedelta(days=218),
        available_until=pd.NaT,
    )
    world["sends"] = None
    result = plan_run(rules=FrequencyRules(holdout_share=0.0, min_hours_between_sends=0), **world)
    first = result.audience.groupby("user_id")["scheduled_send_at"].min()
    assert (first == pd.Timestamp("2026-03-29 06:00")).all()  # 08:00 CEST, the new offset
    berlin = ZoneInfo("Europe/Berlin")
    local = [_local(t, berlin).hour for t in result.audience["scheduled_send_at"]]
    assert local and all(8 <= h < 21 for h in local)
