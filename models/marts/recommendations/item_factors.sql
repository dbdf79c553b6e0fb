-- Latent factors of each item from the run's matrix factorization (a list of numbers),
-- for similarity queries and debugging.
with

recommendations as (

    select * from {{ ref('recommendations') }}

),

final as (

    select
        item_id,
        factors,
        is_servable,
        boost

    from recommendations
    where record_type = 'item_factor'

)

select * from final
