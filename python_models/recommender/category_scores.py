"""Every (user, category) scored from the run's factors and the users' history, blended with
the weight the recommender chose on the validation window (model_parameters:
category_weight). Logic: proactive_recs.recommender.categories."""

from proactive_recs.recommender.categories import user_category_scores
from proactive_recs.warehouse.dbt_io import read_run_date, return_freed_memory, to_pandas
from proactive_recs.warehouse.recommender_io import category_weight, read_interactions


def model(dbt, session):
    dbt.config(materialized="table")
    return_freed_memory()  # what the models before this one freed
    from proactive_recs.data.interactions import interactions_before

    items = to_pandas(dbt.ref("stg_items"))
    weight = category_weight(to_pandas(dbt.ref("model_parameters")))
    history = None
    if weight != float("inf"):  # MF alone needs no history
        history = interactions_before(
            read_interactions(dbt.ref("int_interactions")),
            read_run_date(dbt.ref("int_run_context")),
        )
    return user_category_scores(
        to_pandas(dbt.ref("user_factors")),
        to_pandas(dbt.ref("item_factors")),
        items[["item_id", "category"]],
        history=history,
        weight=weight,
    )
