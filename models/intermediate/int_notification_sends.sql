-- Sends clean by their own rules to users that exist: the send history caps and the
-- send ledger count.
-- The rows left out are in int_orphan_rows (and rejected_rows) with their reason.
with

staged as (

    select * from {{ ref('stg_notification_sends') }}

),

orphans as (

    select audit_row_id from {{ ref('int_orphan_rows') }}
    where source_name = 'notification_sends'

),

final as (

    select {{ star_exclude(['audit_row_id'], 'staged') }}
    from staged
    left join orphans on staged.audit_row_id = orphans.audit_row_id
    where orphans.audit_row_id is null

)

select * from final
