-- Every raw row that was not kept, with its source, a key to find it and why: rejected by
-- its own source's rules in staging, or naming an id another source does not have
-- (int_orphan_rows). Together with the clean rows this accounts for every raw row
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
orphans as (

    select * from {{ ref('int_orphan_rows') }}

),

audited as (

    {% for source_name in ['transactions', 'notification_sends', 'notification_events'] %}
        select
            audit_row_id,
            raw_key
        from {{ ref('stg_' ~ source_name ~ '_audited') }}
        where rejection_reason is null
        {% if not loop.last %}union all{% endif %}
    {% endfor %}

),

orphans_rejected as (

    select
        orphans.audit_row_id,
        orphans.source_name,
        audited.raw_key,
        orphans.rejection_reason

    from orphans
    inner join audited on orphans.audit_row_id = audited.audit_row_id

),

final as (

    {% for source_name in sources %}
        select * from {{ source_name }}_rejected
        union all
    {% endfor %}
    select * from orphans_rejected

)

select * from final
