{{ config(materialized='incremental', unique_key='send_key', on_schema_change='fail') }}
-- What a reverse-ETL sync sends: the sendable rows of every run (holdout rows are in
-- notification_holdout), append-only, one row per send_key. updated_at is the moment the
-- send was first planned and never changes, so an incremental sync on it sees each send once;
-- a re-run of the same run date adds nothing. Flat columns for Hightouch / Census, and the
-- Braze Cloud Data Ingestion shape (external_id, updated_at, payload JSON) beside them.
with

audience as (

    select * from {{ ref('notification_audience') }}
    where not is_holdout

),

new_sends as (

    select audience.*
    from audience
    {{ where_send_key_is_new('audience') }}

),

final as (

    select
        send_key,
        user_id as external_id,
        user_id,
        email,
        channel,
        campaign_id,
        item_id,
        rank,
        score,
        {{ utc_timestamp_tz('scheduled_send_at') }} as scheduled_send_at,
        item_title,
        item_url,
        item_price,
        item_image_url,
        digest_items_json,
        {{ utc_timestamp_tz('run_date') }} as run_date,
        {{ utc_timestamp_tz('updated_at') }} as updated_at,
        {{ json_object_text([
            ('send_key', 'send_key'),
            ('campaign_id', 'campaign_id'),
            ('channel', 'channel'),
            ('scheduled_send_at', iso_utc_text('scheduled_send_at')),
            ('item_id', 'item_id'),
            ('item_title', 'item_title'),
            ('item_url', 'item_url'),
            ('item_price', 'item_price'),
            ('item_image_url', 'item_image_url'),
            ('digest_items', 'digest_items_json'),
        ], json_keys=['digest_items']) }} as payload

    from new_sends

)

select * from final
