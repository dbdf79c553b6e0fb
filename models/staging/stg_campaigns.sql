-- The campaigns a run plans: the user's own table named by the var
-- proactive_recs_campaigns_table (any schema), else the package seed
-- seeds/reference/campaigns.csv. Typed here once; every reader (notification_plan, the
-- backtest, user_targeting, email_digest) reads this model. Values are parsed and checked in the library
-- (proactive_recs.campaigns.validate_campaigns: a bad row stops the build naming its campaign).
-- depends_on: {{ ref('campaigns') }}
{%- set required = ['campaign_id', 'campaign_type', 'channel'] -%}
{%- set known = [
    'campaign_id', 'campaign_type', 'channel', 'trigger', 'trigger_days', 'item_list',
    'audience_size', 'min_relevance', 'priority', 'items_per_digest', 'max_sends_per_user_week',
    'user_filter', 'user_booster', 'is_active', 'description'] -%}
{%- set lower_cased = ['campaign_type', 'channel', 'trigger'] -%}
{%- if var('proactive_recs_campaigns_table') -%}
    {%- set campaigns_relation = proactive_recs_relation_from_var('proactive_recs_campaigns_table') -%}
{%- else -%}
    {%- set campaigns_relation = ref('campaigns') -%}
{%- endif -%}
{%- set present = [] -%}
{%- if execute -%}
    {%- for column in adapter.get_columns_in_relation(campaigns_relation) -%}
        {%- do present.append(column.name | lower) -%}
    {%- endfor -%}
    {%- set missing = required | reject('in', present) | list -%}
    {%- if missing -%}
        {{ exceptions.raise_compiler_error(
            "proactive_recs: the campaigns table " ~ campaigns_relation
            ~ " (var proactive_recs_campaigns_table) lacks column(s) " ~ missing | join(', ')
            ~ ". Found: " ~ present | join(', ') ~ ". See seeds/reference/_reference_seeds.yml.") }}
    {%- endif -%}
{%- endif %}
with

source as (

    select * from {{ campaigns_relation }}

),

final as (

    -- every known column as trimmed text (a missing optional column is null, a missing
    -- is_active means every campaign runs); numbers and booleans are parsed and checked in one
    -- place, the library, whatever type the user's table gives them
    select
        {%- for column in known %}
        {% if column in present or not execute -%}
        {%- if column in lower_cased -%}lower({{ clean_text(column) }})
        {%- else -%}{{ clean_text(column) }}{%- endif -%}
        {%- elif column == 'is_active' -%}
        cast('true' as {{ dbt.type_string() }})
        {%- else -%}
        cast(null as {{ dbt.type_string() }})
        {%- endif %} as {{ column }}{{ ',' if not loop.last }}
        {%- endfor %}

    from source

)

select * from final
