-- Day-0 audiences of items that go on sale within recommender_params.prelaunch_days after
-- the run date: who to tell before launch. Not sendable as such (campaigns read
-- item_user_scores, which never holds an item outside its availability window).
with

recommendations as (

    select * from {{ ref('recommendations') }}

),

items as (

    select * from {{ ref('stg_items') }}

),

prelaunch as (

    select
        item_id,
        user_id,
        cast(rank as integer) as rank,
        score,
        basis,
        stage

    from recommendations
    where record_type = 'prelaunch_item_user'

),

final as (

    select
        prelaunch.item_id,
        prelaunch.user_id,
        prelaunch.rank,
        prelaunch.score,
        prelaunch.basis,
        items.available_from,
        prelaunch.stage

    from prelaunch
    inner join items on prelaunch.item_id = items.item_id

)

select * from final
