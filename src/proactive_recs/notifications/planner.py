"""The run planner: :func:`plan_run` is the single entry point of a production run (called by
a thin dbt Python model) and of every replayed week of the campaign backtest. It goes

    campaigns (campaign.py) -> trigger items (triggers.py) -> candidate sends, + rejected
    with a reason (candidates.py) -> allowances (frequency.py) -> one allocation over all
    campaigns (allocation.py) -> rank, holdout, schedule -> audience

and nothing is dropped silently: every candidate is either in ``audience`` or in
``rejected_candidates`` with a reason.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from proactive_recs.data.instants import utc_instant
from proactive_recs.notifications.allocation import allocate_greedy, allocation_order
from proactive_recs.notifications.campaign import is_missing, validate_campaigns
from proactive_recs.notifications.candidates import (
    DIGEST_ITEM_FIELDS,
    REJECTED_COLUMNS,
    build_candidates,
    concat_frames,
    empty_frame,
    mailbox_history,
    normalise_users,
    score_rows,
)
from proactive_recs.notifications.frequency import (
    CHANNELS,
    FrequencyRules,
    campaign_allowance,
    channel_allowance,
    is_holdout,
    make_send_key,
    normalize_sends,
    recently_sent_items,
    resolve_timezones,
    schedule_sends_all,
    send_anchors,
)
from proactive_recs.notifications.send_time import SendTimeModel, preferred_send_times
from proactive_recs.notifications.triggers import (
    available_items,
    normalise_items,
    select_trigger_items,
)

# What the planner reads of the users (int_user_context): the run and the backtest read the
# same columns, so a replay obeys the same consent per channel as a production run.
PLANNER_USER_COLUMNS = [
    "user_id",
    "email",
    "timezone",
    "is_eligible",
    "is_email_eligible",
    "is_push_eligible",
]

AUDIENCE_COLUMNS = [
    "send_key",
    "user_id",
    "email",
    "channel",
    "campaign_id",
    "item_id",
    "rank",
    "score",
    "expected_value",
    "scheduled_send_at",
    "send_time_basis",
    "is_holdout",
    "holdout_send_at",
    "digest_items",
]


@dataclass(frozen=True)
class PlanResult:
    """Output of :func:`plan_run`.

    ``audience``: one row per planned send (columns ``AUDIENCE_COLUMNS``).
    ``rejected_candidates``: every candidate not planned, with its reason
    (``REJECTED_COLUMNS``). ``trigger_items``: (campaign_id, item_id) of the item pushes.
    """

    audience: pd.DataFrame
    rejected_candidates: pd.DataFrame
    trigger_items: pd.DataFrame


def _native(value):
    """A JSON-friendly Python value (None for nulls, plain int/float/str)."""
    if is_missing(value):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


def _digest_items(pool, pushed: set, size: int, item_info: Mapping) -> list[dict] | None:
    """The digest's items as JSON-ready dicts: the pool minus items pushed to the user in
    this run, first ``size``; ``item_info`` maps item_id to its native title/url/... values."""
    chosen = [(item, score) for item, score in pool if item not in pushed][:size]
    if not chosen:
        return None
    empty = dict.fromkeys(DIGEST_ITEM_FIELDS)
    return [
        {"item_id": item, "rank": position, "score": float(score), **item_info.get(item, empty)}
        for position, (item, score) in enumerate(chosen, start=1)
    ]


def _empty_audience() -> pd.DataFrame:
    out = empty_frame(AUDIENCE_COLUMNS)
    return out.astype(
        {
            "rank": np.int64,
            "score": float,
            "expected_value": float,
            "scheduled_send_at": "datetime64[ns]",
            "is_holdout": bool,
            "holdout_send_at": "datetime64[ns]",
        }
    )


def history_start(campaigns: pd.DataFrame, rules: FrequencyRules | Mapping | None, run_date):
    """The earliest ``sent_at`` that any rule of this run reads, or None when a rule reads the
    whole send history; a caller may read the sends from then on (and only the events of
    those sends) and :func:`plan_run` plans exactly the same run.

    The rules count back from the run time or from a user's anchor, which is never earlier:
    caps 7 days, spacing ``min_hours_between_sends``, item repeats
    ``item_repeat_window_days``, adaptive cadence ``cadence_lookback_days``, and a
    hidden-gem campaign its ``trigger_days`` (none: every send it has ever had). Sends
    scheduled after the run time are always read. Of a long send history this leaves out
    most (and the events of those sends) before anything is read.
    """
    if not isinstance(rules, FrequencyRules):
        rules = FrequencyRules.from_dict(rules)
    days = [7.0, rules.item_repeat_window_days, rules.cadence_lookback_days]
    days.append(rules.min_hours_between_sends / 24.0)
    for campaign in validate_campaigns(campaigns):
        if campaign.is_active and campaign.trigger == "hidden_gems":
            if campaign.trigger_days is None:
                return None
            days.append(float(campaign.trigger_days))
    return utc_instant(run_date) - pd.Timedelta(days=max(days))


def plan_run(
    campaigns: pd.DataFrame,
    rules: FrequencyRules | Mapping | None,
    users: pd.DataFrame,
    targeting: pd.DataFrame | None,
    items: pd.DataFrame,
    item_user_scores: pd.DataFrame | Callable[[list[str]], pd.DataFrame],
    user_item_scores: pd.DataFrame | Callable[[], pd.DataFrame],
    sends: pd.DataFrame | Callable[[], pd.DataFrame] | None,
    events: pd.DataFrame | None,
    run_date,
    *,
    interactions: pd.DataFrame | Callable[[], pd.DataFrame] | None = None,
    trigger_items: Mapping[str, Sequence[str]] | None = None,
    send_times: pd.DataFrame | None = None,
) -> PlanResult:
    """Plan one run: who gets what, when, over all active campaigns at once.

    ``rules`` may be a :class:`FrequencyRules` or a dict of dbt vars (None = defaults).
    ``item_user_scores`` may be a function of the run's trigger item ids returning their rows
    (a warehouse then reads only those of the table's every-item top-K); ``user_item_scores``
    and ``sends`` may be functions returning the frame: the raw rows are then let go as soon
    as they are normalised (at a million users each is a GB that a caller's reference would
    keep alive through the whole plan).
    ``interactions`` (optional) feed the hidden-gem fallback when the send history has no
    conversions (a frame, or a function returning it: then it is read only in that case);
    ``trigger_items`` (optional, campaign_id -> item ids) overrides
    :func:`select_trigger_items`, e.g. to hold them fixed across backtest policies.
    ``send_times`` (optional; user_id, send_time_basis, hour_profile and window_hours as the
    model user_send_times holds them, notifications/send_time.py): with the rule ``send_time``
    'personal', each user's first send waits for the hour their profile likes best (the
    profile's mass within the fit's ``window_hours`` of it) within
    ``send_time_max_delay_hours``; without it, or with 'off', sends go at the earliest allowed
    moment. ``send_time_basis`` in the audience says which.

    Suppressed users (``is_eligible`` false or null) and ids absent from ``users`` never
    reach ``audience``. Holdout users are allocated like everyone else and come out with
    ``is_holdout`` true and a null ``scheduled_send_at``; ``holdout_send_at`` says when their
    send would have gone out (the same schedule, never sent). ``rank`` is 1-based within a
    user's sends of the run, by expected value; ``scheduled_send_at`` is naive UTC.
    Identical inputs give identical frames (no randomness, deterministic tie-breaks).
    """
    if not isinstance(rules, FrequencyRules):
        rules = FrequencyRules.from_dict(rules)
    if callable(interactions):  # read at most once, however many hidden-gem campaigns
        interactions = functools.cache(interactions)
    run_time = utc_instant(run_date)
    active = [c for c in validate_campaigns(campaigns) if c.is_active]
    users = normalise_users(users)
    history = mailbox_history(normalize_sends(sends() if callable(sends) else sends), users)
    del sends
    if callable(user_item_scores):
        user_item_scores = score_rows(user_item_scores())
    item_table = normalise_items(items)
    available_ids = set(available_items(item_table, run_time)["item_id"])
    if trigger_items is None:
        trigger_items = {
            c.campaign_id: select_trigger_items(
                c, item_table, history, events, run_time, interactions=interactions
            )
            for c in active
            if c.campaign_type == "item_push"
        }
    trigger_items = {
        cid: [i for i in map(str, ids) if i in available_ids] for cid, ids in trigger_items.items()
    }
    trigger_frame = pd.DataFrame(
        [(cid, item) for cid in sorted(trigger_items) for item in trigger_items[cid]],
        columns=["campaign_id", "item_id"],
        dtype=object,
    )
    if callable(item_user_scores):
        item_user_scores = item_user_scores(
            sorted({i for ids in trigger_items.values() for i in ids})
        )
    recent = recently_sent_items(history, run_time, rules)
    candidates, rejected = build_candidates(
        active,
        trigger_items,
        users,
        targeting,
        available_ids,
        item_user_scores,
        user_item_scores,
        recent,
    )
    if candidates.empty:
        return PlanResult(_empty_audience(), _sort_rejected(rejected), trigger_frame)

    candidates, anchors = _with_allowances(candidates, users, history, events, run_time, rules)
    allocation = allocate_greedy(candidates)
    lost = candidates[~allocation.selected]
    chosen = candidates[allocation.selected].copy()
    chosen, empty_digests = _with_digest_items(chosen, item_table, active)
    chosen, not_eligible = _eligible_only(chosen, users)
    rejected = concat_frames(
        [
            rejected,
            _rejected_from_candidates(lost, allocation.reason[~allocation.selected]),
            _rejected_from_candidates(empty_digests, "duplicate_item"),
            _rejected_from_candidates(not_eligible, "suppressed"),
        ]
    )
    audience = _finish_audience(chosen, users, anchors, run_time, rules, send_times)
    return PlanResult(audience, _sort_rejected(rejected), trigger_frame)


def _with_allowances(candidates, users, history, events, run_time, rules):
    """The candidates with what each user may still be sent on the channel and by the
    campaign, counted back from the user's anchor (frequency.py); and the anchors."""
    who = users[users["user_id"].isin(set(candidates["user_id"]))]
    anchors = send_anchors(who, history, run_time, rules)
    by_channel = channel_allowance(anchors, history, events, run_time, rules)
    candidates = candidates.merge(
        by_channel[["user_id", "channel", "remaining"]].rename(
            columns={"remaining": "channel_remaining"}
        ),
        on=["user_id", "channel"],
        how="left",
    )
    by_campaign = campaign_allowance(
        candidates[["user_id", "campaign_id", "campaign_cap"]].rename(
            columns={"campaign_cap": "cap"}
        ),
        anchors,
        history,
    )
    candidates = candidates.merge(
        by_campaign[["user_id", "campaign_id", "remaining"]].rename(
            columns={"remaining": "campaign_remaining"}
        ),
        on=["user_id", "campaign_id"],
        how="left",
    )
    return candidates, anchors


