-- Latent factors of each user from the run's matrix factorization (a list of numbers),
-- for similarity queries and debugging.
with

recommendations as (

    select * from {{ ref('recommendations') }}

),

final as (

    select
        user_id,
        factors,
        is_servable,
        boost

    from recommendations
    where record_type = 'user_factor'

)

select * from final
