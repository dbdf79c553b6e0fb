-- The campaign backtest week by week, per policy (for plots and sanity checks).
with

backtest_results as (

    select * from {{ ref('campaign_backtest_results') }}

),

final as (

    select
        policy,
        cast(week_start as {{ dbt.type_timestamp() }}) as week_start,
        sends,
        conversions,
        conversions_per_send,
        users_reached,
        max_sends_per_user

    from backtest_results
    where record_type = 'weekly'

)

select * from final
