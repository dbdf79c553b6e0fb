-- Rows clean by their own source's rules that name an id no clean row of another source has:
-- a transaction of an unknown user or item, a send to an unknown user, an event of an
-- unknown send. The one home of these checks across sources: int_transactions,
-- int_notification_sends and int_notification_events leave these rows out, and
-- rejected_rows lists them with the staging rejections.
with

users as (

    select user_id from {{ ref('stg_users') }}

),

items as (

    select item_id from {{ ref('stg_items') }}

),

transactions as (

    select * from {{ ref('stg_transactions') }}

),

sends as (

    select * from {{ ref('stg_notification_sends') }}

),

events as (

    select * from {{ ref('stg_notification_events') }}

),

orphan_transactions as (

    select
        'transactions' as source_name,
        transactions.audit_row_id,
        case
            when users.user_id is null then 'unknown_user'
            else 'unknown_item'
        end as rejection_reason

    from transactions
    left join users on transactions.user_id = users.user_id
    left join items on transactions.item_id = items.item_id
    where users.user_id is null or items.item_id is null

),

orphan_sends as (

    select
        'notification_sends' as source_name,
        sends.audit_row_id,
        'unknown_user' as rejection_reason

    from sends
    left join users on sends.user_id = users.user_id
    where users.user_id is null

),

known_sends as (

    -- an event of a send to an unknown user has no known send either
    select sends.send_id
    from sends
    left join orphan_sends on sends.audit_row_id = orphan_sends.audit_row_id
    where orphan_sends.audit_row_id is null

),

orphan_events as (

    select
        'notification_events' as source_name,
        events.audit_row_id,
        'unknown_send' as rejection_reason

    from events
    left join known_sends on events.send_id = known_sends.send_id
    where known_sends.send_id is null

),

final as (

    select * from orphan_transactions
    union all
    select * from orphan_sends
    union all
    select * from orphan_events

)

select * from final
