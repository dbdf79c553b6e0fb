"""Campaign backtest (docs/evaluation.md): replay weekly runs over past weeks, four policies.

At each week start ``t = start + 7 * w``:

1. The week's trigger items are chosen once, by :func:`select_trigger_items` on the
   *configured* policy's simulated history (hidden gems fall back to the interactions before
   ``t`` while that history has no conversion), and every policy works on the same
   (campaign, item) pairs, so the policies differ only in whom they send to.
2. ``score_fn(interactions[occurred_at < t], t, item_ids)`` returns ``(item_user_scores,
   user_item_scores)`` as of ``t`` (injected: the real two-stage recommender in the dbt
   model, anything in tests). One call per week, shared by all policies. ``item_ids`` is
   the week's trigger items when no digest is replayed (the item -> user lists of those
   items are all that is read; user_item_scores may then be empty), None when digests are
   (every list of both directions).
3. Each policy plans its sends:

   * ``configured``: :func:`plan_run` itself, with the rules, over the item-push campaigns
     (plus digests with ``include_digests``), its send history being the backtest's own
     earlier sends (starting empty) and a ``conversion`` event for each converted one. Rows
     flagged ``is_holdout`` are not sends. Since the backtest knows only conversions (no
     opens or clicks), adaptive cadence sees conversions as the only response.
   * ``carpet_bomb``: the ``cap_push_per_week`` most popular trigger items (distinct users
     who interacted before ``t``; ties by item id) to every eligible user.
   * ``heavy_users``: each trigger item to the campaign's ``audience_size`` most active
     eligible users (interactions before ``t``; ties by user id).
   * ``heavy_users_capped``: the planner itself (caps, spacing, repeats, holdout, its own
     simulated history) with activity in place of the recommender's scores: each trigger
     item proposed to the most active eligible users (``CAPPED_POOL_PER_SLOT`` per audience
     slot, score = interactions / the most active user's), item pushes only, no
     ``min_relevance``; then cut to the configured policy's number of sends that week (the
     highest expected values), so the two compare at equal send volume.
   * ``topk_no_allocation``: each trigger item to its ``audience_size`` best-scored eligible
     users in ``item_user_scores`` (ties by user id); no caps, no min_relevance, no spacing.

   Sizes: the three item baselines send at most one send per (user, item) per week (an item
   triggered by two campaigns goes out once, for the campaign first by id), on the
   channel of that campaign. Every policy reads eligibility as the planner does
   (:func:`~proactive_recs.notifications.candidates.normalise_users`): a baseline sends on a
   channel only to users eligible on it, so suppressed users, users without push consent and
   the second accounts of a mailbox get nothing under any policy.
4. A send converts when its user has a conversion event (``is_conversion``: the var
   proactive_recs_conversion_event_types, default purchase) with the sent item (for a
   digest: any of its items) in ``[t, t + conversion_days)``.

Metrics per policy (rows of ``campaign_backtest``): sends, conversions,
conversions_per_send (0 when no sends), users_reached (distinct users with a send),
p95_sends_per_user_week and max_sends_per_user_week over the (user, week) pairs with at
least one send (the 95th percentile by linear interpolation, numpy's default).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from proactive_recs.contract import CHANNELS
from proactive_recs.data.instants import utc_instant
from proactive_recs.data.interactions import normalise_interactions
from proactive_recs.memory import return_freed_memory
from proactive_recs.notifications.campaign import validate_campaigns
from proactive_recs.notifications.candidates import normalise_users
from proactive_recs.notifications.frequency import FrequencyRules
from proactive_recs.notifications.planner import plan_run
from proactive_recs.notifications.triggers import select_trigger_items

__all__ = [
    "METRICS",
    "POLICIES",
    "BacktestResult",
    "mark_conversions",
    "run_backtest",
    "run_backtest_detailed",
    "summarize_sends",
    "weekly_detail",
]

POLICIES = ("configured", "carpet_bomb", "heavy_users", "heavy_users_capped", "topk_no_allocation")
# heavy_users_capped proposes this many of the most active users per audience slot to the
# planner (the caps and spacing turn some of them down; the rest fill the slot).
CAPPED_POOL_PER_SLOT = 4
METRICS = (
    "sends",
    "conversions",
    "conversions_per_send",
    "users_reached",
    "p95_sends_per_user_week",
    "max_sends_per_user_week",
)
SEND_COLUMNS = [
    "policy",
    "week_start",
    "send_id",
    "user_id",
    "campaign_id",
    "channel",
    "item_id",
    "sent_items",
    "sent_at",
    "converted",
    "converted_at",
]

ScoreFn = Callable[[pd.DataFrame, pd.Timestamp, list | None], tuple[pd.DataFrame, pd.DataFrame]]


@dataclass(frozen=True)
class BacktestResult:
    """``summary`` (policy, metric, value); ``weekly`` per (policy, week_start): sends,
    conversions, conversions_per_send, users_reached, max_sends_per_user; ``sends``: every
    simulated send (``SEND_COLUMNS``; ``sent_items`` is the tuple of items the send shows)."""

    summary: pd.DataFrame
    weekly: pd.DataFrame
    sends: pd.DataFrame


def mark_conversions(
    sends: pd.DataFrame, interactions: pd.DataFrame, start, conversion_days: float
) -> pd.DataFrame:
    """Add ``converted`` and ``converted_at`` to sends of one week starting at ``start``.

    ``sends`` carries user_id and ``sent_items`` (a tuple of item ids); a send converts when
    its user has a conversion event (``is_conversion``; every interaction when the frame
    has no such column) with one of them in ``[start, start + conversion_days)``;
    ``converted_at`` is the first such event.
    """
    start = utc_instant(start)
    end = start + pd.Timedelta(days=conversion_days)
    in_window = (interactions["occurred_at"] >= start) & (interactions["occurred_at"] < end)
    if "is_conversion" in interactions:
        in_window &= interactions["is_conversion"].astype(bool)
    window = interactions[in_window]
    first = window.groupby(["user_id", "item_id"])["occurred_at"].min().rename("hit_at")
    out = sends.copy()
    if out.empty:
        out["converted"] = pd.Series(dtype=bool)
        out["converted_at"] = pd.Series(dtype="datetime64[ns]")
        return out
    pairs = (
        out[["user_id", "sent_items"]]
        .explode("sent_items")
        .rename(columns={"sent_items": "item_id"})
        .reset_index()
    )
    pairs = pairs.merge(first.reset_index(), on=["user_id", "item_id"], how="left")
    hit_at = pairs.groupby("index")["hit_at"].min().reindex(out.index)
    out["converted"] = hit_at.notna().to_numpy()
    out["converted_at"] = hit_at.to_numpy()
    return out


def _week_sends(policy: str, week_start, frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    out["policy"] = policy
    out["week_start"] = week_start
    if "sent_at" not in out:
        out["sent_at"] = week_start
    return out


def _configured_rows(audience: pd.DataFrame, limit: int | None = None) -> pd.DataFrame:
    """The planned sends that go out (holdout left out) as send rows; with ``limit``, only
    that many, the highest expected values first (ties by user and item)."""
    sent = audience[~audience["is_holdout"]]
    if limit is not None:
        sent = sent.sort_values(
            ["expected_value", "user_id", "item_id"],
            ascending=[False, True, True],
            kind="mergesort",
            na_position="last",
        ).head(int(limit))
    items = [
        tuple(d["item_id"] for d in digest) if item is None else (item,)
        for item, digest in zip(sent["item_id"], sent["digest_items"], strict=True)
    ]
    return pd.DataFrame(
        {
            "send_id": sent["send_key"].to_numpy(),
            "user_id": sent["user_id"].to_numpy(),
            "campaign_id": sent["campaign_id"].to_numpy(),
            "channel": sent["channel"].to_numpy(),
            "item_id": sent["item_id"].to_numpy(),
            "sent_items": items,
            "sent_at": sent["scheduled_send_at"].to_numpy(),
        }
    )


def _activity(past: pd.DataFrame, eligible_ids) -> pd.Series:
    """Interactions per eligible user before the week: what "most active" means for both
    heavy-users baselines (only the id column is read: no copy of ``past``)."""
    active_ids = past.loc[past["user_id"].isin(eligible_ids), "user_id"]
    return active_ids.groupby(active_ids).size()


def _activity_scores(past, trigger_pairs, eligible_ids, size_of) -> pd.DataFrame:
    """heavy_users_capped's scores: for each trigger item, the most active eligible users
    (:func:`_activity`; ties by user id), ``CAPPED_POOL_PER_SLOT`` per audience slot, scored
    by their activity over the most active user's (in (0, 1])."""
    columns = ["item_id", "user_id", "rank", "score"]
    activity = _activity(past, eligible_ids)
    if trigger_pairs.empty or activity.empty:
        return pd.DataFrame(columns=columns)
    ranked = (
        activity.rename("n")
        .rename_axis("user_id")
        .reset_index()
        .sort_values(["n", "user_id"], ascending=[False, True])
    )
    pool = int(max(size_of[c] for c in trigger_pairs["campaign_id"].unique()))
    head = ranked.head(CAPPED_POOL_PER_SLOT * pool)
    scores = trigger_pairs[["item_id"]].drop_duplicates().merge(head, how="cross")
    scores["rank"] = scores.groupby("item_id").cumcount() + 1
    scores["score"] = scores["n"] / float(ranked["n"].iloc[0])
    return scores[columns]


