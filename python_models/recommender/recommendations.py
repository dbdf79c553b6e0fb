"""Train the recommender as of the run date and keep everything it serves, in one long frame.

One fit feeds several outputs, and a dbt Python model returns one table, so rows carry a
record_type: 'user_item' / 'item_user' (top-K scores), 'user_factor' / 'item_factor'
(MF factors as a list) and 'parameter' (what was used after tuning). Thin SQL models split
it into the public tables. Logic: proactive_recs.recommender.two_stage.score.
"""

from proactive_recs.warehouse.dbt_io import (
    for_session,
    read_run_date,
    recommender_params,
    require_packages,
    to_pandas,
)
from proactive_recs.warehouse.recommender_io import (
    item_frame_for_scoring,
    long_recommendation_table,
    read_interactions,
    user_frame_for_scoring,
)


def model(dbt, session):
    dbt.config(materialized="table")
    require_packages(
        ["numpy", "pandas", "pyarrow", "scipy", "sklearn", "threadpoolctl", "numba", "implicit"]
    )
    from proactive_recs.recommender.two_stage import score  # after the check: it imports implicit

    meta = dbt.config.get("meta") or {}
    result = score(
        interactions=read_interactions(dbt.ref("int_interactions")),
        users=user_frame_for_scoring(
            to_pandas(dbt.ref("int_user_context")), to_pandas(dbt.ref("user_targeting"))
        ),
        items=item_frame_for_scoring(
            to_pandas(dbt.ref("int_item_context")), to_pandas(dbt.ref("item_targeting"))
        ),
        run_date=read_run_date(dbt.ref("int_run_context")),
        params=recommender_params(meta),
    )
    return for_session(long_recommendation_table(result), session)