def _with_digest_items(chosen: pd.DataFrame, item_table: pd.DataFrame, active) -> tuple:
    """Each chosen digest's items, and the digests left empty.

    A digest must not repeat an item pushed to the same user in this run: such an item is
    swapped for the next of its pool (the digest's score stays the one the allocation saw);
    a digest with no item left is not sent (rejected as duplicate_item)."""
    # a dict, not the Series: Series.get per digest was half of this step at 40k digests
    pushed = chosen[chosen["item_id"].notna()].groupby("user_id")["item_id"].agg(set).to_dict()
    # item_id -> its digest fields, read column by column (a dict per row through
    # DataFrame.to_dict was most of this step's time at 20k items); a field the items
    # table lacks is None
    fields = [
        item_table[name].tolist() if name in item_table else [None] * len(item_table)
        for name in DIGEST_ITEM_FIELDS
    ]
    info = {
        item: {name: _native(value) for name, value in zip(DIGEST_ITEM_FIELDS, values, strict=True)}
        for item, *values in zip(item_table["item_id"], *fields, strict=True)
    }
    size_of = {c.campaign_id: c.items_per_digest for c in active}
    chosen["digest_items"] = [
        _digest_items(pool, pushed.get(user, set()), size_of[cid], info)
        if kind == "digest"
        else None
        for pool, user, cid, kind in zip(
            chosen["digest_pool"],
            chosen["user_id"],
            chosen["campaign_id"],
            chosen["campaign_type"],
            strict=True,
        )
    ]
    empty = (chosen["campaign_type"] == "digest") & chosen["digest_items"].isna()
    return chosen[~empty], chosen[empty]