def _baseline_rows(pairs: pd.DataFrame) -> pd.DataFrame:
    """(campaign_id, channel, item_id, user_id) rows -> send rows, one per (user, item)."""
    pairs = pairs.sort_values(["user_id", "item_id", "campaign_id"]).drop_duplicates(
        ["user_id", "item_id"]
    )
    return pd.DataFrame(
        {
            "user_id": pairs["user_id"].to_numpy(),
            "campaign_id": pairs["campaign_id"].to_numpy(),
            "channel": pairs["channel"].to_numpy(),
            "item_id": pairs["item_id"].to_numpy(),
            "sent_items": [(i,) for i in pairs["item_id"]],
        }
    )


def _eligible_per_channel(users: pd.DataFrame) -> pd.DataFrame:
    """(user_id, channel) pairs a send may go to, read as the planner reads them."""
    flags = normalise_users(users)
    return pd.concat(
        [
            pd.DataFrame({"user_id": flags.loc[flags[f"is_{c}_eligible"], "user_id"], "channel": c})
            for c in CHANNELS
        ],
        ignore_index=True,
    ).sort_values(["channel", "user_id"], ignore_index=True)


def _top_per_item(triggers: pd.DataFrame, ranked_users: pd.DataFrame, size_of) -> pd.DataFrame:
    """For each (campaign, item) trigger, the first audience_size users of ``ranked_users``
    (columns user_id, channel, order and optionally item_id; lower order first) on the
    campaign's channel."""
    if triggers.empty or ranked_users.empty:
        return pd.DataFrame(columns=["campaign_id", "channel", "item_id", "user_id"])
    if "item_id" in ranked_users:
        joined = triggers.merge(ranked_users, on=["item_id", "channel"])
    else:
        # One ranking for every item: only its head can be chosen, so cut it before the
        # join (triggers x all users is tens of millions of rows on a large shop).
        largest = max((int(size_of[c]) for c in triggers["campaign_id"].unique()), default=0)
        ranked_users = (
            ranked_users.sort_values(["order", "user_id"]).groupby("channel").head(largest)
        )
        joined = triggers.merge(ranked_users, on="channel")
    joined = joined.sort_values(["campaign_id", "item_id", "order", "user_id"])
    position = joined.groupby(["campaign_id", "item_id"]).cumcount()
    return joined[position < joined["campaign_id"].map(size_of)]


