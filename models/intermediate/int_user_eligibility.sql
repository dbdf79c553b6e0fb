-- Whether each user may be sent anything, per channel (docs/frequency_rules.md suppression).
-- Consent fails closed: any sign of an opt-out suppresses, wherever it is found.
--   * Every source row of a user counts, rejected ones included (a duplicate, a row with a bad
--     time stamp): opted in only if every row says true; unsubscribed if any row has any
--     unsubscribed_at, whatever its date and even when it does not parse.
--   * An unsubscribe, bounce or complaint event counts whatever else is wrong with it (in the
--     future, unparseable time, a send rejected for its channel or time): it is traced to its
--     user through every send row with that send_id, and through sends earlier runs planned.
--   * A mailbox is one person: accounts sharing an address (compared trimmed and lower-cased)
--     are all suppressed when any of them opted out, and only one account per mailbox is sent
--     e-mail (the first by user_id among those allowed), so caps per mailbox hold.
--   * Pushes need push consent: push_opt_in true on every row when the source has that
--     column; otherwise email_opt_in stands for it only if the var
--     proactive_recs_email_opt_in_covers_push is true.
{%- set unknown_consent = 'true' if var('proactive_recs_assume_opt_in_when_unknown') else 'false' %}
{%- set email_covers_push = var('proactive_recs_email_opt_in_covers_push', false) %}
{%- set user_columns = adapter.get_columns_in_relation(ref('stg_users_audited'))
        | map(attribute='name') | map('lower') | list if execute else [] %}
{%- set has_push_opt_in = 'push_opt_in' in user_columns %}

with

users as (

    select * from {{ ref('stg_users') }}

),

user_rows as (

    -- every row that names a user: kept, duplicate or rejected for another defect
    select * from {{ ref('stg_users_audited') }}
    where user_id is not null

),

send_rows as (

    select
        send_id,
        user_id

    from {{ ref('stg_notification_sends_audited') }}
    where send_id is not null and user_id is not null

),

planned_sends as (

    -- sends earlier runs planned, not yet in the send history (a tool may report events first)
    select
        send_id,
        user_id

    from {{ ref('int_send_ledger') }}
    where not is_confirmed

),

event_rows as (

    select * from {{ ref('stg_notification_events_audited') }}
    where send_id is not null

),

send_owners as (

    select
        send_id,
        user_id
    from send_rows

    union

    select
        send_id,
        user_id
    from planned_sends

),

negative_events_per_user as (

    select
        send_owners.user_id,
        max(case when event_rows.event_type = 'unsubscribe' then 1 else 0 end) as has_unsubscribe_event,
        max(case when event_rows.event_type = 'bounce' then 1 else 0 end) as has_bounced,
        max(case when event_rows.event_type = 'complaint' then 1 else 0 end) as has_complained

    from event_rows
    inner join send_owners on event_rows.send_id = send_owners.send_id
    where event_rows.event_type in ('unsubscribe', 'bounce', 'complaint')
    group by send_owners.user_id

),

consent_per_user as (

    select
        user_id,
        -- a raw value that does not parse is not "unknown": it is not a yes
        min(
            case
                when email_opt_in_raw is null and {{ unknown_consent }} then 1
                when coalesce(email_opt_in, false) then 1
                else 0
            end
        ) = 1 as is_opted_in,
        {% if has_push_opt_in -%}
            min(case when coalesce({{ parse_boolean('push_opt_in') }}, false) then 1 else 0 end) = 1
                as is_push_opted_in,
        {%- else -%}
            cast(null as boolean) as is_push_opted_in,
        {%- endif %}
        max(case when unsubscribed_at_raw is not null then 1 else 0 end) = 1
            as is_unsubscribed_in_user_table

    from user_rows
    group by user_id

),

flags as (

    select
        users.user_id,
        users.email as mailbox,
        consent_per_user.is_opted_in,
        consent_per_user.is_push_opted_in,
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

mailbox_opt_outs as (

    -- mailboxes that any account opted out of (rejected user rows included)
    select distinct lower(trim(user_rows.email)) as mailbox
    from user_rows
    left join flags on user_rows.user_id = flags.user_id
    where
        user_rows.email is not null
        and (
            user_rows.unsubscribed_at_raw is not null
            or flags.is_unsubscribed or flags.has_bounced or flags.has_complained
        )

),

user_reasons as (

    select
        flags.*,
        case
            when flags.is_unsubscribed then 'unsubscribed'
            when flags.has_bounced then 'bounced'
            when flags.has_complained then 'complained'
            when mailbox_opt_outs.mailbox is not null then 'mailbox_opted_out'
        end as opt_out_reason

    from flags
    left join mailbox_opt_outs on flags.mailbox = mailbox_opt_outs.mailbox

),

mailbox_primaries as (

    -- the one account per mailbox that may be sent e-mail
    select
        mailbox,
        min(user_id) as primary_user_id

    from user_reasons
    where mailbox is not null and opt_out_reason is null and is_opted_in
    group by mailbox

),

channel_reasons as (

    select
        user_reasons.*,
        case
            when user_reasons.opt_out_reason is not null then user_reasons.opt_out_reason
            when not user_reasons.is_opted_in then 'not_opted_in'
            when user_reasons.mailbox is null then 'no_email'
            when mailbox_primaries.primary_user_id != user_reasons.user_id then 'shared_mailbox'
        end as email_suppression_reason,
        case
            when user_reasons.opt_out_reason is not null then user_reasons.opt_out_reason
            {% if has_push_opt_in -%}
                when not coalesce(user_reasons.is_push_opted_in, false) then 'no_push_consent'
            {%- elif email_covers_push -%}
                when not user_reasons.is_opted_in then 'not_opted_in'
            {%- else -%}
                when true then 'no_push_consent'
            {%- endif %}
        end as push_suppression_reason

    from user_reasons
    left join mailbox_primaries on user_reasons.mailbox = mailbox_primaries.mailbox

),

final as (

    select
        user_id,
        mailbox,
        is_opted_in,
        is_push_opted_in,
        is_unsubscribed,
        has_bounced,
        has_complained,
        email_suppression_reason,
        push_suppression_reason,
        email_suppression_reason is null as is_email_eligible,
        push_suppression_reason is null as is_push_eligible,
        -- the reason the user gets nothing at all: the opt-out, else the e-mail reason
        case
            when email_suppression_reason is null or push_suppression_reason is null then null
            else coalesce(opt_out_reason, email_suppression_reason)
        end as suppression_reason,
        email_suppression_reason is not null and push_suppression_reason is not null
            as is_suppressed

    from channel_reasons

)

select * from final
