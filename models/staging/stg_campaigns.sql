-- The campaigns a run plans: the user's own table named by the var
-- proactive_recs_campaigns_table (any schema), else the package seed
-- seeds/reference/campaigns.csv. Every reader (notification_plan, the backtest, user_targeting,
-- email_digest) reads this model. Columns stay text here: numbers and booleans are parsed and
-- checked in one place, the library (proactive_recs.notifications.campaigns.validate_campaigns: a bad value
-- stops the build naming its campaign and column), whatever type the user's table gives them.
-- depends_on: {{ ref('campaigns') }}
{%- set campaigns_relation = proactive_recs_campaigns_relation() %}
with

source as (

    select * from {{ campaigns_relation }}

),

final as (

    select {{ proactive_recs_campaign_columns(campaigns_relation) }}
    from source

)

select * from final