def run_backtest_detailed(
    interactions: pd.DataFrame,
    users: pd.DataFrame,
    items: pd.DataFrame,
    campaigns: pd.DataFrame,
    rules: FrequencyRules | dict | None,
    score_fn: ScoreFn,
    start,
    weeks: int,
    conversion_days: float = 7.0,
    cap_push_per_week: int | None = None,
    *,
    targeting: pd.DataFrame | None = None,
    include_digests: bool = False,
) -> BacktestResult:
    """Replay ``weeks`` weekly runs from ``start``; see the module doc for the policies.

    ``cap_push_per_week`` sizes the carpet_bomb baseline (items sent to every eligible user
    per week); None = the rules' ``push_cap_per_week``.
    """
    if not isinstance(rules, FrequencyRules):
        rules = FrequencyRules.from_dict(rules)
    n_blast = rules.push_cap_per_week if cap_push_per_week is None else int(cap_push_per_week)
    # In time order once: each week's earlier rows are then the frame's first rows, a slice
    # sharing its data (a filtered copy was another GB at 20M rows during every week's fit).
    interactions = _in_time_order(normalise_interactions(interactions))
    times = interactions["occurred_at"].to_numpy()
    all_campaigns = [c for c in validate_campaigns(campaigns) if c.is_active]
    kept = [c for c in all_campaigns if include_digests or c.campaign_type == "item_push"]
    with_digests = any(c.campaign_type == "digest" for c in kept)
    pushes = [c for c in kept if c.campaign_type == "item_push"]
    campaign_table = campaigns[
        campaigns["campaign_id"].astype(str).isin({c.campaign_id for c in kept})
    ]
    size_of = {c.campaign_id: c.audience_size for c in pushes}
    channel_of = {c.campaign_id: c.channel for c in pushes}
    eligible = _eligible_per_channel(users)

    history = pd.DataFrame(
        {
            "send_id": [],
            "user_id": [],
            "campaign_id": [],
            "item_id": [],
            "channel": [],
            "sent_at": pd.Series(dtype="datetime64[ns]"),
        },
        dtype=object,
    ).astype({"sent_at": "datetime64[ns]"})
    events = pd.DataFrame(
        {
            "send_id": pd.Series(dtype=object),
            "event_type": pd.Series(dtype=object),
            "occurred_at": pd.Series(dtype="datetime64[ns]"),
        }
    )
    weekly_sends = []
    capped = (history, events)  # heavy_users_capped's own simulated history
    capped_campaigns = campaign_table[campaign_table["campaign_type"] == "item_push"].assign(
        min_relevance=0.0  # its scores are activity shares, not probabilities
    )
    start = utc_instant(start)
    eligible_ids = set(eligible["user_id"])  # on some channel
    for week in range(int(weeks)):
        t = start + pd.Timedelta(days=7 * week)
        # the rows before t, normalised: the week's fit takes them as they are
        past = interactions.iloc[: int(np.searchsorted(times, t.to_datetime64(), side="left"))]
        triggers = {
            c.campaign_id: select_trigger_items(c, items, history, events, t, interactions=past)
            for c in pushes
        }
        if with_digests:
            item_user_scores, user_item_scores = score_fn(past, t, None)
        else:
            # Item pushes read only their trigger items' audiences, and only digests read
            # the user -> item lists (20M rows at 1M users): ask for those items alone.
            wanted = sorted({str(item) for ids in triggers.values() for item in ids})
            item_user_scores, user_item_scores = score_fn(past, t, wanted)
            user_item_scores = user_item_scores.iloc[:0]
        trigger_pairs = pd.DataFrame(
            [(cid, channel_of[cid], item) for cid in sorted(triggers) for item in triggers[cid]],
            columns=["campaign_id", "channel", "item_id"],
        )

        plan = plan_run(
            campaign_table,
            rules,
            users,
            targeting,
            items,
            item_user_scores,
            user_item_scores,
            history,
            events,
            t,
            interactions=past,
            trigger_items=triggers,
        )
        configured = _configured_rows(plan.audience)
        capped_plan = plan_run(
            capped_campaigns,
            rules,
            users,
            targeting,
            items,
            _activity_scores(past, trigger_pairs, eligible_ids, size_of),
            user_item_scores.iloc[:0],
            *capped,
            t,
            interactions=past,
            trigger_items=triggers,
        )
        policies = {
            "configured": configured,
            **_baselines(
                past, trigger_pairs, item_user_scores, eligible, eligible_ids, n_blast, size_of
            ),
            "heavy_users_capped": _configured_rows(capped_plan.audience, limit=len(configured)),
        }
        for policy, rows in policies.items():
            rows = mark_conversions(_week_sends(policy, t, rows), interactions, t, conversion_days)
            weekly_sends.append(rows)
            if policy == "configured":
                history, events = _with_replayed_sends(history, events, rows)
            elif policy == "heavy_users_capped":
                capped = _with_replayed_sends(*capped, rows)
        # This week's frames go before the next week re-trains: at 1M users they hold
        # gigabytes that the next scoring run would otherwise sit on top of. glibc keeps
        # what they held in its heaps (memory.py): the trim hands it back before the fit.
        del past, item_user_scores, user_item_scores, plan, capped_plan, policies, rows
        return_freed_memory()

    sends = (
        pd.concat(weekly_sends, ignore_index=True)
        if weekly_sends
        else pd.DataFrame(columns=SEND_COLUMNS)
    )
    sends = sends.reindex(columns=SEND_COLUMNS)
    sends["converted"] = sends["converted"].astype(bool)
    return BacktestResult(summarize_sends(sends), weekly_detail(sends, start, weeks), sends)


