-- Top-K items per user as of the run date: the personal digest's raw material.
with

recommendations as (

    select * from {{ ref('recommendations') }}

),

final as (

    select
        user_id,
        item_id,
        cast(rank as integer) as rank,
        score,
        is_fallback,
        because_item_id,
        stage

    from recommendations
    where record_type = 'user_item'

)

select * from final
