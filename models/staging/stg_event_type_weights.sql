-- The interaction vocabulary: each event type the model learns from, its confidence weight and
-- whether it counts as a conversion. From the var proactive_recs_event_type_weights when set,
-- else the package seed seeds/reference/event_type_weights.csv. The one home of both rules:
-- staging joins it, the library reads is_conversion through int_interactions.
-- depends_on: {{ ref('event_type_weights') }}
with

vocabulary as (

    {{ proactive_recs_event_vocabulary() }}

),

final as (

    select
        event_type,
        weight,
        {{ proactive_recs_is_conversion('event_type') }} as is_conversion

    from vocabulary

)

select * from final
