"""Offline evaluation (docs/evaluation.md) on a time split at the var proactive_recs_eval_cutoff
(unset: one horizon before the run date): the served
two-stage recommender against plain ALS, popularity, heavy users and random, both directions
(and week-old stages reused, with the var proactive_recs_evaluate_week_old_stages).
One long table: record_type 'metric', 'parameter' or 'calibration'.
Logic: proactive_recs.evaluation.protocol."""

from proactive_recs.warehouse.dbt_io import (
    evaluated_models,
    evaluation_cutoff,
    for_session,
    horizon_days,
    read_run_date,
    recommender_params,
    require_packages,
    return_freed_memory,
    to_pandas,
)
from proactive_recs.warehouse.recommender_io import (
    category_weight,
    evaluation_items,
    long_evaluation_table,
    mf_params_used,
    read_interactions,
)


def model(dbt, session):
    dbt.config(materialized="table")
    return_freed_memory()  # what the models before this one freed
    require_packages(["numpy", "pandas", "scipy", "sklearn", "threadpoolctl", "numba", "implicit"])
    import json

    import pandas as pd

    from proactive_recs.evaluation.protocol import evaluate
    from proactive_recs.notifications.frequency import FrequencyRules
    from proactive_recs.notifications.send_time import evaluate_send_time
    from proactive_recs.recommender.categories import (
        evaluate_user_to_category,  # these import implicit
    )

    meta = dbt.config.get("meta") or {}
    cutoff = evaluation_cutoff(meta, read_run_date(dbt.ref("int_run_context")))
    horizon = horizon_days(meta)
    items = to_pandas(dbt.ref("int_item_context"))
    result = evaluate(
        # no name holds the frame: evaluate lets go of what its fits do not read
        read_interactions(dbt.ref("int_interactions")),
        users=None,  # quality is measured over every known user, eligible or not
        items=evaluation_items(items),
        cutoff=cutoff,
        horizon_days=horizon,
        params=recommender_params(meta),
        models=evaluated_models(meta),
    )
    interactions = read_interactions(dbt.ref("int_interactions"))  # read again, after the fits
    # user_to_category, with the MF configuration the als model chose and the blend weight
    # the served model chose, both on the validation window before the cutoff
    category_metrics = evaluate_user_to_category(
        interactions,
        items[["item_id", "category"]],
        cutoff=cutoff,
        horizon_days=horizon,
        mf_params=mf_params_used(result.params, "als"),
        served_weight=category_weight(result.params, "served"),
    )
    # send_time: the personal send hours against the population's, on the same split
    rules = FrequencyRules.from_dict(
        {k: v for k, v in json.loads(meta["frequency_rules"]).items() if v is not None}
    )
    send_time_metrics, send_time_choice = evaluate_send_time(
        interactions[["user_id", "occurred_at"]],
        to_pandas(dbt.ref("int_user_context"), columns=["user_id", "timezone"]),
        cutoff=cutoff,
        horizon_days=horizon,
        default_timezone=rules.default_timezone,
    )
    table = long_evaluation_table(
        result,
        cutoff=cutoff,
        horizon_days=horizon,
        extra_metrics=pd.concat([category_metrics, send_time_metrics], ignore_index=True),
        # the send-time model's window and prior strength, chosen on the validation window
        extra_params=pd.DataFrame(
            [("served", name, value) for name, value in send_time_choice.items()],
            columns=["model", "parameter", "value"],
        ),
    )
    return for_session(table, session)
