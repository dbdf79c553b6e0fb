{{ config(materialized='incremental', unique_key=['send_key', 'item_id'],
          on_schema_change='fail') }}
-- Append-only history of the items each planned digest carried, holdout digests included
-- (what they would have been sent): notification_log has one row per digest with no item, so
-- campaign_lift reads the items here to count a digest's conversions with its own items.
with

audience as (

    select * from {{ ref('notification_audience') }}

),

digest_items as (

    {{ digest_item_rows('audience') }}

),

final as (

    select
        digest_items.send_key,
        digest_items.item_id,
        digest_items.item_rank,
        audience.run_date,
        audience.user_id,
        audience.campaign_id,
        audience.is_holdout,
        audience.updated_at as logged_at

    from digest_items
    inner join audience on digest_items.send_key = audience.send_key
    {{ where_send_key_is_new('digest_items') }}

)

select * from final
