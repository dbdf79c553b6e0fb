{{ config(materialized='table', enabled=var('proactive_recs_enable_evaluation', true)) }}
-- Did it work? Per campaign, channel and week of planning: the users planned and sent
-- against the holdout users the same rules planned and did not send (notification_log keeps
-- both), their conversions within horizon_days of the run that planned them, and the lift
-- with a 95 % interval that holds for small counts (Wilson per rate, Newcombe's hybrid score
-- interval for the difference; macros/stats/intervals.sql). A conversion is a conversion
-- event (var proactive_recs_conversion_event_types) with the pushed item, or for a digest with
-- any of its items (notification_digest_log); `halo_` columns count one with any item. The
-- cumulative_ columns count the campaign's users since its first week, each once; a week whose
-- runs used two holdout salts (notification_holdout_settings) says so.
{%- set horizon = var('proactive_recs_horizon_days') | int %}
with

notification_log as (

    select * from {{ ref('notification_log') }}

),

digest_log as (

    select * from {{ ref('notification_digest_log') }}

),

holdout_settings as (

    select * from {{ ref('notification_holdout_settings') }}

),

interactions as (

    select * from {{ ref('int_interactions') }}

),

run_context as (

    select * from {{ ref('int_run_context') }}

),

conversions as (

    select
        user_id,
        item_id,
        occurred_at

    from interactions
    where is_conversion

),

-- when the holdout salt changed: the first run under each new salt, carried forward
salt_changes as (

    select
        run_date,
        holdout_salt_fingerprint,
        case
            when
                lag(holdout_salt_fingerprint) over (order by run_date)
                != holdout_salt_fingerprint
                then run_date
        end as changed_at

    from holdout_settings

),

salt_per_run as (

    select
        run_date,
        holdout_salt_fingerprint,
        max(changed_at) over (
            order by run_date rows between unbounded preceding and current row
        ) as salt_changed_at

    from salt_changes

),

-- per campaign week: how many salts its runs used (runs before the record began count none)
week_salts as (

    select
        notification_log.campaign_id,
        notification_log.channel,
        {{ dbt.date_trunc('week', 'notification_log.run_date') }} as week_start,
        count(distinct salt_per_run.holdout_salt_fingerprint) as holdout_salts,
        max(salt_per_run.salt_changed_at) as holdout_salt_changed_at

    from notification_log
    left join salt_per_run on notification_log.run_date = salt_per_run.run_date
    group by
        notification_log.campaign_id,
        notification_log.channel,
        {{ dbt.date_trunc('week', 'notification_log.run_date') }}

),

-- the items each planned send carried: the pushed item, or the digest's items
planned_items as (

    select
        send_key,
        item_id

    from notification_log
    where item_id is not null

    union all

    select
        send_key,
        item_id

    from digest_log

),

-- a digest planned before its items were logged has none: its item conversions are unknown
sends_with_items as (

    select distinct send_key from planned_items

),

-- each planned send (sent or held out) and whether its user converted in the horizon after
-- the run that planned it: with one of its items, and with anything
send_outcomes as (

    select
        notification_log.send_key,
        notification_log.campaign_id,
        notification_log.channel,
        notification_log.user_id,
        notification_log.item_id,
        notification_log.run_date,
        case when notification_log.is_holdout then 1 else 0 end as is_holdout,
        case when sends_with_items.send_key is null then 0 else 1 end as has_items,
        max(case when planned_items.item_id is not null then 1 else 0 end) as converted_item,
        max(case when conversions.user_id is not null then 1 else 0 end) as converted_any

    from notification_log
    left join sends_with_items on notification_log.send_key = sends_with_items.send_key
    left join conversions
        on
            notification_log.user_id = conversions.user_id
            and notification_log.run_date <= conversions.occurred_at
            and conversions.occurred_at
            < {{ dbt.dateadd('day', horizon, 'notification_log.run_date') }}
    left join planned_items
        on
            notification_log.send_key = planned_items.send_key
            and conversions.item_id = planned_items.item_id
    group by
        notification_log.send_key,
        notification_log.campaign_id,
        notification_log.channel,
        notification_log.user_id,
        notification_log.item_id,
        notification_log.run_date,
        notification_log.is_holdout,
        sends_with_items.send_key

),

