-- Reliability of the served probabilities on the test window: per probability bin, the mean
-- predicted probability against the share of pairs that did interact (ece summarises it).
with

evaluation_results as (

    select * from {{ ref('evaluation_results') }}

),

final as (

    select
        model,
        direction,
        cast(bin as integer) as bin,
        mean_predicted,
        observed_rate,
        cast(n as integer) as n

    from evaluation_results
    where record_type = 'calibration'

)

select * from final
