"""What this run fell back on: time zones not understood, scores served by a fallback, a
recommender trained in the daily run for want of usable weekly stages.

Logic: proactive_recs.diagnostics.run_diagnostics. Tests with severity warn on the table
print each kind in dbt build's output.
"""

from proactive_recs.diagnostics import run_diagnostics
from proactive_recs.warehouse.dbt_io import (
    config_value,
    for_session,
    return_freed_memory,
    to_pandas,
)


def model(dbt, session):
    dbt.config(materialized="table")
    return_freed_memory()  # what the models before this one freed
    meta = dbt.config.get("meta") or {}
    return for_session(
        run_diagnostics(
            users=to_pandas(dbt.ref("int_user_context"), columns=["user_id", "timezone"]),
            # only what score_fallbacks counts, of millions of score rows (user -> item
            # rows have no basis column)
            user_item_scores=to_pandas(dbt.ref("user_item_scores"), columns=["is_fallback"]),
            item_user_scores=to_pandas(
                dbt.ref("item_user_scores"), columns=["is_fallback", "basis"]
            ),
            default_timezone=config_value(meta.get("default_timezone"), "UTC"),
            parameters=to_pandas(dbt.ref("model_parameters"), columns=["parameter", "value"]),
        ),
        session,
    )
