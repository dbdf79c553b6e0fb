-- One row per (policy, metric) of the campaign backtest: the configured rules against the
-- baselines, over the same weekly trigger items.
with

backtest_results as (

    select * from {{ ref('campaign_backtest_results') }}

),

final as (

    select
        policy,
        metric,
        value

    from backtest_results
    where record_type = 'summary'

)

select * from final
