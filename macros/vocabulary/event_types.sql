{#
  The var proactive_recs_event_type_weights ({event_type: weight}) checked: event types
  trimmed and lower-cased as staging normalises them; a weight that is not a number, or is
  not above zero, stops the build naming the event type. Returns the cleaned mapping.
#}
{% macro proactive_recs_checked_event_weights(configured) -%}
    {%- if configured is not mapping or configured | length == 0 -%}
        {{ exceptions.raise_compiler_error(
            "proactive_recs: var proactive_recs_event_type_weights must be a non-empty map of "
            ~ "event type -> weight (e.g. {view: 1, purchase: 5}), got: " ~ configured) }}
    {%- endif -%}
    {%- set cleaned = {} -%}
    {%- for event_type, weight in configured.items() -%}
        {%- set text = weight | string | trim -%}
        {%- if weight is boolean or weight is none
            or not modules.re.match('^[0-9]+([.][0-9]*)?([eE][-+]?[0-9]+)?$', text)
            or (text | float) <= 0 -%}
            {{ exceptions.raise_compiler_error(
                "proactive_recs: var proactive_recs_event_type_weights: the weight of event type '"
                ~ event_type ~ "' must be a number > 0 (a zero weight would teach the model nothing), got: " ~ weight) }}
        {%- endif -%}
        {%- set key = event_type | string | trim | lower -%}
        {%- if key in cleaned -%}
            {{ exceptions.raise_compiler_error(
                "proactive_recs: var proactive_recs_event_type_weights names event type '" ~ key
                ~ "' twice (event types are compared trimmed and lower-case).") }}
        {%- endif -%}
        {%- do cleaned.update({key: text}) -%}
    {%- endfor -%}
    {{ return(cleaned) }}
{%- endmacro %}


{#
  The var proactive_recs_conversion_event_types: the event types that count as a conversion,
  trimmed and lower-cased. One event type may be given as a plain string.
#}
{% macro proactive_recs_conversion_event_types() -%}
    {%- set configured = var('proactive_recs_conversion_event_types', ['purchase']) -%}
    {%- if configured is none -%}{{ return([]) }}{%- endif -%}
    {%- if configured is string -%}{%- set configured = [configured] -%}{%- endif -%}
    {%- if configured is mapping or configured is not iterable -%}
        {{ exceptions.raise_compiler_error(
            "proactive_recs: var proactive_recs_conversion_event_types must be a list of event "
            ~ "types (e.g. [purchase]), got: " ~ configured) }}
    {%- endif -%}
    {%- set cleaned = [] -%}
    {%- for event_type in configured -%}
        {%- do cleaned.append(event_type | string | trim | lower) -%}
    {%- endfor -%}
    {{ return(cleaned) }}
{%- endmacro %}


{#
  The vocabulary as a query (event_type, weight): the var's map as literal rows, or the seed.
#}
{% macro proactive_recs_event_vocabulary() -%}
    {%- set configured = var('proactive_recs_event_type_weights') -%}
    {%- if configured is none -%}
        select
            lower(trim(event_type)) as event_type,
            cast(weight as {{ type_double() }}) as weight
        from {{ ref('event_type_weights') }}
    {%- else -%}
        {%- for event_type, weight in proactive_recs_checked_event_weights(configured).items() %}
        select
            cast({{ sql_string_literal(event_type) }} as {{ dbt.type_string() }}) as event_type,
            cast({{ weight }} as {{ type_double() }}) as weight
        {% if not loop.last %}union all{% endif %}
        {%- endfor %}
    {%- endif -%}
{%- endmacro %}


{# Whether an event type expression is one of the conversion event types (a boolean). #}
{% macro proactive_recs_is_conversion(expression) -%}
    {%- set conversion_types = proactive_recs_conversion_event_types() -%}
    {%- if conversion_types | length == 0 -%}
        false
    {%- else -%}
        {{ expression }} in {{ sql_string_list(conversion_types) }}
    {%- endif -%}
{%- endmacro %}
