-- Each item's availability at the run date: never recommend outside
-- [available_from, available_until); upcoming items may get pre-launch audiences.
with

items as (

    select * from {{ ref('stg_items') }}

),

final as (

    select
        item_id,
        available_from,
        available_until,
        case
            when available_from > {{ run_date() }} then 'upcoming'
            when available_until <= {{ run_date() }} then 'expired'
            else 'available'
        end as availability_status

    from items

)

select * from final
