"""Shaping :func:`~proactive_recs.notifications.planner.plan_run` output for dbt."""

from __future__ import annotations

import json

import pandas as pd

from proactive_recs.notifications.candidates import REJECTED_COLUMNS
from proactive_recs.notifications.planner import AUDIENCE_COLUMNS, PlanResult

# One row per candidate the planner judged: its decision ('planned': a send, holdout users
# included and flagged; 'rejected': not sent, with the reason), the run date, the audience
# columns (digest items as JSON text) and the reason.
PLAN_COLUMNS = [
    "decision",
    "run_date",
    *("digest_items_json" if c == "digest_items" else c for c in AUDIENCE_COLUMNS),
    *(c for c in REJECTED_COLUMNS if c not in AUDIENCE_COLUMNS),
]


def _digest_json(items) -> str | None:
    """The ranked digest items as a JSON array text (portable: varchar on every warehouse)."""
    if items is None or (isinstance(items, float) and pd.isna(items)):
        return None
    return json.dumps(list(items), default=str, sort_keys=True)


def plan_frame(plan: PlanResult, run_date) -> pd.DataFrame:
    """Every candidate of the run with its decision: planned sends and rejected candidates
    are the same grain (one candidate), told apart by ``decision``, not by a record type."""
    sends = plan.audience.assign(decision="planned")
    sends["digest_items_json"] = sends["digest_items"].map(_digest_json)
    rejected = plan.rejected_candidates.assign(decision="rejected")
    long = pd.concat([sends.drop(columns=["digest_items"]), rejected], ignore_index=True)
    long["run_date"] = pd.Timestamp(run_date)
    for column in PLAN_COLUMNS:
        if column not in long:
            long[column] = None
    # Text columns typed as strings even when all null (e.g. no e-mails in the data), so the
    # warehouse table gets VARCHAR columns and the marts' contracts hold.
    for column in (
        "decision",
        "send_key",
        "user_id",
        "email",
        "channel",
        "campaign_id",
        "item_id",
        "digest_items_json",
        "reason",
    ):
        long[column] = long[column].astype("string")
    long["rank"] = long["rank"].astype("Int64")
    long["is_holdout"] = long["is_holdout"].astype("boolean")
    long["scheduled_send_at"] = pd.to_datetime(long["scheduled_send_at"])
    for column in ("score", "expected_value"):
        long[column] = long[column].astype(float)
    return long[PLAN_COLUMNS]


def backtest_campaigns(campaigns: pd.DataFrame, campaign_ids) -> pd.DataFrame:
    """The campaigns a backtest replays: the listed ids, or every campaign when None."""
    if not campaign_ids:
        return campaigns
    wanted = [str(c) for c in campaign_ids]
    unknown = sorted(set(wanted) - set(campaigns["campaign_id"].astype(str)))
    if unknown:
        raise ValueError(f"var backtest_campaigns names unknown campaign(s): {unknown}")
    return campaigns[campaigns["campaign_id"].astype(str).isin(wanted)]


def backtest_start(run_date, weeks, conversion_days) -> pd.Timestamp:
    """First week start so that the last week's conversion window ends at the run date."""
    end = pd.Timestamp(run_date)
    if pd.isna(end):
        raise ValueError("backtest_start needs a run date (int_run_context.run_date)")
    last_week = end.normalize() - pd.Timedelta(days=float(conversion_days))
    return last_week - pd.Timedelta(days=7 * (int(weeks) - 1))


def replay_params(params: dict) -> dict:
    """The settings of the backtest's weekly fits, from the served ones.

    Hyper-parameter search is switched off (a fixed configuration every week) and the ranker
    learns from one past window instead of ``training_windows``. Its row cap shrinks in the
    same proportion: ``max_training_rows`` is a budget for all the served fit's windows, and
    a one-window replay given the whole budget kept three times the served ranker's
    negatives (at 100k users x 20k items and a 3M cap, 3M rows instead of 1M, 1,180 s and 778 s
    for the backtest, with the same conversions: docs/benchmark.md, session 17). With the
    budget per window kept, the replay's ranker samples negatives at the served ranker's rate.
    """
    from proactive_recs.recommender.config import RecommenderConfig

    settings = RecommenderConfig.from_dict(params)
    cap, windows = settings.max_training_rows, max(int(settings.training_windows), 1)
    return {
        **params,
        "tune": False,
        "training_windows": 1,
        "max_training_rows": None if cap is None else max(-(-int(cap) // windows), 1),
    }


def weekly_scorer(users: pd.DataFrame, items: pd.DataFrame, params: dict, *, decide_once=True):
    """score_fn for the backtest: the served recommender re-trained as of each week, with
    :func:`replay_params`' settings.

    With ``decide_once`` (the default) stage selection and the user -> category weight are
    chosen at the first week and applied to the later ones (``Recommender.fit(choices=...)``):
    each choice is a second fit one horizon back, and at 100k users x 20k items it was
    ~140 s of a week's ~370 s. Reusing the first week's rankers as well (as a daily run
    reuses the weekly ones) was tried and not kept: on Online Retail the configured policy's
    conversions fell from 24 to 14 (docs/benchmark.md, session 17).
    """
    from proactive_recs.recommender.two_stage import Recommender

    weekly_params = replay_params(params)
    first = {}

    def score_fn(past_interactions: pd.DataFrame, as_of, item_ids=None):
        fitted = Recommender(weekly_params).fit(
            past_interactions, users, items, as_of=as_of, choices=first.get("choices")
        )
        if decide_once and "choices" not in first and fitted.ranker_ is not None:
            first["choices"] = fitted.trained_stages()
        if item_ids is not None:  # the week's trigger items: their audiences alone
            return fitted.recommend_users(item_ids), pd.DataFrame(
                {column: [] for column in ("user_id", "item_id", "rank", "score")}
            )
        result = fitted.recommend()
        return result.item_user_scores, result.user_item_scores

    return score_fn


BACKTEST_COLUMNS = [
    "record_type",
    "policy",
    "metric",
    "value",
    "week_start",
    "sends",
    "conversions",
    "conversions_per_send",
    "users_reached",
    "max_sends_per_user",
]


def long_backtest_frame(result) -> pd.DataFrame:
    """Summary rows (policy, metric, value) and per-week rows in one frame."""
    long = pd.concat(
        [result.summary.assign(record_type="summary"), result.weekly.assign(record_type="weekly")],
        ignore_index=True,
    )
    for column in BACKTEST_COLUMNS:
        if column not in long:
            long[column] = None
    for column in ("value", "conversions_per_send"):
        long[column] = long[column].astype(float)
    for column in ("sends", "conversions", "users_reached", "max_sends_per_user"):
        long[column] = long[column].astype("Int64")
    long["week_start"] = pd.to_datetime(long["week_start"])
    for column in ("record_type", "policy", "metric"):
        long[column] = long[column].astype("string")
    return long[BACKTEST_COLUMNS]
