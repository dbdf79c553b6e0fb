{{
    config(
        materialized='table',
        enabled=(target.type == 'snowflake' and var('proactive_recs_snowflake_partitioned_scoring')),
        pre_hook="{{ proactive_recs_create_partition_topk_function() }}",
    )
}}
-- Snowflake only (var proactive_recs_snowflake_partitioned_scoring): plain MF's top-K both
-- ways scored across the warehouse's nodes. The run's factors, serving flags and boosts
-- (user_factors / item_factors, written by the recommendations procedure) go to a
-- vectorized Python UDTF in partitions of (user bucket, item block); its partial lists are
-- merged here (proactive_recs.warehouse.partitioned_topk). The lists are those of the
-- recommender's plain-MF stage: what serves when the second stage is off (the scale
-- profile) or when stage selection chose MF.
with

user_factors as (

    select * from {{ ref('user_factors') }}

),

item_factors as (

    select * from {{ ref('item_factors') }}

),

interactions as (

    select * from {{ ref('int_interactions') }}

),

run_context as (

    select * from {{ ref('int_run_context') }}

),

model_parameters as (

    select * from {{ ref('model_parameters') }}

),

list_lengths as (

    select
        max(case when parameter = 'k_items' then cast(value as integer) end) as k_items,
        max(case when parameter = 'k_users' then cast(value as integer) end) as k_users,
        coalesce(
            max(case when parameter = 'allow_repeats' then lower(value) = 'true' end), false
        ) as allow_repeats

    from model_parameters

),

-- positions in id order: the recommender's own order, so ties break the same way
users as (

    select
        user_id,
        factors,
        is_servable,
        boost,
        row_number() over (order by user_id) - 1 as position

    from user_factors

),

items as (

    select
        item_id,
        factors,
        is_servable,
        boost,
        row_number() over (order by item_id) - 1 as position

    from item_factors

),

-- what each user already interacted with before the run: never recommended again
seen as (

    select
        users.position as user_position,
        array_agg(distinct items.position) as excluded

    from interactions
    inner join run_context on interactions.occurred_at < run_context.run_date
    inner join users on interactions.user_id = users.user_id
    inner join items on interactions.item_id = items.item_id
    cross join list_lengths
    where not list_lengths.allow_repeats
    group by users.position

),

buckets as (

    select seq4() as bucket
    from table(generator(rowcount => {{ var('proactive_recs_snowflake_scoring_buckets') }}))

),

blocks as (

    select seq4() as block
    from table(generator(rowcount => {{ var('proactive_recs_snowflake_scoring_blocks') }}))

),

-- each user once per item block, each item once per user bucket
partition_input as (

    select
        mod(users.position, {{ var('proactive_recs_snowflake_scoring_buckets') }}) as bucket,
        blocks.block,
        'user' as side,
        users.position,
        users.factors,
        users.is_servable as servable,
        users.boost,
        coalesce(seen.excluded, array_construct()) as excluded,
        list_lengths.k_items,
        list_lengths.k_users

    from users
    cross join blocks
    cross join list_lengths
    left join seen on users.position = seen.user_position

    union all

    select
        buckets.bucket,
        mod(items.position, {{ var('proactive_recs_snowflake_scoring_blocks') }}) as block,
        'item' as side,
        items.position,
        items.factors,
        items.is_servable as servable,
        items.boost,
        array_construct() as excluded,
        list_lengths.k_items,
        list_lengths.k_users

    from items
    cross join buckets
    cross join list_lengths

),

partials as (

    select
        scored.direction,
        scored.owner_position,
        scored.member_position,
        scored.score

    from partition_input,
        table({{ proactive_recs_partition_topk_function_name() }}(
            partition_input.side,
            partition_input.position,
            partition_input.factors,
            partition_input.servable,
            partition_input.boost,
            partition_input.excluded,
            partition_input.k_items,
            partition_input.k_users
        ) over (partition by partition_input.bucket, partition_input.block)) as scored

),

merged as (

    {{ proactive_recs_merge_partitioned_topk(
        'partials',
        '(select k_items from list_lengths)',
        '(select k_users from list_lengths)',
    ) }}

),

final as (

    select
        merged.direction,
        case when merged.direction = 'user_item' then owner_user.user_id
            else member_user.user_id end as user_id,
        case when merged.direction = 'user_item' then member_item.item_id
            else owner_item.item_id end as item_id,
        cast(merged.rank as integer) as rank,
        merged.score

    from merged
    left join users as owner_user
        on merged.direction = 'user_item' and merged.owner_position = owner_user.position
    left join items as member_item
        on merged.direction = 'user_item' and merged.member_position = member_item.position
    left join items as owner_item
        on merged.direction = 'item_user' and merged.owner_position = owner_item.position
    left join users as member_user
        on merged.direction = 'item_user' and merged.member_position = member_user.position

)

select * from final
