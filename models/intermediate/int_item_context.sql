-- Everything a filter or booster may say about an item: stg_items' columns (extra attributes
-- included), availability at the run date, and popularity. Item filters and boosters are SQL
-- expressions over these columns, evaluated by python_models/item_targeting.py.
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

final as (

    select
        items.*,
        availability.availability_status,
        availability.availability_status = 'available' as is_available,
        availability.availability_as_of,
        coalesce(popularity.n_interactions, 0) as n_interactions,
        coalesce(popularity.n_users, 0) as n_users,
        {{ dbt.datediff('items.available_from', run_date(), 'day') }}             as days_since_available

    from items
    inner join availability on items.item_id = availability.item_id
    left join popularity on items.item_id = popularity.item_id

)

select * from final
