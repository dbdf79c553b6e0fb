-- Top-K users per item as of the run date: the inverse recommendation ("who wants this item").
with

recommendations as (

    select * from {{ ref('recommendations') }}

),

final as (

    select
        item_id,
        user_id,
        cast(rank as integer) as rank,
        score,
        is_fallback,
        basis,
        stage

    from recommendations
    where record_type = 'item_user'

)

select * from final