def _in_time_order(interactions: pd.DataFrame) -> pd.DataFrame:
    """The normalised interactions sorted by time (stable: rows at the same instant keep their
    order), numbered 0..n-1; the frame itself when already in that order."""
    times = interactions["occurred_at"].to_numpy()
    if (times[1:] >= times[:-1]).all():
        return interactions
    ordered = interactions.take(np.argsort(times, kind="stable"))
    ordered.index = pd.RangeIndex(len(ordered))
    return ordered


def _baselines(
    past, trigger_pairs, item_user_scores, eligible, eligible_ids, n_blast, size_of
) -> dict:
    """The week's sends under each baseline policy (module doc), as baseline rows:
    carpet_bomb (the most popular trigger items to every eligible user), heavy_users (each
    trigger item to the most active eligible users) and topk_no_allocation (each trigger
    item to its top scored eligible users, no caps)."""
    popularity = past.groupby("item_id")["user_id"].nunique()
    blast_items = (
        trigger_pairs.assign(popularity=trigger_pairs["item_id"].map(popularity).fillna(0))
        .sort_values(["popularity", "item_id", "campaign_id"], ascending=[False, True, True])
        .drop_duplicates("item_id")
        .head(n_blast)
    )
    carpet = blast_items[["campaign_id", "channel", "item_id"]].merge(eligible, on="channel")

    heavy_order = _activity(past, eligible_ids).rename("n").rename_axis("user_id").reset_index()
    heavy_order = heavy_order.assign(order=-heavy_order["n"])[["user_id", "order"]]
    heavy = _top_per_item(trigger_pairs, heavy_order.merge(eligible, on="user_id"), size_of)

    scored = item_user_scores.assign(
        user_id=item_user_scores["user_id"].astype(str),
        item_id=item_user_scores["item_id"].astype(str),
    )
    scored = scored[scored["user_id"].isin(eligible_ids)]
    scored = scored.assign(order=-pd.to_numeric(scored["score"], errors="coerce"))
    scored = scored[["item_id", "user_id", "order"]].merge(eligible, on="user_id")
    topk = _top_per_item(trigger_pairs, scored, size_of)
    return {
        "carpet_bomb": _baseline_rows(carpet),
        "heavy_users": _baseline_rows(heavy),
        "topk_no_allocation": _baseline_rows(topk),
    }


