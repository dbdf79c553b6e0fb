"""The weekly fit's trained stages, kept for the daily runs (one row per weekly run).

Tuning MF and training the rankers on past windows is most of a fit's cost and changes little
in a week. This model fits the recommender as of the run date with everything, and stores
what a later fit can reuse (proactive_recs.recommender.stages.TrainedStages) as base64 text;
the daily `recommendations` model reads the latest row fitted as of its run date or before
and refits only MF (from the stored item factors). Incremental: earlier weeks' rows stay (a
backfill finds the stages of its own past); a weekly re-run at the same instant replaces its
row.
"""

from proactive_recs.warehouse.dbt_io import (
    for_session,
    read_run_date,
    recommender_params,
    require_packages,
    return_freed_memory,
)
from proactive_recs.warehouse.recommender_io import (
    read_interactions,
    read_scoring_items,
    read_scoring_users,
    stages_row,
)


def model(dbt, session):
    dbt.config(materialized="incremental", unique_key="stages_id")
    return_freed_memory()  # what the models before this one freed
    require_packages(
        ["numpy", "pandas", "pyarrow", "scipy", "sklearn", "threadpoolctl", "numba", "implicit"]
    )
    from proactive_recs.recommender.two_stage import Recommender  # imports implicit

    meta = dbt.config.get("meta") or {}
    fitted = Recommender(recommender_params(meta)).fit(
        read_interactions(dbt.ref("int_interactions")),
        read_scoring_users(dbt.ref("int_user_context"), dbt.ref("user_targeting")),
        read_scoring_items(dbt.ref("int_item_context"), dbt.ref("item_targeting")),
        as_of=read_run_date(dbt.ref("int_run_context")),
    )
    return for_session(stages_row(fitted.trained_stages()), session)
