-- Send history clean by this source's own rules: one row per send_id on 'email' or 'push'
-- (whether the user exists: int_notification_sends).
with

audited as (

    select * from {{ ref('stg_notification_sends_audited') }}

),

final as (

    -- audit_row_id stays: int_orphan_rows names the rows whose ids are unknown by it
    select {{ star_exclude(['raw_key', 'rejection_reason']) }}
    from audited
    where rejection_reason is null

)

select * from final