-- the unit is the user: converted when any of their planned items converted that week
user_outcomes as (

    select
        campaign_id,
        channel,
        {{ dbt.date_trunc('week', 'run_date') }} as week_start,
        user_id,
        max(is_holdout) as is_holdout,
        max(1 - has_items) as lacks_items,
        max(converted_item) as converted_item,
        max(converted_any) as converted_any,
        max(run_date) as last_run_date

    from send_outcomes
    group by campaign_id, channel, {{ dbt.date_trunc('week', 'run_date') }}, user_id

),

counts as (

    select
        user_outcomes.campaign_id,
        user_outcomes.channel,
        user_outcomes.week_start,
        max(user_outcomes.lacks_items) as lacks_items,
        sum(1 - user_outcomes.is_holdout) as users_treated,
        sum(user_outcomes.is_holdout) as users_holdout,
        sum((1 - user_outcomes.is_holdout) * user_outcomes.converted_item) as conversions_treated,
        sum(user_outcomes.is_holdout * user_outcomes.converted_item) as conversions_holdout,
        sum((1 - user_outcomes.is_holdout) * user_outcomes.converted_any)
            as halo_conversions_treated,
        sum(user_outcomes.is_holdout * user_outcomes.converted_any) as halo_conversions_holdout,
        max(user_outcomes.last_run_date) as last_run_date,
        max(run_context.run_date) as measured_at

    from user_outcomes
    cross join run_context
    group by user_outcomes.campaign_id, user_outcomes.channel, user_outcomes.week_start

),

-- the campaign's users from its first week up to each week, each user once (converted when
-- any of their planned sends so far converted): the lift since launch. Counting user-weeks
-- instead would treat the same holdout users, week after week, as new evidence, and give an
-- interval far too narrow when the holdout happens to differ from the rest.
users_up_to_week as (

    select
        weeks.campaign_id,
        weeks.channel,
        weeks.week_start,
        user_outcomes.user_id,
        max(user_outcomes.is_holdout) as is_holdout,
        max(user_outcomes.lacks_items) as lacks_items,
        max(user_outcomes.converted_item) as converted_item

    from counts as weeks
    inner join user_outcomes
        on
            weeks.campaign_id = user_outcomes.campaign_id
            and weeks.channel = user_outcomes.channel
            and weeks.week_start >= user_outcomes.week_start
    group by weeks.campaign_id, weeks.channel, weeks.week_start, user_outcomes.user_id

),

cumulative_users as (

    select
        campaign_id,
        channel,
        week_start,
        sum(1 - is_holdout) as cumulative_users_treated,
        sum(is_holdout) as cumulative_users_holdout,
        sum((1 - is_holdout) * converted_item) as cumulative_conversions_treated,
        sum(is_holdout * converted_item) as cumulative_conversions_holdout,
        max(lacks_items) as cumulative_lacks_items

    from users_up_to_week
    group by campaign_id, channel, week_start

),

cumulative_counts as (

    select
        counts.*,
        cumulative_users.cumulative_users_treated,
        cumulative_users.cumulative_users_holdout,
        cumulative_users.cumulative_conversions_treated,
        cumulative_users.cumulative_conversions_holdout,
        cumulative_users.cumulative_lacks_items

    from counts
    inner join cumulative_users
        on
            counts.campaign_id = cumulative_users.campaign_id
            and counts.channel = cumulative_users.channel
            and counts.week_start = cumulative_users.week_start

),

-- the rates, and whether a lift can be measured: both groups have users (and, for the
-- item's conversions, every planned send's items are known)
rates as (

    select
        *,
        cumulative_conversions_treated * 1.0 / nullif(cumulative_users_treated, 0)
            as cumulative_rate_treated,
        cumulative_conversions_holdout * 1.0 / nullif(cumulative_users_holdout, 0)
            as cumulative_rate_holdout,
        cumulative_users_treated > 0 and cumulative_users_holdout > 0
        and cumulative_lacks_items = 0
            as has_cumulative_item_lift,
        conversions_treated * 1.0 / nullif(users_treated, 0) as rate_treated,
        conversions_holdout * 1.0 / nullif(users_holdout, 0) as rate_holdout,
        halo_conversions_treated * 1.0 / nullif(users_treated, 0) as halo_rate_treated,
        halo_conversions_holdout * 1.0 / nullif(users_holdout, 0) as halo_rate_holdout,
        users_treated > 0 and users_holdout > 0 as has_both_groups,
        users_treated > 0 and users_holdout > 0 and lacks_items = 0 as has_item_lift

    from cumulative_counts

),

