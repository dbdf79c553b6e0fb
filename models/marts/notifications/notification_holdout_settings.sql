{{ config(materialized='incremental', unique_key='run_date', on_schema_change='fail') }}
-- Append-only record of the holdout each run drew: a fingerprint of the salt and the share
-- (frequency rules holdout_salt, holdout_share; null = the package default). A user held out
-- stays held out while the salt stays; campaign_lift reads this to say when it changed,
-- because a week planned under two salts compares two different draws. The salt itself is
-- not stored: with it anyone could list the holdout.
{%- set rules = var('proactive_recs_frequency_rules') or {} %}
{%- set salt = rules.get('holdout_salt') %}
{%- set share = rules.get('holdout_share') %}
with

run_context as (

    select * from {{ ref('int_run_context') }}

),

final as (

    select
        run_context.run_date,
        {% if salt is none -%}
            cast('package default' as {{ dbt.type_string() }})
        {%- else -%}
            cast({{ dbt.hash("'" ~ (salt | string | replace("'", "''")) ~ "'") }}
                as {{ dbt.type_string() }})
        {%- endif %} as holdout_salt_fingerprint,
        cast({{ 'null' if share is none else share }} as double) as holdout_share,
        cast({{ dbt.current_timestamp() }} as {{ dbt.type_timestamp() }}) as logged_at

    from run_context
    {% if is_incremental() -%}
        where not exists (
            select 1 from {{ this }} as recorded
            where recorded.run_date = run_context.run_date
        )
    {%- endif %}

)

select * from final
