-- Per item: may we recommend it at the run date (inside its availability window, passes the
-- item filter) and how much to boost it, from the vars item_filter / item_booster. The
-- expressions see every column of the `context` CTE: stg_items' columns, availability, popularity.
with

items as (

    select * from {{ ref('stg_items') }}

),

availability as (

    select * from {{ ref('int_item_availability') }}

),

interactions as (

    select * from {{ ref('int_interactions') }}

),

popularity as (

    select
        item_id,
        count(*) as n_interactions,
        count(distinct user_id) as n_users

    from interactions
    group by item_id

),

context as (

    select
        items.*,
        availability.availability_status,
        coalesce(popularity.n_interactions, 0) as n_interactions,
        coalesce(popularity.n_users, 0) as n_users,
        {{ dbt.datediff('items.available_from', run_date(), 'day') }} as days_since_available

    from items
    inner join availability on items.item_id = availability.item_id
    left join popularity on items.item_id = popularity.item_id

),

final as (

    select
        item_id,
        category,
        cast(price as {{ dbt.type_float() }}) as price,
        available_from,
        available_until,
        availability_status,
        availability_status = 'available' as is_available,
        -- item_filter var: {{ var('item_filter') or 'none' }}
        coalesce({{ var('item_filter') or 'true' }}, false) as passes_filter,
        -- item_booster var: {{ var('item_booster') or 'none' }}
        cast(coalesce({{ var('item_booster') or '1.0' }}, 1.0) as {{ dbt.type_float() }}) as boost,
        n_interactions,
        n_users

    from context

)

select * from final
