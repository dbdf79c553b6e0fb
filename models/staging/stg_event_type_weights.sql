-- The interaction vocabulary: each event type the model learns from, its confidence weight and
-- whether it counts as a conversion. From the var proactive_recs_event_type_weights when set,
-- else the package seed seeds/reference/event_type_weights.csv. The one home of both rules:
-- staging joins it, Python reads is_conversion through int_interactions.
-- depends_on: {{ ref('event_type_weights') }}
{%- set configured = var('proactive_recs_event_type_weights') -%}
{%- set conversion_types = proactive_recs_conversion_event_types() %}
with

{% if configured is none %}
vocabulary as (

    select
        lower(trim(event_type)) as event_type,
        cast(weight as {{ dbt.type_float() }}) as weight
    from {{ ref('event_type_weights') }}

),
{% else %}
vocabulary as (

    {% for event_type, weight in proactive_recs_checked_event_weights(configured).items() -%}
    select
        cast({{ sql_string_literal(event_type) }} as {{ dbt.type_string() }}) as event_type,
        cast({{ weight }} as {{ dbt.type_float() }}) as weight
    {% if not loop.last %}union all{% endif %}
    {% endfor %}

),
{% endif %}

final as (

    select
        event_type,
        weight,
        {% if conversion_types -%}
        event_type in (
            {%- for event_type in conversion_types -%}
            {{ sql_string_literal(event_type) }}{% if not loop.last %}, {% endif %}
            {%- endfor -%}
        ) as is_conversion
        {%- else -%}
        false as is_conversion
        {%- endif %}

    from vocabulary

)

select * from final