def _with_replayed_sends(history, events, rows):
    """The simulated history after the configured policy's week: what the next runs see
    as sent and converted (the planner only looks at events before its own run time, so
    no leakage)."""
    if not len(rows):
        return history, events
    history = pd.concat([history, rows[history.columns]], ignore_index=True)
    won = rows[rows["converted"]]
    if len(won):
        conversions = pd.DataFrame(
            {
                "send_id": won["send_id"].to_numpy(),
                "event_type": "conversion",
                "occurred_at": won["converted_at"].to_numpy(),
            }
        )
        events = pd.concat([events, conversions], ignore_index=True)
    return history, events


def run_backtest(
    interactions: pd.DataFrame,
    users: pd.DataFrame,
    items: pd.DataFrame,
    campaigns: pd.DataFrame,
    rules: FrequencyRules | dict | None,
    score_fn: ScoreFn,
    start,
    weeks: int,
    conversion_days: float = 7.0,
    cap_push_per_week: int | None = None,
    **options,
) -> pd.DataFrame:
    """The ``campaign_backtest`` frame (policy, metric, value); see
    :func:`run_backtest_detailed` for the per-week detail and every simulated send."""
    return run_backtest_detailed(
        interactions,
        users,
        items,
        campaigns,
        rules,
        score_fn,
        start,
        weeks,
        conversion_days,
        cap_push_per_week,
        **options,
    ).summary


