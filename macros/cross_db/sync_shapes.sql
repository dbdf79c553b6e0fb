{#
  Shapes reverse-ETL tools read: a UTC timestamp with its zone, and a JSON object as text.
#}

{# A naive UTC timestamp as a timestamp with time zone (UTC). #}
{% macro utc_timestamp_tz(expression) -%}
    {{ return(adapter.dispatch('utc_timestamp_tz', 'proactive_recs')(expression)) }}
{%- endmacro %}

{% macro duckdb__utc_timestamp_tz(expression) -%}
    timezone('UTC', cast({{ expression }} as timestamp))
{%- endmacro %}

{% macro snowflake__utc_timestamp_tz(expression) -%}
    timestamp_tz_from_parts(
        year({{ expression }}), month({{ expression }}), day({{ expression }}),
        hour({{ expression }}), minute({{ expression }}), second({{ expression }}),
        date_part(nanosecond, {{ expression }}), 'UTC'
    )
{%- endmacro %}

{# A timestamp with time zone back to a naive UTC timestamp. #}
{% macro utc_timestamp_ntz(expression) -%}
    {{ return(adapter.dispatch('utc_timestamp_ntz', 'proactive_recs')(expression)) }}
{%- endmacro %}

{% macro duckdb__utc_timestamp_ntz(expression) -%}
    timezone('UTC', {{ expression }})
{%- endmacro %}

{% macro snowflake__utc_timestamp_ntz(expression) -%}
    convert_timezone('UTC', {{ expression }})::timestamp_ntz
{%- endmacro %}

{% macro utc_timestamp_tz_type() -%}
    {{ return(adapter.dispatch('utc_timestamp_tz_type', 'proactive_recs')()) }}
{%- endmacro %}

{% macro duckdb__utc_timestamp_tz_type() -%}timestamp with time zone{%- endmacro %}

{% macro snowflake__utc_timestamp_tz_type() -%}timestamp_tz{%- endmacro %}


{#
  A JSON object as text from (key, SQL expression) pairs; `json_keys` lists the keys whose
  expression is already JSON text (embedded as JSON, not as a string). Nulls are kept.
#}
{% macro json_object_text(pairs, json_keys=[]) -%}
    {{ return(adapter.dispatch('json_object_text', 'proactive_recs')(pairs, json_keys)) }}
{%- endmacro %}

{% macro duckdb__json_object_text(pairs, json_keys) -%}
    cast(json_object(
        {%- for key, expression in pairs %}
            '{{ key }}', {% if key in json_keys %}json({{ expression }}){% else %}{{ expression }}{% endif %}
            {%- if not loop.last %},{% endif %}
        {%- endfor %}
    ) as varchar)
{%- endmacro %}

{% macro snowflake__json_object_text(pairs, json_keys) -%}
    to_json(object_construct_keep_null(
        {%- for key, expression in pairs %}
            '{{ key }}', {% if key in json_keys %}parse_json({{ expression }}){% else %}{{ expression }}{% endif %}
            {%- if not loop.last %},{% endif %}
        {%- endfor %}
    ))
{%- endmacro %}


{# A naive UTC timestamp as ISO 8601 text with a Z ('2026-11-01T08:00:00Z'). #}
{% macro iso_utc_text(expression) -%}
    {{ return(adapter.dispatch('iso_utc_text', 'proactive_recs')(expression)) }}
{%- endmacro %}

{% macro duckdb__iso_utc_text(expression) -%}
    strftime({{ expression }}, '%Y-%m-%dT%H:%M:%SZ')
{%- endmacro %}

{% macro snowflake__iso_utc_text(expression) -%}
    to_varchar({{ expression }}, 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
{%- endmacro %}
