"""Per (target, user): passes the filter, and the boost. Target 'scores' = the vars
proactive_recs_user_filter / _user_booster (used by the score tables); any other target is a
campaign_id with its own filter and booster from stg_campaigns.
Logic: proactive_recs.notifications.targeting."""

from proactive_recs.notifications.targeting import TargetingRule, evaluate_targeting
from proactive_recs.warehouse.dbt_io import config_value, return_freed_memory, to_pandas


def model(dbt, session):
    dbt.config(materialized="table")
    return_freed_memory()  # what the models before this one freed
    meta = dbt.config.get("meta") or {}
    context = dbt.ref("int_user_context")
    campaigns = to_pandas(dbt.ref("stg_campaigns"))

    rules = [
        TargetingRule(
            target="scores",
            filter_sql=config_value(meta.get("user_filter")),
            booster_sql=config_value(meta.get("user_booster")),
            origin="var proactive_recs_user_filter / proactive_recs_user_booster",
        )
    ]
    for campaign in campaigns.itertuples():
        rules.append(
            TargetingRule(
                target=campaign.campaign_id,
                filter_sql=config_value(campaign.user_filter),
                booster_sql=config_value(campaign.user_booster),
                origin=f"campaign '{campaign.campaign_id}' (stg_campaigns)",
            )
        )
    return evaluate_targeting(context, rules, key="user_id", context_name="int_user_context")
