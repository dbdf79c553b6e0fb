-- Whether each user may be sent anything at all (DESIGN.md §6 suppression): not opted in,
-- unsubscribed (in the user table or through a notification event), bounced or complained.
-- The first reason that applies is kept; is_suppressed users never reach a sendable row.
with

users as (

    select * from {{ ref('stg_users') }}

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

flags as (

    select
        users.user_id,
        {% if var('assume_opt_in_when_unknown') -%}
        coalesce(users.email_opt_in, true) as is_opted_in,
        {%- else -%}
            coalesce(users.email_opt_in, false) as is_opted_in,
        {%- endif %}
        (
            users.unsubscribed_at <= {{ run_date() }}
            or coalesce(negative_events_per_user.has_unsubscribe_event, 0) = 1
        ) as is_unsubscribed,
        coalesce(negative_events_per_user.has_bounced, 0) = 1 as has_bounced,
        coalesce(negative_events_per_user.has_complained, 0) = 1 as has_complained

    from users
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
