"""A campaign as the planner reads it: the typed, validated :class:`Campaign`.

In a dbt run the rules live in ``stg_campaigns`` (SQL) and :func:`validate_campaigns` reads
its verdict; on frames built without dbt it applies the same rules (a test keeps them equal).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from proactive_recs.notifications.frequency import (
    CHANNELS,
)

CAMPAIGN_TYPES = ("digest", "item_push")
TRIGGERS = ("new_items", "hidden_gems", "expiring", "item_list")


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


def is_missing(value) -> bool:
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
    if is_missing(value):
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
        if is_missing(cid):
            raise ValueError(f"campaigns row {position}: column campaign_id is required")
        cid = str(cid).strip()
        if cid in seen:
            raise ValueError(f"campaign {cid!r}: column campaign_id is duplicated")
        seen.add(cid)
        kind = row.get("campaign_type")
        kind = None if is_missing(kind) else str(kind).strip().lower()
        if kind not in CAMPAIGN_TYPES:
            raise ValueError(
                f"campaign {cid!r}: column campaign_type must be one of "
                f"{CAMPAIGN_TYPES}, got {row.get('campaign_type')!r}"
            )
        channel = row.get("channel")
        channel = None if is_missing(channel) else str(channel).strip().lower()
        if channel not in CHANNELS:
            raise ValueError(
                f"campaign {cid!r}: column channel must be one of {CHANNELS}, "
                f"got {row.get('channel')!r}"
            )
        trigger = row.get("trigger")
        trigger = None if is_missing(trigger) else str(trigger).strip().lower()
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
                    if is_missing(raw)
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
            if is_missing(row["is_active"]):
                raise ValueError(f"campaign {cid!r}: column is_active is required")
            fields["is_active"] = _boolean(row["is_active"], "is_active", cid)
        out.append(Campaign(**fields))
    return sorted(out, key=lambda c: c.campaign_id)
