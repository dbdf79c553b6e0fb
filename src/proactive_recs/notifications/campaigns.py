"""Campaigns: definitions, trigger items, candidate sends, and the run planner.

:func:`plan_run` is the single entry point of a production run (called by a thin dbt
Python model) and of every replayed week of the campaign backtest. It goes

    campaigns -> trigger items -> candidate sends (+ rejected, with a reason)
              -> allowances (frequency.py) -> one allocation over all campaigns
              -> rank, holdout, schedule -> audience

and nothing is dropped silently: every candidate is either in ``audience`` or in
``rejected_candidates`` with a reason.

Candidate definitions
---------------------
* **item_push**: for every trigger item (:func:`select_trigger_items`), each user scored for
  it in ``item_user_scores``. Value ``score x boost`` must reach ``min_relevance``; the
  audience size is *not* cut here but in the allocation, so that when a top user is capped
  the slot goes to the next best one.
* **digest**: one candidate per user scored in ``user_item_scores``, holding the user's
  qualifying items (available at the run, not sent to the user within the item-repeat
  window, ``score x boost >= min_relevance``) best first. Its score is the probability that
  at least one of the top ``items_per_digest`` items gets an interaction,
  ``1 - prod(1 - clip(score_i, 0, 1))`` assuming independence: it is on the same [0, 1]
  scale as an item push's score, so one allocation can compare a digest with a push, and
  unlike a sum it does not grow without bound with the digest length.

Expected value of a candidate = score x boost x priority.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from proactive_recs.data.availability import available_at
from proactive_recs.data.instants import utc_instant, utc_naive
from proactive_recs.notifications.allocation import allocate_greedy, allocation_order
from proactive_recs.notifications.frequency import (
    CHANNELS,
    FrequencyRules,
    campaign_allowance,
    channel_allowance,
    is_holdout,
    make_send_key,
    normalize_sends,
    recently_sent_items,
    resolve_timezone,
    schedule_sends,
    send_anchors,
)

__all__ = [
    "AUDIENCE_COLUMNS",
    "CAMPAIGN_TYPES",
    "REJECTED_COLUMNS",
    "TRIGGERS",
    "Campaign",
    "PlanResult",
    "available_items",
    "build_candidates",
    "digest_candidates",
    "hidden_gem_stats",
    "item_push_candidates",
    "plan_run",
    "select_trigger_items",
    "validate_campaigns",
]

CAMPAIGN_TYPES = ("digest", "item_push")
TRIGGERS = ("new_items", "hidden_gems", "expiring", "item_list")
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
    "is_holdout",
    "digest_items",
]
REJECTED_COLUMNS = [
    "campaign_id",
    "channel",
    "user_id",
    "item_id",
    "score",
    "expected_value",
    "reason",
]
CANDIDATE_COLUMNS = [
    "campaign_id",
    "campaign_type",
    "channel",
    "user_id",
    "item_id",
    "score",
    "boost",
    "expected_value",
    "audience_size",
    "campaign_cap",
    "digest_pool",
]
DIGEST_ITEM_FIELDS = ("title", "url", "price", "image_url")


# --------------------------------------------------------------------------- campaigns


@dataclass(frozen=True)
class Campaign:
    """One validated row of the campaigns table (see :func:`validate_campaigns`)."""

    campaign_id: str
    campaign_type: str
    channel: str
    trigger: str | None = None
    trigger_days: float | None = None
    item_list: tuple[str, ...] = ()
    audience_size: int | None = None
    min_relevance: float = 0.0
    priority: float = 1.0
    items_per_digest: int | None = None
    max_sends_per_user_week: int | None = None
    is_active: bool = True


def _missing(value) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _number(row, column, campaign_id, *, required, integer=False, minimum=None, default=None):
    value = row.get(column)
    if _missing(value):
        if required:
            raise ValueError(f"campaign {campaign_id!r}: column {column} is required")
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"campaign {campaign_id!r}: column {column} is not a number: {value!r}"
        ) from None
    if integer:
        if number != int(number):
            raise ValueError(f"campaign {campaign_id!r}: column {column} must be an integer")
        number = int(number)
    if minimum is not None and number < minimum:
        raise ValueError(f"campaign {campaign_id!r}: column {column} must be >= {minimum}")
    return number


def _boolean(value, column, campaign_id) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    text = str(value).strip().lower()
    # the words macro parse_boolean reads (stg_campaigns)
    if text in ("true", "t", "yes", "y", "1"):
        return True
    if text in ("false", "f", "no", "n", "0"):
        return False
    raise ValueError(f"campaign {campaign_id!r}: column {column} is not a boolean: {value!r}")


def validate_campaigns(campaigns: pd.DataFrame) -> list[Campaign]:
    """Parse and check the campaigns table; raise ValueError naming campaign and column.

    Required: campaign_id (unique), campaign_type in ('digest', 'item_push'), channel in
    ('email', 'push'); item pushes: trigger in TRIGGERS and audience_size >= 1, plus
    trigger_days >= 0 for new_items / expiring and a non-empty item_list for item_list;
    digests: items_per_digest >= 1 and no trigger. Optional (null -> default):
    min_relevance 0, priority 1, max_sends_per_user_week none (no campaign cap),
    trigger_days for hidden_gems none (all history), is_active True only when the column is
    absent (a null is_active raises: sending or not is not something to guess).
    Returns every campaign, active or not, sorted by campaign_id.
    """
    if "campaign_id" not in campaigns:
        raise ValueError("campaigns: column campaign_id is required")
    if "campaign_problem" in campaigns:
        # stg_campaigns has judged every row (the rules' home in a dbt run): use its verdict
        bad = campaigns[campaigns["campaign_problem"].notna()]
        if len(bad):
            row = bad.iloc[0]
            raise ValueError(
                f"campaign {row['campaign_id']!r}: {row['campaign_problem']} (stg_campaigns)"
            )
    out, seen = [], set()
    for position, row in enumerate(campaigns.to_dict("records")):
        cid = row.get("campaign_id")
        if _missing(cid):
            raise ValueError(f"campaigns row {position}: column campaign_id is required")
        cid = str(cid).strip()
        if cid in seen:
            raise ValueError(f"campaign {cid!r}: column campaign_id is duplicated")
        seen.add(cid)
        kind = row.get("campaign_type")
        kind = None if _missing(kind) else str(kind).strip().lower()
        if kind not in CAMPAIGN_TYPES:
            raise ValueError(
                f"campaign {cid!r}: column campaign_type must be one of "
                f"{CAMPAIGN_TYPES}, got {row.get('campaign_type')!r}"
            )
        channel = row.get("channel")
        channel = None if _missing(channel) else str(channel).strip().lower()
        if channel not in CHANNELS:
            raise ValueError(
                f"campaign {cid!r}: column channel must be one of {CHANNELS}, "
                f"got {row.get('channel')!r}"
            )
        trigger = row.get("trigger")
        trigger = None if _missing(trigger) else str(trigger).strip().lower()
        fields = {"campaign_id": cid, "campaign_type": kind, "channel": channel}
        if kind == "item_push":
            if trigger not in TRIGGERS:
                raise ValueError(
                    f"campaign {cid!r}: column trigger must be one of {TRIGGERS} "
                    f"for an item_push, got {row.get('trigger')!r}"
                )
            fields["trigger"] = trigger
            fields["trigger_days"] = _number(
                row, "trigger_days", cid, minimum=0, required=trigger in ("new_items", "expiring")
            )
            fields["audience_size"] = _number(
                row, "audience_size", cid, required=True, integer=True, minimum=1
            )
            if trigger == "item_list":
                raw = row.get("item_list")
                listed = (
                    ()
                    if _missing(raw)
                    else tuple(dict.fromkeys(p.strip() for p in str(raw).split(",") if p.strip()))
                )
                if not listed:
                    raise ValueError(
                        f"campaign {cid!r}: column item_list is required for the item_list trigger"
                    )
                fields["item_list"] = listed
        else:
            if trigger is not None:
                raise ValueError(f"campaign {cid!r}: column trigger must be null for a digest")
            fields["items_per_digest"] = _number(
                row, "items_per_digest", cid, required=True, integer=True, minimum=1
            )
        fields["min_relevance"] = _number(row, "min_relevance", cid, required=False, default=0.0)
        fields["priority"] = _number(row, "priority", cid, required=False, minimum=0, default=1.0)
        fields["max_sends_per_user_week"] = _number(
            row, "max_sends_per_user_week", cid, required=False, integer=True, minimum=0
        )
        if "is_active" in row:
            if _missing(row["is_active"]):
                raise ValueError(f"campaign {cid!r}: column is_active is required")
            fields["is_active"] = _boolean(row["is_active"], "is_active", cid)
        out.append(Campaign(**fields))
    return sorted(out, key=lambda c: c.campaign_id)


# --------------------------------------------------------------------------- trigger items


def _items(items: pd.DataFrame) -> pd.DataFrame:
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
    items = _items(items)
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


# --------------------------------------------------------------------------- candidates


def _is_true(values: pd.Series) -> pd.Series:
    """Only a boolean true is true: false, null, text or numbers are not."""
    return values.map(lambda v: isinstance(v, (bool, np.bool_)) and bool(v)).astype(bool)


def _users(users: pd.DataFrame) -> pd.DataFrame:
    """One row per user id: email, timezone, is_eligible and eligibility per channel.

    ``is_<channel>_eligible`` (from ``int_user_eligibility``: consent per channel, one
    account per mailbox for e-mail) default to ``is_eligible`` when absent; a send needs both.
    Only a boolean true is eligible: false, null, text or numbers all count as suppressed,
    and a user id listed twice is eligible only if every row says so. When in doubt, don't
    send.
    """
    out = users.copy()
    out["user_id"] = out["user_id"].astype(str)
    for column in ("email", "timezone"):
        if column not in out:
            out[column] = None
    eligible = out["is_eligible"] if "is_eligible" in out else pd.Series(False, index=out.index)
    out["is_eligible"] = _is_true(eligible)
    per_channel = {}
    for channel in CHANNELS:
        column = f"is_{channel}_eligible"
        out[column] = out["is_eligible"] & (_is_true(out[column]) if column in out else True)
        per_channel[column] = (column, "all")
    return (
        out.groupby("user_id", sort=True)
        .agg(
            email=("email", "first"),
            timezone=("timezone", "first"),
            is_eligible=("is_eligible", "all"),
            **per_channel,
        )
        .reset_index()
    )


def mailbox_history(history: pd.DataFrame, users: pd.DataFrame) -> pd.DataFrame:
    """The send history with every e-mail also counted for the other accounts of its mailbox.

    A mailbox is one person: accounts sharing an address (trimmed, lower-cased) share e-mail
    caps, spacing and the item-repeat rule. Each e-mail send to one account is copied to the
    others, so every per-user rule also holds per mailbox.
    """
    if history.empty or "email" not in users:
        return history
    address = users["email"].map(lambda v: v.strip().lower() if isinstance(v, str) else None)
    accounts = pd.DataFrame({"user_id": users["user_id"], "mailbox": address}).dropna()
    shared = accounts[accounts["mailbox"].duplicated(keep=False)]
    if shared.empty:
        return history
    emails = history[history["channel"] == "email"].merge(shared, on="user_id")
    copies = emails.rename(columns={"user_id": "sent_to"}).merge(shared, on="mailbox")
    copies = copies[copies["user_id"] != copies["sent_to"]]
    return pd.concat(
        [history, copies.drop(columns=["sent_to", "mailbox"])[history.columns]], ignore_index=True
    )


def _targeting(targeting: pd.DataFrame | None, campaign_id: str) -> pd.DataFrame:
    """(user_id, passes_filter, boost) of one campaign; null filter = fails, boost >= 0.

    The campaign column may be called ``campaign_id`` or ``target`` (as in the
    ``user_targeting`` model, whose other target, 'scores', then matches no campaign).
    """
    if targeting is not None and "campaign_id" not in targeting and "target" in targeting:
        targeting = targeting.rename(columns={"target": "campaign_id"})
    if targeting is None or len(targeting) == 0:
        return pd.DataFrame(
            {
                "user_id": pd.Series(dtype=object),
                "passes_filter": pd.Series(dtype=bool),
                "boost": pd.Series(dtype=float),
            }
        )
    rows = targeting[targeting["campaign_id"].astype(str) == campaign_id]
    passes = rows["passes_filter"] if "passes_filter" in rows else True
    boost = rows["boost"] if "boost" in rows else 1.0
    out = pd.DataFrame(
        {
            "user_id": rows["user_id"].astype(str),
            "passes_filter": pd.Series(passes, index=rows.index).eq(True),
            "boost": pd.to_numeric(pd.Series(boost, index=rows.index), errors="coerce")
            .fillna(1.0)
            .clip(lower=0.0),
        }
    )
    return out.drop_duplicates("user_id")


def _scores(scores: pd.DataFrame) -> pd.DataFrame:
    """Scores with string ids, float score, one row per (user, item) (the best one)."""
    if scores is None or len(scores) == 0:
        return pd.DataFrame(
            {
                "user_id": pd.Series(dtype=object),
                "item_id": pd.Series(dtype=object),
                "rank": pd.Series(dtype=float),
                "score": pd.Series(dtype=float),
            }
        )
    out = pd.DataFrame(
        {
            "user_id": scores["user_id"].astype(str),
            "item_id": scores["item_id"].astype(str),
            "rank": pd.to_numeric(scores["rank"], errors="coerce") if "rank" in scores else np.nan,
            "score": pd.to_numeric(scores["score"], errors="coerce"),
        }
    )
    out = out.sort_values(
        ["user_id", "item_id", "score"], ascending=[True, True, False], na_position="last"
    )
    return out.drop_duplicates(["user_id", "item_id"]).reset_index(drop=True)


def _with_user_context(
    frame: pd.DataFrame, campaign: Campaign, users: pd.DataFrame, targeting: pd.DataFrame | None
) -> pd.DataFrame:
    """Join users and the campaign's targeting; add the user-level rejection reason."""
    out = frame.merge(users, on="user_id", how="left", indicator="_user")
    out = out.merge(_targeting(targeting, campaign.campaign_id), on="user_id", how="left")
    # No targeting row = passes with boost 1 (the brief's contract for missing rows).
    out["passes_filter"] = ~out["passes_filter"].eq(False)
    out["boost"] = pd.to_numeric(out["boost"]).fillna(1.0).astype(float)
    known = (out.pop("_user") == "both").to_numpy()
    # per channel when the users frame says so (plan_run's _users always does)
    per_channel = f"is_{campaign.channel}_eligible"
    eligible = out["is_eligible"].eq(True).to_numpy()
    if per_channel in out:
        eligible &= out[per_channel].eq(True).to_numpy()
    # Only e-mail needs an address in the users table; push tokens live in the push tool.
    email = out["email"]
    missing_email = (
        (email.isna() | email.astype(str).str.strip().eq("")).to_numpy(bool)
        if campaign.channel == "email"
        else np.zeros(len(out), bool)
    )
    out["user_reason"] = _first_reason(
        [~known, ~eligible, missing_email, ~out["passes_filter"].to_numpy(bool)],
        ["unknown_user", "suppressed", "no_email", "filtered_out"],
    )
    return out


