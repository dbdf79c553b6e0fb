-- No raw row is silently dropped: per source, raw rows = clean rows + rejected rows.
-- Returns the sources where the books do not balance.
{% set sources = ['users', 'items', 'transactions', 'notification_sends', 'notification_events'] %}
with

rejected as (

    select
        source_name,
        count(*) as rejected_rows
    from {{ ref('rejected_rows') }}
    group by source_name

),

balance as (

    {% for source_name in sources %}
        select
            '{{ source_name }}' as source_name,
            (select count(*) from {{ ref('base_' ~ source_name) }}) as raw_rows,
            -- the clean rows: staging's, less those naming an unknown id (int_orphan_rows)
            (select count(*) from {{ ref(('stg_' if source_name in ['users', 'items'] else 'int_') ~ source_name) }}) as clean_rows
        {% if not loop.last %}union all{% endif %}
    {% endfor %}

),

final as (

    select
        balance.source_name,
        balance.raw_rows,
        balance.clean_rows,
        coalesce(rejected.rejected_rows, 0) as rejected_rows

    from balance
    left join rejected on balance.source_name = rejected.source_name
    where balance.raw_rows != balance.clean_rows + coalesce(rejected.rejected_rows, 0)

)

select * from final
