-- A score for every (user, category): which categories each user is most drawn to, for
-- category-level campaigns and segments. Items without a category are left out.
with

category_scores as (

    select * from {{ ref('category_scores') }}

),

final as (

    select
        cast(user_id as {{ dbt.type_string() }}) as user_id,
        cast(category as {{ dbt.type_string() }}) as category,
        cast(score as double) as score,
        cast(rank as integer) as rank

    from category_scores

)

select * from final
