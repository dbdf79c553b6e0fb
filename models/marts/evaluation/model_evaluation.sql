-- One row per (model, direction, segment, metric, k): offline quality on the time split.
-- model 'served' is exactly what user_item_scores / item_user_scores hold, computed as of
-- the cutoff; the others are its parts and baselines.
with

evaluation_results as (

    select * from {{ ref('evaluation_results') }}

),

final as (

    select
        model,
        direction,
        segment,
        metric,
        cast(k as integer) as k,
        value,
        cast(eval_cutoff as {{ dbt.type_timestamp() }}) as eval_cutoff,
        horizon_days

    from evaluation_results
    where record_type = 'metric'

)

select * from final
