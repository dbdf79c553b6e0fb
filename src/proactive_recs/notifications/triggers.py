"""Which items an item-push campaign is about at a run: new, expiring, listed, or hidden gems
(items that convert well when shown but few people have been shown).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from proactive_recs.data.availability import available_at
from proactive_recs.data.instants import utc_instant, utc_naive
from proactive_recs.notifications.campaign import Campaign
from proactive_recs.notifications.frequency import (
    normalize_sends,
)


def normalise_items(items: pd.DataFrame) -> pd.DataFrame:
    out = items.copy()
    out["item_id"] = out["item_id"].astype(str)
    for column in ("available_from", "available_until"):
        out[column] = (
            utc_naive(out[column]).to_numpy()
            if column in out
            else np.array([np.datetime64("NaT")] * len(out), dtype="datetime64[ns]")
        )
    return out.drop_duplicates("item_id").reset_index(drop=True)


def available_items(items: pd.DataFrame, run_date) -> pd.DataFrame:
    """Items available at the run (:func:`proactive_recs.data.availability.available_at`:
    int_item_context's flag for this run, else the rule on the dates)."""
    items = normalise_items(items)
    return items[available_at(items, run_date)].reset_index(drop=True)


def hidden_gem_stats(
    items: pd.DataFrame,
    sends: pd.DataFrame,
    events: pd.DataFrame,
    run_date,
    *,
    lookback_days: float | None = None,
    interactions: pd.DataFrame | Callable[[], pd.DataFrame] | None = None,
    prior_strength: float = 20.0,
    min_lift: float = 1.5,
    reach_quantile: float = 0.5,
) -> pd.DataFrame:
    """Per available item: exposures, conversions, reach, smoothed rate and ``is_gem``.

    From the send history before the run (within ``lookback_days`` when given): exposures =
    sends of the item, conversions = those with a conversion event before the run, reach =
    distinct users sent the item. When that history has no conversion at all, the
    interactions before the run stand in (``interactions``: a frame or a function returning
    it, called only then; exposure = a (user, item) pair with any event,
    conversion = a pair with a purchase). With neither, no item is a gem.

    ``rate = (conversions + m * base) / (exposures + m)`` with ``m = prior_strength`` and
    ``base`` = the overall conversions per exposure: shrinkage, so that 1 conversion in 1
    send is not a gem. A gem has ``rate >= min_lift * base`` and a reach at most the
    ``reach_quantile`` quantile of the reach of the available items that were exposed at all
    (counting never-exposed items, reach 0, would put the median at 0 in any catalogue where
    most items were never pushed, and then nothing could qualify). Columns: item_id,
    exposures, conversions, reach, rate, source, is_gem.
    """
    run_time = utc_instant(run_date)
    candidates = available_items(items, run_time)[["item_id"]]
    history = normalize_sends(sends)
    # Only sends the tool confirmed: a planned send that may not have gone out exposed nobody.
    history = history[
        history["item_id"].notna() & (history["sent_at"] < run_time) & history["is_confirmed"]
    ]
    if lookback_days is not None:
        history = history[history["sent_at"] >= run_time - pd.Timedelta(days=lookback_days)]
    source = "sends"
    exposures = history[["user_id", "item_id", "send_id"]]
    converted = set()
    if events is not None and len(events):
        ev = events[
            (events["event_type"].astype(str) == "conversion")
            & (utc_naive(events["occurred_at"]).to_numpy() < run_time)
        ]
        converted = set(ev["send_id"].astype(str))
    exposures = exposures.assign(converted=exposures["send_id"].isin(converted))
    if not exposures["converted"].any():
        source = None
        if callable(interactions):
            interactions = interactions()
        if interactions is not None and len(interactions):
            past = interactions[utc_naive(interactions["occurred_at"]).to_numpy() < run_time]
            # a conversion event type (the var proactive_recs_conversion_event_types)
            if "is_conversion" in past:
                converted_pair = past["is_conversion"].fillna(False).astype(bool)
            else:
                converted_pair = past.get("event_type", "purchase") == "purchase"
            past = past.assign(
                user_id=past["user_id"].astype(str),
                item_id=past["item_id"].astype(str),
                converted_pair=converted_pair,
            )
            exposures = (
                past.groupby(["user_id", "item_id"])["converted_pair"]
                .any()
                .rename("converted")
                .reset_index()
            )
            source = "interactions" if exposures["converted"].any() else None
    stats = (
        exposures.groupby("item_id")
        .agg(
            exposures=("converted", "size"),
            conversions=("converted", "sum"),
            reach=("user_id", "nunique"),
        )
        .reset_index()
        if len(exposures)
        else pd.DataFrame(columns=["item_id", "exposures", "conversions", "reach"])
    )
    out = candidates.merge(stats, on="item_id", how="left")
    for column in ("exposures", "conversions", "reach"):
        out[column] = pd.to_numeric(out[column]).fillna(0).astype(np.int64)
    total = exposures["converted"].size if source else 0
    base = exposures["converted"].sum() / total if total else 0.0
    out["rate"] = (out["conversions"] + prior_strength * base) / (out["exposures"] + prior_strength)
    out["source"] = source
    if source is None or base <= 0 or out.empty:
        out["is_gem"] = False
    else:
        reach_limit = out.loc[out["exposures"] > 0, "reach"].quantile(reach_quantile)
        out["is_gem"] = (
            (out["exposures"] > 0)
            & (out["rate"] >= min_lift * base)
            & (out["reach"] <= reach_limit)
        )
    return out.sort_values("item_id").reset_index(drop=True)


def select_trigger_items(
    campaign: Campaign,
    items: pd.DataFrame,
    sends: pd.DataFrame,
    events: pd.DataFrame,
    run_date,
    *,
    interactions: pd.DataFrame | Callable[[], pd.DataFrame] | None = None,
) -> list[str]:
    """The item ids an item-push campaign is about at this run (only items available then).

    * new_items: ``available_from`` within ``trigger_days`` before the run;
    * expiring: ``available_until`` within ``trigger_days`` after the run;
    * item_list: the listed ids, in the listed order;
    * hidden_gems: ``is_gem`` of :func:`hidden_gem_stats` (history window = trigger_days),
      best rate first.

    Other triggers return ids sorted. Digests have no trigger items (empty list).
    """
    if campaign.campaign_type != "item_push":
        return []
    run_time = utc_instant(run_date)
    available = available_items(items, run_time)
    days = pd.Timedelta(days=campaign.trigger_days or 0)
    if campaign.trigger == "new_items":
        keep = available["available_from"].notna() & (
            available["available_from"] >= run_time - days
        )
        return sorted(available.loc[keep, "item_id"])
    if campaign.trigger == "expiring":
        keep = available["available_until"].notna() & (
            available["available_until"] <= run_time + days
        )
        return sorted(available.loc[keep, "item_id"])
    if campaign.trigger == "item_list":
        present = set(available["item_id"])
        return [item for item in campaign.item_list if item in present]
    if campaign.trigger == "hidden_gems":
        stats = hidden_gem_stats(
            items,
            sends,
            events,
            run_time,
            lookback_days=campaign.trigger_days,
            interactions=interactions,
        )
        gems = stats[stats["is_gem"]].sort_values(["rate", "item_id"], ascending=[False, True])
        return list(gems["item_id"])
    raise ValueError(f"campaign {campaign.campaign_id!r}: unknown trigger {campaign.trigger!r}")
