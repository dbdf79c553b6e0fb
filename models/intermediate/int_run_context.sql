{{ config(materialized='table') }}
-- One row: the moment this run plans for, the one value every model uses (macro run_date();
-- Python models read it here). With the var proactive_recs_run_date unset it is the
-- invocation's start in UTC. A run date earlier than the latest run in notification_log
-- stops the build unless the var proactive_recs_allow_backfill is true: an earlier date
-- would plan sends under other keys than the ones already synced, and its caps would not see
-- the later runs.
-- It also warns about vars set under their names from before issue 14 (macros/renamed_vars.sql).
{%- do proactive_recs_warn_renamed_vars() %}
{%- set previous_log = proactive_recs_previous_relation('notification_log') %}
{%- set latest_logged = none %}
{%- if execute and previous_log is not none %}
    {%- set latest = run_query(
        "select cast(max(run_date) as " ~ dbt.type_string() ~ ") from " ~ previous_log) %}
    {%- set latest_logged = latest.columns[0].values()[0] %}
    {%- if latest_logged is not none and not var('proactive_recs_allow_backfill', false) %}
        {%- set check = run_query(
            "select " ~ run_date() ~ " < cast('" ~ latest_logged ~ "' as "
            ~ dbt.type_timestamp() ~ ")") %}
        {%- if check.columns[0].values()[0] %}
            {{ exceptions.raise_compiler_error(
                "proactive_recs: run_date " ~ proactive_recs_run_date_text()
                ~ " is earlier than the latest logged run (" ~ latest_logged ~ " in "
                ~ previous_log ~ "). Re-running an earlier date plans sends under new keys "
                ~ "that caps of later runs never saw. Set the var proactive_recs_allow_backfill: "
                ~ "true to run it anyway (e.g. into a separate schema).") }}
        {%- endif %}
    {%- endif %}
{%- endif %}

with

final as (

    select
        {{ run_date() }} as run_date,
        {{ 'true' if proactive_recs_run_date_is_pinned() else 'false' }} as is_run_date_pinned,
        {% if latest_logged is not none -%}
            cast('{{ latest_logged }}' as {{ dbt.type_timestamp() }})
        {%- else -%}
            cast(null as {{ dbt.type_timestamp() }})
        {%- endif %} as latest_logged_run_date,
        '{{ invocation_id }}' as invocation_id

)

select * from final
