-- Every raw notification event, typed, with the reason it is rejected (null = clean).
-- Whether the send exists is a question across sources, answered in int_orphan_rows.
with

source as (

    select * from {{ ref('base_notification_events') }}

),

typed as (

    select
        {{ clean_text('send_id') }} as send_id,
        lower({{ clean_text('event_type') }}) as event_type,
        {{ to_utc_timestamp('occurred_at') }} as occurred_at,
        {{ star_exclude(proactive_recs_required_columns()['notification_events']) }},

        {{ dbt.concat([
            "coalesce(" ~ clean_text('send_id') ~ ", '<null>')", "'|'",
            "coalesce(" ~ clean_text('event_type') ~ ", '<null>')", "'|'",
            "coalesce(" ~ clean_text('occurred_at') ~ ", '<null>')"
        ]) }} as raw_key

    from source

),

checked as (

    select
        typed.*,
        case
            when typed.send_id is null then 'null_id'
            when typed.occurred_at is null then 'unparseable_value'
            when typed.occurred_at > {{ run_date() }} then 'future_timestamp'
            when typed.event_type is null or typed.event_type not in (
                'delivered', 'open', 'click', 'conversion', 'unsubscribe', 'bounce', 'complaint'
            ) then 'unknown_event_type'
        end as row_defect

    from typed

),

final as (

    select
        {{ star_exclude(['row_defect']) }},
        {{ audit_row_columns(
            'notification_events', ['send_id', 'event_type', 'occurred_at'], 'occurred_at') }}

    from checked

)

select * from final
