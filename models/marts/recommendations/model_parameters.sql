-- Every recommender parameter the run used, after hyper-parameter tuning on the validation
-- window before the run date.
with

recommendations as (

    select * from {{ ref('recommendations') }}

),

final as (

    select
        parameter,
        value,
        stage

    from recommendations
    where record_type = 'parameter'

)

select * from final
