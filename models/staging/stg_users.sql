-- Clean users: one row per user_id, typed, e-mail trimmed and lower-cased, timestamps in UTC.
-- Extra source columns (any user attribute) follow the contract columns unchanged.
with

audited as (

    select * from {{ ref('stg_users_audited') }}

),

final as (

    select {{ star_exclude(audit_columns() + ['email_opt_in_raw', 'unsubscribed_at_raw']) }}
    from audited
    where rejection_reason is null

)

select * from final
