-- Everything a filter or booster may say about a user: stg_users' columns (extra attributes
-- included), suppression, and activity up to the run date. User filters and boosters (vars and
-- campaigns) are SQL expressions over these columns, evaluated by python_models/user_targeting.py.
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

final as (

    select
        users.*,
        not eligibility.is_suppressed as is_eligible,
        eligibility.is_email_eligible,
        eligibility.is_push_eligible,
        eligibility.suppression_reason,
        coalesce(activity.n_interactions, 0) as n_interactions,
        activity.last_interaction_at,
        {{ dbt.datediff('users.joined_at', run_date(), 'day') }}             as days_since_joined,
        {{ dbt.datediff('activity.last_interaction_at', run_date(), 'day') }}             as days_since_last_interaction

    from users
    inner join eligibility on users.user_id = eligibility.user_id
    left join activity on users.user_id = activity.user_id

)

select * from final
