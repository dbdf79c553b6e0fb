{#
  The moment a run plans for. One value per dbt invocation, used by every model:
  - var('proactive_recs_run_date') pins it (backfills, tests): a date ('2026-11-01', midnight UTC) or an
    ISO timestamp, optionally with an offset ('2026-11-01T09:30:00+02:00'), converted to UTC;
  - unset (null or ''), it is the start of the dbt invocation in UTC (run_started_at), so a
    scheduled `dbt build` needs no var and all its models agree on one instant.
  Python models cannot call macros (nor render it in their yml config, which dbt caches
  between invocations): they read it from the one-row model int_run_context.
#}

{# The run date as 'YYYY-MM-DD HH:MM:SS.ffffff' text, UTC. A var that is not a date stops the build. #}
{% macro proactive_recs_run_date_text() -%}
    {%- if not proactive_recs_run_date_is_pinned() -%}
        {%- set moment = run_started_at.astimezone(modules.pytz.utc).replace(tzinfo=none) -%}
    {%- else -%}
        {%- set text = var('proactive_recs_run_date') | string | trim -%}
        {#- Checked by shape before parsing: the text is pasted into SQL, so nothing else may pass. -#}
        {%- set shape = '^\\d{4}-\\d{2}-\\d{2}([ T]\\d{2}:\\d{2}(:\\d{2}(\\.\\d{1,6})?)?)?(Z|[+-]\\d{2}:?\\d{2})?$' -%}
        {%- if not modules.re.match(shape, text) -%}
            {{ exceptions.raise_compiler_error(
                "proactive_recs: var proactive_recs_run_date = '" ~ text ~ "' is not a date or ISO timestamp "
                ~ "(e.g. 2026-11-01 or 2026-11-01T09:30:00+02:00). Leave it unset to plan for now.") }}
        {%- endif -%}
        {%- set parsed = modules.datetime.datetime.fromisoformat(text.replace('Z', '+00:00')) -%}
        {%- if parsed.tzinfo is not none -%}
            {%- set parsed = parsed.astimezone(modules.pytz.utc).replace(tzinfo=none) -%}
        {%- endif -%}
        {%- set moment = parsed -%}
    {%- endif -%}
    {{- moment.strftime('%Y-%m-%d %H:%M:%S.%f') -}}
{%- endmacro %}


{# Whether var('proactive_recs_run_date') pins the run (else it is the invocation's start). #}
{% macro proactive_recs_run_date_is_pinned() -%}
    {%- set value = var('proactive_recs_run_date', none) -%}
    {{- return(not (value is none or (value | string | trim) == '')) -}}
{%- endmacro %}


{# The run date as a SQL timestamp (UTC, no zone). #}
{% macro run_date() -%}
    cast('{{ proactive_recs_run_date_text() }}' as {{ dbt.type_timestamp() }})
{%- endmacro %}
