"""Every (user, category) scored from the run's factors: the mean MF score the user gives the
category's items. Logic: proactive_recs.recommender.categories."""

from proactive_recs.recommender.categories import user_category_scores
from proactive_recs.warehouse.dbt_io import to_pandas


def model(dbt, session):
    dbt.config(materialized="table")
    items = to_pandas(dbt.ref("stg_items"))
    return user_category_scores(
        to_pandas(dbt.ref("user_factors")),
        to_pandas(dbt.ref("item_factors")),
        items[["item_id", "category"]],
    )
