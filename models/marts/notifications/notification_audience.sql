-- One row per planned send of this run, ready for a reverse-ETL sync (Hightouch, Census,
-- Braze Cloud Data Ingestion). Holdout rows are kept, flagged and unscheduled, to measure
-- lift: sync `where not is_holdout`. Suppressed users never appear here.
with

plan as (

    select * from {{ ref('notification_plan') }}

),

items as (

    select * from {{ ref('stg_items') }}

),

planned_sends as (

    select * from plan
    where decision = 'planned'

),

final as (

    select
        planned_sends.send_key,
        planned_sends.user_id,
        planned_sends.email,
        planned_sends.channel,
        planned_sends.campaign_id,
        planned_sends.item_id,
        cast(planned_sends.rank as integer) as rank,
        planned_sends.score,
        planned_sends.expected_value,
        cast(planned_sends.scheduled_send_at as {{ dbt.type_timestamp() }}) as scheduled_send_at,
        cast(planned_sends.send_time_basis as {{ dbt.type_string() }}) as send_time_basis,
        planned_sends.is_holdout,
        cast(planned_sends.holdout_send_at as {{ dbt.type_timestamp() }}) as holdout_send_at,
        -- payload of an item push: what the message shows
        items.title as item_title,
        items.url as item_url,
        cast(items.price as double) as item_price,
        items.image_url as item_image_url,
        planned_sends.digest_items_json,
        cast(planned_sends.run_date as {{ dbt.type_timestamp() }}) as run_date,
        cast({{ dbt.current_timestamp() }} as {{ dbt.type_timestamp() }}) as updated_at

    from planned_sends
    left join items on planned_sends.item_id = items.item_id

)

select * from final
