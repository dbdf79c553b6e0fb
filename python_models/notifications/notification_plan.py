"""Plan this run's notifications over all active campaigns at once, under the frequency rules.

Returns one row per candidate with its decision: 'planned' (a send, holdout included and
flagged) or 'rejected' (not planned, with the reason); SQL models select each.
Logic: proactive_recs.notifications.planner.plan_run. Caps, spacing and repeats count the
send ledger (int_send_ledger), so they hold across daily runs whatever the send tool has
written back.
"""

import json

from proactive_recs.notifications.campaign import validate_campaigns
from proactive_recs.notifications.candidates import SCORE_COLUMNS  # the planner reads these
from proactive_recs.notifications.planner import PLANNER_USER_COLUMNS, history_start, plan_run
from proactive_recs.warehouse.dbt_io import (
    read_run_date,
    return_freed_memory,
    rows_in,
    rows_matching,
    rows_since,
    to_pandas,
)
from proactive_recs.warehouse.notifications_io import plan_frame
from proactive_recs.warehouse.recommender_io import read_interactions


def model(dbt, session):
    dbt.config(materialized="table")
    return_freed_memory()  # what the models before this one freed
    meta = dbt.config.get("meta") or {}
    # dbt finds refs in the model's own statements (not inside a lambda); a relation is lazy.
    interactions = dbt.ref("int_interactions")
    item_user_scores = dbt.ref("item_user_scores")
    user_item_scores = dbt.ref("user_item_scores")
    run_date = read_run_date(dbt.ref("int_run_context"))
    campaigns = to_pandas(dbt.ref("stg_campaigns"))
    campaign_ids = [campaign.campaign_id for campaign in validate_campaigns(campaigns)]
    rules = {k: v for k, v in json.loads(meta["frequency_rules"]).items() if v is not None}
    # The send ledger: confirmed sends plus earlier runs' planned sends not confirmed yet;
    # only as far back as a rule looks (and the events of those sends).
    sends = rows_since(
        dbt.ref("int_send_ledger"), "sent_at", history_start(campaigns, rules, run_date)
    )
    events = rows_matching(dbt.ref("int_notification_events"), sends, "send_id")
    plan = plan_run(
        campaigns=campaigns,
        rules=rules,
        users=to_pandas(dbt.ref("int_user_context"), columns=PLANNER_USER_COLUMNS),
        # the campaigns' rows (user_targeting also holds the target 'scores')
        targeting=to_pandas(rows_in(dbt.ref("user_targeting"), "target", campaign_ids)),
        items=to_pandas(dbt.ref("int_item_context")),
        # only the rows of the run's trigger items (the table holds every item's top-K);
        # a semi join against them, as there may be too many for an in-list
        item_user_scores=lambda item_ids: to_pandas(
            rows_in(item_user_scores, "item_id", item_ids, session=session),
            columns=SCORE_COLUMNS,
        ),
        # read inside the planner, which lets the raw rows go once it has normalised them
        user_item_scores=lambda: to_pandas(user_item_scores, columns=SCORE_COLUMNS),
        sends=lambda: to_pandas(sends),
        events=to_pandas(events),
        run_date=run_date,
        # Read only if the hidden-gem fallback needs them (no conversion in the send history).
        interactions=lambda: read_interactions(interactions),
        # each user's hour profile, for the rule send_time
        send_times=to_pandas(
            dbt.ref("user_send_times"),
            columns=["user_id", "send_time_basis", "hour_profile", "window_hours"],
        ),
    )
    return plan_frame(plan, run_date=run_date)
