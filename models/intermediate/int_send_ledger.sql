-- The send ledger: every send that frequency rules count. Three kinds of rows:
--   confirmed: the clean send history (notification_sends), whatever its date, later than
--     the run date included (a written-back send is real even when the run is pinned earlier);
--   planned, unconfirmed: rows that earlier runs handed to the send tool (notification_sync,
--     sendable rows only) and the send history does not confirm yet, dated at their
--     scheduled_send_at. They count from the moment they are synced, so caps hold across
--     daily runs whatever the write-back delay (or with no write-back at all). The sync is the
--     run's commit point: a run killed before its sync insert handed nothing to the tool and
--     adds nothing here; one killed after it is counted, whatever else it did not finish.
--   held out: what earlier runs would have sent the holdout (notification_holdout), dated
--     when it would have gone out (holdout_send_at; the run date for rows from before it).
--     Never sent, but counted against the holdout user's caps, spacing and item repeats, so
--     that the holdout is planned under the same rules as everyone else and campaign_lift
--     compares like with like (a holdout that no send ever caps would be planned every day;
--     one counted at the run date rather than where its send would have fallen is freed
--     hours early each week). Unconfirmed, so adaptive cadence gives no verdict.
-- A synced send is confirmed by a history row with send_id = its send_key, or with the same
-- user, campaign, channel and item sent within proactive_recs_ledger_match_hours of its
-- scheduled time; it is then counted once, as the confirmed row.
-- The sync table is read by name (macro proactive_recs_previous_relation), not by ref: it is
-- built from this run's plan, so a ref would be a cycle. Rows of the current run date (a
-- re-run of the same date) are left out: the re-run plans them again under the same keys.
{%- set previous_sync = proactive_recs_previous_relation('notification_sync') %}
{%- set previous_holdout = proactive_recs_previous_relation('notification_holdout') %}
{#- a holdout table from before holdout_send_at existed: its rows count at their run date #}
{%- set holdout_has_send_at = previous_holdout is not none and (
    adapter.get_columns_in_relation(previous_holdout)
    | selectattr('name', 'equalto', 'holdout_send_at') | list | length > 0) %}
{%- set match_hours = var('proactive_recs_ledger_match_hours', 48) | int %}

with

run_context as (

    select * from {{ ref('int_run_context') }}

),

confirmed_sends as (

    select * from {{ ref('int_notification_sends') }}

),

{% if previous_sync is not none %}
    synced_sends as (

        -- timestamps back to naive UTC, like every other model
        select
            send_key,
            user_id,
            campaign_id,
            item_id,
            channel,
            {{ utc_timestamp_ntz('scheduled_send_at') }} as scheduled_send_at,
            {{ utc_timestamp_ntz('run_date') }} as run_date

        from {{ previous_sync }}

    ),

    planned_earlier as (

        select synced_sends.*
        from synced_sends
        cross join run_context
        where synced_sends.run_date < run_context.run_date

    ),

    matched_by_key as (

        select planned_earlier.send_key
        from planned_earlier
        inner join confirmed_sends on planned_earlier.send_key = confirmed_sends.send_id

    ),

    matched_by_content as (

        select planned_earlier.send_key
        from planned_earlier
        inner join confirmed_sends
            on
                planned_earlier.user_id = confirmed_sends.user_id
                and planned_earlier.campaign_id = confirmed_sends.campaign_id
                and planned_earlier.channel = confirmed_sends.channel
                and coalesce(planned_earlier.item_id, '') = coalesce(confirmed_sends.item_id, '')
                and confirmed_sends.sent_at
                >= {{ dbt.dateadd('hour', -match_hours, 'planned_earlier.scheduled_send_at') }}
                and confirmed_sends.sent_at
                <= {{ dbt.dateadd('hour', match_hours, 'planned_earlier.scheduled_send_at') }}

    ),

    matched_keys as (

        select send_key from matched_by_key
        union
        select send_key from matched_by_content

    ),

    unconfirmed as (

        select
            planned_earlier.send_key as send_id,
            planned_earlier.user_id,
            planned_earlier.campaign_id,
            planned_earlier.item_id,
            planned_earlier.channel,
            planned_earlier.scheduled_send_at as sent_at,
            false as is_confirmed,
            'notification_sync' as ledger_source

        from planned_earlier
        left join matched_keys on planned_earlier.send_key = matched_keys.send_key
        where matched_keys.send_key is null

    ),

{% endif %}

{% if previous_holdout is not none %}
    held_out as (

        select
            held.send_key as send_id,
            held.user_id,
            held.campaign_id,
            held.item_id,
            held.channel,
            {% if holdout_has_send_at -%}
                coalesce(
                    {{ utc_timestamp_ntz('held.holdout_send_at') }},
                    {{ utc_timestamp_ntz('held.run_date') }}
                )
            {%- else -%}
                {{ utc_timestamp_ntz('held.run_date') }}
            {%- endif %} as sent_at,
            false as is_confirmed,
            'notification_holdout' as ledger_source

        from {{ previous_holdout }} as held
        cross join run_context
        where {{ utc_timestamp_ntz('held.run_date') }} < run_context.run_date

    ),

{% endif %}

confirmed as (

    select
        send_id,
        user_id,
        campaign_id,
        item_id,
        channel,
        sent_at,
        true as is_confirmed,
        'notification_sends' as ledger_source

    from confirmed_sends

),

final as (

    select * from confirmed
    {% if previous_sync is not none %}
        union all
        select * from unconfirmed
    {% endif %}
    {% if previous_holdout is not none %}
        union all
        select * from held_out
    {% endif %}

)

select * from final
