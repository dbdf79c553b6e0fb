-- The campaigns a run plans: the user's own table named by the var
-- proactive_recs_campaigns_table (any schema), else the package seed
-- seeds/reference/campaigns.csv. Every reader (notification_plan, the backtest, user_targeting,
-- email_digest) reads this model. Numbers and booleans are parsed here, whatever type the
-- user's table gives them, and every rule a campaign row must meet is checked here, once:
-- campaign_problem names the first column that breaks one (null = valid), and the test
-- campaigns_are_valid stops the build naming each bad campaign, its column and its value.
-- The library's Campaign config reads this verdict instead of judging the row again
-- (proactive_recs.notifications.campaign.validate_campaigns).
-- depends_on: {{ ref('campaigns') }}
{%- set campaigns_relation = proactive_recs_campaigns_relation() %}
{%- set campaign_types = ['digest', 'item_push'] %}
{%- set triggers = ['new_items', 'hidden_gems', 'expiring', 'item_list'] %}
with

source as (

    select {{ proactive_recs_campaign_columns(campaigns_relation) }}
    from {{ campaigns_relation }}

),

parsed as (

    select
        campaign_id,
        campaign_type,
        channel,
        trigger,
        item_list,
        user_filter,
        user_booster,
        description,
        -- the text as given, for the messages; the parsed value beside it
        trigger_days as trigger_days_text,
        {{ try_cast_as('trigger_days', type_double()) }} as trigger_days,
        audience_size as audience_size_text,
        {{ try_cast_as('audience_size', type_double()) }} as audience_size,
        min_relevance as min_relevance_text,
        {{ try_cast_as('min_relevance', type_double()) }} as min_relevance,
        priority as priority_text,
        {{ try_cast_as('priority', type_double()) }} as priority,
        items_per_digest as items_per_digest_text,
        {{ try_cast_as('items_per_digest', type_double()) }} as items_per_digest,
        max_sends_per_user_week as max_sends_per_user_week_text,
        {{ try_cast_as('max_sends_per_user_week', type_double()) }} as max_sends_per_user_week,
        is_active as is_active_text,
        {{ parse_boolean('is_active') }} as is_active,
        count(*) over (partition by campaign_id) as n_rows_with_id

    from source

),

checked as (

    select
        *,
        case
            when campaign_id is null
                then 'column campaign_id is required'
            when n_rows_with_id > 1
                then 'column campaign_id is duplicated'
            when campaign_type is null or campaign_type not in {{ sql_string_list(campaign_types) }}
                then {{ proactive_recs_campaign_problem('campaign_type', 'must be one of ' ~ campaign_types | join(', ')) }}
            when channel is null or channel not in {{ proactive_recs_channel_list() }}
                then {{ proactive_recs_campaign_problem('channel', 'must be one of ' ~ proactive_recs_channels() | join(', ')) }}
            -- item pushes
            when campaign_type = 'item_push' and (trigger is null or trigger not in {{ sql_string_list(triggers) }})
                then {{ proactive_recs_campaign_problem('trigger', 'must be one of ' ~ triggers | join(', ') ~ ' for an item_push') }}
            when campaign_type = 'item_push' and trigger_days_text is null and trigger in ('new_items', 'expiring')
                then 'column trigger_days is required'
            when campaign_type = 'item_push' and trigger_days_text is not null and not coalesce(trigger_days >= 0, false)
                then {{ proactive_recs_campaign_problem('trigger_days', 'must be a number >= 0') }}
            when campaign_type = 'item_push' and audience_size_text is null
                then 'column audience_size is required'
            when campaign_type = 'item_push' and not coalesce(audience_size >= 1 and audience_size = floor(audience_size), false)
                then {{ proactive_recs_campaign_problem('audience_size', 'must be an integer >= 1') }}
            when
                campaign_type = 'item_push'
                and trigger = 'item_list'
                and coalesce(replace(replace(item_list, ',', ''), ' ', ''), '') = ''
                then 'column item_list is required for the item_list trigger'
            -- digests
            when campaign_type = 'digest' and trigger is not null
                then {{ proactive_recs_campaign_problem('trigger', 'must be null for a digest') }}
            when campaign_type = 'digest' and items_per_digest_text is null
                then 'column items_per_digest is required'
            when campaign_type = 'digest' and not coalesce(items_per_digest >= 1 and items_per_digest = floor(items_per_digest), false)
                then {{ proactive_recs_campaign_problem('items_per_digest', 'must be an integer >= 1') }}
            -- every campaign
            when min_relevance_text is not null and min_relevance is null
                then {{ proactive_recs_campaign_problem('min_relevance', 'must be a number') }}
            when priority_text is not null and not coalesce(priority >= 0, false)
                then {{ proactive_recs_campaign_problem('priority', 'must be a number >= 0') }}
            when
                max_sends_per_user_week_text is not null
                and not coalesce(max_sends_per_user_week >= 0 and max_sends_per_user_week = floor(max_sends_per_user_week), false)
                then {{ proactive_recs_campaign_problem('max_sends_per_user_week', 'must be an integer >= 0') }}
            -- sending or not is not something to guess
            when is_active_text is null
                then 'column is_active is required'
            when is_active is null
                then {{ proactive_recs_campaign_problem('is_active', 'must be a boolean') }}
        end as campaign_problem

    from parsed

),

final as (

    select
        campaign_id,
        campaign_type,
        channel,
        trigger,
        trigger_days,
        item_list,
        cast(audience_size as {{ dbt.type_int() }}) as audience_size,
        coalesce(min_relevance, 0.0) as min_relevance,
        coalesce(priority, 1.0) as priority,
        cast(items_per_digest as {{ dbt.type_int() }}) as items_per_digest,
        cast(max_sends_per_user_week as {{ dbt.type_int() }}) as max_sends_per_user_week,
        user_filter,
        user_booster,
        is_active,
        description,
        campaign_problem

    from checked

)

select * from final
