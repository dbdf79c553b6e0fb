{{ config(materialized='incremental', unique_key='send_key', on_schema_change='fail') }}
-- Append-only history of planned sends, one row per send_key. send_key hashes the run date,
-- campaign, user and item, so re-running the same run date adds nothing.
with

audience as (

    select * from {{ ref('notification_audience') }}

),

final as (

    select
        send_key,
        run_date,
        user_id,
        channel,
        campaign_id,
        item_id,
        score,
        expected_value,
        scheduled_send_at,
        is_holdout,
        updated_at as logged_at

    from audience
    {% if is_incremental() %}
    where send_key not in (select existing.send_key from {{ this }} as existing)
    {% endif %}

)

select * from final