rates_and_salts as (

    select
        rates.*,
        week_salts.holdout_salts,
        week_salts.holdout_salt_changed_at

    from rates
    left join week_salts
        on
            rates.campaign_id = week_salts.campaign_id
            and rates.channel = week_salts.channel
            and rates.week_start = week_salts.week_start

),

final as (

    select
        campaign_id,
        channel,
        cast(week_start as {{ dbt.type_timestamp() }}) as week_start,
        cast(users_treated as integer) as users_treated,
        cast(users_holdout as integer) as users_holdout,
        cast(case when lacks_items = 0 then conversions_treated end as integer)
            as conversions_treated,
        cast(case when lacks_items = 0 then conversions_holdout end as integer)
            as conversions_holdout,
        case when lacks_items = 0 then rate_treated end as rate_treated,
        case when lacks_items = 0 then rate_holdout end as rate_holdout,
        case when has_item_lift then rate_treated - rate_holdout end as lift_abs,
        {%- for side in ['lower', 'upper'] %}
            case
                when has_item_lift
                    then {{ proactive_recs_newcombe_bound(
                    'conversions_treated', 'users_treated',
                    'conversions_holdout', 'users_holdout', side) }}
            end as lift_abs_{{ side }},
        {%- endfor %}
        case when has_item_lift then rate_treated / nullif(rate_holdout, 0) - 1.0 end as lift_rel,
        cast(case
            when has_item_lift
                then {{ proactive_recs_users_needed('rate_treated', 'rate_holdout') }}
        end as integer) as users_needed_per_group,
        cast(halo_conversions_treated as integer) as halo_conversions_treated,
        cast(halo_conversions_holdout as integer) as halo_conversions_holdout,
        halo_rate_treated,
        halo_rate_holdout,
        case when has_both_groups then halo_rate_treated - halo_rate_holdout end as halo_lift_abs,
        {%- for side in ['lower', 'upper'] %}
            case
                when has_both_groups
                    then {{ proactive_recs_newcombe_bound(
                    'halo_conversions_treated', 'users_treated',
                    'halo_conversions_holdout', 'users_holdout', side) }}
            end as halo_lift_abs_{{ side }},
        {%- endfor %}
        cast(cumulative_users_treated as integer) as cumulative_users_treated,
        cast(cumulative_users_holdout as integer) as cumulative_users_holdout,
        cast(case when cumulative_lacks_items = 0 then cumulative_conversions_treated end as integer)
            as cumulative_conversions_treated,
        cast(case when cumulative_lacks_items = 0 then cumulative_conversions_holdout end as integer)
            as cumulative_conversions_holdout,
        case
            when has_cumulative_item_lift
                then cumulative_rate_treated - cumulative_rate_holdout
        end as cumulative_lift_abs,
        {%- for side in ['lower', 'upper'] %}
            case
                when has_cumulative_item_lift
                    then {{ proactive_recs_newcombe_bound(
                    'cumulative_conversions_treated', 'cumulative_users_treated',
                    'cumulative_conversions_holdout', 'cumulative_users_holdout', side) }}
            end as cumulative_lift_abs_{{ side }},
        {%- endfor %}
        cast(holdout_salts as integer) as holdout_salts,
        cast(holdout_salt_changed_at as {{ dbt.type_timestamp() }}) as holdout_salt_changed_at,
        -- the horizon after the week's last run has passed: the counts are final
        {{ dbt.dateadd('day', horizon, 'last_run_date') }} <= measured_at as is_complete,
        case
            when users_holdout = 0 then 'no holdout users: no lift to measure'
            when users_treated = 0 then 'every planned user was held out'
            when holdout_salts > 1
                then 'the holdout salt changed within the week: the groups mix two draws'
            when lacks_items = 1
                then 'items not logged (planned before notification_digest_log): see the halo columns'
        end as reason

    from rates_and_salts

)

select * from final
