-- The hyper-parameters each evaluated model used, chosen on the validation window before
-- the cutoff (never on the test window).
with

evaluation_results as (

    select * from {{ ref('evaluation_results') }}

),

final as (

    select
        model,
        parameter,
        parameter_value

    from evaluation_results
    where record_type = 'parameter'

)

select * from final
