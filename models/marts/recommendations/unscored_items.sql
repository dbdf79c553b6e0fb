-- Items that could have had an audience at the run date (on sale, or about to be) but got
-- none, with the reason: nothing is known about them yet. Listed rather than given
-- arbitrary users.
with

recommendations as (

    select * from {{ ref('recommendations') }}

),

final as (

    select
        item_id,
        reason

    from recommendations
    where record_type = 'unscored_item'

)

select * from final
