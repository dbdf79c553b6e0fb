{#
  Warnings that name what a source's vocabulary did to the build. Use with severity warn: the
  build goes on (the row-loss gates decide when it must stop), and dbt's log says which
  values were set aside and how often, instead of a bare "Got N results".
#}

{#
  Rows of an audited staging model rejected for `reason`, grouped by the value in
  `value_column` (e.g. unknown_event_type by event_type): one failing row per value, and a
  warning listing every value with its count, then `hint` (what to do about it).
#}
{% test rejected_values_named(model, reason, value_column, hint='') %}
    {%- set grouped -%}
        select coalesce(cast({{ value_column }} as {{ dbt.type_string() }}), '<null>') as rejected_value,
               count(*) as row_count
        from {{ model }}
        where rejection_reason = '{{ reason }}'
        group by 1
    {%- endset -%}
    {%- if execute -%}
        {%- set result = run_query(grouped ~ " order by 2 desc, 1") -%}
        {%- if result.rows | length > 0 -%}
            {%- set named = [] -%}
            {%- for row in result.rows -%}{%- do named.append(row[0] ~ ' (' ~ row[1] ~ ' rows)') -%}{%- endfor -%}
            {%- do exceptions.warn(
                "proactive_recs: " ~ model ~ ": rows rejected as " ~ reason ~ " by " ~ value_column
                ~ ": " ~ named | join(', ') ~ ". They are in rejected_rows. " ~ hint) -%}
        {%- endif -%}
    {%- endif -%}
    {{ grouped }}
{% endtest %}


{#
  Every event type of the var proactive_recs_conversion_event_types occurs in the model's
  event_type column: a conversion type that never occurs leaves the backtest and the
  hidden-gem rates without a single conversion. One failing row per missing type.
#}
{% test conversion_event_types_occur(model) %}
    {%- set conversion_types = proactive_recs_conversion_event_types() -%}
    {%- if conversion_types | length == 0 -%}
        {%- if execute -%}
            {%- do exceptions.warn(
                "proactive_recs: var proactive_recs_conversion_event_types is empty: the backtest "
                ~ "and hidden gems will see no conversion.") -%}
        {%- endif -%}
        select cast('<none configured>' as {{ dbt.type_string() }}) as missing_event_type
    {%- else -%}
        {%- set missing -%}
            with configured as (
                {% for event_type in conversion_types -%}
                select cast({{ sql_string_literal(event_type) }} as {{ dbt.type_string() }}) as event_type
                {% if not loop.last %}union all{% endif %}
                {% endfor %}
            ),
            present as (
                select distinct event_type from {{ model }}
            )
            select configured.event_type as missing_event_type
            from configured
            left join present on configured.event_type = present.event_type
            where present.event_type is null
        {%- endset -%}
        {%- if execute -%}
            {%- set result = run_query(missing) -%}
            {%- if result.rows | length > 0 -%}
                {%- do exceptions.warn(
                    "proactive_recs: conversion event type(s) " ~ result.columns[0].values() | join(', ')
                    ~ " (var proactive_recs_conversion_event_types) never occur in " ~ model
                    ~ ": the backtest and hidden gems will see no conversion of that type.") -%}
            {%- endif -%}
        {%- endif -%}
        {{ missing }}
    {%- endif -%}
{% endtest %}
