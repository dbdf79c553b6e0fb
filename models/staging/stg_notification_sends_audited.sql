-- Every raw notification send, typed, with the reason it is rejected (null = clean).
-- A send dated after the run date is not rejected: a send tool writes back what it really
-- sent, and a run pinned to an earlier instant (a backfill, a late build) must still count it
-- (int_send_ledger). Models that need the past only filter on sent_at themselves.
-- Whether the user exists is a question across sources, answered in int_orphan_rows.
with

source as (

    select * from {{ ref('base_notification_sends') }}

),

typed as (

    select
        {{ clean_text('send_id') }} as send_id,
        {{ clean_text('user_id') }} as user_id,
        {{ clean_text('campaign_id') }} as campaign_id,
        {{ clean_text('item_id') }} as item_id,
        -- a known spelling mapped to email/push; an unknown one kept as written (rejected)
        coalesce({{ normalize_channel('channel') }}, lower({{ clean_text('channel') }})) as channel,
        {{ to_utc_timestamp('sent_at') }} as sent_at,
        {{ star_exclude(proactive_recs_required_columns()['notification_sends']) }},

        coalesce({{ clean_text('send_id') }}, '<null>') as raw_key

    from source

),

checked as (

    select
        typed.*,
        case
            when typed.send_id is null or typed.user_id is null then 'null_id'
            when typed.sent_at is null then 'unparseable_value'
            when typed.channel is null or typed.channel not in {{ proactive_recs_channel_list() }} then 'unknown_channel'
        end as row_defect

    from typed

),

final as (

    select
        {{ star_exclude(['row_defect']) }},
        {{ audit_row_columns('notification_sends', ['send_id'], 'sent_at, campaign_id, item_id') }}

    from checked

)

select * from final
