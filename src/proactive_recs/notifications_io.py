"""Shaping :func:`proactive_recs.campaigns.plan_run` output for dbt: one long frame."""

from __future__ import annotations

import json

import pandas as pd

from .campaigns import PlanResult

PLAN_COLUMNS = [
    "record_type",
    "run_date",
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
    "digest_items_json",
    "reason",
]


def _digest_json(items) -> str | None:
    """The ranked digest items as a JSON array text (portable: varchar on every warehouse)."""
    if items is None or (isinstance(items, float) and pd.isna(items)):
        return None
    return json.dumps(list(items), default=str, sort_keys=True)


def long_plan_frame(plan: PlanResult, run_date) -> pd.DataFrame:
    """Planned sends (record_type 'send') and rejected candidates ('rejected') in one frame."""
    sends = plan.audience.assign(record_type="send")
    sends["digest_items_json"] = sends["digest_items"].map(_digest_json)
    rejected = plan.rejected_candidates.assign(record_type="rejected")
    long = pd.concat([sends.drop(columns=["digest_items"]), rejected], ignore_index=True)
    long["run_date"] = pd.Timestamp(run_date)
    for column in PLAN_COLUMNS:
        if column not in long:
            long[column] = None
    long["rank"] = long["rank"].astype("Int64")
    long["is_holdout"] = long["is_holdout"].astype("boolean")
    long["scheduled_send_at"] = pd.to_datetime(long["scheduled_send_at"])
    for column in ("score", "expected_value"):
        long[column] = long[column].astype(float)
    return long[PLAN_COLUMNS]