def _first_reason(conditions, reasons) -> np.ndarray:
    """Object array: the reason of the first true condition per row, else None."""
    out = np.full(len(conditions[0]) if conditions else 0, None, dtype=object)
    for condition, reason in zip(reversed(conditions), reversed(reasons), strict=True):
        out[np.asarray(condition, dtype=bool)] = reason
    return out


def _rejected(frame: pd.DataFrame, campaign: Campaign, reason) -> pd.DataFrame:
    out = pd.DataFrame(
        {
            "campaign_id": campaign.campaign_id,
            "channel": campaign.channel,
            "user_id": frame["user_id"].to_numpy(),
            "item_id": frame["item_id"].to_numpy() if "item_id" in frame else None,
            "score": frame["score"].to_numpy(float),
            "expected_value": frame["expected_value"].to_numpy(float),
            "reason": reason,
        },
        index=frame.index,
    )
    return out[REJECTED_COLUMNS]


def _empty(columns) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})


def item_push_candidates(
    campaign: Campaign,
    trigger_items: Sequence[str],
    item_user_scores: pd.DataFrame,
    users: pd.DataFrame,
    targeting: pd.DataFrame | None,
    recent_pairs: pd.DataFrame,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Candidate sends of one item push and the scored pairs it rejects.

    Every (trigger item, user) score row is a candidate or a rejection with the first
    reason that applies: unknown_user, suppressed, no_email (email campaigns), filtered_out,
    item_repeat, below_min_relevance (``score x boost < min_relevance``, or no score).
    ``users`` and ``recent_pairs`` as prepared by :func:`plan_run`.
    """
    if item_user_scores is None or len(item_user_scores) == 0:
        return _empty(CANDIDATE_COLUMNS), _empty(REJECTED_COLUMNS)
    # Keep the trigger items' rows before normalising: the table holds every item's top-K.
    scores = _scores(
        item_user_scores[item_user_scores["item_id"].astype(str).isin(set(map(str, trigger_items)))]
    )
    if scores.empty:
        return _empty(CANDIDATE_COLUMNS), _empty(REJECTED_COLUMNS)
    frame = _with_user_context(scores, campaign, users, targeting)
    repeat = (
        pd.MultiIndex.from_frame(frame[["user_id", "item_id"]]).isin(
            pd.MultiIndex.from_frame(recent_pairs[["user_id", "item_id"]])
        )
        if len(recent_pairs)
        else np.zeros(len(frame), bool)
    )
    boosted = frame["score"] * frame["boost"]
    frame["expected_value"] = boosted * campaign.priority
    low = ~(boosted >= campaign.min_relevance).to_numpy()  # NaN scores fail too
    user_reason = frame["user_reason"].to_numpy(object)
    reason = pd.Series(
        _first_reason(
            [pd.notna(user_reason), repeat, low], [None, "item_repeat", "below_min_relevance"]
        ),
        index=frame.index,
        dtype=object,
    )
    reason[pd.notna(user_reason)] = user_reason[pd.notna(user_reason)]
    kept = frame[reason.isna()]
    candidates = pd.DataFrame(
        {
            "campaign_id": campaign.campaign_id,
            "campaign_type": campaign.campaign_type,
            "channel": campaign.channel,
            "user_id": kept["user_id"],
            "item_id": kept["item_id"],
            "score": kept["score"].astype(float),
            "boost": kept["boost"],
            "expected_value": kept["expected_value"].astype(float),
            "audience_size": campaign.audience_size,
            "campaign_cap": campaign.max_sends_per_user_week,
            "digest_pool": None,
        }
    )[CANDIDATE_COLUMNS]
    rejected = _rejected(frame[reason.notna()], campaign, reason[reason.notna()])
    return candidates.reset_index(drop=True), rejected.reset_index(drop=True)


def digest_candidates(
    campaign: Campaign,
    user_item_scores: pd.DataFrame,
    available_item_ids,
    users: pd.DataFrame,
    targeting: pd.DataFrame | None,
    recent_pairs: pd.DataFrame,
    pushable_item_ids=None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One candidate digest per scored user, and the users it rejects.

    A user's qualifying items: available at the run, not sent to them within the item
    repeat window, ``score x boost >= min_relevance``; best first (score, then the scorer's
    rank, then item id). ``digest_pool`` holds them as (item_id, score) so that items
    pushed to the same user in this run can be swapped out later; the score is computed on
    the first ``items_per_digest``. ``pushable_item_ids`` (the run's trigger items; None =
    any item) bounds the pool: only those can be pushed, so an item that comes after
    ``items_per_digest`` others can never reach the digest and is left out (at a million
    users full pools are tens of millions of Python tuples). A user gets one rejection row
    (item_id null): unknown_user, suppressed, no_email, filtered_out, then no_available_items (no
    scored item is available), item_repeat (all available ones were sent recently),
    below_min_relevance.
    """
    scores = _scores(user_item_scores)
    if scores.empty:
        return _empty(CANDIDATE_COLUMNS), _empty(REJECTED_COLUMNS)
    frame = _with_user_context(scores, campaign, users, targeting)
    frame["available"] = frame["item_id"].isin(set(available_item_ids))
    frame["repeat"] = (
        pd.MultiIndex.from_frame(frame[["user_id", "item_id"]]).isin(
            pd.MultiIndex.from_frame(recent_pairs[["user_id", "item_id"]])
        )
        if len(recent_pairs)
        else False
    )
    frame["relevant"] = (frame["score"] * frame["boost"]) >= campaign.min_relevance
    frame["fresh"] = frame["available"] & ~frame["repeat"]
    frame["qualifies"] = frame["fresh"] & frame["relevant"]
    frame = frame.sort_values(
        ["user_id", "score", "rank", "item_id"],
        ascending=[True, False, True, True],
        na_position="last",
    )
    per_user = frame.groupby("user_id", sort=True).agg(
        user_reason=("user_reason", "first"),
        boost=("boost", "first"),
        any_available=("available", "any"),
        any_fresh=("fresh", "any"),
        any_qualifies=("qualifies", "any"),
    )
    pool = frame[frame["qualifies"]]
    top = pool[pool.groupby("user_id", sort=False).cumcount() < campaign.items_per_digest]
    miss = (1.0 - top["score"].clip(0.0, 1.0)).groupby(top["user_id"]).prod()
    if pushable_item_ids is not None:
        other = (~pool["item_id"].isin(set(pushable_item_ids))).astype(np.int64)
        others_before = other.groupby(pool["user_id"], sort=False).cumsum() - other
        pool = pool[(others_before < campaign.items_per_digest).to_numpy()]
    per_user["score"] = 1.0 - miss.reindex(per_user.index)  # NaN: no qualifying item
    per_user["expected_value"] = per_user["score"] * per_user["boost"] * campaign.priority
    user_reason = per_user["user_reason"].to_numpy(object)
    reason = _first_reason(
        [~per_user["any_available"], ~per_user["any_fresh"], ~per_user["any_qualifies"]],
        ["no_available_items", "item_repeat", "below_min_relevance"],
    )
    reason[pd.notna(user_reason)] = user_reason[pd.notna(user_reason)]
    per_user["reason"] = pd.Series(reason, index=per_user.index, dtype=object)
    per_user = per_user.reset_index()
    kept = per_user[per_user["reason"].isna()]
    candidates = pd.DataFrame(
        {
            "campaign_id": campaign.campaign_id,
            "campaign_type": campaign.campaign_type,
            "channel": campaign.channel,
            "user_id": kept["user_id"],
            "item_id": None,
            "score": kept["score"].astype(float),
            "boost": kept["boost"].astype(float),
            "expected_value": kept["expected_value"].astype(float),
            "audience_size": None,
            "campaign_cap": campaign.max_sends_per_user_week,
            "digest_pool": _pools(
                pool[pool["user_id"].isin(set(kept["user_id"]))], kept["user_id"]
            ),
        }
    )[CANDIDATE_COLUMNS]
    dropped = per_user[per_user["reason"].notna()].assign(item_id=None)
    rejected = _rejected(dropped, campaign, dropped["reason"])
    return candidates.reset_index(drop=True), rejected.reset_index(drop=True)


def _pools(pool: pd.DataFrame, user_ids) -> list[list[tuple[str, float]]]:
    """Each user's (item_id, score) list from ``pool`` (sorted by user, best item first)."""
    users = pool["user_id"].to_numpy()
    item_ids = pool["item_id"].tolist()
    scores = pool["score"].astype(float).tolist()
    cuts = np.flatnonzero(users[1:] != users[:-1]) + 1 if len(users) else np.array([], int)
    starts, ends = np.r_[0, cuts], np.r_[cuts, len(users)]
    by_user = {
        users[a]: list(zip(item_ids[a:b], scores[a:b], strict=True))
        for a, b in zip(starts.tolist(), ends.tolist(), strict=True)
        if b > a
    }
    return [by_user[u] for u in user_ids]


def build_candidates(
    campaigns: Sequence[Campaign],
    trigger_items: Mapping[str, Sequence[str]],
    users: pd.DataFrame,
    targeting: pd.DataFrame | None,
    available_item_ids,
    item_user_scores: pd.DataFrame,
    user_item_scores: pd.DataFrame,
    recent_pairs: pd.DataFrame,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Candidates and rejections of all campaigns, concatenated in campaign order."""
    candidates, rejected = [_empty(CANDIDATE_COLUMNS)], [_empty(REJECTED_COLUMNS)]
    for campaign in campaigns:
        if campaign.campaign_type == "item_push":
            kept, dropped = item_push_candidates(
                campaign,
                trigger_items.get(campaign.campaign_id, []),
                item_user_scores,
                users,
                targeting,
                recent_pairs,
            )
        else:
            kept, dropped = digest_candidates(
                campaign,
                user_item_scores,
                available_item_ids,
                users,
                targeting,
                recent_pairs,
                pushable_item_ids={item for ids in trigger_items.values() for item in ids},
            )
        candidates.append(kept)
        rejected.append(dropped)
    return _concat(candidates), _concat(rejected)


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate, leaving empty frames out (they would blur the column dtypes)."""
    nonempty = [f for f in frames if len(f)] or frames[:1]
    return pd.concat(nonempty, ignore_index=True)


# --------------------------------------------------------------------------- planning


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
    if _missing(value):
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
    out = _empty(AUDIENCE_COLUMNS)
    return out.astype(
        {
            "rank": np.int64,
            "score": float,
            "expected_value": float,
            "scheduled_send_at": "datetime64[ns]",
            "is_holdout": bool,
        }
    )


def plan_run(
    campaigns: pd.DataFrame,
    rules: FrequencyRules | Mapping | None,
    users: pd.DataFrame,
    targeting: pd.DataFrame | None,
    items: pd.DataFrame,
    item_user_scores: pd.DataFrame,
    user_item_scores: pd.DataFrame,
    sends: pd.DataFrame | None,
    events: pd.DataFrame | None,
    run_date,
    *,
    interactions: pd.DataFrame | Callable[[], pd.DataFrame] | None = None,
    trigger_items: Mapping[str, Sequence[str]] | None = None,
) -> PlanResult:
    """Plan one run: who gets what, when, over all active campaigns at once.

    ``rules`` may be a :class:`FrequencyRules` or a dict of dbt vars (None = defaults).
    ``interactions`` (optional) feed the hidden-gem fallback when the send history has no
    conversions (a frame, or a function returning it: then it is read only in that case);
    ``trigger_items`` (optional, campaign_id -> item ids) overrides
    :func:`select_trigger_items`, e.g. to hold them fixed across backtest policies.

    Suppressed users (``is_eligible`` false or null) and ids absent from ``users`` never
    reach ``audience``. Holdout users are allocated like everyone else and come out with
    ``is_holdout`` true and a null ``scheduled_send_at``. ``rank`` is 1-based within a
    user's sends of the run, by expected value; ``scheduled_send_at`` is naive UTC.
    Identical inputs give identical frames (no randomness, deterministic tie-breaks).
    """
    if not isinstance(rules, FrequencyRules):
        rules = FrequencyRules.from_dict(rules)
    if callable(interactions):  # read at most once, however many hidden-gem campaigns
        interactions = functools.cache(interactions)
    run_time = utc_instant(run_date)
    active = [c for c in validate_campaigns(campaigns) if c.is_active]
    users = _users(users)
    history = mailbox_history(normalize_sends(sends), users)
    item_table = _items(items)
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

    # Allowances of the users with candidates, counted back from each user's anchor.
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

    allocation = allocate_greedy(candidates)
    lost = candidates[~allocation.selected]
    rejected = _concat(
        [rejected, _rejected_from_candidates(lost, allocation.reason[~allocation.selected])]
    )
    chosen = candidates[allocation.selected].copy()

    # A digest must not repeat an item pushed to the same user in this run: swap it for
    # the next item of its pool (its score stays the one the allocation saw).
    pushed = chosen[chosen["item_id"].notna()].groupby("user_id")["item_id"].agg(set)
    info = item_table.set_index("item_id")
    info = {
        item: {name: _native(row.get(name)) for name in DIGEST_ITEM_FIELDS}
        for item, row in info.to_dict("index").items()
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
    empty_digest = (chosen["campaign_type"] == "digest") & chosen["digest_items"].isna()
    rejected = _concat(
        [
            rejected,
            _rejected_from_candidates(
                chosen[empty_digest], np.full(int(empty_digest.sum()), "duplicate_item")
            ),
        ]
    )
    chosen = chosen[~empty_digest]
    # Defence in depth: whatever happened upstream, only users eligible on the send's
    # channel go out.
    eligible = pd.Series(False, index=chosen.index)
    for channel in CHANNELS:
        allowed = set(users.loc[users[f"is_{channel}_eligible"], "user_id"])
        on_channel = chosen["channel"] == channel
        eligible |= on_channel & chosen["user_id"].isin(allowed)
    rejected = _concat(
        [
            rejected,
            _rejected_from_candidates(
                chosen[~eligible], np.full(int((~eligible).sum()), "suppressed")
            ),
        ]
    )
    chosen = chosen[eligible]

    audience = _finish_audience(chosen, users, anchors, run_time, rules)
    return PlanResult(audience, _sort_rejected(rejected), trigger_frame)


def _rejected_from_candidates(frame: pd.DataFrame, reasons) -> pd.DataFrame:
    out = frame[["campaign_id", "channel", "user_id", "item_id", "score", "expected_value"]].copy()
    out["reason"] = np.asarray(reasons, dtype=object)
    return out[REJECTED_COLUMNS]


def _sort_rejected(rejected: pd.DataFrame) -> pd.DataFrame:
    out = rejected.copy()
    out["score"] = out["score"].astype(float)
    out["expected_value"] = out["expected_value"].astype(float)
    out = out.sort_values(
        ["campaign_id", "user_id", "item_id", "reason"], na_position="first", kind="mergesort"
    )
    return out.reset_index(drop=True)[REJECTED_COLUMNS]


def _finish_audience(
    chosen: pd.DataFrame,
    users: pd.DataFrame,
    anchors: pd.Series,
    run_time: pd.Timestamp,
    rules: FrequencyRules,
) -> pd.DataFrame:
    """Rank per user, holdout flag, schedule, send_key, email: the audience frame."""
    if chosen.empty:
        return _empty_audience()
    chosen = chosen.iloc[allocation_order(chosen)].reset_index(drop=True)
    chosen["rank"] = chosen.groupby("user_id", sort=False).cumcount().astype(np.int64) + 1
    chosen = chosen.sort_values(["user_id", "rank"], kind="mergesort").reset_index(drop=True)
    user_info = users.set_index("user_id")
    who = pd.unique(chosen["user_id"])
    holdout = dict(zip(who, is_holdout(who, rules), strict=True))
    chosen["is_holdout"] = chosen["user_id"].map(holdout).astype(bool)
    # Rows are sorted by user then rank: walk each user's block of live rows in one pass.
    scheduled = np.full(len(chosen), np.datetime64("NaT"), dtype="datetime64[ns]")
    live = np.flatnonzero(~chosen["is_holdout"].to_numpy())
    live_users = chosen["user_id"].to_numpy()[live]
    cuts = np.flatnonzero(live_users[1:] != live_users[:-1]) + 1 if len(live) else []
    zone_of = user_info["timezone"].to_dict()
    anchor_of = anchors.to_dict()
    for a, b in zip(np.r_[0, cuts].tolist(), np.r_[cuts, len(live)].tolist(), strict=True):
        if b <= a:
            continue
        user = live_users[a]
        zone = resolve_timezone(zone_of.get(user), rules.default_timezone)
        times = schedule_sends(anchor_of[user], b - a, zone, rules)
        scheduled[live[a:b]] = np.array([t.to_datetime64() for t in times], dtype="datetime64[ns]")
    chosen["scheduled_send_at"] = scheduled
    chosen["email"] = chosen["user_id"].map(user_info["email"]).map(_native)
    chosen["send_key"] = [
        make_send_key(run_time, c, u, i)
        for c, u, i in zip(chosen["campaign_id"], chosen["user_id"], chosen["item_id"], strict=True)
    ]
    chosen["item_id"] = chosen["item_id"].map(_native).astype(object)
    return chosen[AUDIENCE_COLUMNS].astype(
        {"rank": np.int64, "score": float, "expected_value": float, "is_holdout": bool}
    )
