{{ config(materialized='incremental', unique_key='send_key', on_schema_change='fail') }}
-- Append-only history of planned sends, one row per send_key. send_key hashes the run date,
-- campaign, user and item, so re-running the same run date adds nothing.
with

audience as (

    select * from {{ ref('notification_audience') }}

),

final as (

    select
        audience.send_key,
        audience.run_date,
        audience.user_id,
        audience.channel,
        audience.campaign_id,
        audience.item_id,
        audience.score,
        audience.expected_value,
        audience.scheduled_send_at,
        audience.is_holdout,
        audience.updated_at as logged_at

    from audience
    {{ where_send_key_is_new('audience') }}

)

select * from final
