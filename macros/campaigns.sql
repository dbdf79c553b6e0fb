{# The campaign columns the package knows (seeds/reference/_reference_seeds.yml). #}
{% macro proactive_recs_campaign_columns_known() -%}
    {{ return([
        'campaign_id', 'campaign_type', 'channel', 'trigger', 'trigger_days', 'item_list',
        'audience_size', 'min_relevance', 'priority', 'items_per_digest',
        'max_sends_per_user_week', 'user_filter', 'user_booster', 'is_active', 'description']) }}
{%- endmacro %}


{#
  The campaigns table of this run: the relation the var proactive_recs_campaigns_table names,
  or the package seed.
#}
{% macro proactive_recs_campaigns_relation() -%}
    {%- if not var('proactive_recs_campaigns_table') -%}
        {{ return(ref('campaigns')) }}
    {%- endif -%}
    {{ return(proactive_recs_relation_from_var('proactive_recs_campaigns_table')) }}
{%- endmacro %}


{#
  The select list of stg_campaigns, from the table's columns read once: a table without
  campaign_id, campaign_type or channel stops the build naming the var, the table and the
  columns it has. Then every known campaign column as trimmed text (type, channel and
  trigger lower-cased); a column the table lacks is null, except is_active: a table without
  it runs every campaign.
#}
{% macro proactive_recs_campaign_columns(relation) -%}
    {%- set present = [] -%}
    {%- if execute -%}
        {%- set present = adapter.get_columns_in_relation(relation) | map(attribute='name') | map('lower') | list -%}
        {%- set missing = ['campaign_id', 'campaign_type', 'channel'] | reject('in', present) | list -%}
        {%- if missing -%}
            {{ exceptions.raise_compiler_error(
                "proactive_recs: the campaigns table " ~ relation
                ~ " (var proactive_recs_campaigns_table) lacks column(s) " ~ missing | join(', ')
                ~ ". Found: " ~ present | join(', ') ~ ". See seeds/reference/_reference_seeds.yml.") }}
        {%- endif -%}
    {%- endif -%}
    {%- set parts = [] -%}
    {%- for column in proactive_recs_campaign_columns_known() -%}
        {%- if column in present or not execute -%}
            {%- set value = clean_text(column) -%}
            {%- if column in ['campaign_type', 'channel', 'trigger'] -%}
                {%- set value = 'lower(' ~ value ~ ')' -%}
            {%- endif -%}
        {%- elif column == 'is_active' -%}
            {%- set value = "cast('true' as " ~ dbt.type_string() ~ ")" -%}
        {%- else -%}
            {%- set value = "cast(null as " ~ dbt.type_string() ~ ")" -%}
        {%- endif -%}
        {%- do parts.append(value ~ ' as ' ~ column) -%}
    {%- endfor -%}
    {{ return(parts | join(',\n        ')) }}
{%- endmacro %}


{# A campaign problem as text: 'column <column> <rule>, got <the value as given>'. #}
{% macro proactive_recs_campaign_problem(column, rule) -%}
    'column {{ column }} {{ rule }}, got ' || coalesce({{ column }}{{ '' if column in ['campaign_type', 'channel', 'trigger'] else '_text' }}, 'null')
{%- endmacro %}
