{{ config(materialized='incremental', unique_key='send_key',
          on_schema_change='append_new_columns') }}
-- The holdout's counterfactual: for every run, what each holdout user would have been sent
-- under the same rules (never sent; lift is measured against it). Append-only, one row per
-- send_key, first_planned_at fixed, like notification_sync. New columns are appended to a
-- table from an earlier version (holdout_send_at: null on its old rows) rather than failing,
-- so that the holdout's history survives an upgrade.
with

audience as (

    select * from {{ ref('notification_audience') }}
    where is_holdout

),

final as (

    select
        audience.send_key,
        audience.user_id,
        audience.channel,
        audience.campaign_id,
        audience.item_id,
        audience.rank,
        audience.score,
        audience.expected_value,
        {{ utc_timestamp_tz('audience.run_date') }} as run_date,
        {{ utc_timestamp_tz('audience.updated_at') }} as first_planned_at,
        {{ utc_timestamp_tz('audience.holdout_send_at') }} as holdout_send_at

    from audience
    {{ where_send_key_is_new('audience') }}

)

select * from final
