-- Per user: may we recommend to them (eligible, passes the user filter) and how much to boost
-- them, from the vars user_filter / user_booster. The expressions see every column of the
-- `context` CTE: stg_users' columns (extra attributes included), suppression, and activity.
with

users as (

    select * from {{ ref('stg_users') }}

),

eligibility as (

    select * from {{ ref('int_user_eligibility') }}

),

interactions as (

    select * from {{ ref('int_interactions') }}

),

activity as (

    select
        user_id,
        count(*) as n_interactions,
        max(occurred_at) as last_interaction_at

    from interactions
    group by user_id

),

context as (

    select
        users.*,
        eligibility.is_suppressed,
        eligibility.suppression_reason,
        coalesce(activity.n_interactions, 0) as n_interactions,
        activity.last_interaction_at,
        {{ dbt.datediff('users.joined_at', run_date(), 'day') }} as days_since_joined,
        {{ dbt.datediff('activity.last_interaction_at', run_date(), 'day') }} as days_since_last_interaction

    from users
    inner join eligibility on users.user_id = eligibility.user_id
    left join activity on users.user_id = activity.user_id

),

final as (

    select
        user_id,
        not is_suppressed as is_eligible,
        -- user_filter var: {{ var('user_filter') or 'none' }}
        coalesce({{ var('user_filter') or 'true' }}, false) as passes_filter,
        -- user_booster var: {{ var('user_booster') or 'none' }}
        cast(coalesce({{ var('user_booster') or '1.0' }}, 1.0) as {{ dbt.type_float() }}) as boost,
        n_interactions,
        days_since_joined,
        days_since_last_interaction

    from context

)

select * from final