def _eligible_only(chosen: pd.DataFrame, users: pd.DataFrame) -> tuple:
    """The chosen sends whose user is eligible on the send's channel, and the others.

    The final safety check reads the same flags as candidate selection did
    (int_user_eligibility's is_<channel>_eligible): whatever happened in between, nobody
    ineligible on a channel is sent on it."""
    eligible = pd.Series(False, index=chosen.index)
    for channel in CHANNELS:
        allowed = set(users.loc[users[f"is_{channel}_eligible"], "user_id"])
        on_channel = chosen["channel"] == channel
        eligible |= on_channel & chosen["user_id"].isin(allowed)
    return chosen[eligible], chosen[~eligible]


def _rejected_from_candidates(frame: pd.DataFrame, reasons) -> pd.DataFrame:
    out = frame[["campaign_id", "channel", "user_id", "item_id", "score", "expected_value"]].copy()
    # one reason for every row (a str), or one per row
    out["reason"] = reasons if isinstance(reasons, str) else np.asarray(reasons, dtype=object)
    return out[REJECTED_COLUMNS]


def _sort_rejected(rejected: pd.DataFrame) -> pd.DataFrame:
    out = rejected.copy()
    out["score"] = out["score"].astype(float)
    out["expected_value"] = out["expected_value"].astype(float)
    out = out.sort_values(
        ["campaign_id", "user_id", "item_id", "reason"], na_position="first", kind="mergesort"
    )
    return out.reset_index(drop=True)[REJECTED_COLUMNS]