def summarize_sends(sends: pd.DataFrame) -> pd.DataFrame:
    """(policy, metric, value) for every policy in POLICIES and metric in METRICS."""
    rows = []
    for policy in POLICIES:
        own = sends[sends["policy"] == policy]
        per_user_week = own.groupby(["user_id", "week_start"]).size().to_numpy()
        n_sends = len(own)
        n_conv = int(own["converted"].sum())
        values = {
            "sends": float(n_sends),
            "conversions": float(n_conv),
            "conversions_per_send": n_conv / n_sends if n_sends else 0.0,
            "users_reached": float(own["user_id"].nunique()),
            "p95_sends_per_user_week": (
                float(np.percentile(per_user_week, 95)) if len(per_user_week) else 0.0
            ),
            "max_sends_per_user_week": float(per_user_week.max()) if len(per_user_week) else 0.0,
        }
        rows += [(policy, metric, values[metric]) for metric in METRICS]
    return pd.DataFrame(rows, columns=["policy", "metric", "value"])


def weekly_detail(sends: pd.DataFrame, start, weeks: int) -> pd.DataFrame:
    """One row per (policy, week_start), weeks without sends included (zeros)."""
    starts = [utc_instant(start) + pd.Timedelta(days=7 * w) for w in range(int(weeks))]
    grid = pd.MultiIndex.from_product([list(POLICIES), starts], names=["policy", "week_start"])
    grouped = sends.groupby(["policy", "week_start"])
    out = (
        pd.DataFrame(
            {
                "sends": grouped.size(),
                "conversions": grouped["converted"].sum(),
                "users_reached": grouped["user_id"].nunique(),
                "max_sends_per_user": sends.groupby(["policy", "week_start", "user_id"])
                .size()
                .groupby(["policy", "week_start"])
                .max(),
            }
        )
        .reindex(grid)
        .fillna(0)
        .astype(np.int64)
        .reset_index()
    )
    out["conversions_per_send"] = np.where(
        out["sends"] > 0, out["conversions"] / out["sends"].clip(lower=1), 0.0
    )
    return out[
        [
            "policy",
            "week_start",
            "sends",
            "conversions",
            "conversions_per_send",
            "users_reached",
            "max_sends_per_user",
        ]
    ]
