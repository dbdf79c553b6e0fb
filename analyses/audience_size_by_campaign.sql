-- Audience sizing: planned sends, holdout and distinct users per campaign and channel for this
-- run, with the candidates each campaign lost and why. `dbt compile -s audience_size_by_campaign`
-- and run the compiled SQL in your warehouse.
with

audience as (

    select * from {{ ref('notification_audience') }}

),

rejected as (

    select * from {{ ref('rejected_candidates') }}

),

planned as (

    select
        campaign_id,
        channel,
        count(*) as planned_sends,
        sum(case when is_holdout then 1 else 0 end) as holdout_sends,
        count(distinct user_id) as distinct_users

    from audience
    group by campaign_id, channel

),

lost as (

    select
        campaign_id,
        sum(case when reason = 'cap_reached' then 1 else 0 end) as lost_to_channel_cap,
        sum(case when reason = 'campaign_cap_reached' then 1 else 0 end) as lost_to_campaign_cap,
        sum(case when reason = 'filtered_out' then 1 else 0 end) as lost_to_filter,
        count(*) as lost_candidates

    from rejected
    group by campaign_id

),

final as (

    select
        planned.*,
        coalesce(lost.lost_to_channel_cap, 0) as lost_to_channel_cap,
        coalesce(lost.lost_to_campaign_cap, 0) as lost_to_campaign_cap,
        coalesce(lost.lost_to_filter, 0) as lost_to_filter,
        coalesce(lost.lost_candidates, 0) as lost_candidates

    from planned
    left join lost on planned.campaign_id = lost.campaign_id

)

select * from final