def _send_profiles(send_times: pd.DataFrame | None, rules: FrequencyRules) -> tuple[dict, int]:
    """user_id -> (basis, profile) for personal send times (empty when they are off), and
    the window the profiles are read with: the one their fit chose (``window_hours``; the
    model's default for a table without the column)."""
    window = SendTimeModel().window_hours
    if send_times is None or rules.send_time == "off" or send_times.empty:
        return {}, window
    frame = send_times.assign(user_id=send_times["user_id"].astype(str))
    if "window_hours" in frame:
        windows = sorted({int(w) for w in frame["window_hours"].dropna()})
        if len(windows) > 1:
            raise ValueError(
                f"user_send_times.window_hours holds several windows {windows}: one fit "
                "chooses one for every user"
            )
        window = windows[0] if windows else window
    # a warehouse array may arrive as JSON text (Snowflake's ARRAY through Snowpark)
    profiles = [json.loads(p) if isinstance(p, str) else p for p in frame["hour_profile"]]
    by_user = dict(
        zip(frame["user_id"], zip(frame["send_time_basis"], profiles, strict=True), strict=True)
    )
    return by_user, window


def _finish_audience(
    chosen: pd.DataFrame,
    users: pd.DataFrame,
    anchors: pd.Series,
    run_time: pd.Timestamp,
    rules: FrequencyRules,
    send_times: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Rank per user, holdout flag, schedule (at the user's hour when send times are on),
    send_key, email: the audience frame."""
    if chosen.empty:
        return _empty_audience()
    chosen = chosen.iloc[allocation_order(chosen)].reset_index(drop=True)
    chosen["rank"] = chosen.groupby("user_id", sort=False).cumcount().astype(np.int64) + 1
    chosen = chosen.sort_values(["user_id", "rank"], kind="mergesort").reset_index(drop=True)
    user_info = users.set_index("user_id")
    who = pd.unique(chosen["user_id"])
    holdout = dict(zip(who, is_holdout(who, rules), strict=True))
    chosen["is_holdout"] = chosen["user_id"].map(holdout).astype(bool)
    # Rows are sorted by user then rank: each user's rows are one block, scheduled rank after
    # rank for all users at once (frequency.schedule_sends_all). Holdout
    # rows are scheduled the same way but not sent: their moment is kept apart
    # (holdout_send_at), so that the send ledger counts them against the holdout's caps
    # where a send would have fallen, and the holdout is planned as often as everyone else.
    row_users = chosen["user_id"].to_numpy()
    cuts = np.flatnonzero(row_users[1:] != row_users[:-1]) + 1
    # one block per user, never empty: cuts are where the user id changes
    block_starts = np.r_[0, cuts]
    block_sizes = np.diff(np.r_[block_starts, len(chosen)])
    block_users = pd.Index(row_users[block_starts])
    zones = resolve_timezones(user_info["timezone"].reindex(block_users), rules.default_timezone)
    firsts = pd.DatetimeIndex(anchors.reindex(block_users)).as_unit("ns").to_numpy().copy()
    block_basis = np.full(len(block_users), "off", dtype=object)
    # the first send of each user with a profile waits for their best allowed hour
    profiles, window_hours = _send_profiles(send_times, rules)
    with_profile = np.flatnonzero(block_users.isin(list(profiles)))
    if with_profile.size:
        firsts[with_profile] = preferred_send_times(
            firsts[with_profile],
            run_time + pd.Timedelta(hours=rules.send_time_max_delay_hours),
            list(zones[with_profile]),
            [profiles[user][1] for user in block_users[with_profile]],
            rules,
            window_hours,
        )
        block_basis[with_profile] = [profiles[user][0] for user in block_users[with_profile]]
    basis = np.repeat(block_basis, block_sizes)
    scheduled = schedule_sends_all(firsts, block_sizes, zones, rules)
    held = chosen["is_holdout"].to_numpy()
    chosen["scheduled_send_at"] = np.where(held, np.datetime64("NaT"), scheduled)
    chosen["holdout_send_at"] = np.where(held, scheduled, np.datetime64("NaT"))
    # holdout rows are not sent: no schedule and no basis
    chosen["send_time_basis"] = np.where(held, None, basis)
    chosen["email"] = chosen["user_id"].map(user_info["email"]).map(_native)
    chosen["send_key"] = [
        make_send_key(run_time, c, u, i)
        for c, u, i in zip(chosen["campaign_id"], chosen["user_id"], chosen["item_id"], strict=True)
    ]
    chosen["item_id"] = chosen["item_id"].map(_native).astype(object)
    return chosen[AUDIENCE_COLUMNS].astype(
        {"rank": np.int64, "score": float, "expected_value": float, "is_holdout": bool}
    )
