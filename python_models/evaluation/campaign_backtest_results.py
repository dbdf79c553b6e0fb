"""Replay weekly runs over the last proactive_recs_backtest_weeks before the run date with
the configured rules and with the baselines of docs/evaluation.md (carpet_bomb, heavy_users,
heavy_users_capped, topk_no_allocation). Each week re-trains the recommender on the
interactions before that week; stage selection is chosen at the first week and applied to
the later ones (weekly_scorer).
One long frame: record_type 'summary' (policy, metric, value) or 'weekly'.
Logic: proactive_recs.notifications.backtest."""

import json

from proactive_recs.notifications.backtest import run_backtest_detailed
from proactive_recs.notifications.planner import PLANNER_USER_COLUMNS
from proactive_recs.warehouse.dbt_io import (
    read_run_date,
    recommender_params,
    require_packages,
    return_freed_memory,
    to_pandas,
)
from proactive_recs.warehouse.notifications_io import (
    backtest_campaigns,
    backtest_start,
    long_backtest_frame,
    weekly_scorer,
)
from proactive_recs.warehouse.recommender_io import (
    read_interactions,
    read_scoring_items,
    read_scoring_users,
)


def model(dbt, session):
    dbt.config(materialized="table")
    return_freed_memory()  # what the models before this one freed
    require_packages(["numpy", "pandas", "scipy", "sklearn", "threadpoolctl", "numba", "implicit"])
    meta = dbt.config.get("meta") or {}
    users = to_pandas(dbt.ref("int_user_context"))
    scoring_users = read_scoring_users(users, dbt.ref("user_targeting"))
    items = read_scoring_items(dbt.ref("int_item_context"), dbt.ref("item_targeting"))
    settings = json.loads(meta["backtest"])
    result = run_backtest_detailed(
        # no name holds the frame: the backtest keeps one copy, sorted by time
        read_interactions(dbt.ref("int_interactions")),
        users[PLANNER_USER_COLUMNS],
        items,
        backtest_campaigns(to_pandas(dbt.ref("stg_campaigns")), settings["campaigns"]),
        {k: v for k, v in json.loads(meta["frequency_rules"]).items() if v is not None},
        weekly_scorer(scoring_users, items, recommender_params(meta)),
        start=backtest_start(
            read_run_date(dbt.ref("int_run_context")),
            settings["weeks"],
            settings["conversion_days"],
        ),
        weeks=int(settings["weeks"]),
        conversion_days=float(settings["conversion_days"]),
        targeting=to_pandas(dbt.ref("user_targeting")),
    )
    return long_backtest_frame(result)
