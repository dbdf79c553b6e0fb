{#
  The moment a run plans for, as a SQL timestamp (UTC, no zone).
  var('run_date') pins it (demo, CI, backfills); null means "now", so a scheduled job needs no var.
#}
{% macro run_date() -%}
    {%- set value = var('run_date', none) -%}
    {%- if value is none or value == '' -%}
        cast({{ dbt.current_timestamp() }} as {{ dbt.type_timestamp() }})
    {%- else -%}
        cast('{{ value }}' as {{ dbt.type_timestamp() }})
    {%- endif -%}
{%- endmacro %}
