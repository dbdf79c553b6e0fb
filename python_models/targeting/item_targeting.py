"""Per item: passes the var proactive_recs_item_filter, and the var
proactive_recs_item_booster's boost (target 'scores').
Logic: proactive_recs.notifications.targeting."""

from proactive_recs.notifications.targeting import TargetingRule, evaluate_targeting
from proactive_recs.warehouse.dbt_io import config_value, return_freed_memory


def model(dbt, session):
    dbt.config(materialized="table")
    return_freed_memory()  # what the models before this one freed
    meta = dbt.config.get("meta") or {}
    rule = TargetingRule(
        target="scores",
        filter_sql=config_value(meta.get("item_filter")),
        booster_sql=config_value(meta.get("item_booster")),
        origin="var proactive_recs_item_filter / proactive_recs_item_booster",
    )
    return evaluate_targeting(
        dbt.ref("int_item_context"), [rule], key="item_id", context_name="int_item_context"
    )
