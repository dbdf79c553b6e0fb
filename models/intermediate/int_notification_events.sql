-- Notification events clean by their own rules of sends that exist (int_notification_sends).
-- The rows left out are in int_orphan_rows (and rejected_rows) with their reason.
with

staged as (

    select * from {{ ref('stg_notification_events') }}

),

orphans as (

    select audit_row_id from {{ ref('int_orphan_rows') }}
    where source_name = 'notification_events'

),

final as (

    select {{ star_exclude(['audit_row_id'], 'staged') }}
    from staged
    left join orphans on staged.audit_row_id = orphans.audit_row_id
    where orphans.audit_row_id is null

)

select * from final
