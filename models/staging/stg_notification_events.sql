-- Clean notification events: one row per (send_id, event_type, occurred_at) of a known send.
with

audited as (

    select * from {{ ref('stg_notification_events_audited') }}

),

final as (

    select {{ star_exclude(audit_columns()) }}
    from audited
    where rejection_reason is null

)

select * from final
