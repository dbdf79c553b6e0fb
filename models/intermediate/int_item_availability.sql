-- Each item's availability at the run date: never recommend outside
-- [available_from, available_until); upcoming items may get pre-launch audiences.
-- The rule's home for the run: the Python models read is_available (int_item_context) with
-- availability_as_of and decide nothing; only at other instants (evaluation cutoff, backtest
-- days) does proactive_recs.data.availability apply the same rule, and a test keeps the two
-- equal.
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
        end as availability_status,
        {{ run_date() }} as availability_as_of

    from items

)

select * from final
