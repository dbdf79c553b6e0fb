-- Clean send history: one row per send_id, sent to a known user on 'email' or 'push'.
with

audited as (

    select * from {{ ref('stg_notification_sends_audited') }}

),

final as (

    select {{ star_exclude(audit_columns()) }}
    from audited
    where rejection_reason is null

)

select * from final
