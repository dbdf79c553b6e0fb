-- Every candidate send this run did not plan, and why (suppressed, filtered_out, cap_reached,
-- item_repeat, audience_full, ...): nothing is dropped without a reason.
with

plan as (

    select * from {{ ref('notification_plan') }}

),

final as (

    select
        run_date,
        campaign_id,
        channel,
        user_id,
        item_id,
        score,
        expected_value,
        reason

    from plan
    where decision = 'rejected'

)

select * from final
