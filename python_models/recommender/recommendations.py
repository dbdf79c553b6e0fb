"""Fit the recommender as of the run date and keep everything it serves, in one long table.

The daily fit reuses the weekly fit's trained stages (recommender_stages: tuned MF settings and
rankers, when trained with the same settings and not after the run date) and refits only MF
on today's interactions, starting from the weekly fit's item factors; without usable stages
it tunes and trains everything itself, and model_parameters / run_diagnostics say so. One fit
feeds several outputs, and a dbt Python model returns one table, so rows carry a record_type:
'user_item' / 'item_user' (top-K scores), 'user_factor' / 'item_factor' (MF factors as a list)
and 'parameter' (what was used).
Thin SQL models split it into the public tables.
Logic: proactive_recs.recommender.two_stage.Recommender.
"""

from proactive_recs.warehouse.dbt_io import (
    for_session,
    read_run_date,
    recommender_params,
    require_packages,
    return_freed_memory,
)
from proactive_recs.warehouse.recommender_io import (
    long_recommendation_table,
    read_interactions,
    read_scoring_items,
    read_scoring_users,
    read_stages,
)


def model(dbt, session):
    dbt.config(materialized="table")
    return_freed_memory()  # what the models before this one freed
    require_packages(
        ["numpy", "pandas", "pyarrow", "scipy", "sklearn", "threadpoolctl", "numba", "implicit"]
    )
    from proactive_recs.recommender.two_stage import Recommender, resolve_params  # implicit

    meta = dbt.config.get("meta") or {}
    run_date = read_run_date(dbt.ref("int_run_context"))
    try:  # the weekly model's table; absent before the first weekly run
        stored = dbt.ref("recommender_stages")
    except Exception:  # noqa: BLE001 - each adapter says "no such table" its own way
        stored = None
    params = recommender_params(meta)
    stages, lookup = read_stages(stored, run_date, resolve_params(params))
    fitted = Recommender(params).fit(
        read_interactions(dbt.ref("int_interactions")),
        read_scoring_users(dbt.ref("int_user_context"), dbt.ref("user_targeting")),
        read_scoring_items(dbt.ref("int_item_context"), dbt.ref("item_targeting")),
        as_of=run_date,
        stages=stages,
    )
    result = fitted.recommend()
    return for_session(
        long_recommendation_table(result, extra_params={"stages_lookup": lookup}), session
    )
