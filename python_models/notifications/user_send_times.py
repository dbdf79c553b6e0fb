"""Each user's send hours (weekday and weekend, local time) learned from when they act, with
the profile the planner schedules against. The prior strength is chosen on the last horizon
before the run. Logic: proactive_recs.notifications.send_time."""

import json

from proactive_recs.notifications.frequency import FrequencyRules
from proactive_recs.notifications.send_time import fit_send_times
from proactive_recs.warehouse.dbt_io import (
    horizon_days,
    read_run_date,
    return_freed_memory,
    to_pandas,
)


def model(dbt, session):
    dbt.config(materialized="table")
    return_freed_memory()  # what the models before this one freed
    meta = dbt.config.get("meta") or {}
    rules = FrequencyRules.from_dict(
        {k: v for k, v in json.loads(meta["frequency_rules"]).items() if v is not None}
    )
    run_date = read_run_date(dbt.ref("int_run_context"))
    # fit_send_times reads only the events before the run date
    events = to_pandas(dbt.ref("int_interactions"), columns=["user_id", "occurred_at"])
    users = to_pandas(dbt.ref("int_user_context"), columns=["user_id", "timezone"])
    fitted, _ = fit_send_times(
        events,
        users,
        as_of=run_date,
        horizon_days=horizon_days(meta),
        model_params={"default_timezone": rules.default_timezone},
    )
    frame = fitted.send_times().frame()
    # the settings chosen on the last horizon before the run; the planner reads the window
    frame["prior_strength"] = float(fitted.prior_strength)
    frame["window_hours"] = int(fitted.window_hours)
    frame["events_without_zone"] = int(fitted.events_without_zone_)
    return frame
