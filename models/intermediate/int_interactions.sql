-- Interactions the recommender learns from: one row per clean transaction line with the
-- weight of its event type and whether that type is a conversion (stg_event_type_weights). Recency decay and log-scaling depend on the as-of date
-- (run date or evaluation cutoff), so they happen in the library, not here.
with

transactions as (

    select * from {{ ref('int_transactions') }}

),

final as (

    select
        user_id,
        item_id,
        occurred_at,
        event_type,
        cast(event_weight as {{ dbt.type_float() }}) as event_weight,
        cast(quantity as {{ dbt.type_float() }}) as quantity,
        -- last: the column order that proactive_recs.data.interactions.INTERACTION_COLUMNS
        -- reads as is
        is_conversion

    from transactions

)

select * from final
