"""Offline evaluation (docs/evaluation.md) on a time split at the var proactive_recs_eval_cutoff
(unset: one horizon before the run date): the served
two-stage recommender against plain ALS, popularity, heavy users and random, both directions.
One long table: record_type 'metric', 'parameter' or 'calibration'.
Logic: proactive_recs.evaluation.protocol."""

from proactive_recs.warehouse.dbt_io import (
    evaluation_cutoff,
    for_session,
    horizon_days,
    read_run_date,
    recommender_params,
    require_packages,
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
    require_packages(["numpy", "pandas", "scipy", "sklearn", "threadpoolctl", "numba", "implicit"])
    from proactive_recs.evaluation.protocol import evaluate
    from proactive_recs.recommender.categories import (
        evaluate_user_to_category,  # these import implicit
    )

    meta = dbt.config.get("meta") or {}
    cutoff = evaluation_cutoff(meta, read_run_date(dbt.ref("int_run_context")))
    horizon = horizon_days(meta)
    interactions = read_interactions(dbt.ref("int_interactions"))
    items = to_pandas(dbt.ref("int_item_context"))
    result = evaluate(
        interactions,
        users=None,  # quality is measured over every known user, eligible or not
        items=evaluation_items(items),
        cutoff=cutoff,
        horizon_days=horizon,
        params=recommender_params(meta),
    )
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
    table = long_evaluation_table(
        result,
        cutoff=cutoff,
        horizon_days=horizon,
        extra_metrics=category_metrics,
    )
    return for_session(table, session)
