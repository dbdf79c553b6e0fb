-- Whether each user may be sent anything at all (DESIGN.md §6 suppression): not opted in,
-- unsubscribed (in the user table or through a notification event), bounced or complained.
-- The first reason that applies is kept; is_suppressed users never reach a sendable row.
-- Consent is read from every row of a user in the source, duplicates included: a user
-- listed twice is opted in only if every row says so, and unsubscribed if any row does
-- (stg_users keeps one row per user; the one it drops may be the one that says stop).
{%- set unknown_consent = 'true' if var('assume_opt_in_when_unknown') else 'false' %}

with

users as (

    select * from {{ ref('stg_users') }}

),

user_rows as (

    -- the kept row and its duplicates (rows with other defects carry no usable values)
    select * from {{ ref('stg_users_audited') }}
    where rejection_reason is null or rejection_reason = 'duplicate'

),

sends as (

    select * from {{ ref('stg_notification_sends') }}

),

notification_events as (

    select * from {{ ref('stg_notification_events') }}

),

negative_events_per_user as (

    select
        sends.user_id,
        max(case when notification_events.event_type = 'unsubscribe' then 1 else 0 end)
            as has_unsubscribe_event,
        max(case when notification_events.event_type = 'bounce' then 1 else 0 end) as has_bounced,
        max(case when notification_events.event_type = 'complaint' then 1 else 0 end) as has_complained

    from notification_events
    inner join sends on notification_events.send_id = sends.send_id
    where notification_events.occurred_at <= {{ run_date() }}
    group by sends.user_id

),

consent_per_user as (

    select
        user_id,
        min(
            case when coalesce(email_opt_in, {{ unknown_consent }}) then 1 else 0 end
        ) = 1 as is_opted_in,
        max(case when unsubscribed_at <= {{ run_date() }} then 1 else 0 end) = 1
            as is_unsubscribed_in_user_table

    from user_rows
    group by user_id

),

flags as (

    select
        users.user_id,
        consent_per_user.is_opted_in,
        (
            consent_per_user.is_unsubscribed_in_user_table
            or coalesce(negative_events_per_user.has_unsubscribe_event, 0) = 1
        ) as is_unsubscribed,
        coalesce(negative_events_per_user.has_bounced, 0) = 1 as has_bounced,
        coalesce(negative_events_per_user.has_complained, 0) = 1 as has_complained

    from users
    inner join consent_per_user on users.user_id = consent_per_user.user_id
    left join negative_events_per_user on users.user_id = negative_events_per_user.user_id

),

reasons as (

    select
        user_id,
        is_opted_in,
        coalesce(is_unsubscribed, false) as is_unsubscribed,
        has_bounced,
        has_complained,
        case
            when not is_opted_in then 'not_opted_in'
            when coalesce(is_unsubscribed, false) then 'unsubscribed'
            when has_bounced then 'bounced'
            when has_complained then 'complained'
        end as suppression_reason

    from flags

),

final as (

    select
        *,
        suppression_reason is not null as is_suppressed

    from reasons

)

select * from final
