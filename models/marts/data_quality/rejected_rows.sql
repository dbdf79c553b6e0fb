-- Every raw row that staging did not keep, with its source, a key to find it and why.
-- Together with the clean stg_* models this accounts for every raw row
-- (tests/assert_every_raw_row_is_clean_or_rejected.sql).
{% set sources = ['users', 'items', 'transactions', 'notification_sends', 'notification_events'] %}
with

{% for source_name in sources %}
    {{ source_name }}_rejected as (

        select
            audit_row_id,
            '{{ source_name }}' as source_name,
            raw_key,
            rejection_reason

        from {{ ref('stg_' ~ source_name ~ '_audited') }}
        where rejection_reason is not null

    ),

{% endfor %}
final as (

    {% for source_name in sources %}
        select * from {{ source_name }}_rejected
        {% if not loop.last %}union all{% endif %}
    {% endfor %}

)

select * from final
